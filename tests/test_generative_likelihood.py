"""Likelihood through the probability-flow ODE against the exact GaussianMixture density."""
import math

import pytest
import torch

from dynamics import VESDE, VPSDE, GaussianMixture
from generative.likelihood import bits_per_dim, log_likelihood
from solvers.errors import InvalidInputError

GM = GaussianMixture(torch.tensor([0.3, 0.7], dtype=torch.float64),
                     [[-2.0, 0.0], [1.5, 1.0]],
                     [[[0.3, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.4]]])
SDES = {"vp": lambda: VPSDE(), "ve": lambda: VESDE(sigma_max=10.0)}


def _setup(name, n=64, seed=0):
    sde = SDES[name]()
    x = GM.marginal_sample(sde, sde.t_min, n, torch.Generator().manual_seed(seed)).double()
    exact = GM.marginal_log_prob(sde, x, sde.t_min)

    def p_T(z):                      # the exact p_T isolates the ODE error from the prior's
        return GM.marginal_log_prob(sde, z, sde.T)
    return sde, x, exact, p_T


@pytest.mark.parametrize("name", sorted(SDES))
@pytest.mark.parametrize("method,opts", [("dopri5", {}), ("tsit5", {"per_sample": True}),
                                         ("rk4", {"step_size": 0.01})])
def test_exact_divergence_matches_mixture_density(name, method, opts):
    sde, x, exact, p_T = _setup(name)
    res = log_likelihood(sde, GM.score_fn(sde), x, method=method, prior_logp=p_T, **opts)
    lp, stats = res.logp, res.stats
    assert lp.shape == (64,) and res.nfe == float(torch.as_tensor(stats["nfe"]).double().mean())
    D = 2
    bpd_err = (lp - exact).abs() / (D * math.log(2))
    assert bpd_err.max() < 0.01
    assert (torch.as_tensor(stats["nfe"]) >= 1).all()


def test_bits_per_dim_with_default_prior_and_dequantisation():
    # beta_max = 30 makes alpha(T) ~ 5e-4, so the default prior N(0, I) is p_T to ~1e-3 bpd
    # (with beta_max = 20 the prior mismatch alone is ~0.013 bpd for this mixture).
    sde = VPSDE(beta_max=30.0)
    x = GM.marginal_sample(sde, sde.t_min, 64, torch.Generator().manual_seed(0)).double()
    exact = GM.marginal_log_prob(sde, x, sde.t_min)
    bpd = bits_per_dim(sde, GM.score_fn(sde), x)
    exact_bpd = -exact / (2 * math.log(2))
    assert (bpd - exact_bpd).abs().max() < 0.01
    bpd_q = bits_per_dim(sde, GM.score_fn(sde), x, bin_width=1 / 8)
    assert torch.allclose(bpd_q, bpd + 3.0, atol=1e-9)   # data.py: - log2(bin width)


def test_image_shaped_input_under_no_grad():
    """(B, C, H, W) data (here 1x1x2) inside torch.no_grad gives the same log-density."""
    sde, x, exact, p_T = _setup("ve", n=8)
    sf = GM.score_fn(sde)
    with torch.no_grad():
        lp = log_likelihood(sde, sf, x.reshape(8, 1, 1, 2),
                            prior_logp=lambda z: p_T(z.reshape(8, 2))).logp
    assert lp.shape == (8,)
    assert (lp - exact).abs().max() / (2 * math.log(2)) < 0.01


def test_hutchinson_is_unbiased():
    """One point repeated 400 times: every row gets its own probe (fixed during the solve)."""
    sde, x, exact, p_T = _setup("vp", n=1, seed=3)
    xs = x.expand(400, 2).contiguous()
    lp = log_likelihood(sde, GM.score_fn(sde), xs, divergence_method="hutchinson",
                        prior_logp=p_T, generator=torch.Generator().manual_seed(0),
                        rtol=1e-4, atol=1e-4).logp
    se = lp.std() / math.sqrt(400)
    assert lp.std() > 1e-3                                # it really is stochastic
    assert abs(float(lp.mean() - exact[0])) < 4 * float(se) + 1e-3
    lp2 = log_likelihood(sde, GM.score_fn(sde), xs, divergence_method="hutchinson",
                         prior_logp=p_T, generator=torch.Generator().manual_seed(0),
                         rtol=1e-4, atol=1e-4).logp
    assert torch.equal(lp, lp2)                           # reproducible from the generator


def test_bad_input_errors():
    sde, x, _, _ = _setup("vp", n=4)
    sf = GM.score_fn(sde)
    with pytest.raises(InvalidInputError, match="divergence_method"):
        log_likelihood(sde, sf, x, divergence_method="trace")
    with pytest.raises(InvalidInputError, match="`x`"):
        log_likelihood(sde, sf, x[0])
    with pytest.raises(InvalidInputError, match="`sde`"):
        log_likelihood("vp", sf, x)
    with pytest.raises(InvalidInputError, match="score_fn"):
        log_likelihood(sde, None, x)
    with pytest.raises(InvalidInputError, match="t_min"):
        log_likelihood(sde, sf, x, t_min=2.0)
    with pytest.raises(InvalidInputError, match="bin_width"):
        bits_per_dim(sde, sf, x, bin_width=0.0)
    with pytest.raises(InvalidInputError, match="method"):
        log_likelihood(sde, sf, x, method="nope")
