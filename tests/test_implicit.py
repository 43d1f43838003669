"""Implicit methods (solvers.implicit): orders, stiff accuracy, per-sample rows, Newton
failure, Jacobians, dense output and gradients (implicit function theorem, checkpoint,
backsolve), all in float64."""
from __future__ import annotations

import math

import pytest
import torch

from solvers import (MaxStepsExceededError, NewtonFailureError, InvalidInputError,
                     IMPLICIT_METHODS, implicit_method, odeint, solve_ode)

DT = torch.float64


def oscillator(t, y):
    """A non-stiff, nonlinear, non-autonomous field (Duffing-like)."""
    return torch.stack([y[..., 1], -y[..., 0] + 0.1 * torch.sin(t) * y[..., 1]
                        - 0.5 * y[..., 0] ** 3], -1)


Y_OSC = torch.tensor([1.0, 0.5], dtype=DT)
T_OSC = torch.tensor([0.0, 2.0], dtype=DT)


@pytest.fixture(scope="module")
def osc_reference():
    return solve_ode(oscillator, Y_OSC, T_OSC, method="dopri8", rtol=1e-13, atol=1e-14).ys[-1]


# --------------------------------------------------------------------------- orders

@pytest.mark.parametrize("name", sorted(IMPLICIT_METHODS))
def test_order_by_refinement(name, osc_reference):
    """Global error on steps 2/20 and 2/40: log2 of the ratio is the order (±0.25). The
    errors (>= 1e-10) stay far above the Newton tolerance (rtol 1e-13 -> ~1e-14)."""
    errs = []
    for n in (20, 40):
        sol = solve_ode(oscillator, Y_OSC, T_OSC, method=name, step_size=2.0 / n,
                        rtol=1e-13, atol=1e-14)
        errs.append(float((sol.ys[-1] - osc_reference).norm()))
    order = math.log2(errs[0] / errs[1])
    assert abs(order - IMPLICIT_METHODS[name].order) <= 0.25, (name, errs, order)


# --------------------------------------------------------------------------- stiff accuracy

LAM = torch.tensor([-1.0, -1e2, -1e4, -1e6], dtype=DT)
_Q = torch.linalg.qr(torch.randn(4, 4, dtype=DT, generator=torch.Generator().manual_seed(0)))[0]
A_STIFF = _Q @ torch.diag(LAM) @ _Q.T


def _g(t):
    return torch.stack([torch.cos(t), torch.sin(t), torch.cos(2 * t), 1 + 0 * t], -1)


def _dg(t):
    return torch.stack([-torch.sin(t), torch.cos(t), -2 * torch.sin(2 * t), 0 * t], -1)


def stiff_linear(t, y):
    """y' = A (y - g(t)) + g'(t): y(t) = g(t) + exp(A t)(y0 - g(0)), eigenvalues of A from
    -1 to -1e6 (a non-normal-free, rotated diagonal A)."""
    return (y - _g(t)) @ A_STIFF.T + _dg(t)


Y_STIFF = torch.tensor([2.0, -1.0, 0.5, 3.0], dtype=DT)
T_STIFF = torch.linspace(0, 1, 6, dtype=DT)


def stiff_exact(t, y0=Y_STIFF):
    return _g(t) + torch.stack([torch.linalg.matrix_exp(A_STIFF * ti) @ (y0 - _g(t[0]))
                                for ti in t])


@pytest.mark.parametrize("name", ["kvaerno3", "kvaerno4", "kvaerno5", "rodas4"])
def test_adaptive_stiff_accuracy(name):
    """At rtol 1e-6 the global error stays within 10 rtol max|y| (the local control keeps
    each step's error below rtol; the stiff modes are damped, not accumulated), in a few
    hundred steps (an explicit method needs ~1e6 for stability alone)."""
    sol = solve_ode(stiff_linear, Y_STIFF, T_STIFF, method=name, rtol=1e-6, atol=1e-8)
    err = float((sol.ys - stiff_exact(T_STIFF)).abs().max())
    assert err <= 10 * 1e-6 * 3.0, err
    assert int(sol.stats["n_steps"]) < 1000
    assert int(sol.stats["n_jac"]) >= 1 and int(sol.stats["n_lu"]) >= 1


@pytest.mark.parametrize("name", ["implicit_euler", "sdirk2", "trbdf2", "radauIIA3",
                                  "radauIIA5"])
def test_l_stable_fixed_steps_damp_stiff_modes(name):
    """Fixed step 0.05 (h λ down to -5e4): L-stable methods damp the stiff transients, so
    the error is the method's error on the slow part, O(h^p) (bound 0.1 h for order 1)."""
    sol = solve_ode(stiff_linear, Y_STIFF, T_STIFF, method=name, step_size=0.05)
    err = float((sol.ys[1:] - stiff_exact(T_STIFF)[1:]).abs().max())
    assert err <= 0.1 * 0.05 ** IMPLICIT_METHODS[name].order * 20, err


# --------------------------------------------------------------------------- per sample

MU = torch.tensor([1.0, 30.0, 1e3, 1e4], dtype=DT)


def vdp_rows(mu):
    def f(t, y):
        return torch.stack([y[:, 1], mu * ((1 - y[:, 0] ** 2) * y[:, 1]) - y[:, 0]], -1)
    return f


@pytest.mark.parametrize("name", ["kvaerno5", "rodas4"])
def test_per_sample_equals_row_by_row(name):
    """Each row of a per-sample solve (Van der Pol, μ from 1 to 1e4 per row) takes its own
    steps: the batch equals each row solved alone up to the Newton tolerance and the
    shared-Jacobian refresh (different J staleness): a few rtol."""
    y0 = torch.tensor([[2.0, 0.0]], dtype=DT).repeat(4, 1)
    t = torch.tensor([0.0, 1.0], dtype=DT)
    batch = solve_ode(vdp_rows(MU), y0, t, method=name, rtol=1e-6, atol=1e-8,
                      per_sample=True)
    steps = batch.stats["n_steps"]
    assert steps.shape == (4,) and bool((steps[1:] != steps[0]).any())
    for r in range(4):
        one = solve_ode(vdp_rows(MU[r:r + 1]), y0[r:r + 1], t, method=name, rtol=1e-6,
                        atol=1e-8, per_sample=True)
        assert torch.allclose(batch.ys[:, r], one.ys[:, 0], rtol=2e-5, atol=2e-6), r


def test_per_sample_linear_rows_match_exactly():
    """A linear field has a constant Jacobian, so batching changes nothing but the LU's
    rounding: rows agree to 1e-12."""
    lam = torch.tensor([-1.0, -1e3, -1e6], dtype=DT)

    def f(t, y):
        return lam[: y.shape[0], None] * (y - torch.cos(t)[:, None]) - torch.sin(t)[:, None]
    y0 = torch.full((3, 1), 2.0, dtype=DT)
    t = torch.linspace(0, 1, 4, dtype=DT)
    batch = solve_ode(f, y0, t, method="kvaerno4", rtol=1e-7, atol=1e-9, per_sample=True)
    lam_all = lam
    for r in range(3):
        lam = lam_all[r:r + 1]
        one = solve_ode(f, y0[r:r + 1], t, method="kvaerno4", rtol=1e-7, atol=1e-9,
                        per_sample=True)
        lam = lam_all
        assert torch.allclose(batch.ys[:, r], one.ys[:, 0], rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------- failures

def test_newton_failure_names_time_and_row():
    """Row 2's field turns NaN after t = 0.5: its steps are rejected down to time
    resolution, then the error names the time and the row."""
    def f(t, y):
        bad = (t > 0.5) & (torch.arange(4) == 2)
        return torch.where(bad[:, None], torch.full_like(y, math.nan), -y)
    y0 = torch.ones(4, 2, dtype=DT)
    with pytest.raises(NewtonFailureError, match=r"t=0\.5\d* in row 2 of 4") as ei:
        solve_ode(f, y0, torch.tensor([0.0, 1.0], dtype=DT), method="kvaerno3",
                  per_sample=True)
    assert "kvaerno3" in str(ei.value)


def test_newton_failure_fixed_step_and_max_steps():
    def f(t, y):
        return torch.where(t > 0.3, torch.full_like(y, math.nan), -y)
    with pytest.raises(NewtonFailureError, match=r"joint system.*reduce `step_size`"):
        solve_ode(f, torch.ones(3, dtype=DT), torch.tensor([0.0, 1.0], dtype=DT),
                  method="radauIIA5", step_size=0.1)
    with pytest.raises(MaxStepsExceededError, match="max_steps"):
        solve_ode(stiff_linear, Y_STIFF, T_STIFF, method="kvaerno5", max_steps=5)


def test_bad_method_and_options():
    with pytest.raises(InvalidInputError, match=r"`method` must be one of .*'kvaerno5'"):
        solve_ode(oscillator, Y_OSC, T_OSC, method="kvaerno9")
    with pytest.raises(InvalidInputError, match="unknown implicit-method options"):
        implicit_method("kvaerno5", tol=1)
    with pytest.raises(InvalidInputError, match="`jac` must be callable"):
        implicit_method("kvaerno5", jac=3)
    with pytest.raises(InvalidInputError, match="compact=True"):
        solve_ode(vdp_rows(MU), torch.ones(4, 2, dtype=DT), T_OSC, method="kvaerno5",
                  per_sample=True, compact=True)


# --------------------------------------------------------------------------- Jacobians

def test_user_jacobian_and_fallback_agree():
    """A user jac, torch.func and forward differences (f that calls autograd.grad cannot
    be transformed) give the same solution; the user's is called once per refresh."""
    calls = []

    def jac(t, y):
        calls.append(1)
        return A_STIFF.expand(1, 4, 4) if y.dim() == 2 else A_STIFF

    def f_grad(t, y):  # the same field as a gradient (A is symmetric): torch.func refuses
        with torch.enable_grad():
            v = y.detach().requires_grad_(True)
            (gy,) = torch.autograd.grad(0.5 * ((v - _g(t)) @ A_STIFF * (v - _g(t))).sum(), v)
        return gy + _dg(t)

    ref = stiff_exact(T_STIFF)
    for method in (implicit_method("kvaerno5", jac=jac), "kvaerno5"):
        sol = solve_ode(stiff_linear, Y_STIFF, T_STIFF, method=method, rtol=1e-6, atol=1e-8)
        assert float((sol.ys - ref).abs().max()) < 3e-5
    assert len(calls) >= 1
    sol = solve_ode(f_grad, Y_STIFF, T_STIFF, method="kvaerno5", rtol=1e-6, atol=1e-8)
    assert float((sol.ys - ref).abs().max()) < 3e-5


def test_dense_output_and_odeint_names():
    """Hermite dense output inside steps (error O(h^4) of the accepted steps) and the
    torchdiffeq-style entry point with a fixed-step implicit method."""
    sol = solve_ode(stiff_linear, Y_STIFF, T_STIFF[[0, -1]], method="kvaerno5", rtol=1e-8,
                    atol=1e-10, dense=True)
    tq = torch.linspace(0.2, 1.0, 9, dtype=DT)
    assert float((sol.evaluate(tq) - stiff_exact(torch.cat([T_STIFF[:1], tq]))[1:])
                 .abs().max()) < 1e-5
    ys = odeint(oscillator, Y_OSC, torch.linspace(0, 2, 5, dtype=DT), method="implicit_euler",
                options=dict(step_size=0.01))
    ref = solve_ode(oscillator, Y_OSC, torch.linspace(0, 2, 5, dtype=DT), method="dopri5").ys
    assert float((ys - ref).abs().max()) < 0.05  # first order, h = 0.01 over t = 2


# --------------------------------------------------------------------------- gradients

P0 = torch.tensor([0.7, -3.0], dtype=DT)


def _vdp_p(p):
    def f(t, y):
        return torch.stack([y[..., 1], p[0] * (1 - y[..., 0] ** 2) * y[..., 1]
                            + p[1] * y[..., 0]], -1)
    return f


def _loss(method, y0, p, **kw):
    t = torch.tensor([0.0, 0.5, 1.0], dtype=DT)
    return (solve_ode(_vdp_p(p), y0, t, method=method, **kw).ys[1:] ** 2).sum()


@pytest.mark.parametrize("method,gradient", [("radauIIA5", "direct"), ("sdirk2", "direct"),
                                             ("gl4", "direct"), ("rodas4", "direct"),
                                             ("kvaerno3", "checkpoint")])
def test_gradients_match_finite_differences(method, gradient):
    """On a fixed grid the discrete map is smooth in y0 and p: the implicit-function
    gradient equals central differences (step 1e-6: truncation ~1e-12, rounding ~1e-9)."""
    kw = dict(step_size=0.1, rtol=1e-12, atol=1e-12)
    y0 = torch.tensor([1.0, 0.5], dtype=DT, requires_grad=True)
    p = P0.clone().requires_grad_(True)
    gy, gp = torch.autograd.grad(_loss(method, y0, p, gradient=gradient, **kw), [y0, p])
    for v, g in ((y0, gy), (p, gp)):
        for i in range(2):
            with torch.no_grad():
                e = torch.zeros(2, dtype=DT)
                e[i] = 1e-6
                args = (y0 + e, p) if v is y0 else (y0, p + e)
                lp = _loss(method, *args, **kw)
                args = (y0 - e, p) if v is y0 else (y0, p - e)
                lm = _loss(method, *args, **kw)
            assert abs(float(g[i]) - float(lp - lm) / 2e-6) < 1e-7, (method, i)


def test_backprop_does_not_differentiate_newton():
    """Only one graph-building evaluation of f per implicit stage (the residual at the
    converged stage): the Newton iterations run without a graph."""
    grad_calls = []

    def f(t, y):
        grad_calls.append(torch.is_grad_enabled())
        return _vdp_p(p)(t, y)
    y0 = torch.tensor([1.0, 0.5], dtype=DT, requires_grad=True)
    p = P0.clone().requires_grad_(True)
    sol = solve_ode(f, y0, torch.tensor([0.0, 1.0], dtype=DT), method="sdirk2",
                    step_size=0.1)
    n_graph, n_all = sum(grad_calls), len(grad_calls)
    # 2 stages x 10 steps, the first call, and torch.func's Jacobian passes (grad mode on)
    assert n_graph <= 2 * 10 + 1 + int(sol.stats["n_jac"]) < n_all
    sol.ys[-1].sum().backward()
    assert y0.grad is not None and p.grad is not None


@pytest.mark.parametrize("gradient,per_sample", [("direct", False), ("direct", True),
                                                 ("backsolve", False)])
def test_adaptive_gradient_of_stiff_linear(gradient, per_sample):
    """d/dy0 of w·y(1) for the stiff linear system is exp(A)ᵀ w (the forcing does not
    depend on y0); adaptive kvaerno5 at rtol 1e-8 matches it to 1e-5 (the adjoint's
    own error control), directly and with the adjoint solved by the same method."""
    w = torch.tensor([1.0, -2.0, 0.5, 1.0], dtype=DT)
    y0 = Y_STIFF.clone().expand(2, 4).clone() if per_sample else Y_STIFF.clone()
    y0.requires_grad_(True)
    t = torch.tensor([0.0, 1.0], dtype=DT)
    sol = solve_ode(stiff_linear, y0, t, method="kvaerno5", rtol=1e-8, atol=1e-10,
                    per_sample=per_sample, gradient=gradient)
    (sol.ys[-1] * w).sum().backward()
    exact = torch.linalg.matrix_exp(A_STIFF).T @ w
    assert torch.allclose(y0.grad, exact.expand_as(y0), atol=1e-5), y0.grad


@pytest.mark.parametrize("method", ["kvaerno5", "rodas4"])
def test_backsolve_parameter_gradient_matches_direct(method):
    """Backsolve (y from the forward's dense output, the adjoint by the same implicit
    method) and direct implicit-function gradients w.r.t. y0 and the field's parameters
    agree to the solves' accuracy (rtol 1e-9: differences ~1e-6)."""
    t = torch.tensor([0.0, 0.5, 1.0], dtype=DT)
    grads = []
    for gradient in ("direct", "backsolve"):
        y0 = torch.tensor([1.0, 0.5], dtype=DT, requires_grad=True)
        p = P0.clone().requires_grad_(True)
        kw = dict(adjoint_params=[p]) if gradient == "backsolve" else {}
        ys = solve_ode(_vdp_p(p), y0, t, method=method, rtol=1e-9, atol=1e-11,
                       gradient=gradient, **kw).ys
        grads.append(torch.cat(torch.autograd.grad((ys[1:] ** 2).sum(), [y0, p])))
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-5), grads
