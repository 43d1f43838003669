"""Implicit methods (solvers.implicit): orders, stiff accuracy, per-sample rows, Newton
failure, Jacobians, dense output and gradients (implicit function theorem, checkpoint,
backsolve), all in float64."""
from __future__ import annotations

import math

import pytest
import torch

from solvers import (MaxStepsExceededError, NewtonFailureError, InvalidInputError,
                     IMPLICIT_METHODS, implicit_method, odeint, solve_ode)

from implicit_problems import (A_STIFF, DT, MU, T_OSC, T_STIFF, Y_OSC, Y_STIFF, _dg, _g,
                               oscillator, stiff_exact, stiff_linear, vdp_rows)


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


def test_general_entry_point_takes_implicit_names():
    """`solve` with an implicit name and a ConstantStepSize / PIDController."""
    from solvers import ConstantStepSize, ODETerm, PIDController, SaveAt, solve
    ref = stiff_exact(T_STIFF)
    for solver, ctrl, tol in (("radauIIA5", ConstantStepSize(0.05), 1e-4),
                              ("rodas4", PIDController(rtol=1e-6, atol=1e-8), 3e-5)):
        sol = solve(ODETerm(stiff_linear), solver, Y_STIFF, SaveAt(ts=T_STIFF),
                    controller=ctrl)
        assert float((sol.ys - ref).abs().max()) < tol, solver
