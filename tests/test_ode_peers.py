"""Agreement with the peers (torchdiffeq; torchode for tsit5) on the same methods.

Fair comparisons:
* Fixed-step methods compute the same formulas, so on the grid they agree to round-off.
  Between grid points torchdiffeq interpolates linearly by default; with its
  ``interp='cubic'`` option it uses the same cubic Hermite interpolant as ours.
  torchdiffeq's ``rk4`` is Kutta's 3/8 rule, not the classical RK4 we call ``rk4``: we
  compare it with the 3/8 rule given to our engine as a `ButcherTableau`.
* Adaptive methods: different step sequences (and torchdiffeq interpolates bosh3/dopri8
  outputs with a 4th-order fit through a mid-step value), so each is compared with a
  tight, independent reference (scipy's DOP853 at rtol = atol = 1e-13) in units of
  ``atol + rtol |y|`` (RMS over the state, the norm both controllers use). dopri5 is the
  same pair with the same default controller in both libraries: the two solutions must be
  within 10x tol of each other; for every method our error must be no worse than
  torchdiffeq's (or within 10x tol).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from solvers import ButcherTableau, odeint, solve_ode

torchdiffeq = pytest.importorskip("torchdiffeq")
scipy_integrate = pytest.importorskip("scipy.integrate")

DT = torch.float64


# --------------------------------------------------------------------------- problems

def vdp(t, y):
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, 1.0 * (1 - x ** 2) * v - x], -1)


def lotka_volterra(t, y):
    x, z = y[..., 0], y[..., 1]
    return torch.stack([1.5 * x - x * z, -3.0 * z + x * z], -1)


A_LIN = torch.tensor([[-0.5, 2.0, 0.0], [-2.0, -0.5, 0.5], [0.0, -0.5, -1.0]], dtype=DT)


def linear(t, y):
    return y @ A_LIN.T


def make_mlp():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, 3)).double()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


MLP = make_mlp()


def mlp_field(t, y):
    """Non-autonomous; t is 0-dim (joint) or (B,) (per-sample mode, torchode)."""
    s = 1.0 + 0.2 * torch.sin(t)
    return MLP(y) * (s.unsqueeze(-1) if s.dim() == 1 else s)


def _mlp_y0():
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, 3, generator=g, dtype=DT)


PROBLEMS = {
    "linear": (linear, torch.tensor([1.0, 0.5, -0.3], dtype=DT),
               torch.linspace(0, 4, 9, dtype=DT)),
    "vdp": (vdp, torch.tensor([2.0, 0.0], dtype=DT), torch.linspace(0, 6, 13, dtype=DT)),
    "lotka_volterra": (lotka_volterra, torch.tensor([1.0, 1.0], dtype=DT),
                       torch.linspace(0, 5, 11, dtype=DT)),
    "mlp": (mlp_field, _mlp_y0(), torch.linspace(0, 2, 5, dtype=DT)),
    "vdp_reverse": (vdp, torch.tensor([2.0, 0.0], dtype=DT),
                    torch.linspace(3, 0, 7, dtype=DT)),
}


def reference(f, y0, ts):
    """scipy DOP853 at rtol = atol = 1e-13: an implementation independent of both."""
    shape = tuple(y0.shape)

    def rhs(t, y):
        return f(torch.tensor(t, dtype=DT), torch.from_numpy(y).reshape(shape)).reshape(-1).numpy()

    sol = scipy_integrate.solve_ivp(rhs, (float(ts[0]), float(ts[-1])), y0.reshape(-1).numpy(),
                                    method="DOP853", rtol=1e-13, atol=1e-13,
                                    t_eval=ts.numpy())
    assert sol.success
    return torch.from_numpy(sol.y.T.copy()).reshape(len(ts), *shape)


_REFS = {}


def ref_for(problem):
    if problem not in _REFS:
        f, y0, ts = PROBLEMS[problem]
        _REFS[problem] = reference(f, y0, ts)
    return _REFS[problem]


def scaled(a, b, tol):
    """max over output times of RMS((a - b) / (tol + tol |b|)) over the whole state: the
    joint error norm that torchdiffeq and our joint mode control (the element-wise max
    would hold a batch row to a bound neither solver promises in joint mode)."""
    r = (a - b) / (tol + tol * b.abs())
    return float(r.reshape(r.shape[0], -1).square().mean(-1).sqrt().max())


def scaled_rows(a, b, tol):
    """Per-row version (max over times of each row's RMS), what per-sample mode controls."""
    r = (a - b) / (tol + tol * b.abs())
    return r.reshape(r.shape[0], r.shape[1], -1).square().mean(-1).sqrt().amax(0)


def test_reference_is_tight():
    """Sanity of the reference: it matches the closed form of the linear problem."""
    _, y0, ts = PROBLEMS["linear"]
    exact = torch.stack([torch.linalg.matrix_exp(A_LIN * t) @ y0 for t in ts])
    assert float((ref_for("linear") - exact).abs().max()) < 1e-11


# --------------------------------------------------------------------------- adaptive

ADAPTIVE_TOL = {"bosh3": 1e-7, "dopri5": 1e-9, "dopri8": 1e-9}


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("method", ["bosh3", "dopri5", "dopri8"])
def test_adaptive_vs_torchdiffeq(method, problem):
    f, y0, ts = PROBLEMS[problem]
    tol = ADAPTIVE_TOL[method]
    ref = ref_for(problem)
    ours = odeint(f, y0, ts, method=method, rtol=tol, atol=tol)
    theirs = torchdiffeq.odeint(f, y0, ts, method=method, rtol=tol, atol=tol)
    e_ours, e_theirs = scaled(ours, ref, tol), scaled(theirs, ref, tol)
    assert ours.shape == theirs.shape
    assert e_ours <= max(e_theirs, 10.0), (
        f"{method}/{problem}: our error {e_ours:.2f} x tol, torchdiffeq's {e_theirs:.2f} x tol")
    # and in absolute terms (torchdiffeq's bosh3/dopri8 are 70-1700x tol here): 20x covers
    # the backward Van der Pol run, where the repelling limit cycle amplifies errors
    assert e_ours <= 20.0, f"{method}/{problem}: our error {e_ours:.2f} x tol"
    if method == "dopri5":
        assert scaled(ours, theirs, tol) <= 10.0, (
            f"dopri5/{problem}: ours vs torchdiffeq {scaled(ours, theirs, tol):.2f} x tol")


@pytest.mark.parametrize("problem", ["vdp", "lotka_volterra", "mlp"])
def test_dopri8_vs_torchdiffeq_endpoint(problem):
    """torchdiffeq's 'dopri8' is a different 8(7) pair than DOP853: at the end point (no
    interpolation involved) both must converge to the reference as tol shrinks, ours at
    least as accurately."""
    f, y0, ts = PROBLEMS[problem]
    ts2 = ts[[0, -1]]
    ref = ref_for(problem)[[0, -1]]
    for tol in (1e-7, 1e-10):
        ours = odeint(f, y0, ts2, method="dopri8", rtol=tol, atol=tol)
        theirs = torchdiffeq.odeint(f, y0, ts2, method="dopri8", rtol=tol, atol=tol)
        e_ours, e_theirs = scaled(ours, ref, tol), scaled(theirs, ref, tol)
        assert e_ours <= max(e_theirs, 10.0), (problem, tol, e_ours, e_theirs)


def test_tuple_state_vs_torchdiffeq():
    """Tuple states (x, v) of a batch of Van der Pol oscillators; torchdiffeq and we both
    use the max over the parts' RMS norms."""
    g = torch.Generator().manual_seed(2)
    x0 = 2.0 + 0.3 * torch.randn(4, generator=g, dtype=DT)
    v0 = 0.1 * torch.randn(4, generator=g, dtype=DT)

    def f(t, s):
        x, v = s
        return v, (1 - x ** 2) * v - x

    ts = torch.linspace(0, 5, 11, dtype=DT)
    tol = 1e-9
    ours = odeint(f, (x0, v0), ts, rtol=tol, atol=tol)
    theirs = torchdiffeq.odeint(f, (x0, v0), ts, rtol=tol, atol=tol)
    assert isinstance(ours, tuple) and len(ours) == 2
    assert ours[0].shape == (11, 4) and ours[1].shape == (11, 4)
    ref = reference(vdp, torch.stack([x0, v0], -1), ts)
    for k in range(2):
        assert scaled(ours[k], ref[..., k], tol) <= 10.0
        assert scaled(ours[k], theirs[k], tol) <= 10.0
    # reverse time with a tuple state, from the reference end state back to t = 0
    # (backwards the limit cycle repels, so compare both solvers with the reference)
    end = (ref[-1, :, 0].clone(), ref[-1, :, 1].clone())
    rts = ts.flip(0)
    rref = reference(vdp, torch.stack(end, -1), rts)
    back = odeint(f, end, rts, rtol=tol, atol=tol)
    back_td = torchdiffeq.odeint(f, end, rts, rtol=tol, atol=tol)
    for k in range(2):
        e_ours, e_theirs = scaled(back[k], rref[..., k], tol), scaled(back_td[k], rref[..., k], tol)
        assert e_ours <= max(e_theirs, 10.0), (k, e_ours, e_theirs)


@pytest.mark.parametrize("per_sample", [False, True], ids=["joint", "per_sample"])
def test_mlp_batch_per_sample_vs_torchdiffeq(per_sample):
    """A random MLP field on a batch; per-sample mode solves every row to its own
    tolerance and must agree with torchdiffeq's joint dopri5 within both errors."""
    f, y0, ts = PROBLEMS["mlp"]
    tol = 1e-9
    ref = ref_for("mlp")
    ours = odeint(f, y0, ts, rtol=tol, atol=tol, options={"per_sample": per_sample})
    theirs = torchdiffeq.odeint(f, y0, ts, rtol=tol, atol=tol)
    assert scaled(ours, ref, tol) <= 10.0
    assert scaled(ours, theirs, tol) <= 10.0
    if per_sample:  # every row within 10x tol in its own norm
        assert float(scaled_rows(ours, ref, tol).max()) <= 10.0


# --------------------------------------------------------------------------- fixed step

FIXED_PAIRS = [("euler", "euler"), ("midpoint", "midpoint"), ("heun", "heun2")]


@pytest.mark.parametrize("problem", ["linear", "vdp", "lotka_volterra", "mlp", "vdp_reverse"])
@pytest.mark.parametrize("ours_name,theirs_name", FIXED_PAIRS)
def test_fixed_methods_identical_on_grid(ours_name, theirs_name, problem):
    f, y0, ts = PROBLEMS[problem]
    # stepping on the output grid itself
    a = odeint(f, y0, ts, method=ours_name)
    b = torchdiffeq.odeint(f, y0, ts, method=theirs_name)
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    # a step size that does not divide the interval: same grid (last step shortened)
    h = float(abs(ts[-1] - ts[0])) / 73.3
    a = odeint(f, y0, ts[[0, -1]], method=ours_name, options={"step_size": h})
    b = torchdiffeq.odeint(f, y0, ts[[0, -1]], method=theirs_name, options={"step_size": h})
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def _rk38():
    """Kutta's 3/8 rule as data, with the cubic Hermite dense output written out:
    y(t0 + θh) = y0 + h Σ_i k_i p_i(θ), p_i = b_i (3θ² - 2θ³) + [i = 0](θ - 2θ² + θ³),
    plus an extra stage f(t0 + h, y1) with weight θ³ - θ²."""
    b = (1 / 8, 3 / 8, 3 / 8, 1 / 8)
    dense = tuple((float(i == 0), 3 * bi - 2 * (i == 0), -2 * bi + (i == 0))
                  for i, bi in enumerate(b)) + ((0.0, -1.0, 1.0),)
    return ButcherTableau(name="rk38", c=(0.0, 1 / 3, 2 / 3, 1.0),
                          a=((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)), b=b, order=4,
                          dense=dense, dense_extra=((1.0, b),), interpolant="cubic Hermite")


@pytest.mark.parametrize("problem", ["linear", "vdp", "mlp", "vdp_reverse"])
def test_rk4_three_eighths_matches_torchdiffeq(problem):
    """torchdiffeq's 'rk4' is the 3/8 rule: our engine given that tableau reproduces it
    to round-off, on the grid and (with torchdiffeq's interp='cubic') between points."""
    f, y0, ts = PROBLEMS[problem]
    tab = _rk38()
    h = float(abs(ts[-1] - ts[0])) / 48  # output times on the grid
    a = solve_ode(f, y0, ts, method=tab, step_size=h).ys
    b = torchdiffeq.odeint(f, y0, ts, method="rk4", options={"step_size": h})
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    frac = torch.tensor([0.0, 0.013, 0.37, 0.5011, 0.99, 1.0], dtype=DT)
    tq = ts[0] + (ts[-1] - ts[0]) * frac
    a = solve_ode(f, y0, tq, method=tab, step_size=h).ys
    b = torchdiffeq.odeint(f, y0, tq, method="rk4",
                           options={"step_size": h, "interp": "cubic"})
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ours_name,theirs_name", FIXED_PAIRS)
def test_off_grid_outputs_hermite_vs_torchdiffeq(ours_name, theirs_name):
    """Between grid points: identical to torchdiffeq's cubic Hermite option, and more
    accurate than its default linear interpolation (error O(h^2) for linear)."""
    f, y0, ts = PROBLEMS["vdp"]
    h = 0.05
    tq = torch.tensor([0.0, 0.512, 1.3337, 2.9021, 6.0], dtype=DT)
    ours = odeint(f, y0, tq, method=ours_name, options={"step_size": h})
    cubic = torchdiffeq.odeint(f, y0, tq, method=theirs_name,
                               options={"step_size": h, "interp": "cubic"})
    assert torch.allclose(ours, cubic, rtol=1e-12, atol=1e-12)


def test_classical_rk4_vs_torchdiffeq_rk4():
    """Classical RK4 (ours) and the 3/8 rule (torchdiffeq) are different 4th-order methods:
    both converge at order 4 to the same solution and their difference shrinks like h^4."""
    f, y0, ts = PROBLEMS["vdp"]
    ref = ref_for("vdp")
    diffs, errs_ours, errs_theirs = [], [], []
    for n in (60, 120, 240):
        h = 6.0 / n
        a = odeint(f, y0, ts, method="rk4", options={"step_size": h})
        b = torchdiffeq.odeint(f, y0, ts, method="rk4", options={"step_size": h})
        diffs.append(float((a - b).abs().max()))
        errs_ours.append(float((a - ref).abs().max()))
        errs_theirs.append(float((b - ref).abs().max()))
    for errs in (diffs, errs_ours, errs_theirs):
        slope = np.polyfit(np.log([60, 120, 240]), np.log(errs), 1)[0]
        assert abs(-slope - 4) <= 0.3, (slope, errs)
    assert diffs[-1] > 1e-12  # they are different methods
    assert diffs[-1] <= errs_ours[-1] + errs_theirs[-1]


# --------------------------------------------------------------------------- torchode tsit5

def test_tsit5_vs_torchode():
    to = pytest.importorskip("torchode")
    f, y0, ts = PROBLEMS["mlp"]
    tol = 1e-9
    ref = ref_for("mlp")
    ours = solve_ode(f, y0, ts, method="tsit5", rtol=tol, atol=tol, per_sample=True)
    term = to.ODETerm(f)
    solver = to.AutoDiffAdjoint(to.Tsit5(term=term),
                                to.IntegralController(atol=tol, rtol=tol, term=term))
    sol = solver.solve(to.InitialValueProblem(y0=y0, t_eval=ts.expand(y0.shape[0], -1)))
    theirs = sol.ys.transpose(0, 1)
    # both per-sample: each row within 10x tol of the reference in its own norm, and of
    # each other within the sum of the two errors' 10x budgets
    assert float(scaled_rows(ours.ys, ref, tol).max()) <= 10.0
    assert float(scaled_rows(theirs, ref, tol).max()) <= 10.0
    assert float(scaled_rows(ours.ys, theirs, tol).max()) <= 20.0
