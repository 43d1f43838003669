"""``sdeflow inpaint --task inpaint|colorize|superres`` through the CLI's ``main()`` on tiny
quickly trained models (a colour-patch model, a digits model and a 2-D one), the outputs
(labelled PNG rows, NAME.json with PSNR / MSE, NAME.pt) and the bad-input errors."""
import contextlib
import json
import math

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("skimage")

from generative.cli import main  # noqa: E402
from generative.restore import measure, quality  # noqa: E402
from generative.row_figure import row_figure_size  # noqa: E402

EPS32 = torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``sdeflow train`` on colour patches, digits and moons (a few steps: the tests check
    the plumbing, not the restoration quality; benchmarks/inverse_colour.py measures it)."""
    root = tmp_path_factory.mktemp("inverse-cli")
    common = ["--steps", "10", "--width", "32", "--depth", "1", "--batch-size", "32",
              "--no-progress", "--log-every", "5"]
    with contextlib.redirect_stdout(None):
        for data in ("colour", "digits", "moons"):
            assert main(["train", "--data", data, "--out", str(root / data), *common]) == 0
    return root


def _run(runs, tmp_path, model, *args, n=4):
    out = tmp_path / "r.png"
    with contextlib.redirect_stdout(None):
        rc = main(["inpaint", "--ckpt", str(runs / model / "checkpoint.pt"), "--sampler",
                   "ddim", "--nfe", "8", "--n", str(n), "--out", str(out), "--no-progress",
                   *args])
    assert rc == 0
    return (out, json.loads(out.with_suffix(".json").read_text()),
            torch.load(out.with_suffix(".pt")))


def test_train_on_colour_data(runs):
    from generative.checkpoint import load_checkpoint
    meta = load_checkpoint(runs / "colour" / "checkpoint.pt")["meta"]
    assert meta["data"] == "colour" and list(meta["event_shape"]) == [3, 8, 8]
    assert meta["levels"] == 256


@pytest.mark.parametrize("args,measured_shape", [
    (["--task", "colorize"], (4, 1, 8, 8)),
    (["--task", "colorize", "--method", "pigdm", "--sigma-y", "0.05"], (4, 1, 8, 8)),
    (["--task", "superres"], (4, 3, 4, 4)),
    (["--task", "superres", "--factor", "4", "--method", "pigdm", "--scale", "2"],
     (4, 3, 2, 2)),
    (["--task", "inpaint", "--mask", "random", "--method", "pigdm"], (4, 3, 8, 8)),
])
def test_each_task_writes_labelled_rows_metrics_and_tensors(runs, tmp_path, args,
                                                            measured_shape):
    import matplotlib.image as mpimg
    out, summary, saved = _run(runs, tmp_path, "colour", *args)
    task = args[1]
    assert summary["task"] == task and summary["n"] == 4 and summary["nfe"] == 8
    assert mpimg.imread(str(out)).shape[:2] == row_figure_size(3, 4, 8, 8)
    assert saved["measured"].shape == measured_shape
    assert saved["original"].shape == saved["restored"].shape == saved["measured_image"].shape
    assert float(saved["restored"].abs().max()) <= 1          # 256-level data: clamped
    # the JSON's metrics are those of the saved tensors, and the baseline is the middle row
    for key, x in (("restored", saved["restored"]), ("measured", saved["measured_image"])):
        again = quality(x, saved["original"])
        assert summary["metrics"][key]["psnr"] == pytest.approx(again["psnr"], rel=1e-12)
        assert summary[f"psnr_{key}"] == pytest.approx(again["psnr_mean"], rel=1e-12)
        assert all(math.isfinite(p) for p in again["psnr"])
    if "--sigma-y" not in args:  # the noiseless measurement is a function of the originals
        m = measure(task, saved["original"], mask=saved.get("mask"),
                    factor=summary.get("factor", 2))
        assert torch.equal(m.y, saved["measured"])
        assert summary["measurement_rms_residual"] == pytest.approx(
            float(m.residual(saved["restored"]).mean()), rel=1e-6)
    if task == "inpaint":
        m = saved["mask"]
        assert torch.equal(saved["restored"][m], saved["original"][m])
        assert summary["mask"] == "random" and 0.3 < summary["missing_fraction"] < 0.7
    if "--scale" in args:
        assert summary["scale"] == 2.0 and summary["method"] == "pigdm"


def test_measured_rows_are_the_measurement_in_image_space(runs, tmp_path):
    _, _, saved = _run(runs, tmp_path, "colour", "--task", "superres")
    up = saved["measured"].repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert torch.equal(saved["measured_image"], up)
    means = saved["original"].reshape(4, 3, 4, 2, 4, 2).mean((3, 5))
    assert torch.allclose(saved["measured"], means, atol=4 * EPS32)
    _, _, saved = _run(runs, tmp_path, "colour", "--task", "colorize")
    gray = saved["measured_image"]
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])


@pytest.mark.parametrize("args", [["--mode", "replace", "--mask", "left"],
                                  ["--mode", "conditional"], []])
def test_old_inpaint_invocations_keep_working(runs, tmp_path, args):
    out, summary, saved = _run(runs, tmp_path, "digits", *args)
    expected = {"replace": "replace", "conditional": "pigdm"}.get(
        args[1] if args else "replace")
    assert summary["task"] == "inpaint" and summary["method"] == expected
    assert summary["mask"] == (args[3] if len(args) > 2 else "center")
    assert math.isfinite(summary["mse_missing"])
    m = saved["mask"]
    assert torch.equal(saved["inpainted"], saved["restored"])
    assert torch.equal(saved["inpainted"][m], saved["original"][m])


@pytest.mark.parametrize("model,args,expected", [
    ("digits", ["--task", "colorize"],
     ["--task colorize needs a 3-channel (RGB) model", "1-channel images (1, 8, 8)",
      "--data colour"]),
    ("colour", ["--task", "superres", "--factor", "3"],
     ["--factor 3 must divide the image height and width (8 x 8)"]),
    ("colour", ["--task", "superres", "--factor", "1"],
     ["--factor must be an integer >= 2; got '1'"]),
    ("colour", ["--task", "colorize", "--mask", "left"],
     ["--mask applies to --task inpaint only; got --task colorize"]),
    ("colour", ["--factor", "2"], ["--factor applies to --task superres only"]),
    ("colour", ["--task", "superres", "--mode", "replace"],
     ["--mode applies to --task inpaint only"]),
    ("digits", ["--mode", "replace", "--method", "pigdm"],
     ["give --method or --mode", "not both"]),
    ("colour", ["--task", "colorize", "--scale", "2"],
     ["--scale weights the guidance of --method pigdm; --method replace has none"]),
    ("colour", ["--task", "deblur"], ["invalid choice: 'deblur'"]),
    ("colour", ["--sigma-y", "-0.1"], ["--sigma-y must be a number >= 0"]),
    ("moons", ["--task", "superres"],
     ["superres restores images (C, H, W)", "vectors of shape (2,)"]),
    ("moons", [], ["inpaint fills in pixels of images", "vectors of shape (2,)"]),
])
def test_bad_input_is_one_clear_error(runs, tmp_path, capsys, model, args, expected):
    argv = ["inpaint", "--ckpt", str(runs / model / "checkpoint.pt"), "--sampler", "ddim",
            "--nfe", "4", "--n", "2", "--out", str(tmp_path / "x.png"), *args]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err
    lines = [s for s in err.splitlines() if s.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("sdeflow: error: "), err
    for text in expected:
        assert text in lines[0], lines[0]
    assert not list(tmp_path.iterdir())  # refused before any output


def test_colour_data_without_scikit_image_names_the_extra(monkeypatch, capsys, tmp_path):
    import generative.colour_data as cd

    def missing(package):
        raise ModuleNotFoundError(f"No module named {package!r}", name="skimage")
    cd._split_patches.cache_clear()
    monkeypatch.setattr(cd.resources, "files", missing)
    try:
        rc = main(["train", "--data", "colour", "--steps", "1", "--out", str(tmp_path / "o"),
                   "--no-progress"])
    finally:
        cd._split_patches.cache_clear()
    err = capsys.readouterr().err
    assert rc == 2 and "needs the 'scikit-image' package" in err and "generative" in err, err
