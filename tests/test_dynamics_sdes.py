"""Forward SDEs: schedules against Song et al. / DDPM / SMLD / Nichol-Dhariwal / EDM closed
forms, coefficient-kernel consistency, the Fokker-Planck equation for exact mixture marginals
(property test 2), shapes, discretisations, parameterisation adapters and argument errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from dynamics_strategies import F64, SDE_KINDS, default_sde, mixtures, sdes, times_in

import dynamics as D
from solvers.errors import FunctionOutputError, InvalidInputError

SEEDS = st.integers(0, 2 ** 31 - 1)


# --------------------------------------------------------------------------- closed forms

def test_vp_subvp_ve_match_song_et_al_closed_forms():
    t = np.linspace(0.0, 1.0, 11)
    b0, b1 = 0.1, 20.0
    lmc = -0.25 * t ** 2 * (b1 - b0) - 0.5 * t * b0           # score_sde's log mean coeff
    tt = torch.tensor(t, dtype=F64)
    vp, svp, ve = D.VPSDE(b0, b1), D.SubVPSDE(b0, b1), D.VESDE(0.01, 50.0)
    np.testing.assert_allclose(vp.alpha(tt), np.exp(lmc), rtol=1e-13)
    np.testing.assert_allclose(vp.sigma(tt), np.sqrt(1 - np.exp(2 * lmc)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(vp.diffusion_sq(tt), b0 + t * (b1 - b0), rtol=1e-13)
    np.testing.assert_allclose(vp.drift_coef(tt), -0.5 * (b0 + t * (b1 - b0)), rtol=1e-13)
    np.testing.assert_allclose(svp.alpha(tt), np.exp(lmc), rtol=1e-13)
    np.testing.assert_allclose(svp.sigma(tt), 1 - np.exp(2 * lmc), rtol=1e-12, atol=1e-15)
    discount = 1.0 - np.exp(-2 * b0 * t - (b1 - b0) * t ** 2)
    np.testing.assert_allclose(svp.diffusion_sq(tt), (b0 + t * (b1 - b0)) * discount,
                               rtol=1e-12, atol=1e-15)
    sig = 0.01 * (50.0 / 0.01) ** t
    np.testing.assert_allclose(ve.sigma(tt), sig, rtol=1e-13)
    np.testing.assert_allclose(ve.alpha(tt), np.ones_like(t))
    np.testing.assert_allclose(ve.diffusion_sq(tt).sqrt(), sig * np.sqrt(2 * np.log(5000.0)),
                               rtol=1e-13)
    assert ve.prior_std == 50.0 and vp.prior_std == 1.0 and svp.prior_std == 1.0


def test_cosine_matches_nichol_dhariwal_alpha_bar_and_discrete_betas():
    s, N = 0.008, 1000
    sde = D.CosineVPSDE(s=s)
    f = lambda u: np.cos((u + s) / (1 + s) * np.pi / 2) ** 2   # noqa: E731
    i = np.arange(1, N)
    ab = f(i / N) / f(0.0)
    tt = torch.tensor(i / N, dtype=F64)
    keep = i / N <= sde.T
    np.testing.assert_allclose(sde.alpha(tt[keep]) ** 2, ab[keep], rtol=1e-12)
    # discrete beta_i = 1 - ab_i / ab_{i-1} approximates beta(t) / N (midpoint rule, O(1/N^2))
    beta_disc = 1 - f(i / N) / f((i - 1) / N)
    mid = torch.tensor((i - 0.5) / N, dtype=F64)
    beta_cont = sde.beta(mid).numpy() / N
    sel = (beta_disc < 0.02)
    np.testing.assert_allclose(beta_cont[sel], -np.log1p(-beta_disc[sel]), rtol=1e-4)
    # choice documented: T is where beta(t) reaches beta_max = 999
    assert math.isclose(float(sde.beta(torch.tensor(sde.T, dtype=F64))), 999.0, rel_tol=1e-9)
    assert 0.99 < sde.T < 1.0


def test_edm_schedule():
    sde = D.EDMSDE(0.002, 80.0)
    t = torch.tensor([0.002, 1.0, 80.0], dtype=F64)
    torch.testing.assert_close(sde.sigma(t), t)
    torch.testing.assert_close(sde.alpha(t), torch.ones_like(t))
    torch.testing.assert_close(sde.diffusion_sq(t), 2 * t)
    assert sde.T == 80.0 and sde.t_min == 0.002 and sde.prior_std == 80.0


@given(b0=st.floats(0.01, 2.0), db=st.floats(0.0, 30.0), u=st.floats(0.0, 1.0),
       T=st.floats(0.1, 5.0))
@settings(max_examples=30, deadline=None)
def test_T_rescales_time(b0, db, u, T):
    a, b = D.VPSDE(b0, b0 + db, T=T), D.VPSDE(b0, b0 + db, T=1.0)
    u = torch.tensor(u, dtype=F64)
    torch.testing.assert_close(a.alpha(u * T), b.alpha(u), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(a.sigma(u * T), b.sigma(u), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(a.diffusion_sq(u * T) * T, b.diffusion_sq(u))


# --------------------------------------------------------------------------- kernel properties

@given(sde=sdes(), seed=SEEDS)
@settings(max_examples=60, deadline=None)
def test_coefficients_are_the_kernels_derivatives(sde, seed):
    """f = d log alpha/dt and g^2 = d sigma^2/dt - 2 f sigma^2 (autograd), i.e. marginal() is the
    exact transition law of dx = f x dt + g dw up to the sigma(0) offset."""
    t = times_in(sde, torch.Generator().manual_seed(seed), 16, 0.01, 1.0).requires_grad_(True)
    la = sde._log_alpha(t)
    s2 = torch.exp(2 * sde._log_sigma(t))
    (dla,) = torch.autograd.grad(la.sum(), t)
    (ds2,) = torch.autograd.grad(s2.sum(), t)
    f, g2 = sde.drift_coef(t.detach()), sde.diffusion_sq(t.detach())
    torch.testing.assert_close(f, dla, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g2, ds2 - 2 * f * s2.detach(), rtol=1e-9, atol=1e-12)
    assert bool((g2 > 0).all())


@given(sde=sdes(), seed=SEEDS)
@settings(max_examples=60, deadline=None)
def test_log_snr_roundtrip_and_monotone(sde, seed):
    t = times_in(sde, torch.Generator().manual_seed(seed), 32, 0.01, 1.0)
    l = sde.log_snr(t)
    torch.testing.assert_close(sde.t_from_log_snr(l), t, rtol=1e-8, atol=1e-10 * sde.T)
    torch.testing.assert_close(l, torch.log(sde.alpha(t) ** 2 / sde.sigma(t) ** 2))
    ts = torch.linspace(0.01, 1.0, 200, dtype=F64) * sde.T
    assert bool((sde.log_snr(ts).diff() < 0).all())


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_limits_at_zero_and_prior_at_T(kind):
    sde = default_sde(kind)
    t0 = torch.tensor(0.0, dtype=F64)
    assert float(sde.alpha(t0)) == 1.0
    sig0 = 0.01 if kind == "ve" else 0.0
    assert math.isclose(float(sde.sigma(t0)), sig0, abs_tol=1e-15)
    tiny = torch.tensor(1e-10 * sde.T, dtype=F64)
    assert abs(float(sde.alpha(tiny)) - 1.0) < 1e-6
    assert abs(float(sde.sigma(tiny)) - sig0) < 1e-4
    # continuity: small steps move alpha and sigma by small amounts
    ts = torch.linspace(0, 1, 10001, dtype=F64) * sde.T
    a, s = sde.alpha(ts), sde.sigma(ts)
    assert float(a.diff().abs().max()) < 1e-2 and float(s.diff().abs().max()) < 1e-2 * max(
        1.0, sde.prior_std)
    # p_T(. | x0) is close to the prior for |x0| <= 1: KL per dimension < 1e-3
    m, sT, p = float(sde.alpha(sde.T)), float(sde.sigma(sde.T)), sde.prior_std
    kl = math.log(p / sT) + (sT ** 2 + m ** 2) / (2 * p ** 2) - 0.5
    assert 0 <= kl < 1e-3


@pytest.mark.parametrize("kind", SDE_KINDS)
def test_shapes_images_and_per_sample_times(kind):
    sde = default_sde(kind)
    x = torch.randn(3, 2, 4, 5, dtype=F64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=F64) * sde.T
    mean, std = sde.marginal(x, t)
    assert mean.shape == x.shape and std.shape == (3, 1, 1, 1)
    mean2, std2 = sde.marginal(x, 0.5 * sde.T)
    assert std2.shape == (3, 1, 1, 1)
    torch.testing.assert_close(std2[1], std[1])
    t0 = torch.tensor(0.5 * sde.T, dtype=F64)
    assert sde.f(t0, x).shape == x.shape and sde.g(t0, x).shape == x.shape
    assert sde.f(t, x).shape == x.shape and sde.g(t, x).shape == x.shape
    torch.testing.assert_close(sde.g(t, x)[1], sde.g(t0, x)[1])
    assert (sde.noise_type, sde.sde_type) == ("diagonal", "ito")
    fn, gn = sde.discretize(x, t, 1e-3 * sde.T)
    assert fn.shape == x.shape and gn.shape == x.shape
    z = sde.prior_sample((3, 2, 4, 5), generator=torch.Generator().manual_seed(0), dtype=F64)
    assert z.shape == x.shape and z.dtype == F64
    lp = sde.prior_logp(z)
    ref = torch.distributions.Normal(0.0, sde.prior_std).log_prob(z).flatten(1).sum(1)
    assert lp.shape == (3,)
    torch.testing.assert_close(lp, ref)
    xt, noise = sde.perturb(x, t, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(xt, mean + std * noise)
    torch.testing.assert_close(sde.kernel_score(xt, x, t), -noise / std)
    # float32 follows the input
    m32, s32 = sde.marginal(x.float(), 0.3 * sde.T)
    assert m32.dtype == torch.float32 and s32.dtype == torch.float32


@given(sde=sdes(), mix=mixtures(), seed=SEEDS)
@settings(max_examples=60, deadline=None)
def test_fokker_planck_exact_marginal(sde, mix, seed):
    """Property 2: d/dt log p = -d f - f x.s + g^2/2 (div s + |s|^2) for the exact p_t, which is
    the Fokker-Planck equation dp/dt = -div(f x p) + g^2/2 Lap p divided by p."""
    gen = torch.Generator().manual_seed(seed)
    B, d = 8, mix.dim
    t = times_in(sde, gen, B, 0.02, 1.0)
    x = mix.marginal_sample(sde, t, B, gen)
    x = (x + 0.5 * torch.randn(x.shape, generator=gen, dtype=F64)).requires_grad_(True)
    t = t.clone().requires_grad_(True)
    logp = mix.marginal_log_prob(sde, x, t)
    s, dlogp_dt = torch.autograd.grad(logp.sum(), (x, t), create_graph=True)
    div = sum(torch.autograd.grad(s[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(d))
    td = t.detach()
    f, g2 = sde.drift_coef(td), sde.diffusion_sq(td)
    xs, ss = (x * s).sum(-1), (s * s).sum(-1)
    terms = [-d * f, -f * xs, 0.5 * g2 * div, 0.5 * g2 * ss]
    rhs = sum(terms)
    scale = sum(a.abs() for a in terms) + dlogp_dt.abs()
    err = (dlogp_dt - rhs).abs()
    assert bool((err <= 1e-9 * scale + 1e-12).all()), (err / scale).max()
    torch.testing.assert_close(s, mix.marginal_score(sde, x.detach(), td), rtol=1e-9, atol=1e-10)


# --------------------------------------------------------------------------- discretisations

def test_vp_discretize_reproduces_ddpm():
    sde, N = D.VPSDE(0.1, 20.0), 1000
    ts = torch.linspace(0.0, 1.0, N, dtype=F64)
    x = torch.ones(N, 1, dtype=F64)
    f, g = sde.discretize(x, ts, 1.0 / N)
    betas = g[:, 0] ** 2
    ddpm = torch.linspace(1e-4, 0.02, N, dtype=F64)
    torch.testing.assert_close(betas, ddpm, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(1.0 + f[:, 0], torch.sqrt(1.0 - ddpm))
    alpha_bar = torch.cumprod(1.0 - ddpm, 0)
    # DDPM's alpha-bar vs the continuous alpha(t)^2 = exp(-int_0^t beta): the log difference is
    # at most the Riemann error |sum_j beta_j - int beta| plus sum_j (-log(1 - beta_j) - beta_j)
    diff = (torch.log(alpha_bar) - 2 * torch.log(sde.alpha(ts))).abs()
    integral = 0.1 * ts + 0.5 * 19.9 * ts ** 2                 # int_0^t beta, closed form
    riemann = (ddpm.cumsum(0) - integral).abs()
    higher = (-torch.log1p(-ddpm) - ddpm).cumsum(0)
    assert bool((diff <= riemann + higher + 1e-12).all())
    assert float(diff.max()) < 0.07


def test_ve_discretize_reproduces_smld_geometric_sigmas():
    sde, N = D.VESDE(0.01, 50.0), 10
    ts = torch.linspace(0.0, 1.0, N, dtype=F64)
    x = torch.zeros(N, 2, dtype=F64)
    f, g = sde.discretize(x, ts, 1.0 / (N - 1))
    sig = torch.exp(torch.linspace(math.log(0.01), math.log(50.0), N, dtype=F64))
    prev = torch.cat([torch.zeros(1, dtype=F64), sig[:-1]])
    torch.testing.assert_close(g[:, 0], torch.sqrt(sig ** 2 - prev ** 2), rtol=1e-12, atol=0)
    assert float(f.abs().max()) == 0.0


@pytest.mark.parametrize("kind", ["subvp", "edm"])
def test_default_discretize_is_euler_maruyama(kind):
    sde = default_sde(kind)
    x = torch.randn(4, 3, dtype=F64)
    t, dt = 0.3 * sde.T, 1e-2 * sde.T
    f, g = sde.discretize(x, t, dt)
    torch.testing.assert_close(f, sde.f(t, x) * dt)
    torch.testing.assert_close(g, sde.g(t, x) * math.sqrt(dt))


def test_reverse_discretize_is_reverse_diffusion():
    sde = D.VPSDE()
    x = torch.randn(5, 2, dtype=F64)
    score = lambda y, t: -y * (1 + t[:, None])              # noqa: E731
    rsde = sde.reverse(score)
    f, g = sde.discretize(x, 0.4, 1e-3)
    rf, rg = rsde.discretize(x, 0.4, 1e-3)
    torch.testing.assert_close(rf, f - g ** 2 * score(x, torch.full((5,), 0.4, dtype=F64)))
    torch.testing.assert_close(rg, g)


def test_reverse_and_probability_flow_fields():
    sde = D.SubVPSDE()
    seen = []

    def score(y, t):
        seen.append(t.shape)
        return -y / (1 + t[:, None])

    x = torch.randn(6, 3, dtype=F64)
    t0 = torch.tensor(0.3, dtype=F64)
    tb = torch.full((6,), 0.3, dtype=F64)
    rsde, pf = sde.reverse(score), sde.probability_flow(score)
    g2 = sde.diffusion_sq(t0)
    torch.testing.assert_close(rsde.f(t0, x), sde.f(t0, x) - g2 * score(x, tb))
    torch.testing.assert_close(rsde.g(t0, x), sde.g(t0, x))
    torch.testing.assert_close(pf(t0, x), sde.f(t0, x) - 0.5 * g2 * score(x, tb))
    # per-sample (B,) times as in odeint's per_sample mode
    tv = torch.linspace(0.1, 0.9, 6, dtype=F64)
    expected = sde.drift_coef(tv)[:, None] * x - 0.5 * sde.diffusion_sq(tv)[:, None] * score(x, tv)
    torch.testing.assert_close(pf(tv, x), expected)
    assert all(s == (6,) for s in seen)
    assert (rsde.noise_type, rsde.sde_type) == ("diagonal", "ito")
    with pytest.raises(FunctionOutputError, match="score_fn"):
        sde.probability_flow(lambda y, t: y[:, :1])(t0, x)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3, dtype=F64)

        def forward(self, y, t):
            return self.lin(y) * t[:, None]

    net = Net()
    assert len(list(sde.probability_flow(lambda y, t: net(y, t)).parameters())) == 0
    assert len(list(sde.probability_flow(net).parameters())) == 2
    assert len(list(sde.reverse(D.ScoreAdapter(net, sde, "noise")).parameters())) == 2


# --------------------------------------------------------------------------- parameterisations

@given(sde=sdes(), seed=SEEDS)
@settings(max_examples=40, deadline=None)
def test_parameterisations_of_a_point_mass(sde, seed):
    """For data = one point x0 the true score at x_t = alpha x0 + sigma eps is -eps/sigma, so
    every conversion must return the true eps, x0 and v = alpha eps - sigma x0."""
    gen = torch.Generator().manual_seed(seed)
    B, d = 16, 3
    t = times_in(sde, gen, B, 0.05, 0.95)
    x0 = torch.randn(B, d, generator=gen, dtype=F64)
    eps = torch.randn(B, d, generator=gen, dtype=F64)
    a, s = sde.alpha(t)[:, None], sde.sigma(t)[:, None]
    xt = a * x0 + s * eps
    score = -eps / s
    v = a * eps - s * x0
    for pred, val in (("noise", eps), ("x0", x0), ("v", v), ("score", score)):
        torch.testing.assert_close(D.to_score(val, xt, t, sde, pred), score, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(D.from_score(score, xt, t, sde, pred), val,
                                   rtol=1e-7, atol=1e-7 * float(1 + xt.abs().max()))
    adapter = D.ScoreAdapter(lambda x, tt: (x - a * x0) / s, sde, "noise")
    torch.testing.assert_close(adapter(xt, t), score)
    with pytest.raises(InvalidInputError, match="prediction"):
        D.ScoreAdapter(lambda x, tt: x, sde, "epsilon")


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("make, arg", [
    (lambda: D.VESDE(sigma_min=1.0, sigma_max=1.0), "sigma_min"),
    (lambda: D.VESDE(sigma_min=2.0, sigma_max=1.0), "sigma_min"),
    (lambda: D.VESDE(sigma_min=-1.0), "sigma_min"),
    (lambda: D.VPSDE(beta_min=0.0), "beta_min"),
    (lambda: D.VPSDE(beta_min=-0.1), "beta_min"),
    (lambda: D.VPSDE(beta_max=-1.0), "beta_max"),
    (lambda: D.VPSDE(beta_min=2.0, beta_max=1.0), "beta_max"),
    (lambda: D.SubVPSDE(beta_min=float("nan")), "beta_min"),
    (lambda: D.VPSDE(T=0.0), "T"),
    (lambda: D.VPSDE(t_min=1.0), "t_min"),
    (lambda: D.CosineVPSDE(T=1.0), "T"),
    (lambda: D.CosineVPSDE(s=0.0), "s"),
    (lambda: D.EDMSDE(sigma_min=80.0, sigma_max=0.002), "sigma_min"),
    (lambda: D.VPSDE().marginal(torch.zeros(2, 2), 1.5), "t"),
    (lambda: D.VPSDE().marginal(torch.zeros(2, 2), torch.tensor([0.5, -0.1])), "t"),
    (lambda: D.VESDE().alpha(-0.5), "t"),
    (lambda: D.EDMSDE().marginal(torch.zeros(2, 2), 81.0), "t"),
    (lambda: D.VPSDE().marginal(torch.zeros(2, 2), torch.tensor([0.1, 0.2, 0.3])), "t"),
    (lambda: D.VPSDE().marginal(torch.zeros(2, 2, dtype=torch.long), 0.5), "x0"),
    (lambda: D.VPSDE().prior_logp([1.0]), "z"),
    (lambda: D.VPSDE().reverse("not callable"), "score_fn"),
])
def test_bad_arguments_raise_naming_the_argument(make, arg):
    with pytest.raises(InvalidInputError, match=f"`{arg}`") as info:
        make()
    assert isinstance(info.value, ValueError)


def test_float32_roundtrip_and_repr():
    sde = D.VPSDE()
    x = torch.randn(4, 2)
    mean, std = sde.marginal(x, 0.5)
    assert mean.dtype == torch.float32
    short = D.VPSDE(T=0.3)                      # float32(0.3) > 0.3: still accepted as t = T
    assert float(torch.tensor(short.T, dtype=torch.float32)) > short.T
    short.marginal(x, torch.full((4,), short.T, dtype=torch.float32))
    with pytest.raises(InvalidInputError, match="`t`"):
        short.marginal(x, torch.full((4,), 0.3001, dtype=torch.float32))
    assert "VPSDE(beta_min=0.1" in repr(sde)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", SDE_KINDS)
def test_cuda_follows_input_device(kind):
    from dynamics_strategies import random_mixture
    sde = default_sde(kind)
    mix = random_mixture(torch.Generator().manual_seed(0), 2, 3)
    x = torch.randn(16, 3, dtype=F64)
    t = torch.linspace(0.1, 0.9, 16, dtype=F64) * sde.T
    xc, tc = x.cuda(), t.cuda()
    mean, std = sde.marginal(xc, tc)
    assert mean.is_cuda and std.is_cuda
    torch.testing.assert_close(std.cpu(), sde.marginal(x, t)[1])
    pf = sde.probability_flow(mix.score_fn(sde))
    torch.testing.assert_close(pf(tc, xc).cpu(), pf(t, x))
    rsde = sde.reverse(mix.score_fn(sde))
    t0 = torch.tensor(0.5 * sde.T, dtype=F64)
    torch.testing.assert_close(rsde.f(t0.cuda(), xc).cpu(), rsde.f(t0, x))
    assert rsde.g(t0.cuda(), xc).is_cuda
    z = sde.prior_sample((4, 3), device="cuda", dtype=F64)
    assert z.is_cuda and sde.prior_logp(z).is_cuda
