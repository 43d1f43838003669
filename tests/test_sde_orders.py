"""Strong and weak convergence orders of the SDE methods (float64, shared Brownian paths).

Strong orders are fitted by least squares on log(error) vs log(dt) over dt = 2^-3 .. 2^-8,
all step sizes sharing one `BrownianInterval` path per sample, against closed-form solutions.
"""
import math

import pytest
import torch

from solvers import BrownianInterval, sdeint

F64 = torch.float64
DTS = [2.0 ** -k for k in range(3, 9)]


def fitted_order(dts, errs):
    x = torch.log(torch.tensor(dts))
    y = torch.log(torch.tensor(errs))
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


class GBM:
    """dY = mu Y dt + sig Y dW (Itô) or its Stratonovich form.

    Y_T = Y0 exp((mu - sig²/2) T + sig W_T)."""

    noise_type = "diagonal"

    def __init__(self, sde_type="ito", mu=0.5, sig=0.8):
        self.sde_type, self.mu, self.sig = sde_type, mu, sig

    def f(self, t, y):
        return (self.mu if self.sde_type == "ito" else self.mu - 0.5 * self.sig ** 2) * y

    def g(self, t, y):
        return self.sig * y

    def exact(self, y0, w):
        return y0 * torch.exp((self.mu - 0.5 * self.sig ** 2) + self.sig * w)


class Atan:
    """dY = -a² sin Y cos³ Y dt + a cos² Y dW (Itô, diagonal, nonlinear g).

    Y_T = atan(a W_T + tan Y0)."""

    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, a):
        self.a = a

    def f(self, t, y):
        return -self.a ** 2 * torch.sin(y) * torch.cos(y) ** 3

    def g(self, t, y):
        return self.a * torch.cos(y) ** 2

    def exact(self, y0, w):
        return torch.atan(self.a * w + torch.tan(y0))


def strong_errors(sde, method, d=1, B=2000, options=None, seed=1, levy="space-time"):
    bm = BrownianInterval(0.0, 1.0, (B, d), dtype=F64, entropy=seed,
                          levy_area_approximation=levy)
    y0 = torch.full((B, d), 0.7, dtype=F64)
    exact = sde.exact(y0, bm(0.0, 1.0))
    errs = []
    for dt in DTS:
        ys = sdeint(sde, y0, [0.0, 1.0], bm=bm, method=method, dt=dt, options=options)
        errs.append((ys[-1] - exact).abs().mean().item())
    return errs


@pytest.mark.parametrize("sde,method,options,order", [
    (GBM(), "euler", None, 0.5),
    (GBM(), "milstein", None, 1.0),
    (GBM(), "milstein", {"grad_free": True}, 1.0),
    (GBM("stratonovich"), "milstein", None, 1.0),
    (GBM("stratonovich"), "heun", None, 1.0),
    (GBM("stratonovich"), "midpoint", None, 1.0),
    (GBM(), "srk", None, 1.5),
], ids=["euler", "milstein", "milstein-grad-free", "milstein-strat", "heun-strat", "midpoint",
        "srk-gbm"])
def test_strong_order_gbm(sde, method, options, order):
    errs = strong_errors(sde, method, options=options)
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert abs(fitted_order(DTS, errs) - order) <= 0.2, (fitted_order(DTS, errs), errs)


@pytest.mark.parametrize("method,levy", [("euler_heun", "none"), ("log_ode", "foster")])
def test_strong_order_stratonovich_commutative(method, levy):
    # diagonal noise is commutative: the Lévy area term of log_ode vanishes, both are order 1
    errs = strong_errors(GBM("stratonovich"), method, levy=levy)
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert abs(fitted_order(DTS, errs) - 1.0) <= 0.2, (fitted_order(DTS, errs), errs)


def test_strong_order_srk_diagonal_nonlinear():
    sde = Atan(torch.tensor([0.5, 1.0], dtype=F64))
    errs = strong_errors(sde, "srk", d=2)
    p = fitted_order(DTS, errs)
    assert p >= 1.3 and abs(p - 1.5) <= 0.2, (p, errs)


class OUAdditive:
    """dY = -Θ Y dt + S dW with Θ diagonal and S a full 2x2 matrix (additive noise, m = 2)."""

    noise_type, sde_type = "additive", "ito"

    def __init__(self):
        self.theta = torch.tensor([0.8, 2.0], dtype=F64)
        self.S = torch.tensor([[0.6, 0.3], [-0.2, 0.9]], dtype=F64)

    def f(self, t, y):
        return -self.theta * y

    def g(self, t, y):
        return self.S.expand(y.shape[0], 2, 2)


def ou_reference(sde, y0, bm, n_fine):
    """OU solution at T=1 given the path: exact recursion over a fine grid, the stochastic
    integral ∫ e^{-θ(b-s)} dW projected on the fine step's (ΔW, U) (error O(h_fine²))."""
    h = 1.0 / n_fine
    th = sde.theta
    a = torch.exp(-th * h)
    i0 = (1 - a) / th                                  # ∫_0^h e^{-θu} du   = Cov(X, ΔW)
    i1 = (1 - a * (1 + th * h)) / th ** 2              # ∫_0^h u e^{-θu} du = Cov(X, U)
    det = h * h ** 3 / 3 - (h ** 2 / 2) ** 2
    c1 = (i0 * h ** 3 / 3 - i1 * h ** 2 / 2) / det
    c2 = (-i0 * h ** 2 / 2 + i1 * h) / det
    y = y0
    for k in range(n_fine):
        dw, u = bm(k * h, (k + 1) * h, return_U=True)
        noise = torch.einsum("ij,bj->bi", sde.S, dw) * c1 + torch.einsum("ij,bj->bi", sde.S, u) * c2
        y = a * y + noise
    return y


def test_strong_order_srk_additive_ou():
    sde = OUAdditive()
    B = 1000
    bm = BrownianInterval(0.0, 1.0, (B, 2), dtype=F64, entropy=3,
                          levy_area_approximation="space-time")
    y0 = torch.full((B, 2), 1.0, dtype=F64)
    ref = ou_reference(sde, y0, bm, 2 ** 11)
    dts = [2.0 ** -k for k in range(1, 6)]
    errs = [(sdeint(sde, y0, [0.0, 1.0], bm=bm, method="srk", dt=dt)[-1] - ref).abs().mean().item()
            for dt in dts]
    p = fitted_order(dts, errs)
    # Linear drift + constant additive noise: every remainder term of Itô–Taylor order 1.5 and 2
    # vanishes (they carry f'' or derivatives of g) and the drift part of SRA1 is second order,
    # so theory gives order 2 on this problem (the criterion is >= 1.4).
    assert p >= 1.4 and abs(p - 2.0) <= 0.2, (p, errs)
    # Euler-Maruyama on the same path has strong order 1 for additive noise: much larger errors.
    em = (sdeint(sde, y0, [0.0, 1.0], bm=bm, method="euler", dt=dts[-1])[-1] - ref).abs().mean()
    assert em > 5 * errs[-1]


class OUDiag:
    noise_type, sde_type = "diagonal", "ito"
    theta, sigma = 2.0, 0.5

    def f(self, t, y):
        return -self.theta * y

    def g(self, t, y):
        return torch.full_like(y, self.sigma)


def test_weak_order_euler_ou():
    """EM mean/variance of OU at t=1: equal to the discrete EM recursion within Monte-Carlo
    error, and their distance to the analytic Gaussian kernel shrinks like O(dt)."""
    sde = OUDiag()
    th, s, y0v, N = sde.theta, sde.sigma, 2.0, 200_000
    y0 = torch.full((N, 1), y0v, dtype=F64)
    mean_true = y0v * math.exp(-th)
    var_true = s ** 2 * (1 - math.exp(-2 * th)) / (2 * th)
    bias = []
    for i, dt in enumerate([0.2, 0.1, 0.05]):
        n = round(1 / dt)
        yT = sdeint(sde, y0, [0.0, 1.0], method="euler", dt=dt, options={"seed": 10 + i})[-1]
        m, v = yT.mean().item(), yT.var().item()
        r = 1 - th * dt
        mean_em = y0v * r ** n
        var_em = s ** 2 * dt * (1 - r ** (2 * n)) / (1 - r * r)
        assert abs(m - mean_em) < 5 * math.sqrt(var_em / N)
        assert abs(v - var_em) < 5 * var_em * math.sqrt(2 / N)
        bias.append((abs(m - mean_true), abs(v - var_true)))
    for j in range(2):
        ratios = [bias[i][j] / bias[i + 1][j] for i in range(2)]
        assert all(1.6 < q < 2.6 for q in ratios), (j, bias)   # halving dt halves the bias


class NonlinearAdditive:
    """dY = (sin Y - Y) dt + S dW: additive noise with a nonlinear drift (SRA1 order 1.5)."""

    noise_type, sde_type = "additive", "ito"
    S = torch.tensor([[0.6, 0.3], [-0.2, 0.9]], dtype=F64)

    def f(self, t, y):
        return torch.sin(3 * y) - y

    def g(self, t, y):
        return self.S.expand(y.shape[0], 2, 2)


def test_strong_order_srk_additive_nonlinear():
    """No closed form: the reference is srk itself at dt = 2^-10 on the same path."""
    sde, B = NonlinearAdditive(), 500
    bm = BrownianInterval(0.0, 1.0, (B, 2), dtype=F64, entropy=4,
                          levy_area_approximation="space-time")
    y0 = torch.full((B, 2), 0.5, dtype=F64)
    ref = sdeint(sde, y0, [0.0, 1.0], bm=bm, method="srk", dt=2.0 ** -10)[-1]
    dts = [2.0 ** -k for k in range(3, 8)]
    errs = [(sdeint(sde, y0, [0.0, 1.0], bm=bm, method="srk", dt=dt)[-1] - ref).abs().mean().item()
            for dt in dts]
    p = fitted_order(dts, errs)
    assert abs(p - 1.5) <= 0.2, (p, errs)
