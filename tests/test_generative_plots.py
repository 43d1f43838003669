"""Figures a person can read: titled digit grids at a readable size, scatter plots whose axis
range ignores a few outliers, density plots with colour bars."""
import pytest
import torch

mpimg = pytest.importorskip("matplotlib.image")

from generative.plots import (TITLE_PX, auto_scale, grid_size, robust_limits,  # noqa: E402
                              save_density, save_image_grid, save_samples, save_scatter)


def test_digit_grids_are_readable_and_titled(tmp_path):
    assert auto_scale(8, 8) == 8 and auto_scale(32, 32) == 2 and auto_scale(128, 128) == 1
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    titled, plain = tmp_path / "t.png", tmp_path / "p.png"
    save_image_grid(x, titled, title="pc, NFE 400")
    save_image_grid(x, plain)
    h, w = mpimg.imread(str(titled)).shape[:2]
    assert (h, w) == grid_size(64, 8, 8) == (584 + TITLE_PX, 584)
    assert mpimg.imread(str(plain)).shape[:2] == grid_size(64, 8, 8, title=False)
    # the grid's pixels are exact: the title band is on top, the tiles below it unchanged
    a, b = mpimg.imread(str(titled))[TITLE_PX:, :, 0], mpimg.imread(str(plain))[:, :, 0]
    assert torch.allclose(torch.as_tensor(a), torch.as_tensor(b), atol=1 / 255)
    # the band holds the text: some dark pixels there
    assert (mpimg.imread(str(titled))[:TITLE_PX, :, 0] < 0.5).any()


def test_rgb_grid_and_samples_dispatch(tmp_path):
    save_samples(torch.rand(5, 3, 16, 16) * 2 - 1, tmp_path / "rgb.png", title="fm rk4, NFE 40")
    assert mpimg.imread(str(tmp_path / "rgb.png")).shape[:2] == grid_size(5, 16, 16)


def test_robust_limits_ignore_outliers():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(2000, 2, generator=g)
    pts[:3] = 500.0
    lo, hi = robust_limits(pts)
    assert -5 < lo < -2 and 2 < hi < 5
    lo2, hi2 = robust_limits(pts, torch.randn(100, 2, generator=g) + 10)
    assert hi2 > 10  # both sets count
    assert robust_limits(torch.full((4, 2), float("nan"))) == (-1.0, 1.0)


def test_scatter_and_density_sizes(tmp_path):
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(500, 2, generator=g)
    save_scatter(pts, tmp_path / "s.png", reference=pts + 1, title="em, NFE 20")
    assert mpimg.imread(str(tmp_path / "s.png")).shape[:2] == (400, 400)
    save_density(lambda p: -0.5 * p.pow(2).sum(1), pts, tmp_path / "d.png", resolution=20)
    assert mpimg.imread(str(tmp_path / "d.png")).shape[:2] == (400, 800)
