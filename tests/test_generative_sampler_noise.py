"""Noise samplers: per-index draws make a sample independent of its batch; Brownian increments
keep one path per sample when the grid is refined (strong convergence of EM to one solution)."""

import math

import pytest
import torch

from dynamics import VPSDE, GaussianMixture
from generative.samplers import sample
from generative.samplers.noise import BrownianNoise, IndexedNoise
from solvers.errors import InvalidInputError

GM = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [1.5, 1.0]],
                     [[[0.3, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.4]]])
F64 = torch.float64
# The samplers' arithmetic is row-wise; the oracle's score mixes rows only through batched
# matmuls whose per-row results may round differently with the batch size (a few ulp of
# values of size ~10, amplified over <= 20 steps of Lipschitz constant <~ 10): 1e-11 bounds it.
BATCH_TOL = 1e-11


@pytest.mark.parametrize("noise", ["indexed", "brownian"])
@pytest.mark.parametrize("name,kw", [("ddim", dict(eta=1.0)), ("edm_heun", dict(churn=10.0)),
                                     ("em", {}), ("ancestral", {})])
def test_sample_independent_of_batch(noise, name, kw):
    """Sample index 3 is the same drawn alone (batch 1, start = 3) or in a batch of 7."""
    if noise == "brownian" and name == "edm_heun":
        pytest.skip("churn draws at one time: refused by Brownian noise (tested below)")
    sde = VPSDE()
    x7 = sde.prior_sample((7, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    n = 20 if name in ("ddim", "edm_heun") else 200
    a = sample(name, sde, GM.score_fn(sde), x_init=x7, n_steps=n, noise=noise, seed=5, **kw)
    b = sample(name, sde, GM.score_fn(sde), x_init=x7[3:4], n_steps=n, noise=noise, seed=5,
               start=3, **kw)
    assert torch.allclose(a.x[3:4], b.x, rtol=0, atol=BATCH_TOL)
    c = sample(name, sde, GM.score_fn(sde), x_init=x7[3:4], n_steps=n, noise=noise, seed=6,
               start=3, **kw)
    assert (c.x - b.x).abs().max() > 1e-3                          # the seed matters


def test_generator_noise_depends_on_the_batch():
    """Negative control: the default generator noise gives row 3 other draws in a batch of 7."""
    sde = VPSDE()
    x7 = sde.prior_sample((7, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    g = torch.Generator
    a = sample("ddim", sde, GM.score_fn(sde), x_init=x7, n_steps=20, eta=1.0,
               generator=g().manual_seed(1))
    b = sample("ddim", sde, GM.score_fn(sde), x_init=x7[3:4], n_steps=20, eta=1.0,
               generator=g().manual_seed(1))
    assert (a.x[3:4] - b.x).abs().max() > 1e-3


def test_brownian_increments_add_up():
    """Draws over [t, m] and [m, s] scaled by their sqrt-lengths sum to the draw over [t, s]
    (one path): exact up to float64 round-off of the tree's values (~1e-15)."""
    bm = BrownianNoise(seed=3, t_min=0.0, t_max=1.0)
    x = torch.zeros(5, 3, dtype=F64)
    t, m, s = 0.9, 0.55, 0.2
    whole = bm(x, t, s) * math.sqrt(t - s)
    parts = bm(x, t, m) * math.sqrt(t - m) + bm(x, m, s) * math.sqrt(m - s)
    assert torch.allclose(whole, parts, rtol=0, atol=1e-13)
    z = BrownianNoise(seed=3, t_min=0.0, t_max=1.0)(torch.zeros(4000, 1, dtype=F64), 0.9, 0.2)
    # standard normal: mean within 4 standard errors, variance within 4 of its std errors
    assert abs(float(z.mean())) < 4 / math.sqrt(4000)
    assert abs(float(z.var()) - 1) < 4 * math.sqrt(2 / 4000)


def test_brownian_noise_keeps_the_path_when_refined():
    """EM on the reverse SDE with Brownian noise converges strongly to one solution per sample
    as the grid is refined (additive noise: strong order 1); with fresh noise per run the
    difference stays O(1)."""
    sde = VPSDE()
    sf = GM.score_fn(sde)
    x_T = sde.prior_sample((32, 2), generator=torch.Generator().manual_seed(2), dtype=F64)

    def run(n, noise, seed=9):
        return sample("em", sde, sf, x_init=x_T, n_steps=n, noise=noise, seed=seed).x

    def err(x):       # median over samples: a few sit near the boundary between the modes,
        return float((x - ref).square().sum(1).sqrt().median())    # where paths may flip

    ref = run(3200, "brownian")
    errs = [err(run(n, "brownian")) for n in (100, 200, 400)]
    # measured 0.026, 0.0128, 0.0073: order ~1; asserting > 1/2 per doubling on average
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < 0.5 * errs[0], errs
    fresh = err(run(400, "indexed", seed=10))
    assert fresh > 10 * errs[2], (fresh, errs)


def test_indexed_noise_counts_draws():
    """The k-th draw of a run is keyed by k: two draws differ, a new sampler repeats them."""
    x = torch.zeros(3, 2)
    a = IndexedNoise(1)
    z0, z1 = a(x), a(x)
    assert not torch.equal(z0, z1)
    assert torch.equal(IndexedNoise(1)(x), z0)
    assert torch.equal(IndexedNoise(1, start=1)(x[:2]), z0[1:])


def test_noise_errors():
    sde = VPSDE()
    sf = GM.score_fn(sde)
    with pytest.raises(InvalidInputError, match="`noise`"):
        sample("ddim", sde, sf, (2, 2), n_steps=3, eta=1.0, noise="sobol")
    with pytest.raises(InvalidInputError, match="`seed`"):
        sample("ddim", sde, sf, (2, 2), n_steps=3, eta=1.0, noise="indexed", seed=-1)
    with pytest.raises(InvalidInputError, match="`seed` and `start`"):
        sample("ddim", sde, sf, (2, 2), n_steps=3, eta=1.0, seed=1)
    with pytest.raises(InvalidInputError, match="one time"):
        sample("pc", sde, sf, (2, 2), n_steps=100, noise="brownian")
    with pytest.raises(InvalidInputError, match="one time"):
        sample("edm_heun", sde, sf, (2, 2), n_steps=3, churn=5.0, noise="brownian")


def test_counter_normals_are_standard_and_independent():
    """100k draws: mean and variance within 4 standard errors of 0 and 1, fourth moment near
    3, and no correlation between neighbouring rows, counters or elements (|r| < 4/sqrt(n))."""
    from generative.samplers.counter_rng import normals, row_keys
    keys = row_keys(11, range(50_000), torch.device("cpu"))
    z = normals(keys, 0, 2, F64)
    w = normals(keys, 1, 2, F64)
    n = z.numel()
    flat = z.flatten()
    assert abs(float(flat.mean())) < 4 / math.sqrt(n)
    assert abs(float(flat.var()) - 1) < 4 * math.sqrt(2 / n)
    assert abs(float((flat ** 4).mean()) - 3) < 4 * math.sqrt(96 / n)
    lim = 4 / math.sqrt(len(keys))
    for a, b in [(z[1:, 0], z[:-1, 0]), (z[:, 0], z[:, 1]), (z[:, 0], w[:, 0])]:
        assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < lim
    assert torch.equal(normals(keys[7:9], 0, 2, F64), z[7:9])          # keyed, not positional
