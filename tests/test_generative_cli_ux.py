"""What a new user meets with the ``sdeflow`` CLI: help with every default, --version, a light
``import generative``, run configs, resume messages, progress bars, TensorBoard logging,
missing extras, the demo's start message and quick folder, likelihood in nats, the CFG NFE
and the MMD reference (tiny real runs)."""
import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from generative import cli  # noqa: E402
from generative.cli import build_parser, main  # noqa: E402
from generative.run_config import read_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = ["--width", "16", "--depth", "1", "--batch-size", "32", "--no-progress",
        "--log-every", "1"]


def _run(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300, **kw)


def _commands():
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.fixture(scope="module")
def moons(tmp_path_factory):
    out = tmp_path_factory.mktemp("ux") / "moons"
    assert main(["train", "--data", "moons", "--steps", "3", "--out", str(out), *TINY]) == 0
    return out


# --------------------------------------------------------------------------- help, version

def test_help_states_every_default():
    for name, parser in _commands().items():
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or action.dest == "help":
                continue
            shown = parser._get_formatter()._get_help_string(action) % vars(action) \
                if action.help else ""
            assert "default" in shown or "required" in shown, (name, action.option_strings)
        assert "(default: " in text
    train = _commands()["train"].format_help()
    assert "(default: 128)" in train and "(default: digits)" in train


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("sdeflow ")


def test_python_m_runs_the_cli_without_a_warning():
    for module in ("generative", "generative.cli"):
        r = _run(["-m", module, "--version"])
        assert r.returncode == 0 and r.stdout.startswith("sdeflow "), r.stderr
        assert "found in sys.modules" not in r.stderr and "Warning" not in r.stderr


def test_import_generative_loads_no_application_module():
    code = ("import json, sys, generative; print(json.dumps([m for m in ('generative.cli', "
            "'generative.demo', 'generative.plots', 'scipy', 'matplotlib', 'sklearn') "
            "if m in sys.modules]))")
    r = _run(["-c", code])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
    r = _run(["-c", "import generative; print(generative.cli_main.__module__, "
                    "generative.run_demo.__name__, 'plots' in dir(generative))"])
    assert r.stdout.split() == ["generative.cli", "run_demo", "True"], r.stderr


def test_choices_come_from_the_registries():
    from solvers import TABLEAUS
    commands = _commands()
    for name in ("train", "sample"):
        method = next(a for a in commands[name]._actions if a.dest == "method")
        assert list(method.choices) == list(TABLEAUS)
    assert "--nfe" in commands["sample"].format_help()
    assert f"default {cli.DEFAULT_NFE}" in commands["sample"].format_help()


def test_train_and_train_classifier_share_their_options():
    commands = _commands()
    shared = {"config", "steps", "out", "resume", "batch_size", "lr", "warmup", "ema_decay",
              "no_dequantize", "seed", "data_seed", "log_every", "ckpt_every", "no_progress",
              "image_size", "image_mode"}
    for name in ("train", "train-classifier"):
        dests = {a.dest for a in commands[name]._actions}
        assert shared <= dests, (name, shared - dests)


# --------------------------------------------------------------------------- config files

def test_config_file_is_written_and_repeats_the_run(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('data = "moons"\nsteps = 3\nwidth = 16\ndepth = 1\nbatch-size = 16\n'
                   'no_progress = true\nlog-every = 1\nlr = 0.002\n')
    a = tmp_path / "a"
    # flags on the command line override the file's
    assert main(["train", "--config", str(cfg), "--out", str(a), "--batch-size", "32"]) == 0
    written = read_config(a / "config.toml")
    assert written["batch-size"] == 32 and written["lr"] == 0.002 and written["data"] == "moons"
    assert written["steps"] == 3 and written["no-progress"] is True
    assert "out" not in written and "resume" not in written
    b = tmp_path / "b"
    assert main(["train", "--config", str(a / "config.toml"), "--out", str(b)]) == 0
    from generative.checkpoint import load_checkpoint
    wa, wb = (load_checkpoint(d / "checkpoint.pt")["model"] for d in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("text,expected", [
    ("bogus = 1\n", "unknown key 'bogus'"),
    ("resume = 3\n", "'resume' is a switch"),
    ("lr = true\n", "'lr' takes a value"),
    ("lr = [1, 2]\n", "flat"),
    ("lr = = 1\n", "not valid TOML"),
    ("lr = -1\n", "--lr must be a positive number"),
])
def test_config_file_errors_name_the_key(tmp_path, capsys, text, expected):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    try:
        code = main(["train", "--config", str(cfg), "--steps", "1", "--out",
                     str(tmp_path / "o")])
    except SystemExit as exc:  # a value the flag's parser refuses
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("sdeflow: error:") and expected in err, err


# --------------------------------------------------------------------------- resume

def test_resume_says_the_step_and_names_the_key_that_matters(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--data", "moons", "--steps", "2", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--data", "moons", "--steps", "3", "--out", str(out), "--resume",
                 *TINY]) == 0
    err = capsys.readouterr().err
    assert "resuming" in err and "at step 2 (of 3)" in err
    code = main(["train", "--data", "digits", "--model", "fm", "--steps", "4", "--out",
                 str(out), "--resume", *TINY])
    err = capsys.readouterr().err
    assert code == 2
    assert "first kind: saved 'score' vs given 'fm'" in err
    assert err.index("kind") < err.index("data: saved 'moons'") < err.index("event_shape")


# --------------------------------------------------------------------------- outputs

def test_likelihood_reports_nats_and_bits_per_dim(moons, tmp_path, capsys):
    assert main(["likelihood", "--ckpt", str(moons / "checkpoint.pt"), "--n", "8",
                 "--rtol", "1e-3", "--atol", "1e-3", "--no-progress"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["nll_nats"] == pytest.approx(info["bits_per_dim"] * 2 * math.log(2), rel=1e-6)
    assert info["nats_per_dim"] == pytest.approx(info["bits_per_dim"] * math.log(2), rel=1e-6)
    assert info["nll_nats_stderr"] >= 0


def test_mmd_names_its_reference(moons, tmp_path, capsys):
    png = tmp_path / "s.png"
    assert main(["sample", "--ckpt", str(moons / "checkpoint.pt"), "--sampler", "em", "--nfe",
                 "5", "--n", "50", "--out", str(png), "--no-progress"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["metric_reference"] == {"data": "moons", "split": "test", "n": 50}
    assert "50 samples against the first 50 points of the test split of 'moons'" in \
        info["metrics_note"]


def test_cfg_nfe_counts_both_score_evaluations(tmp_path, capsys, monkeypatch):
    out = tmp_path / "cond"
    assert main(["train", "--data", "digits", "--class-conditional", "--steps", "2", "--out",
                 str(out), *TINY]) == 0
    calls = []
    from generative.models import load_model
    real_load = load_model

    def counting_load(path, **kw):  # count the network's evaluations of one sampling run
        loaded = real_load(path, **kw)
        loaded.model.register_forward_hook(lambda *a: calls.append(1))
        return loaded
    capsys.readouterr()
    monkeypatch.setattr(cli, "load_model", counting_load)
    png = tmp_path / "cfg.png"
    assert main(["sample", "--ckpt", str(out / "checkpoint.pt"), "--class", "3",
                 "--guidance", "cfg", "--scale", "2", "--sampler", "ddim", "--nfe", "10",
                 "--n", "8", "--out", str(png), "--no-progress"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["score_evaluations"] == 10 and info["nfe"] == 20
    assert len(calls) == info["nfe"]  # one batch of 8: network calls per sample


def test_progress_bars_of_long_commands(moons, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "progress_wanted", lambda disabled=False: not disabled)
    png = tmp_path / "p.png"
    assert main(["sample", "--ckpt", str(moons / "checkpoint.pt"), "--sampler", "em", "--nfe",
                 "20", "--n", "16", "--out", str(png)]) == 0
    err = capsys.readouterr().err
    assert "sample:" in err and "100%" in err and "<" in err  # elapsed < remaining
    assert main(["likelihood", "--ckpt", str(moons / "checkpoint.pt"), "--n", "4",
                 "--rtol", "1e-3", "--atol", "1e-3"]) == 0
    err = capsys.readouterr().err
    assert "likelihood:" in err and "100%" in err
    assert main(["sample", "--ckpt", str(moons / "checkpoint.pt"), "--sampler", "em", "--nfe",
                 "20", "--n", "16", "--out", str(png), "--no-progress"]) == 0
    assert "sample:" not in capsys.readouterr().err


def test_progress_follows_chunks_and_adaptive_solves():
    from torch import nn

    from generative.progress import eval_progress

    class Net(nn.Module):
        def forward(self, x, t):
            return x
    net = Net()
    with eval_progress(net, (1.0, 0.0), chunks=2, enabled=True):
        for _chunk in range(2):
            for t in torch.linspace(1, 0, 7):
                net(torch.zeros(1), t)
    assert not net._forward_hooks  # removed afterwards


# --------------------------------------------------------------------------- TensorBoard

class FakeWriter:
    instances = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.images, self.closed = log_dir, [], [], False
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        FakeWriter.instances.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def add_image(self, tag, img, step):
        self.images.append((tag, tuple(img.shape), step))

    def add_histogram(self, tag, values, step):
        self.images.append((tag, tuple(values.shape), step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_scalars_and_sample_grids(tmp_path, monkeypatch, capsys):
    import generative.tensorboard_log as tb
    monkeypatch.setattr(tb, "summary_writer_class", lambda: FakeWriter)
    FakeWriter.instances.clear()
    out = tmp_path / "tb"
    assert main(["train", "--data", "digits", "--steps", "4", "--ckpt-every", "2", "--out",
                 str(out), *TINY]) == 0
    assert "TensorBoard logs in" in capsys.readouterr().err
    (w,) = FakeWriter.instances
    assert w.log_dir == str(out / "tensorboard") and w.closed
    assert [s for t, _, s in w.scalars if t == "train/loss"] == [1, 2, 3, 4]
    assert {"train/grad_norm", "train/lr"} <= {t for t, _, _ in w.scalars}
    steps = [s for t, _, s in w.images if t == "samples"]
    assert steps and steps[-1] == 4 and w.images[-1][1][0] == 1  # a 1-channel grid image


def test_no_tensorboard_without_the_package(tmp_path, monkeypatch, capsys):
    import generative.tensorboard_log as tb
    monkeypatch.setattr(tb, "summary_writer_class", lambda: None)
    out = tmp_path / "plain"
    assert main(["train", "--data", "moons", "--steps", "2", "--out", str(out), *TINY]) == 0
    assert not (out / "tensorboard").exists()
    assert "TensorBoard" not in capsys.readouterr().err
    # and --no-tensorboard turns it off where it is installed
    monkeypatch.setattr(tb, "summary_writer_class", lambda: FakeWriter)
    FakeWriter.instances.clear()
    assert main(["train", "--data", "moons", "--steps", "2", "--out", str(tmp_path / "off"),
                 "--no-tensorboard", *TINY]) == 0
    assert FakeWriter.instances == []


def test_the_real_summary_writer_class_matches_the_install():
    import importlib.util

    from generative.tensorboard_log import summary_writer_class
    installed = importlib.util.find_spec("tensorboard") is not None
    assert (summary_writer_class() is not None) == installed


# --------------------------------------------------------------------------- extras

BLOCK = """
import importlib.abc, importlib.machinery, sys
class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)
    def exec_module(self, module):
        pass
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("scipy", "sklearn", "matplotlib", "PIL"):
            return importlib.machinery.ModuleSpec(name, _Loader())
sys.meta_path.insert(0, _Block())
from generative.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_missing_extra_is_named(tmp_path):
    r = _run(["-c", BLOCK, "train", "--steps", "1", "--out", str(tmp_path / "d")])
    assert r.returncode == 2
    assert "'scikit-learn' package" in r.stderr and "sdeflow[generative]" in r.stderr
    assert r.stderr.count("\n") == 1  # one line, no traceback
    # the toy sets without sklearn train; the picture then names matplotlib
    r = _run(["-c", BLOCK, "train", "--data", "8gaussians", "--out", str(tmp_path / "g"),
              "--steps", "1", *TINY])
    assert r.returncode == 0, r.stderr
    r = _run(["-c", BLOCK, "sample", "--ckpt", str(tmp_path / "g" / "checkpoint.pt"),
              "--sampler", "em", "--nfe", "4", "--n", "8", "--out", str(tmp_path / "s.png")])
    assert r.returncode == 2 and "'matplotlib' package" in r.stderr
    assert "the samples were saved to" in r.stderr and (tmp_path / "s.pt").is_file()


# --------------------------------------------------------------------------- demo

def test_demo_says_its_time_and_folder_and_keeps_quick_apart(monkeypatch, tmp_path):
    from generative import demo
    monkeypatch.setenv("SDEFLOW_CACHE", str(tmp_path / "cache"))
    assert demo.default_out(False) == "results/demo"
    assert demo.default_out(True) == "results/demo-quick"
    full = demo.expected_time(demo.DEMO_CONFIG, False)
    assert "8.5" in full and "minutes" in full and "--quick" in full
    assert "minute" in demo.expected_time(demo.QUICK_CONFIG, True)
    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda out_dir, **kw: seen.update(out=out_dir, **kw))
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quick", "--no-progress"]) == 0
    assert Path(seen["out"]) == Path("results/demo-quick") and seen["quick"]


def test_quick_demo_targets_say_they_are_not_expected_to_pass():
    from generative.demo import format_table
    fid = {"value": 10.0, "ci_low": 9.0, "ci_high": 11.0}
    summary = {
        "samplers": {"pc": {"label": "predictor-corrector", "nfe": 60, "fid": fid,
                            "confident_fraction": 0.1, "seconds": 1.0}},
        "baseline_gaussian_fit": {"fid": {**fid, "value": 12.0}, "confident_fraction": 0.1},
        "real_data_floor": {"fid": fid, "confident_fraction": 0.9},
        "likelihood": {"bits_per_dim": 3.0, "bits_per_dim_stderr": 0.1, "n": 16,
                       "divergence": "hutchinson", "nfe": 50},
        "best_sampler": "pc", "classifier_test_accuracy": 0.97,
        "targets": {"best_le_half_baseline": False, "all_below_baseline": True,
                    "best_confident_ge_0.8": False},
        "wall_seconds": 10.0, "model": {"train_seconds": 1.0, "cached": False}}
    quick = format_table({**summary, "quick": True})
    assert "not expected to pass at --quick settings" in quick and "FAIL" not in quick
    assert "not met" in quick and "PASS" in quick
    full = format_table({**summary, "quick": False})
    assert "FAIL" in full and "not expected" not in full


def test_tensorboard_event_files_with_the_real_package(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path / "real-tb"
    assert main(["train", "--data", "digits", "--steps", "4", "--ckpt-every", "2", "--out",
                 str(out), *TINY]) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in events.Images("samples")] == [2, 4]
