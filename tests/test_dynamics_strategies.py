"""The shared hypothesis strategies of tests/dynamics_strategies.py produce what the dynamics
property tests rely on: valid SDEs of every class, mixtures with weights on the simplex,
means in [-spread, spread] and covariance eigenvalues in the stated [0.05, 2], times in the
stated range, and helper statistics that behave as their docstrings say."""
import math

import torch
from dynamics_strategies import (F64, SDE_KINDS, default_sde, mixtures, mmd2, random_mixture,
                                 sample_cov_bounds, sdes, times_in)
from hypothesis import given, settings
from hypothesis import strategies as st

import dynamics as D

PROFILE = settings(max_examples=40, deadline=None)
CLASSES = {"vp": D.VPSDE, "ve": D.VESDE, "subvp": D.SubVPSDE, "cosine": D.CosineVPSDE,
           "edm": D.EDMSDE}


@PROFILE
@given(kind=st.sampled_from(SDE_KINDS), data=st.data())
def test_sdes_are_valid_instances_of_every_class(kind, data):
    sde = data.draw(sdes(kinds=(kind,)))
    assert type(sde) is CLASSES[kind]
    assert isinstance(default_sde(kind), CLASSES[kind])
    t = torch.linspace(0.02, 1.0, 30, dtype=F64) * sde.T
    a, s = sde.alpha(t), sde.sigma(t)
    assert bool(torch.isfinite(a).all() and torch.isfinite(s).all())
    assert bool(((a > 0) & (a <= 1 + 1e-12)).all())      # a contracting (or VE) mean
    assert bool((s > 0).all()) and bool((s.diff() > 0).all())  # noise grows with time
    mean, std = sde.marginal(torch.ones(4, 2, dtype=F64), t[:4])
    assert mean.shape == (4, 2) and std.shape == (4, 1)


@PROFILE
@given(mix=mixtures())
def test_mixtures_have_simplex_weights_bounded_means_and_stated_eigenvalues(mix):
    K, d = mix.means.shape
    assert 1 <= K <= 3 and d in (1, 2, 3) and mix.covs.shape == (K, d, d)
    assert bool((mix.weights > 0).all()) and math.isclose(float(mix.weights.sum()), 1.0,
                                                          rel_tol=1e-12)
    # weights are (u + 0.2) / sum with u in [0, 1): no component below 0.2 / (1.2 K)
    assert float(mix.weights.min()) >= 0.2 / (1.2 * K) - 1e-12
    assert float(mix.means.abs().max()) <= 2.0
    assert torch.equal(mix.covs, mix.covs.transpose(-1, -2))
    eig = torch.linalg.eigvalsh(mix.covs)
    # eigenvalues drawn in [0.05, 2]; Q diag Q^T with a float64 QR moves them by ~1e-15
    assert float(eig.min()) >= 0.05 - 1e-12 and float(eig.max()) <= 2.0 + 1e-12


def test_random_mixture_respects_a_custom_eigenvalue_range_and_seed():
    a = random_mixture(torch.Generator().manual_seed(3), 4, 3, spread=0.5, eig_lo=0.3,
                       eig_hi=0.4)
    b = random_mixture(torch.Generator().manual_seed(3), 4, 3, spread=0.5, eig_lo=0.3,
                       eig_hi=0.4)
    eig = torch.linalg.eigvalsh(a.covs)
    assert float(eig.min()) >= 0.3 - 1e-12 and float(eig.max()) <= 0.4 + 1e-12
    assert float(a.means.abs().max()) <= 0.5
    assert torch.equal(a.means, b.means) and torch.equal(a.covs, b.covs)  # same seed, same ops


@PROFILE
@given(sde=sdes(), seed=st.integers(0, 2 ** 16), lo=st.floats(0.0, 0.5),
       width=st.floats(0.01, 0.5))
def test_times_in_lie_in_the_stated_range(sde, seed, lo, width):
    t = times_in(sde, torch.Generator().manual_seed(seed), 50, lo=lo, hi=lo + width)
    assert t.shape == (50,) and t.dtype == F64
    assert bool((t >= lo * sde.T).all() and (t <= (lo + width) * sde.T).all())


def test_mmd2_is_unbiased_and_separates_distributions():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 2, generator=g, dtype=F64), torch.randn(400, 2, generator=g,
                                                                    dtype=F64)
    same = mmd2(x, y, 1.0)
    shifted = mmd2(x, y + 1.0, 1.0)
    # same distribution: the unbiased estimate is centred on 0 with sd ~ 1 / n (Gretton et
    # al. 2012), so |same| is a few 1e-3; a unit shift gives ~2 (1 - exp(-1/4) / 2) ~ 0.2
    assert abs(same) < 0.02 and shifted > 0.1
    assert math.isclose(mmd2(y, x, 1.0), same, rel_tol=1e-9, abs_tol=1e-12)


def test_sample_cov_bounds_cover_the_true_moments():
    g = torch.Generator().manual_seed(1)
    L = torch.tensor([[1.0, 0.0], [0.6, 0.5]], dtype=F64)
    x = torch.randn(20_000, 2, generator=g, dtype=F64) @ L.T + torch.tensor([1.0, -2.0],
                                                                            dtype=F64)
    m, cov, se_m, se_c = sample_cov_bounds(x)
    assert bool(((m - torch.tensor([1.0, -2.0], dtype=F64)).abs() <= se_m).all())
    assert bool(((cov - L @ L.T).abs() <= se_c).all())
    # and they are 5 standard errors, not vacuous: sd(x_i) / sqrt(n) for a mean, and for a
    # Gaussian variance sd(x_i^2) = sqrt(2) Σ_ii (to the sampling error of the estimate, ~2 %)
    sigma = L @ L.T
    n = x.shape[0]
    torch.testing.assert_close(se_m, 5 * (sigma.diagonal() / n).sqrt(), rtol=0.05, atol=0)
    torch.testing.assert_close(se_c.diagonal(), 5 * math.sqrt(2) * sigma.diagonal() / n ** 0.5,
                               rtol=0.1, atol=0)
