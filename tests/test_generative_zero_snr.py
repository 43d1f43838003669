"""Zero-terminal-SNR rescaling of VP schedules (Lin et al.): the schedule itself, its match with
their Algorithm 1 on DDPM's discrete schedule, and sampling on it with the exact oracle."""

import pytest
import torch

from dynamics import EDMSDE, VPSDE, CosineVPSDE, GaussianMixture
from generative.metrics.mmd import mmd_rbf
from generative.samplers import sample
from generative.samplers.zero_snr import ZeroTerminalSNR
from solvers.errors import InvalidInputError

GM = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [1.5, 1.0]],
                     [[[0.3, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.4]]])
F64 = torch.float64


@pytest.mark.parametrize("base", [VPSDE(), CosineVPSDE()], ids=["vp", "cosine"])
def test_schedule(base):
    """alpha'(T) = terminal_alpha, alpha'(0) = alpha(0), VP (alpha^2 + sigma^2 = 1), log-SNR
    decreasing, t_from_log_snr its inverse, g^2 >= 0, and f, g^2 consistent with the kernel
    (d alpha'/dt by finite differences: central, step 1e-6, error ~1e-10)."""
    z = ZeroTerminalSNR(base)
    t = torch.linspace(0.0, 1.0, 101, dtype=F64)[1:-1] * base.T
    assert float(z.alpha(torch.tensor(base.T, dtype=F64))) == pytest.approx(2.0 ** -12, rel=1e-12)
    assert float(z.alpha(torch.tensor(0.0, dtype=F64))) == pytest.approx(
        float(base.alpha(torch.tensor(0.0, dtype=F64))), rel=1e-12)
    assert torch.allclose(z.alpha(t) ** 2 + z.sigma(t) ** 2, torch.ones_like(t))
    lam = z.log_snr(t)
    assert bool((lam[1:] < lam[:-1]).all())
    assert torch.allclose(z.t_from_log_snr(lam), t, rtol=0, atol=1e-9)
    assert bool((z.diffusion_sq(t) >= 0).all())
    h = 1e-6
    fd = (z.alpha(t + h) - z.alpha(t - h)) / (2 * h)
    assert torch.allclose(z.drift_coef(t) * z.alpha(t), fd, rtol=1e-6, atol=1e-9)


def test_equals_lin_et_al_algorithm_1():
    """Algorithm 1 on DDPM's alpha-bar at t_k = (k + 1) / 1000 (shift sqrt(alpha-bar) by its
    last value, scale so the first is kept) is the rescaled schedule with terminal_alpha = 0
    and t_ref = t_0: the same two-term formula, so equal to round-off."""
    base = VPSDE()
    t = (torch.arange(1000, dtype=F64) + 1) / 1000
    s = base.alpha(t).clone()
    a0, aT = s[0].clone(), s[-1].clone()
    s = (s - aT) * a0 / (a0 - aT)
    z = ZeroTerminalSNR(base, terminal_alpha=0.0, t_ref=1e-3)
    assert torch.allclose(z.alpha(t), s, rtol=0, atol=1e-15)
    assert float(z.alpha(t[-1])) == 0.0 and float(z.log_snr(t[-1])) == float("-inf")


def test_sampling_on_the_rescaled_schedule():
    """The exact oracle's score on the rescaled path: the samplers reproduce the mixture from
    T (MMD within 1.5x the largest of 10 data-vs-data MMDs); with alpha(T) = 0 the fast
    samplers refuse a grid through T and sample from a grid that starts below it."""
    g = torch.Generator().manual_seed(123)
    bound = 1.5 * max(mmd_rbf(GM.sample(1000, g), GM.sample(1000, g)) for _ in range(10))
    data = GM.sample(1000, torch.Generator().manual_seed(1))
    z = ZeroTerminalSNR(VPSDE())
    for name, kw in [("dpmpp_2m", dict(n_steps=20)), ("em", dict(n_steps=500))]:
        x = sample(name, z, GM.score_fn(z), (1000, 2), denoise=True,
                   generator=torch.Generator().manual_seed(0), **kw).x
        assert mmd_rbf(x, data) < bound, name
    z0 = ZeroTerminalSNR(VPSDE(), terminal_alpha=0.0)
    with pytest.raises(InvalidInputError, match="alpha > 0"):
        sample("ddim", z0, GM.score_fn(z0), (4, 2), n_steps=5)
    x = sample("ddim", z0, GM.score_fn(z0), (1000, 2), denoise=True,
               times=torch.linspace(0.999, 1e-3, 30).tolist(),
               generator=torch.Generator().manual_seed(0)).x
    assert mmd_rbf(x, data) < bound


def test_errors():
    with pytest.raises(InvalidInputError, match="variance-preserving"):
        ZeroTerminalSNR(EDMSDE())
    for bad in (-0.1, 1.0, True):
        with pytest.raises(InvalidInputError, match="terminal_alpha"):
            ZeroTerminalSNR(VPSDE(), terminal_alpha=bad)
    with pytest.raises(InvalidInputError, match="t_ref"):
        ZeroTerminalSNR(VPSDE(), t_ref=1.0)
