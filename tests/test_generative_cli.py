"""End-to-end tests of the ``sdeflow`` CLI and ``sdeflow demo --quick`` (real runs, tiny
settings), and its errors for bad input."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from generative.cli import main  # noqa: E402
from generative.data import load_data  # noqa: E402
from fid_tolerance import frechet_roundoff_bound  # noqa: E402
from generative.metrics import (digits_features, frechet_distance_features,  # noqa: E402
                                load_digits_classifier)
from generative.plots import grid_size  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _imsize(path):
    import matplotlib.image as mpimg
    a = mpimg.imread(str(path))
    return a.shape[0], a.shape[1]


def _finite(obj):
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return True


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One temporary cache (classifier, demo model) for every test of this module."""
    path = tmp_path_factory.mktemp("sdeflow-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SDEFLOW_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache):
    """Tiny trained checkpoints on moons and digits."""
    root = tmp_path_factory.mktemp("runs")
    common = ["--width", "32", "--depth", "1", "--batch-size", "64", "--no-progress",
              "--log-every", "10"]
    assert main(["train", "--data", "moons", "--sde", "vp", "--steps", "30",
                 "--out", str(root / "moons"), *common]) == 0
    assert main(["train", "--data", "digits", "--sde", "vp", "--steps", "20",
                 "--out", str(root / "digits"), *common]) == 0
    return root


def test_train_writes_checkpoint_and_log(runs):
    for name in ("moons", "digits"):
        d = runs / name
        assert (d / "checkpoint.pt").is_file()
        lines = (d / "metrics.jsonl").read_text().splitlines()
        assert lines and all(math.isfinite(json.loads(s)["loss"]) for s in lines)
        summary = json.loads((d / "train_summary.json").read_text())
        assert summary["step"] == (30 if name == "moons" else 20) and _finite(summary)


def test_train_resume_continues(runs, tmp_path):
    out = tmp_path / "r"
    args = ["train", "--data", "moons", "--steps", "10", "--out", str(out), "--width", "16",
            "--depth", "1", "--no-progress", "--log-every", "5", "--ckpt-every", "5"]
    assert main(args) == 0
    args[args.index("--steps") + 1] = "20"
    assert main(args + ["--resume"]) == 0
    assert json.loads((out / "train_summary.json").read_text())["step"] == 20


@pytest.mark.parametrize("sampler,extra", [("ode", []), ("pc", ["--nfe", "60"]),
                                           ("em", ["--nfe", "10"])])
def test_sample_moons(runs, tmp_path, sampler, extra):
    png = tmp_path / f"{sampler}.png"
    assert main(["sample", "--ckpt", str(runs / "moons" / "checkpoint.pt"), "--sampler",
                 sampler, "--n", "64", "--out", str(png), "--rtol", "1e-3", "--atol", "1e-3",
                 *extra]) == 0
    assert png.is_file() and _imsize(png) == (400, 400)
    info = json.loads(png.with_suffix(".json").read_text())
    assert _finite(info) and info["finite"] and info["nfe"] >= 1
    if extra:
        assert info["nfe"] <= int(extra[1])
    assert math.isfinite(info["mmd"]) and math.isfinite(info["sliced_wasserstein"])
    x = torch.load(png.with_suffix(".pt"), weights_only=True)
    assert x.shape == (64, 2)


def test_sample_digits_grid_size(runs, tmp_path):
    png = tmp_path / "grid.png"
    assert main(["sample", "--ckpt", str(runs / "digits" / "checkpoint.pt"), "--sampler",
                 "em", "--nfe", "8", "--n", "16", "--out", str(png)]) == 0
    assert _imsize(png) == grid_size(16, 8, 8)
    info = json.loads(png.with_suffix(".json").read_text())
    assert info["nfe"] == 8 and info["n"] == 16 and _finite(info)


def test_sample_fid_equals_the_direct_computation(runs, tmp_path, capsys):
    png = tmp_path / "fid.png"
    assert main(["sample", "--ckpt", str(runs / "digits" / "checkpoint.pt"), "--sampler",
                 "em", "--nfe", "8", "--n", "24", "--fid", "--out", str(png)]) == 0
    info = json.loads(png.with_suffix(".json").read_text())
    clf = load_digits_classifier()
    x = torch.load(png.with_suffix(".pt"))
    f_gen = digits_features(x, clf).double()
    f_ref = digits_features(load_data("digits").test, clf).double()
    want = frechet_distance_features(f_gen, f_ref)
    # The float32 features are bitwise those the CLI computed: same images, same process,
    # one chunk each (24 samples and the 359 test digits, both < digits_features' batch of
    # 1024). What differs is the float64 statistics path (the CLI merges `FeatureMoments`,
    # this side uses np.cov), amplified by sqrtm of the rank-deficient covariance product
    # (N = 24 < F = 32): see fid_tolerance. The bound is ~1e-7 relative here (observed 8e-10
    # on one x86 machine, 4.4e-9 on another, which failed the former rel=1e-9). A wrong
    # computation moves d far more (a biased covariance alone: ~1e-2 relative).
    tol = frechet_roundoff_bound(f_gen, f_ref, want)
    assert abs(info["fid"] - want) <= tol and info["fid"] > 0, (info["fid"], want, tol)
    capsys.readouterr()
    err = _err(capsys, ["sample", "--ckpt", str(runs / "moons" / "checkpoint.pt"), "--fid",
                        "--out", str(tmp_path / "m.png")])
    assert "--fid scores digits models; this one was trained on 'moons'" in err


def test_likelihood_digits(runs, tmp_path, capsys):
    out = tmp_path / "bpd.json"
    assert main(["likelihood", "--ckpt", str(runs / "digits" / "checkpoint.pt"), "--n", "8",
                 "--divergence", "hutchinson", "--rtol", "1e-3", "--atol", "1e-3",
                 "--out", str(out)]) == 0
    info = json.loads(out.read_text())
    assert info["n"] == 8 and _finite(info) and 0 < info["bits_per_dim"] < 20
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == info


# --------------------------------------------------------------------------- errors

def _err(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        rc = main(argv)
        raise SystemExit(rc)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("option,bad,expected", [
    ("--steps", "2.5", "--steps must be an integer >= 1; got '2.5'"),
    ("--steps", "0", "--steps must be an integer >= 1; got '0'"),
    ("--lr", "0", "--lr must be a positive number; got '0'"),
    ("--lr", "nan", "--lr must be a positive number; got 'nan'"),
    ("--t-min", "-1", "--t-min must be a number >= 0; got '-1'"),
    ("--t-min", "x", "--t-min must be a number >= 0; got 'x'"),
])
def test_numeric_options_name_the_option(capsys, tmp_path, option, bad, expected):
    argv = ["train", "--data", "moons", "--steps", "5", "--out", str(tmp_path / "r")]
    if option == "--steps":
        argv[argv.index("--steps") + 1] = bad
    else:
        argv += [option, bad]
    assert expected in _err(capsys, argv)


def test_unknown_names_list_valid_ones(capsys, tmp_path):
    err = _err(capsys, ["sample", "--ckpt", "x.pt", "--sampler", "nope"])
    assert "nope" in err and "ode" in err and "reverse_diffusion" in err
    err = _err(capsys, ["train", "--data", "moons", "--sde", "bogus", "--steps", "1",
                        "--out", str(tmp_path)])
    assert "bogus" in err and "subvp" in err
    err = _err(capsys, ["train", "--data", "nosuchdata", "--steps", "1", "--out",
                        str(tmp_path / "o")])
    assert "nosuchdata" in err and "checkerboard" in err
    err = _err(capsys, ["train", "--data", "moons", "--net", "resnet", "--steps", "1",
                        "--out", str(tmp_path)])
    assert "resnet" in err and "unet" in err
    err = _err(capsys, ["train", "--data", "moons", "--model", "nf", "--steps", "1",
                        "--out", str(tmp_path)])
    assert "'nf'" in err and "ffjord" in err and "ot-fm" in err


def test_bad_nfe_and_checkpoints(capsys, tmp_path, runs):
    ck = str(runs / "moons" / "checkpoint.pt")
    for bad in ("0", "-3", "abc"):
        err = _err(capsys, ["sample", "--ckpt", ck, "--nfe", bad])
        assert "--nfe" in err and ">= 1" in err
    err = _err(capsys, ["sample", "--ckpt", str(tmp_path / "missing.pt")])
    assert "does not exist" in err
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    for cmd in ("sample", "likelihood"):
        err = _err(capsys, [cmd, "--ckpt", str(corrupt)])
        assert "corrupt" in err
    from generative.checkpoint import save_checkpoint
    foreign = save_checkpoint(tmp_path / "foreign.pt", {"model": {}, "step": 3})
    err = _err(capsys, ["sample", "--ckpt", str(foreign)])
    assert "not a checkpoint written by `sdeflow train`" in err
    # a budget too small for one step of the sampler is a clear error too
    err = _err(capsys, ["sample", "--ckpt", ck, "--sampler", "pc", "--nfe", "1",
                        "--out", str(tmp_path / "a.png")])
    assert "nfe" in err
    err = _err(capsys, ["train", "--data", "moons", "--steps", "0", "--out", str(tmp_path)])
    assert "--steps" in err


def test_user_npy_vectors(tmp_path, cache):
    import numpy as np
    path = tmp_path / "pts.npy"
    np.save(path, np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32))
    out = tmp_path / "run"
    assert main(["train", "--data", str(path), "--steps", "10", "--out", str(out),
                 "--width", "16", "--depth", "1", "--no-progress"]) == 0
    png = tmp_path / "s.png"
    assert main(["sample", "--ckpt", str(out / "checkpoint.pt"), "--sampler", "em",
                 "--nfe", "10", "--n", "32", "--out", str(png)]) == 0
    assert _imsize(png) == (400, 400)
    assert _finite(json.loads(png.with_suffix(".json").read_text()))
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 2, 3)))
    assert main(["train", "--data", str(bad), "--steps", "1", "--out", str(tmp_path / "b")]) == 2


def test_existing_run_needs_resume(capsys, runs):
    err = _err(capsys, ["train", "--data", "moons", "--steps", "30", "--out",
                        str(runs / "moons"), "--width", "32", "--depth", "1"])
    assert "--resume" in err


def test_python_dash_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "generative.cli", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for cmd in ("train", "sample", "likelihood", "demo"):
        assert cmd in res.stdout


# --------------------------------------------------------------------------- demo

def test_demo_quick_end_to_end(cache, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert _finite(summary)
    assert set(summary["samplers"]) == {"pc", "em", "ode"}
    for r in summary["samplers"].values():
        assert r["nfe"] >= 1 and r["fid"]["value"] >= 0
        assert r["fid"]["ci_low"] <= r["fid"]["ci_high"]
        assert 0 <= r["confident_fraction"] <= 1
    assert summary["baseline_gaussian_fit"]["fid"]["value"] > 0
    assert summary["real_data_floor"]["fid"]["value"] >= 0
    assert math.isfinite(summary["likelihood"]["bits_per_dim"])
    assert not summary["model"]["cached"]
    for name in ("samples_pc", "samples_em", "samples_ode", "real_digits", "gaussian_fit"):
        assert _imsize(out / f"{name}.png") == grid_size(64, 8, 8)
    table = capsys.readouterr().out
    assert "Gaussian fit" in table and "bits/dim" in table
    # the second run reuses the cached model
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text())["model"]["cached"]
