"""Convergence order of every RK method, measured by step refinement in float64 on
problems with closed-form solutions, plus the order of the dense output and sanity
checks of the Butcher tableau data.

Orders are the least-squares slope of log(error) against log(h). Step counts are chosen
so that the errors stay in the asymptotic regime and far above float64 round-off (each
test asserts the latter, so a too-fine sequence fails loudly instead of reporting a
spurious order).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from solvers import TABLEAUS, odeint, solve_ode

DT = torch.float64

# --------------------------------------------------------------------------- problems
# A 3x3 linear system with a rotating, decaying solution: y' = A y, y(t) = exp(A t) y0.
A_LIN = torch.tensor([[-0.5, 2.0, 0.0], [-2.0, -0.5, 0.5], [0.0, -0.5, -1.0]], dtype=DT)
Y0_LIN = torch.tensor([1.0, 0.5, -0.3], dtype=DT)


def linear_f(t, y):
    return y @ A_LIN.T


def linear_exact(ts):
    return torch.stack([torch.linalg.matrix_exp(A_LIN * t) @ Y0_LIN for t in ts])


# Logistic equation y' = r y (1 - y), three initial values around the inflection point.
R_LOG = 4.0
Y0_LOG = torch.tensor([0.3, 0.5, 0.7], dtype=DT)


def logistic_f(t, y):
    return R_LOG * y * (1 - y)


def logistic_exact(ts):
    ts = torch.as_tensor(ts, dtype=DT).reshape(-1, 1)
    return 1.0 / (1.0 + (1.0 / Y0_LOG - 1.0) * torch.exp(-R_LOG * ts))


# Non-autonomous y' = 3 cos(t) y, y(t) = y0 exp(3 sin t): exercises the stage times c_i.
Y0_NA = torch.tensor([1.0, -0.5], dtype=DT)


def nonauto_f(t, y):
    return 3.0 * torch.cos(t) * y


def nonauto_exact(ts):
    ts = torch.as_tensor(ts, dtype=DT).reshape(-1, 1)
    return Y0_NA * torch.exp(3.0 * torch.sin(ts))


PROBLEMS = {
    "linear": (linear_f, Y0_LIN, linear_exact, 4.0),
    "logistic": (logistic_f, Y0_LOG, logistic_exact, 4.0),
    "nonautonomous": (nonauto_f, Y0_NA, nonauto_exact, 5.0),
}

ORDER = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "bosh3": 3, "dopri5": 5, "tsit5": 5,
         "dopri8": 8}
METHODS = list(ORDER)

# Step counts over [0, T] per problem and method, chosen in the asymptotic range with errors
# between ~1e-3 and ~1e-11 (tsit5's small principal error constant and the logistic's
# saturation need finer grids before h^p dominates). All are multiples of 4 so the output
# times T/4, T/2, 3T/4 fall on the grid.
STEPS = {
    "linear": {"euler": [400, 800, 1600], "midpoint": [100, 200, 400],
               "heun": [100, 200, 400], "rk4": [40, 80, 160], "bosh3": [80, 160, 320],
               "dopri5": [24, 48, 96], "tsit5": [96, 128, 192], "dopri8": [12, 16, 24]},
    "logistic": {"euler": [256, 512, 1024], "midpoint": [256, 512, 1024],
                 "heun": [256, 512, 1024], "rk4": [128, 256, 512], "bosh3": [128, 256, 512],
                 "dopri5": [96, 128, 192], "tsit5": [96, 128, 192], "dopri8": [16, 24, 32]},
    "nonautonomous": {"euler": [512, 1024, 2048], "midpoint": [256, 512, 1024],
                      "heun": [256, 512, 1024], "rk4": [128, 256, 512],
                      "bosh3": [128, 256, 512], "dopri5": [128, 192, 256],
                      "tsit5": [256, 384, 512], "dopri8": [24, 32, 48]},
}

# Dense output: global error O(h^min(p, q+1)) with q the order of the continuous extension.
# Cubic Hermite (q = 3) for euler/midpoint/heun/rk4/bosh3 -> min(p, 4); dopri5's and
# tsit5's 4th-order extensions -> 5; DOP853's 7th-order extension -> 8.
DENSE_ORDER = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "bosh3": 3,
               "dopri5": 5, "tsit5": 5, "dopri8": 8}

ROUNDOFF_FLOOR = 1e-12  # every error used in a fit must be well above float64 round-off


def observed_order(ns, T, errs):
    hs = T / np.asarray(ns, dtype=np.float64)
    return float(np.polyfit(np.log(hs), np.log(np.asarray(errs)), 1)[0])


# --------------------------------------------------------------------------- grid order

@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("method", METHODS)
def test_order_with_step_size(method, problem):
    """Every method (fixed and adaptive tableaus alike) run with `step_size` converges at
    its theoretical order at the grid output times."""
    f, y0, exact, T = PROBLEMS[problem]
    order, ns = ORDER[method], STEPS[problem][method]
    ts = torch.linspace(0, T, 5, dtype=DT)
    ref = exact(ts)
    errs = []
    for n in ns:
        sol = solve_ode(f, y0, ts, method=method, step_size=T / n)
        assert int(sol.stats["n_steps"]) == n
        errs.append(float((sol.ys - ref).abs().max()))
    assert min(errs) > ROUNDOFF_FLOOR, (method, problem, errs)
    p = observed_order(ns, T, errs)
    assert abs(p - order) <= 0.25, f"{method} on {problem}: order {p:.3f}, errors {errs}"


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4"])
def test_fixed_method_steps_on_output_grid(method):
    """Without `step_size` a fixed-step method steps on the output grid itself
    (torchdiffeq semantics); refining the grid shows the method's order."""
    f, y0, exact, T = PROBLEMS["nonautonomous"]
    order, ns = ORDER[method], STEPS["nonautonomous"][method]
    errs = []
    for n in ns:
        ts = torch.linspace(0, T, n + 1, dtype=DT)
        sol = solve_ode(f, y0, ts, method=method)
        assert int(sol.stats["n_steps"]) == n
        errs.append(float((sol.ys - exact(ts)).abs().max()))
    assert min(errs) > ROUNDOFF_FLOOR
    p = observed_order(ns, T, errs)
    assert abs(p - order) <= 0.25, f"{method}: order {p:.3f}, errors {errs}"


def test_step_size_grid_matches_output_grid():
    """`step_size` = the output spacing reproduces stepping on the output grid exactly."""
    f, y0, _, T = PROBLEMS["linear"]
    ts = torch.linspace(0, T, 41, dtype=DT)
    a = odeint(f, y0, ts, method="rk4")
    b = odeint(f, y0, ts, method="rk4", options={"step_size": T / 40})
    assert torch.allclose(a, b, rtol=0, atol=1e-14)


def test_reverse_time_order():
    """Decreasing t: the same order for reverse-time integration."""
    f, y0, exact, T = PROBLEMS["nonautonomous"]
    yT = exact([T])[0]
    ts = torch.tensor([T, 0.0], dtype=DT)
    for method in ("rk4", "dopri5"):
        order, ns = ORDER[method], STEPS["nonautonomous"][method]
        errs = [float((solve_ode(f, yT, ts, method=method, step_size=T / n).ys[-1] - y0)
                      .abs().max()) for n in ns]
        assert min(errs) > ROUNDOFF_FLOOR
        p = observed_order(ns, T, errs)
        assert abs(p - order) <= 0.25, f"{method} reverse: order {p:.3f}, errors {errs}"


# --------------------------------------------------------------------------- dense output

@pytest.mark.parametrize("problem", ["linear", "nonautonomous"])
@pytest.mark.parametrize("method", METHODS)
def test_dense_output_order(method, problem):
    """`sol.evaluate` at off-grid times converges at min(p, q + 1)."""
    f, y0, exact, T = PROBLEMS[problem]
    ns = STEPS[problem][method]
    expected = DENSE_ORDER[method]
    errs = []
    for n in ns:
        h = T / n
        sol = solve_ode(f, y0, torch.tensor([0.0, T], dtype=DT), method=method, step_size=h,
                        dense=True)
        ks = torch.arange(0, n, max(1, n // 8), dtype=DT)
        tq = torch.cat([(ks + 0.3) * h, (ks + 0.71) * h])
        errs.append(float((sol.evaluate(tq) - exact(tq)).abs().max()))
    assert min(errs) > ROUNDOFF_FLOOR, errs
    p = observed_order(ns, T, errs)
    assert abs(p - expected) <= 0.3, f"{method} dense on {problem}: order {p:.3f}, errors {errs}"


# local order of one step's continuous extension started from exact data:
# Hermite cubic with a p-th order step -> O(h^min(p+1, 4)); a q-th order extension -> h^(q+1)
LOCAL_DENSE_ORDER = {"euler": 2, "midpoint": 3, "heun": 3, "rk4": 4, "bosh3": 4,
                     "dopri5": 5, "tsit5": 5, "dopri8": 8}


# Step sizes for the local test (asymptotic range, errors above round-off).
LOCAL_HS = {m: [0.05, 0.025, 0.0125] for m in ORDER}
LOCAL_HS.update({"dopri5": [0.1, 0.05, 0.025], "tsit5": [0.1, 0.05, 0.025],
                 "dopri8": [0.4, 0.3, 0.2]})


@pytest.mark.parametrize("method", METHODS)
def test_dense_output_local_order(method):
    """One step of size h from the exact state of y' = cos(t) y at t0 = 0.3; the
    interpolant's error at θ = 0.4 and 0.8 scales like h^(q+1). This separates e.g. a
    4th-order extension (dopri5: h^5) from a 3rd-order one (h^4)."""
    y0 = torch.tensor([1.0, -0.5], dtype=DT)

    def exact(ts):
        return y0 * torch.exp(torch.sin(torch.as_tensor(ts, dtype=DT).reshape(-1, 1)))

    t0 = 0.3
    y_start = exact([t0])[0]
    hs = LOCAL_HS[method]
    errs = []
    for h in hs:
        sol = solve_ode(lambda t, y: torch.cos(t) * y, y_start,
                        torch.tensor([t0, t0 + h], dtype=DT), method=method, step_size=h,
                        dense=True)
        tq = torch.tensor([t0 + 0.4 * h, t0 + 0.8 * h], dtype=DT)
        errs.append(float((sol.evaluate(tq) - exact(tq)).abs().max()))
    assert min(errs) > ROUNDOFF_FLOOR, errs
    p = observed_order(np.array([1.0 / h for h in hs]), 1.0, errs)
    expected = LOCAL_DENSE_ORDER[method]
    assert abs(p - expected) <= 0.3, f"{method} local dense: order {p:.3f}, errors {errs}"


# --------------------------------------------------------------------------- tableau data

def _tableau_arrays(tab):
    s = tab.n_stages
    A = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        A[i, :i] = row
    return A, np.asarray(tab.c), np.asarray(tab.b)


def _order_residuals(b, A, c):
    """Residuals of the RK order conditions, grouped by order (trees up to order 4)."""
    Ac = A @ c
    return {1: [b.sum() - 1], 2: [b @ c - 1 / 2],
            3: [b @ c ** 2 - 1 / 3, b @ Ac - 1 / 6],
            4: [b @ c ** 3 - 1 / 4, b @ (c * Ac) - 1 / 8, b @ (A @ c ** 2) - 1 / 12,
                b @ (A @ Ac) - 1 / 24]}


@pytest.mark.parametrize("method", list(TABLEAUS))
def test_tableau_consistency(method):
    tab = TABLEAUS[method]
    A, c, b = _tableau_arrays(tab)
    assert np.allclose(A.sum(1), c, atol=1e-14, rtol=0)
    for k, res in _order_residuals(b, A, c).items():
        if k <= tab.order:
            assert max(map(abs, res)) < 1e-13, (method, k, res)
        elif k == tab.order + 1:  # the method is not of higher order than it claims
            assert max(map(abs, res)) > 1e-6, (method, k, res)
    if tab.adaptive:
        assert abs(sum(tab.b_err)) < 1e-14
        # the embedded solution b - b_err is of order >= 2 (bosh3: exactly 2)
        emb = _order_residuals(b - np.asarray(tab.b_err), A, c)
        assert max(abs(r) for k in (1, 2) for r in emb[k]) < 1e-13
        assert max(map(abs, b - np.asarray(tab.b_err))) > 0
    # dense output at θ = 1 is the step's end point: Σ_m P[i, m] = b_i, 0 on extra stages
    P = np.asarray(tab.dense)
    want = np.concatenate([b, np.zeros(P.shape[0] - tab.n_stages)])
    assert np.allclose(P.sum(1), want, atol=1e-12, rtol=0), method
    for cx, row in tab.dense_extra:
        assert abs(sum(row) - cx) < 1e-13


def test_dopri8_embedded_estimators():
    """DOP853's two embedded solutions: 5th-order (conditions up to 4 checked here) and
    3rd-order (fails order 4)."""
    tab = TABLEAUS["dopri8"]
    A, c, b = _tableau_arrays(tab)
    e5 = _order_residuals(b - np.asarray(tab.b_err), A, c)
    assert max(abs(r) for k in (1, 2, 3, 4) for r in e5[k]) < 1e-13
    e3 = _order_residuals(b - np.asarray(tab.b_err_low), A, c)
    assert max(abs(r) for k in (1, 2, 3) for r in e3[k]) < 1e-13
    assert max(abs(r) for r in e3[4]) > 1e-4


def test_fixed_and_adaptive_method_lists():
    from solvers import ADAPTIVE_METHODS, FIXED_METHODS
    assert set(FIXED_METHODS) == {"euler", "midpoint", "heun", "rk4"}
    assert set(ADAPTIVE_METHODS) == {"bosh3", "dopri5", "tsit5", "dopri8"}
    for m, order in ORDER.items():
        assert TABLEAUS[m].order == order


@pytest.mark.parametrize("method", [m for m, tab in TABLEAUS.items() if tab.dense is not None])
def test_nested_dense_coefficients_are_the_same_polynomials(method):
    """The dense matrix converted to the nested basis θ, θ(1-θ), θ²(1-θ), ... describes the
    tableau's monomial polynomials (float64 round-off)."""
    from solvers.ode.rk import nested_basis, nested_coefficients
    P = np.asarray(TABLEAUS[method].dense)
    G = nested_coefficients(P)
    assert np.abs(G @ nested_basis(P.shape[1]) - P).max() < 1e-12 * max(1.0, np.abs(P).max())


@pytest.mark.parametrize("reverse", [False, True])
def test_dopri8_dense_output_keeps_float32_accuracy(reverse):
    """torchdiffeq's skew 10x10 linear problem in float32 at rtol=atol=1e-7: DOP853's
    continuous extension in monomial form cancelled to ~7e-5 of max|y| (its coefficients
    reach ~545); in the nested form it is ~2.5e-6, near the step solution's round-off."""
    U = torch.randn(10, 10, generator=torch.Generator().manual_seed(0), dtype=DT) * 0.1
    A = 2 * U - (U + U.T)

    def exact(ts):
        return torch.stack([torch.linalg.matrix_exp(A * (t - 1)) @ torch.ones(10, dtype=DT)
                            for t in ts])

    t = torch.tensor([8.0, 1.0] if reverse else [1.0, 8.0])
    A32 = A.float()
    sol = solve_ode(lambda t, y: A32 @ y, exact(t[:1].double())[0].float(), t,
                    method="dopri8", rtol=1e-7, atol=1e-7, dense=True)
    tt = torch.linspace(1, 8, 701)
    want = exact(tt.double())
    err = (sol.evaluate(tt).double() - want).abs().max() / want.abs().max()
    assert err < 1e-5
