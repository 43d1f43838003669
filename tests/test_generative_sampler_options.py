"""Options on every sampler: static clipping and dynamic thresholding of the denoiser's x0
estimate (Saharia et al. 2022). The EDM churn convention is checked against k-diffusion in
test_generative_sampler_peers.py."""

import pytest
import torch

from dynamics import VPSDE, GaussianMixture
from generative.samplers import sample
from generative.samplers.x0_limits import dynamic_threshold
from solvers.errors import InvalidInputError

# data up to |x| ~ 3, so limits at 1 are active
GM = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [1.5, 1.0]],
                     [[[0.3, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.4]]])
F64 = torch.float64


def test_dynamic_threshold_formula():
    """Per row: s = clamp(quantile_p |x0|, 1, s_max); x0 clamped to [-s, s] and divided by s."""
    x0 = torch.tensor([[0.5, -0.2, 0.1, 0.0], [3.0, -1.0, 0.5, 2.0]], dtype=F64)
    out = dynamic_threshold(x0, 1.0)
    assert torch.equal(out[0], x0[0])                          # s = 1: unchanged
    assert torch.allclose(out[1], torch.tensor([1.0, -1 / 3, 1 / 6, 2 / 3], dtype=F64))
    # p = 0.5: |x| sorted 0.5, 1, 2, 3 -> median 1.5 (linear interpolation), 3 clipped to 1.5
    assert torch.allclose(dynamic_threshold(x0[1:], 0.5)[0],
                          torch.tensor([1.0, -2 / 3, 1 / 3, 1.0], dtype=F64))
    assert torch.allclose(dynamic_threshold(x0[1:], 1.0, s_max=2.0)[0],
                          torch.tensor([1.0, -0.5, 0.25, 1.0], dtype=F64))


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m", "unipc", "em", "ode"])
@pytest.mark.parametrize("kw", [dict(clip_x0=1.0), dict(threshold=0.9)],
                         ids=["clip", "threshold"])
def test_limits_bound_the_denoiser(name, kw):
    """Every denoised estimate the samplers report, and the final denoised samples, lie in
    [-1, 1]; without the limit they do not."""
    sde = VPSDE()
    seen = []

    def watch(i, t, x, denoised):
        if denoised is not None:
            seen.append(float(denoised.abs().max()))

    steps = dict(n_steps=20) if name != "em" else dict(n_steps=200)
    if name == "ode":
        steps = dict(nfe=40, method="rk4")
    g = torch.Generator().manual_seed(0)
    res = sample(name, sde, GM.score_fn(sde), (256, 2), denoise=True, callback=watch,
                 generator=g, dtype=F64, **steps, **kw)
    assert float(res.x.abs().max()) <= 1.0 + 1e-9               # round trip x0 -> score -> x0
    assert all(m <= 1.0 + 1e-9 for m in seen)
    free = sample(name, sde, GM.score_fn(sde), (256, 2), denoise=True, generator=g, dtype=F64,
                  **steps)
    assert float(free.x.abs().max()) > 1.5


def test_inactive_clip_changes_nothing():
    """A clip far outside the data only round-trips score -> x0 -> score: relative round-off
    ~1e-16 |x| / (sigma^2 |score|) <= 1e-12 at the grid's smallest sigma^2 ~ 1e-4, amplified
    by < 10 over the run."""
    sde = VPSDE()
    x_T = sde.prior_sample((64, 2), generator=torch.Generator().manual_seed(1), dtype=F64)
    a = sample("dpmpp_2m", sde, GM.score_fn(sde), x_init=x_T, n_steps=15)
    b = sample("dpmpp_2m", sde, GM.score_fn(sde), x_init=x_T, n_steps=15, clip_x0=1e6)
    assert a.nfe == b.nfe and torch.allclose(a.x, b.x, rtol=0, atol=1e-10)


def test_limit_errors():
    sde = VPSDE()
    sf = GM.score_fn(sde)
    for kw, match in [(dict(clip_x0=0.0), "clip_x0"), (dict(clip_x0="1"), "clip_x0"),
                      (dict(threshold=1.5), "threshold"), (dict(threshold=0.0), "threshold"),
                      (dict(threshold=0.9, threshold_max=0.5), "threshold_max"),
                      (dict(clip_x0=1.0, threshold=0.9), "not both")]:
        with pytest.raises(InvalidInputError, match=match):
            sample("ddim", sde, sf, (2, 2), n_steps=3, **kw)
