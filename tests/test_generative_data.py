"""Built-in data: digits, 2-D toys, user arrays, dequantisation, errors."""
import numpy as np
import pytest
import torch

from generative.data import (DIGITS_LEVELS, TOY_NAMES, dequantize, dequantize_transform,
                             load_array, load_data, load_digits, quantize, sample_toy,
                             split_indices)


def test_digits_shapes_range_levels_and_split():
    d = load_digits()
    assert d.train.shape[1:] == (1, 8, 8) and d.test.shape[1:] == (1, 8, 8)
    assert len(d.train) + len(d.test) == 1797
    assert len(d.test) == round(1797 * 0.2)
    assert d.train.dtype == torch.float32
    both = torch.cat([d.train, d.test])
    assert both.min() == -1.0 and both.max() == 1.0
    # values lie exactly on the 17-level grid
    k = (both + 1) * (DIGITS_LEVELS - 1) / 2
    assert torch.equal(k, k.round())
    assert d.levels == 17 and d.bin_width == pytest.approx(2 / 16)
    assert d.num_classes == 10 and set(d.train_labels.tolist()) == set(range(10))
    assert d.train_labels.shape == (len(d.train),)


def test_digits_split_is_deterministic_and_seed_dependent():
    a, b = load_digits(), load_digits()
    assert torch.equal(a.train, b.train) and torch.equal(a.test_labels, b.test_labels)
    c = load_digits(seed=1)
    assert not torch.equal(a.test, c.test)


def test_split_indices_disjoint_and_covering():
    tr, te = split_indices(101, 0.2, seed=3)
    assert len(te) == 20 and len(np.intersect1d(tr, te)) == 0
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(101))
    with pytest.raises(ValueError, match="test_fraction"):
        split_indices(10, 1.0, 0)


def test_dequantize_stays_in_bin_and_rounds_back():
    d = load_digits()
    g = torch.Generator().manual_seed(0)
    x = d.train[:200]
    xd = d.dequantize(x, g)
    assert not torch.equal(xd, x)
    assert (xd - x).abs().max() <= d.bin_width / 2 + 1e-6
    assert torch.equal(d.quantize(xd), x)
    # spreads over the whole bin, not a sliver
    assert (xd - x).std() > 0.8 * d.bin_width / np.sqrt(12)
    # reproducible from the generator
    again = dequantize(x, 17, torch.Generator().manual_seed(0))
    assert torch.equal(xd, again)
    assert quantize(torch.tensor([-3.0, 3.0, 0.01]), 17).tolist() == [-1.0, 1.0, 0.0]


def test_dequantize_transform_handles_batches_and_labels():
    x = quantize(torch.rand(6, 1, 8, 8) * 2 - 1, 17)
    y = torch.arange(6)
    tf = dequantize_transform(17)
    xd, yd = tf((x, y), torch.Generator().manual_seed(0))
    assert torch.equal(yd, y) and torch.equal(quantize(xd, 17), x) and not torch.equal(xd, x)
    assert torch.equal(tf(x, torch.Generator().manual_seed(0)), xd)
    assert dequantize_transform(None)((x, y), None)[0] is x


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toys_shape_determinism_and_scale(name):
    a = sample_toy(name, 500, torch.Generator().manual_seed(1))
    b = sample_toy(name, 500, torch.Generator().manual_seed(1))
    c = sample_toy(name, 500, torch.Generator().manual_seed(2))
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0.3 < a.std() < 5.0


def test_load_data_toy_train_test_are_distinct_draws():
    d = load_data("moons", n_train=300, n_test=100, seed=0)
    assert d.train.shape == (300, 2) and d.test.shape == (100, 2)
    assert d.levels is None and d.bin_width is None
    assert not torch.equal(d.train[:100], d.test)
    assert torch.equal(d.train, load_data("moons", n_train=300, n_test=100).train)
    # continuous data: dequantize is the identity
    assert d.dequantize(d.train) is d.train


def test_eight_gaussians_has_eight_modes():
    x = sample_toy("8gaussians", 4000, torch.Generator().manual_seed(0))
    angles = torch.atan2(x[:, 1], x[:, 0])
    sector = torch.round(angles / (np.pi / 4)).long() % 8
    counts = torch.bincount(sector, minlength=8)
    assert (counts > 350).all()


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="moons") as info:
        load_data("mnist")
    assert "digits" in str(info.value) and "'mnist'" in str(info.value)
    with pytest.raises(ValueError, match="unknown toy"):
        sample_toy("spiral", 10)


def test_user_npy_vectors_and_images(tmp_path):
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(50, 3)).astype(np.float32)
    np.save(tmp_path / "v.npy", vec)
    d = load_data(str(tmp_path / "v.npy"))
    assert d.event_shape == (3,) and len(d.train) + len(d.test) == 50
    assert d.levels is None
    merged = torch.cat([d.train, d.test]).sort(dim=0).values
    assert torch.allclose(merged, torch.as_tensor(vec).sort(dim=0).values)

    img = rng.integers(0, 256, size=(20, 3, 4, 4)).astype(np.uint8)
    labels = rng.integers(0, 5, size=20)
    np.savez(tmp_path / "i.npz", x=img, y=labels)
    d = load_array(tmp_path / "i.npz")
    assert d.event_shape == (3, 4, 4) and d.levels == 256
    assert d.train.min() >= -1 and d.train.max() <= 1
    assert d.train_labels is not None and d.num_classes == int(labels.max()) + 1


def test_user_array_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_data(str(tmp_path / "missing.npy"))
    np.save(tmp_path / "bad3d.npy", np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match=r"\(N, d\) or \(N, C, H, W\).*\(4, 2, 2\)"):
        load_data(str(tmp_path / "bad3d.npy"))
    (tmp_path / "junk.npy").write_bytes(b"not an array at all")
    with pytest.raises(ValueError, match="could not read"):
        load_data(str(tmp_path / "junk.npy"))
    np.savez(tmp_path / "two.npz", a=np.zeros((4, 2)), b=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="'x'"):
        load_data(str(tmp_path / "two.npz"))
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="NaN"):
        load_data(str(tmp_path / "nan.npy"))
    np.save(tmp_path / "one.npy", np.zeros((1, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        load_data(str(tmp_path / "one.npy"))
    np.save(tmp_path / "str.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="numeric"):
        load_data(str(tmp_path / "str.npy"))
    np.savez(tmp_path / "lab.npz", x=np.zeros((4, 2)), y=np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="labels"):
        load_data(str(tmp_path / "lab.npz"))
