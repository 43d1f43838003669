"""`generative.restore` (the measurements and methods behind ``sdeflow inpaint --task``) and
`generative.row_figure` (its labelled PNG rows)."""
import math

import pytest
import torch

from dynamics import VPSDE
from generative.inverse import grayscale_operator
from generative.restore import Measurement, measure, psnr, quality, restore

pytest.importorskip("matplotlib")

EPS32 = torch.finfo(torch.float32).eps


def _images(n=4, c=3, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) * 2 - 1


def test_measurements_and_their_image_views():
    x = _images()
    mask = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5
    m = measure("inpaint", x, mask=mask)
    assert torch.equal(m.y, torch.where(mask, x, torch.zeros_like(x)))
    assert torch.equal(m.shown, m.y)                       # missing pixels grey (0)
    c = measure("colorize", x)
    gray = 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]
    assert c.y.shape == (4, 1, 8, 8) and torch.allclose(c.y, gray, atol=4 * EPS32)
    assert torch.allclose(c.shown, gray.expand(-1, 3, -1, -1), atol=4 * EPS32)
    # a gray image is its own gray view (the luma weights sum to 1; float32 round-off)
    flat = x[:, :1].expand(-1, 3, -1, -1)
    assert torch.allclose(measure("colorize", flat).shown, flat, atol=4 * EPS32)
    s = measure("superres", x, factor=4)
    means = x.reshape(4, 3, 2, 4, 2, 4).mean((3, 5))
    assert s.y.shape == (4, 3, 2, 2) and torch.allclose(s.y, means, atol=4 * EPS32)
    up = means.repeat_interleave(4, 2).repeat_interleave(4, 3)   # nearest upsampling
    assert torch.allclose(s.shown, up, atol=4 * EPS32)


def test_measurement_noise_and_projection():
    x = _images()
    noisy = measure("superres", x, sigma_y=0.1, generator=torch.Generator().manual_seed(0))
    clean = measure("superres", x)
    # 48 noise draws of std 0.1: their sample std is within 30% of 0.1 (about 6 standard
    # errors of a standard deviation estimate, 0.1 / sqrt(2 * 48))
    assert abs(float((noisy.y - clean.y).std()) - 0.1) < 0.03
    z = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 3
    for m in (clean, measure("colorize", x)):
        p = m.project(z)
        # float32 projection: round-off of a few ulps of |z| (up to ~10) per value
        assert float(m.residual(p).max()) < 64 * EPS32 * float(z.abs().max())
    mask = torch.zeros(3, 8, 8, dtype=torch.bool)
    mask[:, :4] = True
    m = measure("inpaint", x, mask=mask)
    p = m.project(z)
    assert torch.equal(p[:, mask], x[:, mask]) and torch.equal(p[:, ~mask], z[:, ~mask])


def test_measure_rejects_bad_input():
    x = _images()
    with pytest.raises(ValueError, match="colorize needs 3-channel"):
        measure("colorize", x[:, :1])
    with pytest.raises(ValueError, match=r"superres `factor` must be an integer >= 2 dividing "
                                         r"the image height and width \(8, 8\); got 3"):
        measure("superres", x, factor=3)
    with pytest.raises(ValueError, match="inpaint needs a bool `mask`"):
        measure("inpaint", x, mask=torch.ones(8, 8))
    with pytest.raises(ValueError, match=r"`sigma_y` must be a finite number >= 0; got -1"):
        measure("colorize", x, sigma_y=-1)
    with pytest.raises(ValueError, match="needs images"):
        measure("superres", x.reshape(4, -1))
    with pytest.raises(ValueError, match="task"):
        measure("deblur", x)


def test_quality_is_psnr_of_the_mse():
    x = _images()
    off = x + 0.1
    q = quality(off, x)
    # every pixel off by 0.1: MSE 0.01 (float32 inputs: round-off ~1e-7 relative), PSNR
    # 10 log10(4 / 0.01) = 26.02 dB
    assert q["mse"] == pytest.approx([0.01] * 4, rel=1e-5)
    assert q["psnr_mean"] == pytest.approx(10 * math.log10(400), rel=1e-5)
    assert torch.allclose(psnr(off, x), torch.tensor(q["psnr"], dtype=torch.float64))


def test_pigdm_with_the_gaussian_prior_variance_samples_the_exact_posterior():
    """Data N(0, v I): PiGDM with data_var = v uses the exact p(x0 | x_t), so the guided score
    is the exact conditional score; colorization's posterior is then per pixel
    N(v w y / (v c + s^2), v I - v^2 w w^T / (v c + s^2)), c = |w|^2."""
    v, sy, n = 0.25, 0.1, 4000
    sde = VPSDE()

    def score(x, t):
        a, s = sde.coefs(x, t)
        return -x / (a ** 2 * v + s ** 2)

    g = torch.Generator().manual_seed(0)
    truth = torch.randn(1, 3, 2, 2, generator=g, dtype=torch.float64) * math.sqrt(v)
    A = grayscale_operator()
    y = A(truth) + sy * torch.randn(1, 1, 2, 2, generator=g, dtype=torch.float64)
    m = Measurement("colorize", A, y.expand(n, -1, -1, -1), torch.zeros(n, 3, 2, 2,
                    dtype=torch.float64), sy)
    x, nfe = restore(sde, score, m, method="pigdm", sampler="ddim", nfe=200,
                     data_var=v, denoise=True, generator=g, dtype=torch.float64)
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).reshape(1, 3, 1, 1)
    c = float(w.square().sum())
    mean = v * w * y / (v * c + sy ** 2)
    var = v - v ** 2 * w.square() / (v * c + sy ** 2)          # per-channel marginal
    # Monte Carlo: 5 standard errors of n samples (sqrt(v / n) = 0.008), plus 0.01 for DDIM's
    # 200-step discretisation and the t_min = 1e-3 end point (measured: max error 0.012 over
    # the 12 entries; a flat prior, data_var=None, is 0.11 off and replacement 0.04)
    assert torch.allclose(x.mean(0, keepdim=True), mean,
                          atol=5 * math.sqrt(v / n) + 0.01)
    # sample variances: standard error sqrt(2 / n) = 2.2% relative, 5 of them, plus 3%
    # (measured: 6% at most; replacement's are 25% off)
    assert torch.allclose(x.var(0, keepdim=True), var.expand_as(mean),
                          rtol=5 * math.sqrt(2 / n) + 0.03)
    assert nfe == 200


def test_row_figure_size_and_bad_rows(tmp_path):
    import matplotlib.image as mpimg

    from generative.row_figure import LABEL_PX, row_figure_size, save_row_figure
    from generative.plots import TITLE_PX, grid_size
    x = _images(n=5)
    out = save_row_figure([("original", x), ("measured", x[:, :1]), ("restored", x)],
                          tmp_path / "rows.png", title="three rows")
    h, w = row_figure_size(3, 5, 8, 8)
    assert (h, w) == (grid_size(15, 8, 8, ncol=5)[0], grid_size(15, 8, 8, ncol=5)[1] + LABEL_PX)
    image = mpimg.imread(str(out))
    assert image.shape[:2] == (h, w)
    # the label column below the title band is white left of the (right-aligned) labels,
    # and the labels draw dark pixels in it
    column = image[TITLE_PX:, : LABEL_PX // 8, :3]
    assert float(image[TITLE_PX:, :LABEL_PX, :3].min()) < 0.5
    assert float(column.min()) == 1.0
    with pytest.raises(ValueError, match="every row must be a"):
        save_row_figure([("a", x), ("b", x[:3])], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="at least one"):
        save_row_figure([], tmp_path / "bad.png")
