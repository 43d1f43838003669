"""Linear inverse problems on the Gaussian-mixture oracle: the operators and their transposes,
the closed-form posterior (checked against the mixture's own exact conditioning and against
importance sampling), samplers on its exact conditional score reproduce its mean and
covariance, and replacement / PiGDM guidance, approximate, move toward it."""

import math

import pytest
import torch

from dynamics import VPSDE, ClassifierGuidance, GaussianMixture
from generative.inverse import (LinearOperator, avgpool_operator, grayscale_operator,
                                mask_operator, matrix_operator, mixture_posterior,
                                pigdm_log_prob_fn, replacement_callback)
from generative.samplers import sample
from solvers.errors import InvalidInputError

F64 = torch.float64


def _image_mixture(seed=0, k=3, shape=(3, 2, 2)):
    """A k-component mixture on tiny 'images' (12 dims), random SPD covariances."""
    g = torch.Generator().manual_seed(seed)
    d = math.prod(shape)
    means = torch.randn(k, d, generator=g, dtype=F64)
    B = torch.randn(k, d, d, generator=g, dtype=F64) / math.sqrt(d)
    covs = 0.3 * B @ B.transpose(1, 2) + 0.05 * torch.eye(d, dtype=F64)
    return GaussianMixture(torch.tensor([0.2, 0.5, 0.3], dtype=F64), means, covs)


def _moments(x):
    m = x.mean(0)
    xc = x - m
    return m, xc.T @ xc / (len(x) - 1)


OPS = {"mask": lambda: mask_operator(torch.tensor([[[True, False], [False, True]]] * 3)),
       "grayscale": grayscale_operator, "avgpool": lambda: avgpool_operator(2),
       "matrix": lambda: matrix_operator(torch.randn(5, 12, generator=torch.Generator()
                                                     .manual_seed(3), dtype=F64), (3, 2, 2))}


@pytest.mark.parametrize("name", sorted(OPS))
def test_operators_and_transposes(name):
    """<A x, y> = <x, A^T y> (float64 round-off), and A A^T = c I where the operator says so."""
    A = OPS[name]()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 2, 2, generator=g, dtype=F64)
    y = torch.randn(A(x).shape, generator=g, dtype=F64)
    assert torch.allclose((A(x) * y).sum(), (x * A.T(y)).sum(), rtol=1e-12)
    if A.gram is not None:
        M = A.matrix((3, 2, 2))
        assert torch.allclose(M @ M.T, A.gram * torch.eye(len(M), dtype=F64), atol=1e-12)


def test_posterior_matches_exact_conditioning():
    """With a mask and a tiny sigma_y the posterior of the observed-coordinate mixture is the
    mixture's own exact conditional on the unobserved coordinates (mean, covariance of each
    component to O(sigma_y^2) = 1e-12 relative; weights likewise)."""
    mix = _image_mixture()
    mask = torch.zeros(12, dtype=torch.bool)
    mask[[0, 3, 7]] = True
    values = torch.randn(12, generator=torch.Generator().manual_seed(5), dtype=F64)
    post = mixture_posterior(mix, mask_operator(mask), values[mask], 1e-6)
    ref = mix.condition(values, mask)
    assert torch.allclose(post.weights, ref.weights, atol=1e-8)
    assert torch.allclose(post.means[:, ~mask], ref.means, atol=1e-8)
    assert torch.allclose(post.covs[:, ~mask][:, :, ~mask], ref.covs, atol=1e-8)
    assert float(post.covs[:, mask][:, :, mask].abs().max()) < 1e-10


def test_posterior_matches_importance_sampling():
    """Prior samples weighted by the likelihood N(y; A x, sigma_y^2) estimate the posterior
    mean; 200k samples and effective sample size > 2000: within 5 standard errors."""
    mix = _image_mixture()
    A = grayscale_operator()
    g = torch.Generator().manual_seed(7)
    x_true = mix.sample(1, g).reshape(1, 3, 2, 2)
    sigma_y = 0.3
    y = A(x_true)[0]
    post = mixture_posterior(mix, A, y, sigma_y, event_shape=(3, 2, 2))
    xs = mix.sample(200_000, g).to(F64)
    logw = -(A(xs.reshape(-1, 3, 2, 2)) - y).reshape(len(xs), -1).square().sum(1) / (
        2 * sigma_y ** 2)
    w = torch.softmax(logw, 0)
    ess = float(1 / w.square().sum())
    assert ess > 2000
    m_is = (w[:, None] * xs).sum(0)
    m, cov = post.mean(), post.covariance()
    se = torch.sqrt(torch.diagonal(cov) / ess)
    assert bool(((m_is - m).abs() < 5 * se + 1e-9).all()), ((m_is - m) / se)


@pytest.mark.parametrize("name", ["mask", "avgpool"])
def test_samplers_on_the_exact_conditional_score(name):
    """DPM-Solver++(2M) on the posterior's score reproduces its mean and covariance (4000
    samples: mean within 5 standard errors, covariance entries within 5 of theirs,
    se(cov_ij) <= sqrt((cov_ii cov_jj + cov_ij^2) / n))."""
    mix, sde = _image_mixture(), VPSDE()
    A = OPS[name]()
    g = torch.Generator().manual_seed(2)
    y = A(mix.sample(1, g).reshape(1, 3, 2, 2))[0]
    post = mixture_posterior(mix, A, y, 0.1, event_shape=(3, 2, 2))
    n = 4000
    x = sample("dpmpp_2m", sde, post.score_fn(sde), (n, 3, 2, 2), n_steps=40, denoise=True,
               generator=g, dtype=F64).x.reshape(n, -1)
    m_hat, c_hat = _moments(x)
    m, c = post.mean(), post.covariance()
    d = torch.diagonal(c)
    assert bool(((m_hat - m).abs() < 5 * torch.sqrt(d / n) + 2e-3).all())
    se = torch.sqrt((d[:, None] * d[None, :] + c ** 2) / n)
    assert bool(((c_hat - c).abs() < 5 * se + 2e-3).all())


def test_replacement_and_pigdm_are_approximate():
    """The approximate methods on the exact prior score honour the observation (A x0 close to
    y) and move the mean from the prior's toward the posterior's, but stay biased on a
    multimodal prior (measured distances to the posterior mean, prior at 2.61: replacement
    1.88, PiGDM with data_var = 1 0.90, the exact conditional score 0.048)."""
    mix, sde = _image_mixture(), VPSDE()
    A = grayscale_operator()
    g = torch.Generator().manual_seed(4)
    y = A(mix.sample(1, g).reshape(1, 3, 2, 2))[0]
    post = mixture_posterior(mix, A, y, 0.05, event_shape=(3, 2, 2))
    n = 2000
    gap_prior = float((mix.mean() - post.mean()).norm())
    rep = sample("ddim", sde, mix.score_fn(sde), (n, 3, 2, 2), n_steps=100, denoise=True,
                 callback=replacement_callback(sde, A, y, g), generator=g, dtype=F64).x
    guided = ClassifierGuidance(mix.score_fn(sde), pigdm_log_prob_fn(
        sde, mix.score_fn(sde), A, y, 0.05, data_var=1.0))
    with torch.enable_grad():
        pig = sample("ddim", sde, guided, (n, 3, 2, 2), n_steps=100, denoise=True,
                     generator=g, dtype=F64).x
    exact = sample("ddim", sde, post.score_fn(sde), (n, 3, 2, 2), n_steps=100, denoise=True,
                   generator=g, dtype=F64).x
    gaps = [float((x.reshape(n, -1).mean(0) - post.mean()).norm()) for x in (rep, pig, exact)]
    for x in (rep, pig, exact):
        assert float((A(x) - y).abs().mean()) < 0.15
    assert gaps[0] < 0.85 * gap_prior and gaps[1] < 0.5 * gap_prior, (gaps, gap_prior)
    assert gaps[2] < 0.1 * min(gaps[:2]), gaps


def test_errors():
    with pytest.raises(InvalidInputError, match="mask"):
        mask_operator(torch.zeros(3, dtype=torch.bool))
    with pytest.raises(InvalidInputError, match="factor"):
        avgpool_operator(1)
    with pytest.raises(InvalidInputError, match="weights"):
        grayscale_operator([0.0, 0.0])
    with pytest.raises(InvalidInputError, match="`M`"):
        matrix_operator(torch.ones(2, 5), (3,))
    with pytest.raises(InvalidInputError, match="orthogonal rows"):
        replacement_callback(VPSDE(), matrix_operator(torch.ones(2, 3), (3,)), torch.ones(2))
    with pytest.raises(InvalidInputError, match="sigma_y"):
        mixture_posterior(_image_mixture(), grayscale_operator(), torch.ones(4), 0.0, (3, 2, 2))
    with pytest.raises(InvalidInputError, match="callables"):
        LinearOperator(None, None)
