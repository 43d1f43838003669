"""The colour patches cut from scikit-image's bundled sample photographs
(`generative.colour_data`): shapes, the 256-level value grid, the split by source image, no
network access, the recorded file hashes."""
import socket
from importlib import resources

import numpy as np
import pytest
import torch

pytest.importorskip("skimage")
pytest.importorskip("PIL")

from generative import colour_data as cd  # noqa: E402
from generative.data import DATA_NAMES, load_data, quantize  # noqa: E402


@pytest.fixture(scope="module")
def colour():
    return load_data("colour")


def _expected_count(name: str, patch: int) -> int:
    """Windows at stride patch/2 of the photograph resized to a shorter side of 16 * patch."""
    h, w = cd.source_image(name).shape[:2]
    scale = 16 * patch / min(h, w)
    hh, ww = max(16 * patch, round(h * scale)), max(16 * patch, round(w * scale))
    stride = patch // 2
    return ((hh - patch) // stride + 1) * ((ww - patch) // stride + 1)


def test_colour_patches_shape_range_and_levels(colour):
    assert "colour" in DATA_NAMES and "colour16" in DATA_NAMES
    assert colour.name == "colour" and colour.levels == 256 and colour.num_classes is None
    assert colour.event_shape == (3, 8, 8) and colour.train.dtype == torch.float32
    for split in (colour.train, colour.test):
        assert float(split.min()) >= -1 and float(split.max()) <= 1
        # every value is a level 2k/255 - 1 (float32 round-off of the level's value only)
        assert torch.allclose(quantize(split.double(), 256), split.double(), atol=1e-6)
    # real colour content: the channels differ (not a gray image replicated)
    assert float((colour.train[:, 0] - colour.train[:, 2]).abs().mean()) > 0.05
    counts = {name: _expected_count(name, 8) for name in cd.COLOUR_SOURCES}
    assert len(colour.test) == counts["chelsea"]
    assert len(colour.train) == sum(counts.values()) - counts["chelsea"]


def test_split_is_by_source_photograph_and_deterministic(colour):
    held_out = cd.held_out_source(0)
    assert held_out == "chelsea"
    expected_test = cd.cut_patches(cd.source_image(held_out), 8)
    got = np.round((colour.test.double().numpy() + 1) * 255 / 2).astype(np.uint8)
    assert np.array_equal(got, expected_test)
    others = np.concatenate([cd.cut_patches(cd.source_image(n), 8)
                             for n in cd.COLOUR_SOURCES if n != held_out])
    got_train = np.round((colour.train.double().numpy() + 1) * 255 / 2).astype(np.uint8)
    assert np.array_equal(got_train, others)
    # another seed holds out another photograph; the same seed gives the same tensors
    assert cd.held_out_source(1) != held_out
    again = load_data("colour")
    assert torch.equal(again.train, colour.train) and torch.equal(again.test, colour.test)


def test_colour16_patches():
    train, test = cd.colour_patches(16, seed=2)
    assert train.shape[1:] == test.shape[1:] == (3, 16, 16)
    assert len(test) == _expected_count(cd.held_out_source(2), 16)


def test_loads_from_the_package_files_without_network(monkeypatch):
    for filename, _ in cd.COLOUR_SOURCES.values():
        assert (resources.files("skimage.data") / filename).is_file(), filename

    def refuse(*args, **kwargs):
        raise AssertionError("the colour data tried to open a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    image = cd.source_image("astronaut")
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8


def test_bad_inputs_are_clear(monkeypatch):
    with pytest.raises(ValueError, match="unknown colour source 'lena'"):
        cd.source_image("lena")
    with pytest.raises(ValueError, match=r"`patch` must be an integer >= 2; got 1"):
        cd.cut_patches(np.zeros((32, 32, 3), np.uint8), 1)
    with pytest.raises(ValueError, match="unknown colour data set 'colour7'"):
        cd.load_colour("colour7")
    monkeypatch.setitem(cd.COLOUR_SOURCES, "coffee", ("coffee.png", "0" * 16))
    with pytest.raises(ValueError, match=r"'coffee.png' differs from the one the colour data "
                                         r"is cut from"):
        cd.source_image("coffee")


# --------------------------------------------------------------------------- cached colour model

def test_colour_model_is_trained_once_into_the_cache(tmp_path, monkeypatch):
    from generative.colour_model import COLOUR_MODEL_CONFIG, colour_model_dir, load_colour_model
    monkeypatch.setenv("SDEFLOW_CACHE", str(tmp_path))
    tiny = {**COLOUR_MODEL_CONFIG, "net": "mlp", "net_kwargs": {"width": 16, "depth": 1},
            "steps": 3, "batch_size": 16, "warmup_steps": 1}
    loaded, info = load_colour_model(tiny, progress=False)
    assert not info["cached"] and info["steps"] == 3
    assert loaded.spec.data == "colour" and loaded.spec.event_shape == (3, 8, 8)
    ckpt = colour_model_dir(tiny) / "checkpoint.pt"
    assert str(ckpt) == info["checkpoint"] and str(tmp_path) in info["checkpoint"]
    again, info2 = load_colour_model(tiny, progress=False)
    assert info2["cached"] and info2["train_seconds"] == 0.0
    weights = loaded.model.state_dict()
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in weights.items())
    # another config is another entry; a corrupt entry is trained afresh, with a message
    assert colour_model_dir({**tiny, "steps": 4}) != colour_model_dir(tiny)
    ckpt.write_bytes(b"not a checkpoint")
    said = []
    _, info3 = load_colour_model(tiny, progress=False, log=said.append)
    assert not info3["cached"] and any("unusable" in s for s in said)


def test_inverse_colour_benchmark_runs_on_a_tiny_model(tmp_path, monkeypatch):
    """benchmarks/inverse_colour.py end to end with a 5-step model (its numbers are
    meaningless here; the baselines are not: they depend on the data only)."""
    import json

    import generative.colour_model as cm
    from benchmarks import inverse_colour as bench
    from generative.restore import measure, quality
    monkeypatch.setenv("SDEFLOW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cm, "COLOUR_MODEL_CONFIG", {
        **cm.COLOUR_MODEL_CONFIG, "net_kwargs": {"width": 16, "depth": 1}, "steps": 5,
        "batch_size": 16, "warmup_steps": 1})
    monkeypatch.setattr(bench, "QUICK", {**bench.QUICK, "n": 4, "k": 2, "nfe": 6,
                                         "samplers": ["em"], "shown": 2})
    bench.main(["--quick", "--out", str(tmp_path / "out"), "--no-progress"])
    saved = json.loads((tmp_path / "out" / "inverse_colour.json").read_text())
    rows = saved["rows"]
    assert [(r["task"], r["method"]) for r in rows] == [
        (t, m) for t in ("colorize", "superres x2", "superres x4") for m in ("replace", "pigdm")]
    test = load_data("colour").test
    x = test[torch.linspace(0, len(test) - 1, 4).round().long()]
    gray = quality(measure("colorize", x).shown, x)["psnr_mean"]
    assert rows[0]["psnr_baseline"] == pytest.approx(gray, rel=1e-12)
    assert all(r["n_restorations"] == 8 and r["nfe"] > 0 for r in rows)
    assert (tmp_path / "out" / "inverse_colour.png").is_file()
