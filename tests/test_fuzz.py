"""Hypothesis fuzzing of the public entry points with random shapes, dtypes, time grids,
tolerances and misbehaving vector fields.

Contract: every case either returns a finite result of the documented shape, or raises a
documented error (`SolverError` family, `ValueError`, `TypeError`) with a message. Nothing
else may escape (no IndexError/RuntimeError from torch internals), and no case hangs.
"""
import math

import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from solvers import SolverError, divergence, odeint, sdeint, solve_ode

DOCUMENTED = (SolverError, ValueError, TypeError)
FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(-3.0, 3.0, allow_nan=False)
odd_floats = st.one_of(finite, st.just(math.nan), st.just(math.inf), st.just(-math.inf))
increasing = st.lists(finite, min_size=2, max_size=5, unique=True).map(sorted)
decreasing = increasing.map(lambda v: v[::-1])
# Valid values dominate so that most cases reach the integrators; every dimension still
# draws bad values (empty/NaN/repeated grids, bad tolerances, ints, broken f) regularly.
time_grids = st.one_of(
    increasing, decreasing, increasing, decreasing,
    st.lists(odd_floats, min_size=0, max_size=5),                     # anything, incl. empty
    st.lists(st.just(0.5), min_size=2, max_size=3),                    # repeated
)
shapes = st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple)
dtypes = st.sampled_from([torch.float32, torch.float64] * 3 + [torch.int64])
tolerances = st.sampled_from([1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2] * 2
                             + [0.0, -1e-3, 1e3, math.nan])
ode_methods = st.sampled_from(["dopri5", "tsit5", "bosh3", "dopri8", "rk4", "euler", "nope"])
behaviours = st.sampled_from(["linear"] * 6 + ["nan", "inf", "wrong_shape", "not_tensor",
                                               "wrong_dtype"])


def _attempt(call):
    """Run ``call``; a documented error (with a message) is a valid outcome -> None."""
    try:
        out = call()
    except DOCUMENTED as err:
        assert str(err)
        event(f"raised {type(err).__name__}")
        return None
    event("returned a result")
    return out


def _field(kind):
    def f(t, y):
        if kind == "linear":
            return -0.5 * y
        if kind == "nan":
            return torch.full_like(y, math.nan)
        if kind == "inf":
            return y * math.inf + math.inf
        if kind == "wrong_shape":
            return torch.zeros(y.numel() + 1, dtype=y.dtype)
        if kind == "not_tensor":
            return 1.0
        return y.to(torch.float16)
    return f


def _check_result(ys, y0, t, kind):
    # a misbehaving f can only go unnoticed when nothing is integrated (a single time)
    assert kind == "linear" or len(t) == 1, (kind, t)
    assert ys.shape == (len(t), *y0.shape)
    assert torch.isfinite(ys).all()


@FUZZ
@given(shape=shapes, dtype=dtypes, t=time_grids, rtol=tolerances, atol=tolerances,
       method=ode_methods, kind=behaviours, per_sample=st.booleans())
def test_fuzz_solve_ode(shape, dtype, t, rtol, atol, method, kind, per_sample):
    y0 = torch.ones(shape, dtype=dtype)
    sol = _attempt(lambda: solve_ode(_field(kind), y0, t, method=method, rtol=rtol, atol=atol,
                                     per_sample=per_sample, max_steps=200))
    if sol is None:
        return
    _check_result(sol.ys, y0, t, kind)


@FUZZ
@given(shape=shapes, t=time_grids, kind=behaviours,
       options=st.sampled_from([None, {"step_size": 0.1}, {"step_size": -1.0},
                                {"step_size": math.nan}, {"bogus": 1}, {"max_num_steps": 50}]))
def test_fuzz_odeint(shape, t, kind, options):
    y0 = torch.ones(shape, dtype=torch.float64)
    method = "rk4" if options and "step_size" in options else "dopri5"
    ys = _attempt(lambda: odeint(_field(kind), y0, t, method=method, options=options))
    if ys is None:
        return
    _check_result(ys, y0, t, kind)


class _SDE:
    def __init__(self, noise_type, kind, d):
        self.noise_type, self.sde_type, self.kind, self.d = noise_type, "ito", kind, d

    def f(self, t, y):
        return _field(self.kind)(t, y)

    def g(self, t, y):
        if self.noise_type == "diagonal":
            return 0.3 * torch.ones_like(y)
        if self.noise_type == "scalar":
            return 0.3 * torch.ones(*y.shape, 1, dtype=y.dtype)
        return 0.3 * torch.ones(*y.shape, 2, dtype=y.dtype)


@FUZZ
@given(B=st.integers(1, 3), d=st.integers(1, 3), dtype=dtypes, t=time_grids, kind=behaviours,
       noise_type=st.sampled_from(["diagonal", "scalar", "general", "additive"] * 2 + ["bogus"]),
       method=st.sampled_from([None, None, "euler", "milstein", "srk", "heun", "nope"]),
       dt=st.sampled_from([0.05, 0.1, 0.02, 0.05, 0.0, -0.1, math.nan]))
def test_fuzz_sdeint(B, d, dtype, t, kind, noise_type, method, dt):
    y0 = torch.ones(B, d, dtype=dtype)
    ys = _attempt(lambda: sdeint(_SDE(noise_type, kind, d), y0, t, method=method, dt=dt))
    if ys is None:
        return
    _check_result(ys, y0, t, kind)


@FUZZ
@given(shape=shapes, dtype=dtypes,
       method=st.sampled_from(["exact", "hutchinson", "hutch++"] * 2 + ["nope"]),
       n_probes=st.integers(-1, 6),
       probe=st.sampled_from(["rademacher", "gaussian"] * 3 + ["x"]),
       kind=st.sampled_from(["linear"] * 4 + ["nan", "wrong_shape", "not_tensor"]))
def test_fuzz_divergence(shape, dtype, method, n_probes, probe, kind):
    x = torch.ones(shape, dtype=dtype)
    out = _attempt(lambda: divergence(lambda z: _field(kind)(None, z), x, method=method,
                                      n_probes=n_probes, probe=probe))
    if out is None:
        return
    fx, div = out
    assert fx.shape == x.shape and div.shape == (x.shape[0],)
    if kind == "linear":
        assert torch.isfinite(div).all()


@FUZZ
@given(args=st.tuples(st.one_of(st.floats(1e-3, 60.0), odd_floats),
                      st.one_of(st.floats(1e-3, 60.0), odd_floats)),
       cls=st.sampled_from(["VESDE", "VPSDE", "SubVPSDE", "CosineVPSDE", "EDMSDE"]))
def test_fuzz_sde_constructors(args, cls):
    import dynamics
    sde = _attempt(lambda: getattr(dynamics, cls)(*args))
    if sde is None:
        return
    mean, std = sde.marginal(torch.ones(2, 3), torch.full((2,), float(sde.T) / 2))
    assert torch.isfinite(mean).all() and torch.isfinite(std).all()
