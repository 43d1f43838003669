"""GaussianMixture oracle (property test 3), guidance (property test 6) and the inpainting
projection. Statistical checks use 5 standard errors estimated from the sample."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal
from dynamics_strategies import (F64, SDE_KINDS, default_sde, mixtures, random_mixture,
                                 sample_cov_bounds, sdes, times_in)

import dynamics as D
from solvers.errors import InvalidInputError

SEEDS = st.integers(0, 2 ** 31 - 1)


def scipy_logpdf(mix: D.GaussianMixture, x: torch.Tensor) -> np.ndarray:
    comps = [np.log(float(w)) + multivariate_normal(m.numpy(), c.numpy()).logpdf(x.numpy())
             for w, m, c in zip(mix.weights, mix.means, mix.covs)]
    return np.logaddexp.reduce(np.stack(comps, 0).reshape(len(comps), -1), axis=0)


@given(mix=mixtures(), seed=SEEDS)
@settings(max_examples=30, deadline=None)
def test_log_prob_matches_scipy_and_score_is_its_gradient(mix, seed):
    gen = torch.Generator().manual_seed(seed)
    x = mix.sample(20, gen) + torch.randn(20, mix.dim, generator=gen, dtype=F64)
    np.testing.assert_allclose(mix.log_prob(x).numpy(), scipy_logpdf(mix, x), rtol=1e-9, atol=1e-9)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(mix.log_prob(xg).sum(), xg)
    torch.testing.assert_close(mix.score(x), g, rtol=1e-9, atol=1e-10)


@given(sde=sdes(), mix=mixtures(), seed=SEEDS)
@settings(max_examples=60, deadline=None)
def test_marginal_oracle_score_density_and_denoiser(sde, mix, seed):
    """Property 3: the oracle's time-t score equals autograd of its exact log p_t; log p_t is the
    mixture N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I) (checked against scipy at one t); the
    posterior mean satisfies Tweedie's formula."""
    gen = torch.Generator().manual_seed(seed)
    B = 12
    t = times_in(sde, gen, B, 0.01, 1.0)
    x = mix.marginal_sample(sde, t, B, gen) + torch.randn(B, mix.dim, generator=gen, dtype=F64)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(mix.marginal_log_prob(sde, xg, t).sum(), xg)
    s = mix.marginal_score(sde, x, t)
    torch.testing.assert_close(s, g, rtol=1e-8, atol=1e-9 * float(g.abs().max() + 1))
    t0 = float(t[0])
    mt = mix.marginal(sde, t0)
    np.testing.assert_allclose(mix.marginal_log_prob(sde, x, t0).numpy(), scipy_logpdf(mt, x),
                               rtol=1e-8, atol=1e-8)
    a, sig = sde.alpha(t)[:, None], sde.sigma(t)[:, None]
    torch.testing.assert_close(mix.marginal_denoise(sde, x, t), (x + sig ** 2 * s) / a,
                               rtol=1e-7, atol=1e-7 * float(1 + (sig ** 2 * s / a).abs().max()))


@given(sde=sdes(), seed=SEEDS)
@settings(max_examples=30, deadline=None)
def test_dsm_target_is_the_kernel_score(sde, seed):
    """Property 3: -(x_t - mean)/std^2 from marginal() is the score of p_t for a point mass x0
    (a one-component mixture with zero covariance, i.e. the kernel itself) and autograd of the
    kernel's log-density."""
    gen = torch.Generator().manual_seed(seed)
    d, B = 3, 10
    x0 = torch.randn(1, d, generator=gen, dtype=F64)
    point = D.GaussianMixture(torch.ones(1, dtype=F64), x0, torch.zeros(1, d, d, dtype=F64))
    t = times_in(sde, gen, B, 0.01, 1.0)
    xt, _ = sde.perturb(x0.expand(B, d), t, generator=gen)
    target = sde.kernel_score(xt, x0.expand(B, d), t)
    mean, std = sde.marginal(x0.expand(B, d), t)
    torch.testing.assert_close(target, -(xt - mean) / std ** 2)
    torch.testing.assert_close(point.marginal_score(sde, xt, t), target, rtol=1e-9, atol=1e-9)
    xg = xt.clone().requires_grad_(True)
    logk = torch.distributions.Normal(mean, std).log_prob(xg).sum(-1)
    (g,) = torch.autograd.grad(logk.sum(), xg)
    torch.testing.assert_close(g, target, rtol=1e-9, atol=1e-9)
    with pytest.raises(InvalidInputError, match="singular"):
        point.log_prob(xt)


def test_sampling_moments_and_marginal_samples():
    gen = torch.Generator().manual_seed(3)
    mix = random_mixture(gen, 3, 2)
    x, labels = mix.sample(40000, gen, return_labels=True)
    m, c, se_m, se_c = sample_cov_bounds(x)
    assert bool(((m - mix.mean()).abs() <= se_m).all())
    assert bool(((c - mix.covariance()).abs() <= se_c).all())
    freq = torch.bincount(labels, minlength=3).double() / 40000
    assert bool(((freq - mix.weights).abs() <= 5 * torch.sqrt(mix.weights / 40000)).all())
    sde = D.VPSDE()
    xt = mix.marginal_sample(sde, 0.3, 40000, gen)
    mt = mix.marginal(sde, 0.3)
    m, c, se_m, se_c = sample_cov_bounds(xt)
    assert bool(((m - mt.mean()).abs() <= se_m).all())
    assert bool(((c - mt.covariance()).abs() <= se_c).all())
    # a wrong marginal (std without sqrt, as sub-VP has) is rejected by the same bounds
    wrong = mix.marginal(D.SubVPSDE(), 0.3)
    assert not bool(((c - wrong.covariance()).abs() <= se_c).all())


def test_image_shaped_rows_and_per_row_times():
    gen = torch.Generator().manual_seed(0)
    mix = random_mixture(gen, 2, 4)
    sde = D.VESDE()
    x = torch.randn(5, 1, 2, 2, generator=gen, dtype=F64)
    t = torch.linspace(0.1, 0.9, 5, dtype=F64)
    s = mix.marginal_score(sde, x, t)
    assert s.shape == x.shape
    for i in range(5):
        torch.testing.assert_close(s[i:i + 1].reshape(1, 4),
                                   mix.marginal_score(sde, x[i:i + 1].reshape(1, 4), float(t[i])))
    fn = mix.score_fn(sde)
    torch.testing.assert_close(fn(x, t), s)
    assert mix.log_prob_fn(sde)(x, t).shape == (5,)


@pytest.mark.parametrize("make, arg", [
    (lambda: D.GaussianMixture([0.5, 0.5], [[0.0, 0.0]], torch.eye(2).expand(2, 2, 2)), "means"),
    (lambda: D.GaussianMixture([1.0], [[0.0, 0.0]], torch.eye(3)[None]), "covs"),
    (lambda: D.GaussianMixture([[1.0]], [[0.0]], [[[1.0]]]), "weights"),
    (lambda: D.GaussianMixture([0.6, 0.6], [[0.0], [1.0]], [[[1.0]], [[1.0]]]), "weights"),
    (lambda: D.GaussianMixture([1.5, -0.5], [[0.0], [1.0]], [[[1.0]], [[1.0]]]), "weights"),
    (lambda: D.GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]]), "covs"),
    (lambda: D.GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.0, 1.0]]]), "covs"),
    (lambda: D.GaussianMixture([1.0], [[0.0]], [[[-1.0]]]), "covs"),
    (lambda: D.GaussianMixture([1.0], [[float("nan")]], [[[1.0]]]), "means"),
    (lambda: D.GaussianMixture([1.0], [[0.0]], [[[1.0]]]).log_prob(torch.zeros(3, 2)), "x"),
    (lambda: D.GaussianMixture([1.0], [[0.0]], [[[1.0]]]).marginal_score(
        D.VPSDE(), torch.zeros(3, 1), 2.0), "t"),
    (lambda: D.GaussianMixture([1.0], [[0.0]], [[[1.0]]]).marginal_score(
        "vp", torch.zeros(3, 1), 0.5), "path"),
])
def test_mixture_errors_name_the_argument(make, arg):
    with pytest.raises(InvalidInputError, match=f"`{arg}`"):
        make()


# --------------------------------------------------------------------------- guidance

@given(sde=sdes(), seed=SEEDS, scale=st.floats(-3.0, 5.0))
@settings(max_examples=30, deadline=None)
def test_classifier_free_guidance_limits(sde, seed, scale):
    """Property 6 (CFG): scale 0 -> unconditional score, 1 -> conditional, else the linear
    combination."""
    gen = torch.Generator().manual_seed(seed)
    mix = random_mixture(gen, 2, 2)
    uncond, cond = mix.score_fn(sde), mix.component(1).score_fn(sde)
    x = torch.randn(7, 2, generator=gen, dtype=F64) * (1 + sde.prior_std)
    t = times_in(sde, gen, 7)
    su, sc = uncond(x, t), cond(x, t)
    torch.testing.assert_close(D.ClassifierFreeGuidance(cond, uncond, 0.0)(x, t), su)
    torch.testing.assert_close(D.ClassifierFreeGuidance(cond, uncond, 1.0)(x, t), sc)
    torch.testing.assert_close(D.ClassifierFreeGuidance(cond, uncond, scale)(x, t),
                               (1 - scale) * su + scale * sc)
    assert not torch.allclose(su, sc)


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_classifier_guidance_with_bayes_classifier_gives_conditional_score(kind):
    """Property 6: score of p_t + grad log p_t(y | x) of the Bayes-optimal classifier of a
    two-component mixture = exact score of component y diffused to time t."""
    sde = default_sde(kind)
    gen = torch.Generator().manual_seed(11)
    mix = random_mixture(gen, 2, 3)
    x = mix.marginal_sample(sde, 0.3 * sde.T, 64, gen)
    t = times_in(sde, gen, 64, 0.01, 1.0)
    for y in (0, 1):
        guided = D.ClassifierGuidance(mix.score_fn(sde), mix.classifier_log_prob_fn(sde, y))
        exact = mix.component(y).marginal_score(sde, x, t)
        torch.testing.assert_close(guided(x, t), exact, rtol=1e-8, atol=1e-9)
        # scale 0 leaves the unconditional score; labels may also be per row
        torch.testing.assert_close(
            D.ClassifierGuidance(mix.score_fn(sde), mix.classifier_log_prob_fn(sde, y), 0.0)(x, t),
            mix.marginal_score(sde, x, t))
    labels = (torch.arange(64) % 2)
    g = D.ClassifierGuidance(mix.score_fn(sde), mix.classifier_log_prob_fn(sde, labels))(x, t)
    torch.testing.assert_close(g[1::2], mix.component(1).marginal_score(sde, x, t)[1::2])


def test_classifier_grad_checks_output_shape():
    x = torch.randn(4, 2, dtype=F64)
    with pytest.raises(Exception, match="log_prob_fn"):
        D.classifier_grad(lambda y, t: y.sum(), x, 0.5)
    g = D.classifier_grad(lambda y, t: -(y ** 2).sum(-1) * t, x, 0.5)
    torch.testing.assert_close(g, -2 * 0.5 * x)


def test_inpaint_projection_keeps_known_coordinates_on_the_kernel():
    sde = D.VPSDE()
    gen = torch.Generator().manual_seed(5)
    n = 40000
    known = torch.tensor([[1.5, -2.0, 0.7]], dtype=F64).expand(n, 3)
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    x = torch.randn(n, 3, generator=gen, dtype=F64)
    t = 0.4
    out = D.inpaint_project(sde, x, t, known, mask, generator=gen)
    torch.testing.assert_close(out[:, 1], x[:, 1])                  # unknown untouched
    tt = torch.tensor(t, dtype=F64)
    a, s = float(sde.alpha(tt)), float(sde.sigma(tt))
    m, c, se_m, se_c = sample_cov_bounds(out[:, [0, 2]])
    target_m = a * known[0, [0, 2]]
    assert bool(((m - target_m).abs() <= se_m).all())
    assert bool(((c - s ** 2 * torch.eye(2, dtype=F64)).abs() <= se_c).all())
    z = torch.randn(n, 3, generator=gen, dtype=F64)
    out = D.inpaint_project(sde, x, t, known, mask.bool(), noise=z)
    torch.testing.assert_close(out[:, 0], a * known[:, 0] + s * z[:, 0])
    with pytest.raises(InvalidInputError, match="`mask`"):
        D.inpaint_project(sde, x, t, known, torch.ones(2))


# --------------------------------------------------------------------------- inpainting oracle

def _known_marginal(mix: D.GaussianMixture, known: torch.Tensor) -> D.GaussianMixture:
    return D.GaussianMixture(mix.weights, mix.means[:, known],
                             mix.covs[:, known][:, :, known])


@given(seed=SEEDS, k=st.integers(1, 3), n_known=st.integers(1, 3))
@settings(max_examples=30, deadline=None)
def test_condition_is_the_joint_density_over_the_known_marginal(seed, k, n_known):
    """p(u | x_K) = p(x_K, u) / p(x_K) exactly, with p(x_K) the marginal mixture."""
    gen = torch.Generator().manual_seed(seed)
    mix = random_mixture(gen, k, 4)
    mask = torch.zeros(4, dtype=torch.bool)
    mask[torch.randperm(4, generator=gen)[:n_known]] = True
    values = mix.sample(1, gen)[0]
    cond = mix.condition(values, mask)
    assert cond.dim == 4 - n_known
    u = cond.sample(16, gen) + torch.randn(16, cond.dim, generator=gen, dtype=F64)
    joint = values.expand(16, 4).clone()
    joint[:, ~mask] = u
    expected = mix.log_prob(joint) - _known_marginal(mix, mask).log_prob(values[mask][None])
    torch.testing.assert_close(cond.log_prob(u), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_observation_likelihood_is_bayes_and_guides_to_the_exact_conditional_score(kind):
    """log p(x0_K = y | x_t) = log p_t(x_t | y) + log p(y) - log p_t(x_t), where
    p_t(x_t | y) = N(x_t,K; alpha y, sigma^2) p_t^cond(x_t,U); so classifier guidance with it
    (scale 1) is the score of p_t(x_t | x0_K = y), coordinate by coordinate."""
    sde = default_sde(kind)
    gen = torch.Generator().manual_seed(4)
    mix = random_mixture(gen, 3, 3)
    mask = torch.tensor([True, False, True])
    values = mix.sample(1, gen)[0]
    x = mix.marginal_sample(sde, 0.4 * sde.T, 32, gen)
    t = times_in(sde, gen, 32, 0.05, 1.0)
    a, s = sde.alpha(t)[:, None], sde.sigma(t)[:, None]
    cond = mix.condition(values, mask)
    xu = x[:, ~mask].contiguous()
    kernel = torch.distributions.Normal(a * values[mask], s).log_prob(x[:, mask]).sum(1)
    expected = (kernel + cond.marginal_log_prob(sde, xu, t)
                + _known_marginal(mix, mask).log_prob(values[mask][None])
                - mix.marginal_log_prob(sde, x, t))
    lp = mix.observation_log_prob_fn(sde, values, mask)
    torch.testing.assert_close(lp(x, t), expected, rtol=1e-8, atol=1e-8)
    per_row = mix.observation_log_prob_fn(sde, values.expand(32, 3), mask)   # (B, d) values
    torch.testing.assert_close(per_row(x, t), expected, rtol=1e-8, atol=1e-8)
    guided = D.ClassifierGuidance(mix.score_fn(sde), lp)(x, t)
    torch.testing.assert_close(guided[:, mask], -(x[:, mask] - a * values[mask]) / s ** 2,
                               rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(guided[:, ~mask], cond.marginal_score(sde, xu, t),
                               rtol=1e-7, atol=1e-7)


def test_reconstruction_likelihood_is_exact_for_isotropic_gaussian_data():
    """Tweedie's mean and the posterior variance of N(m, v I) data give the exact observation
    likelihood; the default flat prior does not (it is an approximation)."""
    sde = D.VPSDE()
    gen = torch.Generator().manual_seed(2)
    v = 0.7
    gauss = D.GaussianMixture([1.0], [[0.3, -0.2, 0.1]], [torch.eye(3, dtype=F64) * v])
    mask = torch.tensor([True, False, True])
    values = torch.tensor([0.5, 0.0, -1.0], dtype=F64)
    x = gauss.marginal_sample(sde, 0.5, 16, gen)
    t = times_in(sde, gen, 16, 0.05, 1.0)
    exact = gauss.observation_log_prob_fn(sde, values, mask)(x, t)
    recon = D.reconstruction_log_prob_fn(sde, gauss.score_fn(sde), values, mask, data_var=v)
    torch.testing.assert_close(recon(x, t), exact, rtol=1e-10, atol=1e-10)
    flat = D.reconstruction_log_prob_fn(sde, gauss.score_fn(sde), values, mask)(x, t)
    assert (flat - exact).abs().max() > 1e-3
    with pytest.raises(InvalidInputError, match="`data_var`"):
        D.reconstruction_log_prob_fn(sde, gauss.score_fn(sde), values, mask, data_var=0.0)


def test_condition_and_observation_input_errors():
    mix = random_mixture(torch.Generator().manual_seed(0), 2, 3)
    values = torch.zeros(3, dtype=F64)
    with pytest.raises(InvalidInputError, match="every coordinate known"):
        mix.condition(values, torch.ones(3, dtype=torch.bool))
    with pytest.raises(InvalidInputError, match=r"`mask` must be a bool tensor of shape \(3,\)"):
        mix.condition(values, torch.tensor([1.0, 0.0, 0.0]))
    with pytest.raises(InvalidInputError, match=r"shape \(d,\) with d = 3"):
        mix.condition(torch.zeros(2), torch.tensor([True, False, False]))
    with pytest.raises(InvalidInputError, match=r"\(d,\) or \(B, d\)"):
        mix.observation_log_prob_fn(D.VPSDE(), torch.zeros(2, 2, 3),
                                    torch.tensor([True, False, False]))
    full = mix.condition(values, torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(full.means, mix.means)
