"""``sdeflow train|sample|likelihood`` for FFJORD and flow-matching models (``--model ffjord |
fm | ot-fm``) on a tiny 2-D toy: checkpoints and resume through the shared loop, samples,
bits/dim, the density plot, and errors for options that do not fit the model kind."""
import json
import math

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from generative.checkpoint import load_checkpoint  # noqa: E402
from generative.cli import main  # noqa: E402

TINY = ["--data", "moons", "--width", "16", "--depth", "1", "--batch-size", "32",
        "--no-progress", "--log-every", "2", "--ckpt-every", "2", "--warmup", "0"]
KIND_ARGS = {"ffjord": ["--kinetic", "0.01", "--jacobian", "0.01", "--rtol", "1e-3",
                        "--atol", "1e-3", "--divergence", "hutchinson"],
             "fm": ["--path", "cosine"], "ot-fm": []}


def _imsize(path):
    import matplotlib.image as mpimg
    a = mpimg.imread(str(path))
    return a.shape[0], a.shape[1]


def _err(capsys, argv):
    assert main(argv) == 2
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    for kind, extra in KIND_ARGS.items():
        assert main(["train", "--model", kind, "--steps", "4", "--out", str(root / kind),
                     *TINY, *extra]) == 0
    return root


@pytest.mark.parametrize("kind", list(KIND_ARGS))
def test_train_writes_the_kind_into_checkpoint_and_summary(runs, kind):
    state = load_checkpoint(runs / kind / "checkpoint.pt")
    meta = state["meta"]
    assert meta["kind"] == kind and meta["net"] == "mlp" and state["step"] == 4
    assert meta["net_kwargs"] == {"width": 16, "depth": 1}
    if kind == "ffjord":
        assert (meta["kinetic"], meta["jacobian"], meta["divergence"]) == (0.01, 0.01,
                                                                           "hutchinson")
        log = [json.loads(s) for s in (runs / kind / "metrics.jsonl").read_text().splitlines()]
        assert all(r["nfe"] > 0 and math.isfinite(r["kinetic"]) for r in log)
        assert log[-1]["nfe_backward"] > 0
    if kind == "fm":
        assert meta["path"] == "cosine"
    summary = json.loads((runs / kind / "train_summary.json").read_text())
    assert summary["kind"] == kind and summary["step"] == 4


@pytest.mark.parametrize("kind", list(KIND_ARGS))
def test_sample_each_kind(runs, tmp_path, kind):
    png = tmp_path / "s.png"
    ckpt = str(runs / kind / "checkpoint.pt")
    assert main(["sample", "--ckpt", ckpt, "--n", "32", "--out", str(png), "--rtol", "1e-3",
                 "--atol", "1e-3"]) == 0
    assert _imsize(png) == (400, 400)
    info = json.loads(png.with_suffix(".json").read_text())
    assert info["kind"] == kind and info["finite"] and info["nfe"] >= 1
    assert math.isfinite(info["mmd"])
    assert torch.load(png.with_suffix(".pt"), weights_only=True).shape == (32, 2)
    # a fixed-step budget: rk4 with --nfe 8 takes 2 steps
    assert main(["sample", "--ckpt", ckpt, "--n", "8", "--out", str(png), "--method", "rk4",
                 "--nfe", "8"]) == 0
    assert json.loads(png.with_suffix(".json").read_text())["nfe"] <= 8


@pytest.mark.parametrize("kind", list(KIND_ARGS))
def test_likelihood_and_density_plot(runs, tmp_path, kind):
    out, png = tmp_path / "bpd.json", tmp_path / "density.png"
    assert main(["likelihood", "--ckpt", str(runs / kind / "checkpoint.pt"), "--n", "16",
                 "--rtol", "1e-3", "--atol", "1e-3", "--out", str(out),
                 "--density-plot", str(png)]) == 0
    info = json.loads(out.read_text())
    assert info["kind"] == kind and info["n"] == 16 and info["nfe"] > 0
    assert math.isfinite(info["bits_per_dim"]) and info["density_plot"] == str(png)
    assert _imsize(png) == (400, 800)


def test_flow_matching_on_digits_writes_a_sample_grid(tmp_path):
    from generative.plots import grid_size
    assert main(["train", "--model", "fm", "--steps", "2", "--out", str(tmp_path / "run"),
                 *TINY, "--data", "digits"]) == 0
    png = tmp_path / "grid.png"
    assert main(["sample", "--ckpt", str(tmp_path / "run" / "checkpoint.pt"), "--n", "16",
                 "--method", "rk4", "--nfe", "4", "--out", str(png)]) == 0
    assert _imsize(png) == grid_size(16, 8, 8)
    info = json.loads(png.with_suffix(".json").read_text())
    assert info["kind"] == "fm" and info["nfe"] == 4 and info["finite"]


def test_ffjord_resume_matches_an_uninterrupted_run(tmp_path):
    """4 steps in one go == 2 steps, then --resume to 4 (same weights, bit for bit)."""
    args = ["train", "--model", "ffjord", *TINY, *KIND_ARGS["ffjord"]]
    assert main([*args, "--steps", "4", "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--steps", "2", "--out", str(tmp_path / "b")]) == 0
    assert main([*args, "--steps", "4", "--out", str(tmp_path / "b"), "--resume"]) == 0
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert b["step"] == 4
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_options_that_do_not_fit_the_kind(runs, tmp_path, capsys):
    train = ["train", "--steps", "1", "--out", str(tmp_path / "x"), *TINY]
    err = _err(capsys, [*train, "--model", "ffjord", "--sde", "ve"])
    assert "'sde' does not apply to 'ffjord'" in err
    err = _err(capsys, [*train, "--model", "score", "--kinetic", "0.1"])
    assert "'kinetic' does not apply to 'score'" in err
    err = _err(capsys, [*train, "--model", "fm", "--gradient", "direct"])
    assert "'gradient' does not apply to 'fm'" in err and "path" in err
    err = _err(capsys, [*train, "--model", "ffjord", "--net", "unet"])
    assert "unknown net 'unet' for 'ffjord'" in err
    with pytest.raises(SystemExit):
        main([*train, "--model", "ffjord", "--divergence", "trace"])
    err = capsys.readouterr().err
    assert "'trace'" in err and "hutch++" in err
    # resuming with data of another dimension is a clear error, not a shape traceback
    import numpy as np
    npy = tmp_path / "pts3.npy"
    np.save(npy, np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32))
    fm = ["train", "--model", "fm", "--out", str(tmp_path / "fm"), *TINY]
    assert main([*fm, "--steps", "2"]) == 0
    err = _err(capsys, [*fm, "--steps", "4", "--resume", "--data", str(npy)])
    assert "cannot resume" in err and "event_shape: saved [2] vs given [3]" in err


def test_sample_and_likelihood_options_that_do_not_fit(runs, tmp_path, capsys):
    ck = str(runs / "ffjord" / "checkpoint.pt")
    err = _err(capsys, ["sample", "--ckpt", ck, "--sampler", "pc", "--out",
                        str(tmp_path / "a.png")])
    assert "'sampler' does not apply to 'ffjord'" in err and "method" in err
    err = _err(capsys, ["sample", "--ckpt", ck, "--method", "rk4", "--nfe", "2", "--out",
                        str(tmp_path / "a.png")])
    assert "nfe = 2 is too small for method 'rk4'" in err
    with pytest.raises(SystemExit):
        main(["likelihood", "--ckpt", ck, "--divergence", "bogus"])
    assert "'bogus'" in capsys.readouterr().err
