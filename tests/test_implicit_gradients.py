"""Gradients of implicit solves (implicit-function theorem, checkpoint, backsolve with the
same implicit method) against finite differences and closed forms, and the stiffness
diagnosis of explicit solves, all in float64."""
from __future__ import annotations

import pytest
import torch

from solvers import MaxStepsExceededError, solve_ode

from implicit_problems import A_STIFF, DT, P0, Y_STIFF, stiff_linear, vdp_p, vdp_rows


# --------------------------------------------------------------------------- gradients

def _loss(method, y0, p, **kw):
    t = torch.tensor([0.0, 0.5, 1.0], dtype=DT)
    return (solve_ode(vdp_p(p), y0, t, method=method, **kw).ys[1:] ** 2).sum()


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
        return vdp_p(p)(t, y)
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
        ys = solve_ode(vdp_p(p), y0, t, method=method, rtol=1e-9, atol=1e-11,
                       gradient=gradient, **kw).ys
        grads.append(torch.cat(torch.autograd.grad((ys[1:] ** 2).sum(), [y0, p])))
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-5), grads


# --------------------------------------------------------------------------- stiffness

def test_explicit_failure_message_diagnoses_stiffness():
    """dopri5 on Van der Pol μ=1e3 runs out of steps at its stability limit (h ρ ≈ 3.3):
    the message says so and names the implicit methods; a long non-stiff oscillation that
    runs out of steps (accuracy-limited, h ρ ≈ 0.1) gets no such claim."""
    with pytest.raises(MaxStepsExceededError, match=r"looks stiff.*kvaerno5.*rodas4"):
        solve_ode(vdp_rows(torch.tensor([1e3], dtype=DT)), torch.tensor([[2.0, 0.0]], dtype=DT),
                  torch.tensor([0.0, 2e3], dtype=DT), method="dopri5", rtol=1e-6,
                  atol=1e-9, max_steps=1000)
    with pytest.raises(MaxStepsExceededError) as ei:
        solve_ode(lambda t, y: torch.stack([y[1], -y[0]]), torch.tensor([1.0, 0.0], dtype=DT),
                  torch.tensor([0.0, 1e4], dtype=DT), method="dopri5", max_steps=1000)
    assert "stiff" not in str(ei.value)


def test_per_sample_stiffness_diagnosis_names_a_row():
    """Per sample, each row's mean step is compared with its own spectral radius: the
    stiff rows that ran out of steps are named (the non-stiff rows finished)."""
    mu = torch.tensor([1.0, 1e3, 3e3], dtype=DT)
    with pytest.raises(MaxStepsExceededError, match=r"looks stiff \(row [12], one of"):
        solve_ode(vdp_rows(mu), torch.tensor([[2.0, 0.0]], dtype=DT).repeat(3, 1),
                  torch.tensor([0.0, 20.0], dtype=DT), method="dopri5", rtol=1e-6,
                  atol=1e-9, per_sample=True, max_steps=1500)
