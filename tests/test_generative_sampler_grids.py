"""The samplers' time grids: user-given times or noise levels (with a final 0 meaning the
final denoise), diffusers' timestep spacings, and their argument errors."""

import pytest
import torch

from dynamics import EDMSDE, VPSDE, GaussianMixture
from generative.results import SampleResult
from generative.samplers import sample
from generative.samplers.grid import given_grid, schedule_grid, spacing_grid
from solvers.errors import InvalidInputError

GM = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [1.5, 1.0]],
                     [[[0.3, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.4]]])
F64 = torch.float64


def _x_T(sde, n=16, seed=0):
    return sde.prior_sample((n, 2), generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m", "edm_heun", "dpmpp_2s"])
def test_given_times_equal_the_named_schedule(name):
    """The Karras grid handed over as an array of times gives the same samples, bit for bit:
    the sampler sees the same grid tensors (computed once in float64 from the same times)."""
    sde = VPSDE()
    x_T = _x_T(sde)
    ts = schedule_grid(sde, 7, x_T, schedule="karras").ts
    a = sample(name, sde, GM.score_fn(sde), x_init=x_T, n_steps=7, schedule="karras")
    b = sample(name, sde, GM.score_fn(sde), x_init=x_T, times=ts.tolist())
    assert isinstance(b, SampleResult) and b.nfe == a.nfe
    # times -> log_snr is recomputed from the same float64 values: identical
    assert torch.equal(a.x, b.x)


def test_sigmas_with_final_zero_is_the_final_denoise():
    """On EDMSDE (alpha = 1, sigma = t) ``sigmas`` are the times; a trailing 0 is the final
    Tweedie step (one more NFE), as k-diffusion's last step to sigma = 0 for these samplers."""
    sde = EDMSDE(sigma_max=10.0)
    x_T = 10.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    sig = [10.0, 4.0, 1.5, 0.5, 0.1, 0.02]
    a = sample("dpmpp_2m", sde, GM.score_fn(sde), x_init=x_T, times=sig, denoise=True)
    b = sample("dpmpp_2m", sde, GM.score_fn(sde), x_init=x_T, sigmas=sig + [0.0])
    assert a.nfe == b.nfe == 6
    # sigma -> t is t_from_log_snr(-2 log sigma) for EDM: exp(log sigma), a few ulp from sigma
    assert torch.allclose(a.x, b.x, rtol=0, atol=1e-12)
    x, _ = given_grid(sde, x_T, sigmas=sig)[0][:2]
    assert torch.allclose(x, torch.tensor(sig, dtype=F64), rtol=1e-14, atol=0)


def test_given_grid_for_uniform_samplers():
    """em, ancestral and pc step on any decreasing times; NFE follows the grid's length."""
    sde = VPSDE()
    ts = [1.0, 0.7, 0.5, 0.3, 0.2, 0.1, 0.05, 0.01]
    res = sample("em", sde, GM.score_fn(sde), (8, 2), times=ts,
                 generator=torch.Generator().manual_seed(0))
    assert res.nfe == 7 + 1 and torch.isfinite(res.x).all()       # + solvers' shape check
    seen = []
    ts = (torch.linspace(1.0, 0.1, 40) ** 2).tolist()               # beta_n < 1 on every step
    res = sample("ancestral", sde, GM.score_fn(sde), (8, 2), times=ts,
                 callback=lambda i, t, x, d: seen.append(float(t)))
    assert res.nfe == 39 and seen == pytest.approx(ts, abs=1e-7)    # float32 grid


def test_diffusers_spacings():
    """The timesteps diffusers' schedulers visit for num_train_timesteps = 1000 and
    num_inference_steps = 10 (the table of Lin et al. 2023, "Common Diffusion Noise Schedules
    and Sample Steps are Flawed"), at t_k = (k + 1) / 1000."""
    sde = VPSDE()
    x = torch.zeros(1, 2, dtype=F64)
    expect = {"leading": [900, 800, 700, 600, 500, 400, 300, 200, 100, 0],
              "trailing": [999, 899, 799, 699, 599, 499, 399, 299, 199, 99],
              "linspace": [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]}
    for spacing, ks in expect.items():
        ts = spacing_grid(sde, 9, x, spacing).ts
        k = torch.round(ts * 1000 - 1).long().tolist()
        assert k == ks, spacing
    res = sample("ddim", sde, GM.score_fn(sde), (4, 2), n_steps=9, schedule="trailing",
                 denoise=True)
    assert res.nfe == 10                                              # diffusers' 10 NFE


def test_grid_errors():
    sde = VPSDE()
    sf = GM.score_fn(sde)
    for bad in ([1.0, 0.5, 0.7], [0.5], [[1.0, 0.5]], "abc", [1.0, float("nan")]):
        with pytest.raises(InvalidInputError, match="`times`"):
            sample("ddim", sde, sf, (2, 2), times=bad)
    with pytest.raises(InvalidInputError, match="lie in the SDE's range"):
        sample("ddim", sde, sf, (2, 2), times=[2.0, 0.5])
    with pytest.raises(InvalidInputError, match="log-SNR"):
        sample("ddim", sde, sf, (2, 2), times=[1.0, 0.5, 0.0])        # sigma(0) = 0
    with pytest.raises(InvalidInputError, match="not both"):
        sample("ddim", sde, sf, (2, 2), times=[1.0, 0.5], sigmas=[3.0, 1.0])
    with pytest.raises(InvalidInputError, match="`n_steps`"):
        sample("ddim", sde, sf, (2, 2), times=[1.0, 0.5], n_steps=3)
    with pytest.raises(InvalidInputError, match="`sigmas` must lie"):
        sample("ddim", sde, sf, (2, 2), sigmas=[1e3, 1.0])           # above sigma(T)/alpha(T)
    with pytest.raises(InvalidInputError, match="> 0 before the final 0"):
        sample("ddim", sde, sf, (2, 2), sigmas=[3.0, 0.0, 0.0])
    with pytest.raises(InvalidInputError, match="`t_min`"):
        sample("ddim", sde, sf, (2, 2), n_steps=4, schedule="leading", t_min=0.01)
    with pytest.raises(InvalidInputError, match="num_train_timesteps"):
        sample("ddim", sde, sf, (2, 2), n_steps=1000, schedule="linspace")
    with pytest.raises(InvalidInputError, match="schedule"):
        sample("ddim", sde, sf, (2, 2), n_steps=4, schedule="cosine")
