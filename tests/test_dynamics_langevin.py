"""Langevin dynamics: the step formula, its exact stationary law for Gaussians (unadjusted
Langevin has variance s^2 / (1 - h / (2 s^2)) for N(m, s^2)), the PC step-size rule and annealed
Langevin dynamics with the oracle score."""
from __future__ import annotations

import math

import pytest
import torch
from dynamics_strategies import F64, mmd2, random_mixture

import dynamics as D
from solvers.errors import InvalidInputError


def test_langevin_step_formula_and_per_sample_steps():
    gen = torch.Generator().manual_seed(0)
    x, s, z = torch.randn(3, 4, 2, generator=gen, dtype=F64)
    torch.testing.assert_close(D.langevin_step(x, s, 0.1, noise=z),
                               x + 0.1 * s + math.sqrt(0.2) * z)
    h = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)
    torch.testing.assert_close(D.langevin_step(x, s, h, noise=z),
                               x + h[:, None] * s + torch.sqrt(2 * h)[:, None] * z)
    with pytest.raises(InvalidInputError, match="`step`"):
        D.langevin_step(x, s, -0.1)
    with pytest.raises(InvalidInputError, match="`score`"):
        D.langevin_step(x, s[:, :1], 0.1)


@pytest.mark.parametrize("h", [0.05, 0.4])
def test_ula_stationary_variance(h):
    m, s2, n, steps = 1.5, 0.7, 20000, 300
    gen = torch.Generator().manual_seed(1)
    x = torch.zeros(n, 1, dtype=F64)
    for _ in range(steps):
        x = D.langevin_step(x, -(x - m) / s2, h, generator=gen)
    var_exact = s2 / (1 - h / (2 * s2))
    # contraction (1 - h/s2)^steps makes the initial condition negligible (< 1e-9)
    assert (1 - h / s2) ** (2 * steps) < 1e-9
    se_var = 5 * var_exact * math.sqrt(2 / (n - 1))
    assert abs(float(x.var()) - var_exact) <= se_var
    assert abs(float(x.mean()) - m) <= 5 * math.sqrt(var_exact / n)
    # the O(h) bias is resolved at h = 0.4 (it would fail with the target variance s2)
    if h == 0.4:
        assert abs(float(x.var()) - s2) > se_var


def test_snr_step_size_rule():
    score = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=F64)      # norms 5, 1 -> mean 3
    noise = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)      # norms 1, 2 -> mean 1.5
    h = D.snr_step_size(score, noise, snr=0.16, alpha=0.9)
    assert h.dim() == 0
    assert math.isclose(float(h), 2 * 0.9 * (0.16 * 1.5 / 3.0) ** 2, rel_tol=1e-14)
    hs = D.snr_step_size(score, noise, snr=0.16, per_sample=True)
    torch.testing.assert_close(hs, 2 * (0.16 * torch.tensor([1 / 5, 2 / 1], dtype=F64)) ** 2)
    with pytest.raises(InvalidInputError, match="`snr`"):
        D.snr_step_size(score, noise, snr=0.0)


def test_langevin_corrector_matches_manual_steps():
    score_fn = lambda x, t: -x / (1 + t[:, None])           # noqa: E731
    x = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    out = D.langevin_corrector(score_fn, x, 0.5, snr=0.1, n_steps=2,
                               generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    y = x
    for _ in range(2):
        s = score_fn(y, torch.full((5,), 0.5, dtype=F64))
        z = torch.randn(y.shape, generator=gen, dtype=F64)
        h = 2 * (0.1 * z.norm(dim=-1).mean() / s.norm(dim=-1).mean()) ** 2
        y = y + h * s + torch.sqrt(2 * h) * z
    torch.testing.assert_close(out, y)


def test_annealed_langevin_with_oracle_samples_the_mixture():
    """NCSN sampling with the exact score of the sigma-smoothed mixture lands on p_{sigma_L}
    (MMD to exact samples within a bound calibrated on exact-vs-exact samples)."""
    gen = torch.Generator().manual_seed(4)
    mix = random_mixture(gen, 3, 2, spread=2.5, eig_lo=0.1, eig_hi=0.5)
    sde = D.VESDE(sigma_min=0.05, sigma_max=10.0)
    sigmas = torch.exp(torch.linspace(math.log(10.0), math.log(0.05), 10, dtype=F64))
    times = sde.t_from_log_snr(-2 * torch.log(sigmas))
    torch.testing.assert_close(sde.sigma(times), sigmas)
    n = 600
    x = sde.prior_sample((n, 2), generator=gen, dtype=F64)
    out = D.annealed_langevin(mix.score_fn(sde), x, sigmas, n_steps_each=100, step_lr=1e-2,
                              times=times, generator=gen)
    target_t = float(times[-1])
    ref = mix.marginal_sample(sde, target_t, n, gen)
    h = 1.0
    null = [mmd2(mix.marginal_sample(sde, target_t, n, gen), ref, h) for _ in range(10)]
    bound = max(null) + 3 * float(torch.tensor(null).std())
    assert mmd2(out, ref, h) <= bound
    # power: the prior samples themselves are far outside the bound
    assert mmd2(x, ref, h) > 10 * bound


def test_annealed_langevin_argument_errors():
    x = torch.zeros(2, 2)
    with pytest.raises(InvalidInputError, match="`sigmas`"):
        D.annealed_langevin(lambda y, t: y, x, [0.1, 1.0])
    with pytest.raises(InvalidInputError, match="`times`"):
        D.annealed_langevin(lambda y, t: y, x, [1.0, 0.1], times=[1.0])
