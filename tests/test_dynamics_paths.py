"""Gaussian paths: coefficients, log-SNR inverses, conditional fields, score/velocity conversions
and the
closed-form marginal vector field of the linear path from N(0, I) to a Gaussian mixture
(property test 7, analytic part: the continuity equation holds pointwise)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from dynamics_strategies import F64, mixtures, sdes, times_in

import dynamics as D
from solvers.errors import InvalidInputError

SEEDS = st.integers(0, 2 ** 31 - 1)
PATHS = {
    "linear": D.LinearPath(),
    "cosine": D.CosinePath(),
    "custom": D.AlphaSigmaPath(lambda t: (1 - t) ** 2, lambda t: torch.sqrt(t) * (2 - t)),
    "vp_sde": D.VPSDE(),
}


def test_linear_path_is_rectified_flow():
    p = D.LinearPath()
    gen = torch.Generator().manual_seed(0)
    x0, z = torch.randn(2, 6, 3, generator=gen, dtype=F64)
    t = torch.rand(6, generator=gen, dtype=F64)
    xt, noise = p.perturb(x0, t, noise=z)
    torch.testing.assert_close(xt, (1 - t[:, None]) * x0 + t[:, None] * z)
    torch.testing.assert_close(p.target_velocity(x0, z, t), z - x0)
    torch.testing.assert_close(p.conditional_vector_field(xt, x0, t), z - x0)
    torch.testing.assert_close(p.conditional_vector_field(xt, x0, t), (xt - x0) / t[:, None])


@pytest.mark.parametrize("name", list(PATHS))
def test_path_derivatives_and_conditional_field(name):
    path = PATHS[name]
    t = torch.linspace(0.05, 0.95, 19, dtype=F64).requires_grad_(True)
    (da,) = torch.autograd.grad(path.alpha(t).sum(), t)
    (ds,) = torch.autograd.grad(path.sigma(t).sum(), t)
    td = t.detach()
    torch.testing.assert_close(path.d_alpha(td), da, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(path.d_sigma(td), ds, rtol=1e-9, atol=1e-12)
    gen = torch.Generator().manual_seed(1)
    x0, z = torch.randn(2, 19, 2, generator=gen, dtype=F64)
    xt, _ = path.perturb(x0, td, noise=z)
    # the conditional field evaluated on the conditional path is its velocity
    torch.testing.assert_close(path.conditional_vector_field(xt, x0, td),
                               path.target_velocity(x0, z, td))


@given(mix=mixtures(), seed=SEEDS, name=st.sampled_from(list(PATHS)))
@settings(max_examples=40, deadline=None)
def test_marginal_field_continuity_equation(mix, seed, name):
    """Property 7 (analytic): v = E[a' x0 + s' z | x_t] from the oracle's posterior mean satisfies
    d/dt log p_t + div v + v . grad log p_t = 0 with p_t the exact path marginal, and agrees with
    the score <-> velocity conversions."""
    path = PATHS[name]
    gen = torch.Generator().manual_seed(seed)
    B, d = 8, mix.dim
    t = 0.05 + 0.9 * torch.rand(B, generator=gen, dtype=F64)
    x = mix.marginal_sample(path, t, B, gen) + 0.3 * torch.randn(B, d, generator=gen, dtype=F64)
    x.requires_grad_(True)
    t.requires_grad_(True)
    logp = mix.marginal_log_prob(path, x, t)
    s, dlogp = torch.autograd.grad(logp.sum(), (x, t), create_graph=False)
    v = D.convert(mix.marginal_denoise(path, x, t.detach()), x, t.detach(), path, "x0",
                  "velocity")
    div = sum(torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(d))
    v = v.detach()
    resid = dlogp + div + (v * s).sum(-1)
    scale = dlogp.abs() + div.abs() + (v * s).sum(-1).abs()
    assert bool((resid.abs() <= 1e-9 * scale + 1e-12).all()), (resid.abs() / scale).max()
    xd, td = x.detach(), t.detach()
    torch.testing.assert_close(D.from_score(s, xd, td, path, "velocity"), v, rtol=1e-8,
                               atol=1e-8)
    torch.testing.assert_close(D.to_score(v, xd, td, path, "velocity"), s, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(D.convert(v, xd, td, path, "velocity", "x0"),
                               mix.marginal_denoise(path, xd, td), rtol=1e-7, atol=1e-7)
    for pred in D.PREDICTIONS:      # every prediction round-trips through the table
        p = D.from_score(s, xd, td, path, pred)
        torch.testing.assert_close(D.convert(p, xd, td, path, pred, "velocity"), v, rtol=1e-7,
                                   atol=1e-7)


@given(sde=sdes(), mix=mixtures(), seed=SEEDS)
@settings(max_examples=30, deadline=None)
def test_sde_path_velocity_is_the_probability_flow(sde, mix, seed):
    gen = torch.Generator().manual_seed(seed)
    t = times_in(sde, gen, 6, 0.05, 0.95)
    x = mix.marginal_sample(sde, t, 6, gen)
    score = mix.score_fn(sde)
    v = D.from_score(score(x, t), x, t, sde, "velocity")
    pf = sde.probability_flow(score)(t, x)
    torch.testing.assert_close(v, pf, rtol=1e-8, atol=1e-8 * float(1 + pf.abs().max()))


def test_linear_path_field_at_pure_noise_uses_the_data_mean():
    gen = torch.Generator().manual_seed(2)
    from dynamics_strategies import random_mixture
    mix = random_mixture(gen, 3, 2)
    p = D.LinearPath()
    x = torch.randn(5, 2, generator=gen, dtype=F64)
    v = D.convert(mix.marginal_denoise(p, x, 1.0), x, 1.0, p, "x0", "velocity")
    torch.testing.assert_close(v, x - mix.mean())      # E[x0 | x_1] = E[x0], z = x_1


def test_path_errors():
    with pytest.raises(InvalidInputError, match="`alpha`"):
        D.AlphaSigmaPath("a", lambda t: t)
    with pytest.raises(InvalidInputError, match="`path`"):
        D.ScoreAdapter(lambda x, t: x, object(), "velocity")
    with pytest.raises(InvalidInputError, match="`target`"):
        D.convert(torch.zeros(2, 2), torch.zeros(2, 2), 0.5, D.LinearPath(), "noise", "bogus")
    with pytest.raises(InvalidInputError, match="`noise`"):
        D.LinearPath().perturb(torch.zeros(2, 2), 0.5, noise=torch.zeros(3))


@pytest.mark.parametrize("name", list(PATHS))
def test_log_snr_inverse(name):
    """Every path inverts its log-SNR (closed forms, or the protocol's bisection for custom
    paths), and the linear SDE derived from a path has the path's kernel:
    f = alpha'/alpha, g^2 = d sigma^2/dt - 2 f sigma^2."""
    path = PATHS[name]
    t = torch.linspace(0.05, 0.95, 19, dtype=F64)
    torch.testing.assert_close(path.t_from_log_snr(path.log_snr(t)), t, rtol=1e-9, atol=1e-9)
    a, s = path.alpha(t), path.sigma(t)
    torch.testing.assert_close(path.drift_coef(t), path.d_alpha(t) / a)
    torch.testing.assert_close(path.diffusion_sq(t), 2 * s * path.d_sigma(t)
                               - 2 * path.d_alpha(t) / a * s ** 2)
