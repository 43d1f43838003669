"""Every user mistake (and a full disk) in every ``sdeflow`` subcommand ends in ONE line
``sdeflow: error: ...`` naming the problem and exit status 2, never a traceback; metrics of
many samples run in bounded memory and a metric failure never loses written samples."""
import contextlib
import errno
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

import generative.cli as cli  # noqa: E402
from generative.cli import build_parser, main  # noqa: E402
from generative.metrics import mmd as mmd_mod  # noqa: E402
from generative.metrics.mmd import (bandwidth_points, median_bandwidth, mmd_rbf,  # noqa: E402
                                    sliced_wasserstein)

REPO = Path(__file__).resolve().parents[1]
EPS64 = torch.finfo(torch.float64).eps


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny checkpoints: a 2-D score model (moons), a digits score model, a digits
    classifier, a classifier whose meta lacks 'sde', a run directory holding a corrupt
    checkpoint, a plain file and a directory named like an output file."""
    root = tmp_path_factory.mktemp("bad-inputs")
    mp = pytest.MonkeyPatch()
    mp.setenv("SDEFLOW_CACHE", str(root / "cache"))
    common = ["--width", "16", "--depth", "1", "--batch-size", "32", "--no-progress",
              "--log-every", "5", "--steps", "3"]
    with contextlib.redirect_stdout(None):
        assert main(["train", "--data", "moons", "--out", str(root / "moons"), *common]) == 0
        assert main(["train", "--data", "digits", "--out", str(root / "digits"), *common]) == 0
        assert main(["train-classifier", "--data", "digits", "--out", str(root / "clf"),
                     *common]) == 0
    state = torch.load(root / "clf" / "checkpoint.pt", weights_only=True)
    del state["state"]["meta"]["sde"]
    torch.save(state, root / "clf_nosde.pt")
    (root / "corrupt").mkdir()
    (root / "corrupt" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (root / "afile").write_text("x")
    (root / "adir.png").mkdir()
    (root / "adir.json").mkdir()
    yield root
    mp.undo()


def _one_error(capsys, argv, ctx=None):
    """Run ``main(argv)``; assert exit 2 and one ``sdeflow: error:`` line; return it."""
    with (ctx if ctx is not None else contextlib.nullcontext()):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code
    err = capsys.readouterr().err
    lines = [s for s in err.splitlines() if s.strip()]
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("sdeflow: error: "), err
    return lines[0]


# (case id, argv from (root, tmp), substrings the message must hold)
_TRAIN = ["--data", "moons", "--steps", "2", "--width", "8", "--depth", "1", "--batch-size",
          "16", "--no-progress"]
_CLF = ["--data", "digits", "--steps", "2", "--width", "8", "--depth", "1", "--batch-size",
        "16", "--no-progress"]


def _sample(r):
    return ["sample", "--ckpt", str(r / "moons" / "checkpoint.pt"), "--sampler", "em",
            "--nfe", "4", "--n", "8"]


def _inpaint(r):
    return ["inpaint", "--ckpt", str(r / "digits" / "checkpoint.pt"), "--sampler", "em",
            "--nfe", "4", "--n", "2"]


def _lik(r):
    return ["likelihood", "--ckpt", str(r / "moons" / "checkpoint.pt"), "--n", "8",
            "--rtol", "1e-2", "--atol", "1e-2"]


def _guided(r, classifier):
    return ["sample", "--ckpt", str(r / "digits" / "checkpoint.pt"), "--sampler", "em",
            "--nfe", "4", "--n", "4", "--class", "1", "--guidance", "classifier",
            "--classifier", classifier]


LONG = "n" * 300
CASES = []
for _cmd, _base in (("train", _TRAIN), ("train-classifier", _CLF)):
    CASES += [
        (f"{_cmd}-out-is-a-file", lambda r, t, c=_cmd, b=_base: [c, *b, "--out", str(r / "afile")],
         ["--out", "is a file; expected a directory"]),
        (f"{_cmd}-out-under-a-file",
         lambda r, t, c=_cmd, b=_base: [c, *b, "--out", str(r / "afile" / "sub")],
         ["--out", "is a file, not a directory"]),
        (f"{_cmd}-out-proc", lambda r, t, c=_cmd, b=_base: [c, *b, "--out", "/proc/sdeflow-x"],
         ["--out", "/proc/sdeflow-x", "cannot write"]),
        (f"{_cmd}-out-empty", lambda r, t, c=_cmd, b=_base: [c, *b, "--out", ""],
         ["--out", "empty string"]),
        (f"{_cmd}-out-300-chars", lambda r, t, c=_cmd, b=_base: [c, *b, "--out", str(t / LONG)],
         ["--out", "too long", "the file system allows"]),
        (f"{_cmd}-resume-corrupt",
         lambda r, t, c=_cmd, b=_base: [c, *b, "--out", str(r / "corrupt"), "--resume"],
         ["corrupt"]),
        (f"{_cmd}-batch-size-huge",
         lambda r, t, c=_cmd, b=_base: [c, *b, "--out", str(t / "o"), "--batch-size",
                                        str(10 ** 12)],
         ["--batch-size 1000000000000 needs about", "available", "lower --batch-size"]),
        (f"{_cmd}-ema-decay", lambda r, t, c=_cmd, b=_base: [c, *b, "--out", str(t / "o"),
                                                             "--ema-decay", "2"],
         ["--ema-decay must be a number in [0, 1); got '2'"]),
        (f"{_cmd}-warmup", lambda r, t, c=_cmd, b=_base: [c, *b, "--out", str(t / "o"),
                                                          "--warmup", "-1"],
         ["--warmup must be an integer >= 0; got '-1'"]),
    ]
for _name, _fn in (("sample", _sample), ("inpaint", _inpaint)):
    CASES += [
        (f"{_name}-out-txt", lambda r, t, f=_fn: [*f(r), "--out", str(t / "a.txt")],
         ["--out must be a path ending in .png", "NAME.json, NAME.pt are written beside it",
          "a.txt"]),
        (f"{_name}-out-pt", lambda r, t, f=_fn: [*f(r), "--out", str(t / "x.pt")],
         ["--out must be a path ending in .png", "x.pt"]),
        (f"{_name}-out-no-suffix", lambda r, t, f=_fn: [*f(r), "--out", str(t / "x")],
         ["--out must be a path ending in .png"]),
        (f"{_name}-out-directory", lambda r, t, f=_fn: [*f(r), "--out", str(r / "adir.png")],
         ["--out", "is a directory; expected a file path"]),
        (f"{_name}-out-under-a-file",
         lambda r, t, f=_fn: [*f(r), "--out", str(r / "afile" / "s.png")],
         ["--out", "is a file, not a directory"]),
        (f"{_name}-out-proc", lambda r, t, f=_fn: [*f(r), "--out", "/proc/s.png"],
         ["--out '/proc/s.png'", "cannot write in '/proc'"]),
        (f"{_name}-out-empty", lambda r, t, f=_fn: [*f(r), "--out", ""],
         ["--out", "empty string"]),
        (f"{_name}-out-300-chars", lambda r, t, f=_fn: [*f(r), "--out", str(t / (LONG + ".png"))],
         ["--out", "too long"]),
        (f"{_name}-ckpt-directory",
         lambda r, t, n=_name: [n, "--ckpt", str(r), "--out", str(t / "s.png")],
         ["does not exist"]),
        (f"{_name}-nfe-huge", lambda r, t, f=_fn: [*f(r), "--nfe", str(10 ** 12), "--out",
                                                   str(t / "s.png")],
         ["--nfe 1000000000000 needs about", "lower --nfe"]),
    ]
CASES += [
    ("sample-n-huge", lambda r, t: [*_sample(r), "--n", str(10 ** 12), "--out", str(t / "s.png")],
     ["--n 1000000000000 needs about", "lower --n"]),
    ("sample-n-corrector", lambda r, t: [*_sample(r), "--n-corrector", "-1"],
     ["--n-corrector must be an integer >= 0"]),
    ("sample-nfe-zero", lambda r, t: [*_sample(r), "--nfe", "0"],
     ["--nfe must be an integer >= 1; got '0'"]),
    ("sample-classifier-lacks-sde",
     lambda r, t: [*_guided(r, str(r / "clf_nosde.pt")), "--out", str(t / "g.png")],
     ["--classifier", "sde"]),
    ("sample-classifier-corrupt",
     lambda r, t: [*_guided(r, str(r / "corrupt" / "checkpoint.pt")), "--out", str(t / "g.png")],
     ["--classifier", "corrupt"]),
    ("sample-classifier-is-a-model",
     lambda r, t: [*_guided(r, str(r / "digits" / "checkpoint.pt")), "--out", str(t / "g.png")],
     ["--classifier", "noise-conditional classifier"]),
    ("inpaint-2d-model", lambda r, t: ["inpaint", "--ckpt", str(r / "moons" / "checkpoint.pt"),
                                       "--sampler", "em", "--nfe", "4", "--out",
                                       str(t / "i.png")],
     ["inpaint fills in pixels of images", "vectors of shape (2,)"]),
    ("inpaint-n-beyond-split", lambda r, t: [*_inpaint(r), "--n", "100000", "--out",
                                             str(t / "i.png")],
     ["--n 100000 is more than the", "test split"]),
    ("likelihood-out-directory", lambda r, t: [*_lik(r), "--out", str(r / "adir.json")],
     ["--out", "is a directory"]),
    ("likelihood-out-png", lambda r, t: [*_lik(r), "--out", str(t / "l.png")],
     ["--out must be a path ending in .json"]),
    ("likelihood-out-empty", lambda r, t: [*_lik(r), "--out", ""], ["--out", "empty string"]),
    ("likelihood-out-proc", lambda r, t: [*_lik(r), "--out", "/proc/l.json"],
     ["--out", "cannot write in '/proc'"]),
    ("likelihood-out-300-chars", lambda r, t: [*_lik(r), "--out", str(t / (LONG + ".json"))],
     ["--out", "too long"]),
    ("likelihood-density-plot-txt", lambda r, t: [*_lik(r), "--density-plot", str(t / "d.txt")],
     ["--density-plot must be a path ending in .png"]),
    ("likelihood-density-plot-directory",
     lambda r, t: [*_lik(r), "--density-plot", str(r / "adir.png")],
     ["--density-plot", "is a directory"]),
    ("likelihood-density-plot-empty", lambda r, t: [*_lik(r), "--density-plot", ""],
     ["--density-plot", "empty string"]),
    ("likelihood-ckpt-directory", lambda r, t: ["likelihood", "--ckpt", str(r)],
     ["does not exist"]),
    ("demo-out-is-a-file", lambda r, t: ["demo", "--quick", "--out", str(r / "afile")],
     ["--out", "is a file; expected a directory"]),
    ("demo-out-proc", lambda r, t: ["demo", "--quick", "--out", "/proc/demo"],
     ["--out", "cannot write"]),
    ("demo-out-empty", lambda r, t: ["demo", "--quick", "--out", ""], ["--out", "empty string"]),
    ("demo-out-300-chars", lambda r, t: ["demo", "--quick", "--out", str(t / LONG)],
     ["--out", "too long"]),
]


if not Path("/proc/self").exists():  # the /proc cases need Linux's procfs (no files there)
    CASES = [c for c in CASES if "proc" not in c[0]]


@pytest.mark.parametrize("argv_of,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_error(runs, tmp_path, capsys, argv_of, expected):
    line = _one_error(capsys, argv_of(runs, tmp_path))
    for text in expected:
        assert text in line, line
    # nothing was written for a refused output
    assert not any(p.suffix in (".pt", ".png", ".json") for p in tmp_path.rglob("*"))


def test_the_table_covers_every_subcommand():
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    assert commands == {"train", "sample", "likelihood", "demo", "train-classifier", "inpaint"}
    tested = {}
    for name, argv_of, _ in CASES:
        command = argv_of(Path("/r"), Path("/t"))[0]
        tested[command] = tested.get(command, 0) + 1
    assert set(tested) == commands and min(tested.values()) >= 4, tested


def _torch_save_fails(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


FULL_DISK = [OSError(errno.ENOSPC, "No space left on device"),
             RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")]


@pytest.mark.parametrize("exc", FULL_DISK, ids=["oserror", "torch-runtimeerror"])
@pytest.mark.parametrize("command", ["train", "train-classifier", "sample", "inpaint"])
def test_full_disk_says_no_space_left(runs, tmp_path, capsys, monkeypatch, exc, command):
    argv = {"train": ["train", *_TRAIN, "--out", str(tmp_path / "o")],
            "train-classifier": ["train-classifier", *_CLF, "--out", str(tmp_path / "o")],
            "sample": [*_sample(runs), "--out", str(tmp_path / "s.png")],
            "inpaint": [*_inpaint(runs), "--out", str(tmp_path / "s.png")]}[command]
    monkeypatch.setattr(torch, "save", _torch_save_fails(exc))
    line = _one_error(capsys, argv)
    assert "no space left on device" in line and str(tmp_path) in line


def test_full_disk_writing_the_likelihood_json(runs, tmp_path, capsys, monkeypatch):
    def fail(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_text", fail)
    line = _one_error(capsys, [*_lik(runs), "--out", str(tmp_path / "l.json")])
    assert "writing --out" in line and "no space left on device" in line


def test_torchrun_batch_size_names_the_flag(runs, tmp_path, capsys, monkeypatch):
    from generative.distributed import DistContext
    monkeypatch.setattr(cli, "torchrun_env_present", lambda: True)
    monkeypatch.setattr(cli, "init_distributed", lambda **kw: DistContext(rank=0, world_size=3))
    line = _one_error(capsys, ["train", *_TRAIN, "--out", str(tmp_path / "o")])
    assert "--batch-size 16 must be divisible by the number of processes (world size 3)" in line
    assert "TrainConfig" not in line


def test_diverging_loss_is_a_clear_error(runs, tmp_path, capsys):
    line = _one_error(capsys, ["train", *_TRAIN, "--steps", "20", "--lr", "1e30", "--warmup",
                               "0", "--out", str(tmp_path / "o")])
    assert "non-finite" in line or "nan" in line.lower()


def test_a_metric_failure_keeps_the_samples(runs, tmp_path, capsys, monkeypatch):
    import generative.metrics as metrics

    def oom(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                           "7200000000 bytes")
    monkeypatch.setattr(metrics, "mmd_rbf", oom)
    png = tmp_path / "s.png"
    line = _one_error(capsys, [*_sample(runs), "--out", str(png)])
    assert "can't allocate memory" in line
    assert f"the samples were saved to {str(png.with_suffix('.pt'))!r}" in line
    assert torch.load(png.with_suffix(".pt"), weights_only=True).shape == (8, 2)


def test_sample_metrics_use_at_most_the_stated_count(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "METRIC_MAX_SAMPLES", 40)
    png = tmp_path / "s.png"
    assert main([*_sample(runs), "--n", "100", "--out", str(png)]) == 0
    info = json.loads(png.with_suffix(".json").read_text())
    x = torch.load(png.with_suffix(".pt"), weights_only=True)
    from generative.data import load_data
    ref = load_data("moons").test[:100].float()
    assert info["mmd_n_samples"] == 40 and info["metric_n_reference"] == 100
    assert info["mmd"] == mmd_rbf(x[:40], ref)
    assert info["sliced_wasserstein"] == sliced_wasserstein(x, ref)


def test_one_sample_of_a_2d_model_skips_the_metrics(runs, tmp_path):
    png = tmp_path / "s.png"
    assert main([*_sample(runs), "--n", "1", "--out", str(png)]) == 0
    info = json.loads(png.with_suffix(".json").read_text())
    assert "mmd" not in info and "--n >= 2" in info["metrics_skipped"]


def test_no_traceback_end_to_end(runs, tmp_path):
    """Two real processes: the error is one line, no traceback."""
    env = {"SDEFLOW_CACHE": str(runs / "cache"), "PATH": "/usr/bin:/bin"}
    for argv in (["sample", "--ckpt", str(runs / "moons" / "checkpoint.pt"), "--out",
                  str(tmp_path / "a.txt")],
                 ["train", *_TRAIN, "--out", str(runs / "afile")]):
        res = subprocess.run([sys.executable, "-m", "generative.cli", *argv], cwd=REPO,
                             capture_output=True, text=True, timeout=120, env=env)
        lines = [s for s in res.stderr.splitlines() if s.strip() and "RuntimeWarning" not in s
                 and "frozen runpy" not in s]
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert len(lines) == 1 and lines[0].startswith("sdeflow: error: --out"), res.stderr
    assert not (tmp_path / "a.txt").exists()


# --------------------------------------------------------------------------- bounded metrics

def _mmd_full(x, y, bandwidths):
    """The unchunked formula: full kernel matrices."""
    x, y = x.double(), y.double()

    def k(a, b):
        d2 = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").square()
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)
    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    terms = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)), \
        (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)), kxy.mean()
    return float(terms[0] + terms[1] - 2 * terms[2]), [float(t) for t in terms]


def test_chunked_mmd_equals_the_full_kernel_computation():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 2, generator=g)
    y = torch.randn(200, 2, generator=g) * 1.3 + 0.4
    h = median_bandwidth(x, y)
    bw = (0.5 * h, h, 2 * h)
    want, terms = _mmd_full(x, y, bw)
    # The kernel entries are computed identically in any block (direct differences), so only
    # the summation order differs. Summing N nonnegative terms in any order errs by at most
    # (N - 1) eps of their sum (recursive-summation bound), for each of the two results; the
    # largest sum has N = 300² entries, and sxx + syy + 2 sxy bounds the scaled sums.
    bound = 2 * (300 * 300) * EPS64 * (terms[0] + terms[1] + 2 * terms[2])
    for max_bytes in (1, 8 * 200 * 5 * 7, 10 ** 9):
        got = mmd_rbf(x, y, max_bytes=max_bytes)
        assert abs(got - want) <= bound, (max_bytes, got, want, bound)
    assert mmd_rbf(x, y) == pytest.approx(want, abs=bound)  # default bandwidths are the same h


def test_mmd_blocks_fit_the_memory_bound(monkeypatch):
    shapes = []
    real = mmd_mod._cdist

    def spy(a, b):
        shapes.append((len(a), len(b)))
        return real(a, b)
    monkeypatch.setattr(mmd_mod, "_cdist", spy)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3000, 2, generator=g), torch.randn(500, 2, generator=g)
    max_bytes = 2 ** 20
    mmd_rbf(x, y, bandwidths=(1.0,), max_bytes=max_bytes)
    assert len(shapes) > 3
    # a block holds its distances and (kernels + 1) more arrays of the same size
    assert all(r * c * 8 * 3 <= max_bytes for r, c in shapes), shapes


def test_median_bandwidth_states_its_subsample():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(60, 2, generator=g), torch.randn(40, 2, generator=g)
    z = torch.cat([x, y]).double()
    d = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")
    exact = float(d[torch.triu_indices(100, 100, 1).unbind()].median())
    assert median_bandwidth(x, y) == exact and bandwidth_points(100) == 100
    assert bandwidth_points(100, max_points=30) == 30
    sub = median_bandwidth(x, y, max_points=30)
    idx = torch.linspace(0, 99, 30).round().long()
    zs = z[idx]
    ds = torch.cdist(zs, zs, compute_mode="donot_use_mm_for_euclid_dist")
    assert sub == float(ds[torch.triu_indices(30, 30, 1).unbind()].median())


def test_grouped_sliced_wasserstein_equals_one_group():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(400, 2, generator=g), torch.randn(250, 2, generator=g) + 1.0
    one = sliced_wasserstein(x, y, n_projections=64, max_bytes=10 ** 9)
    grouped = sliced_wasserstein(x, y, n_projections=64, max_bytes=8 * 4 * 400 * 5)
    # the same projections and quantiles; the mean over 64 x 400 terms is summed in groups,
    # (N - 1) eps relative per order, and the square root halves the relative error
    assert grouped == pytest.approx(one, rel=2 * 64 * 400 * EPS64)
    assert math.isfinite(one) and one > 0.5
