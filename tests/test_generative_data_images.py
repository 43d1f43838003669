"""Own data: folders of PNG / JPEG images (any size, resized and centre-cropped, gray or RGB)
and ``.npy`` images in NHWC layout, through `generative.data` and the ``sdeflow`` CLI."""
import json

import numpy as np
import pytest
import torch

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("matplotlib")

from generative.cli import main  # noqa: E402
from generative.data import image_layout, load_data, load_image_folder  # noqa: E402


def _folder(path, n=12, mode="RGB", sizes=((20, 12), (9, 9), (31, 40)), suffix=".png"):
    """``n`` images of the given sizes (cycled): a bright square on a dark background."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        a = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
        a[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 200 + i
        im = Image.fromarray(a, "RGB").convert(mode)
        im.save(path / f"img{i:02d}{suffix}")
    (path / "notes.txt").write_text("not an image")
    return path


def test_rgb_folder_is_resized_and_cropped(tmp_path):
    ds = load_image_folder(_folder(tmp_path / "rgb"), size=8)
    assert ds.train.shape[1:] == (3, 8, 8) and len(ds.train) + len(ds.test) == 12
    assert ds.levels == 256 and ds.name == f"{tmp_path / 'rgb'}?size=8&mode=rgb"
    x = torch.cat([ds.train, ds.test])
    assert x.min() >= -1 and x.max() <= 1
    # the bright centre survives the centre crop
    assert (x[:, :, 3:5, 3:5] > x[:, :, :1, :1]).all()


def test_gray_folder_and_mode_choice(tmp_path):
    folder = _folder(tmp_path / "gray", mode="L", suffix=".jpg")
    ds = load_data(str(folder), image_size=6)
    assert ds.train.shape[1:] == (1, 6, 6) and ds.name.endswith("?size=6&mode=gray")
    assert load_data(str(folder), image_size=6, image_mode="rgb").train.shape[1] == 3
    # the name reloads the same tensors (a model's meta['data'])
    again = load_data(ds.name)
    assert torch.equal(again.train, ds.train) and torch.equal(again.test, ds.test)


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="at least 2 images"):
        load_image_folder(tmp_path / "empty")
    folder = _folder(tmp_path / "bad", n=3)
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read the image .*broken.png"):
        load_image_folder(folder)
    with pytest.raises(ValueError, match="image mode"):
        load_image_folder(_folder(tmp_path / "ok", n=2), mode="cmyk")
    with pytest.raises(ValueError, match="FOLDER\\?size=N"):
        load_data(f"{tmp_path / 'ok'}?colour=red")
    with pytest.raises(ValueError, match="a folder of PNG / JPEG images"):
        load_data(str(tmp_path / "nowhere"))


def test_nhwc_arrays_are_detected(tmp_path):
    rng = np.random.default_rng(1)
    nchw = rng.integers(0, 256, size=(10, 3, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "nhwc.npy", nchw.transpose(0, 2, 3, 1))
    np.save(tmp_path / "nchw.npy", nchw)
    a, b = load_data(str(tmp_path / "nhwc.npy")), load_data(str(tmp_path / "nchw.npy"))
    assert a.train.shape[1:] == (3, 8, 8) and torch.equal(a.train, b.train)
    gray = rng.normal(size=(6, 5, 7, 1)).astype(np.float32)
    np.save(tmp_path / "gray.npy", gray)
    assert load_data(str(tmp_path / "gray.npy")).train.shape[1:] == (1, 5, 7)
    assert image_layout((4, 1, 9, 9)) == "NCHW" and image_layout((4, 9, 9, 3)) == "NHWC"
    assert image_layout((4, 4, 6, 6)) == "NCHW" and image_layout((4, 6, 6, 4)) == "NHWC"
    np.save(tmp_path / "odd.npy", np.zeros((4, 3, 5, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or \(N, H, W, C\) with C = 1 or 3"):
        load_data(str(tmp_path / "odd.npy"))


def test_cli_trains_samples_and_scores_an_image_folder(tmp_path, capsys):
    folder = _folder(tmp_path / "my images")
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--image-size", "8", "--steps", "2",
                 "--width", "16", "--depth", "1", "--batch-size", "4", "--no-progress",
                 "--out", str(run)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["data"] == f"{folder}?size=8&mode=rgb" and summary["step"] == 2
    png = tmp_path / "s.png"
    assert main(["sample", "--ckpt", str(run / "checkpoint.pt"), "--sampler", "em", "--nfe",
                 "4", "--n", "4", "--out", str(png), "--no-progress"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["finite"] and torch.load(png.with_suffix(".pt")).shape == (4, 3, 8, 8)
    assert main(["likelihood", "--ckpt", str(run / "checkpoint.pt"), "--n", "2", "--split",
                 "train", "--rtol", "1e-2", "--atol", "1e-2", "--no-progress"]) == 0
    lk = json.loads(capsys.readouterr().out)
    assert lk["n"] == 2 and lk["dequantized"] and np.isfinite(lk["nll_nats"])
    # the folder's flags go into the run's config, so it can be repeated
    assert 'image-size = 8' in (run / "config.toml").read_text()


def test_cli_image_folder_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--steps", "1", "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdeflow: error:") and "at least 2 images" in err
    np.save(tmp_path / "odd.npy", np.zeros((4, 3, 5, 3), dtype=np.float32))
    assert main(["train", "--data", str(tmp_path / "odd.npy"), "--steps", "1", "--out",
                 str(tmp_path / "o2")]) == 2
    assert "(N, C, H, W) or (N, H, W, C)" in capsys.readouterr().err
