"""Every error path of the ODE solvers, with its type and message.

Invalid input raises a `SolverError` subclass (also a ValueError / TypeError) whose message
names the argument, the expected form and what was received. Numerical failure raises a
`SolverError` carrying the time reached (``err.t``), the partial solution (``err.ys``:
outputs not reached are NaN) and, for adaptive solves, the statistics.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from solvers import (TABLEAUS, FunctionOutputError, InvalidInputError, MaxStepsExceededError,
                     NonFiniteError, PIDController, SolverError, StepSizeUnderflowError, odeint,
                     solve_ode)

DT = torch.float64
Y0 = torch.ones(2, 3, dtype=DT)
T01 = torch.tensor([0.0, 1.0], dtype=DT)


def decay(t, y):
    return -y


# --------------------------------------------------------------------------- hierarchy

def test_error_hierarchy():
    assert issubclass(InvalidInputError, SolverError) and issubclass(InvalidInputError, ValueError)
    assert issubclass(FunctionOutputError, SolverError)
    assert issubclass(FunctionOutputError, TypeError)
    for cls in (NonFiniteError, StepSizeUnderflowError, MaxStepsExceededError):
        assert issubclass(cls, SolverError)


# --------------------------------------------------------------------------- times

@pytest.mark.parametrize("t", [torch.zeros(2, 2, dtype=DT), torch.tensor(1.0, dtype=DT),
                               torch.zeros(0, dtype=DT)], ids=["2d", "0d", "empty"])
def test_t_not_1d(t):
    with pytest.raises(InvalidInputError,
                       match=r"`t` must be a non-empty 1-D tensor; got Tensor of shape "
                             + re.escape(str(tuple(t.shape)))):
        odeint(decay, Y0, t)


@pytest.mark.parametrize("t", [[0.0, 1.0, 1.0], [0.0, 1.0, 0.5], [1.0, 0.0, 0.5]])
def test_t_not_strictly_monotone(t):
    with pytest.raises(InvalidInputError,
                       match=r"`t` must be strictly increasing or strictly decreasing; got "
                             + re.escape(str(t))):
        odeint(decay, Y0, torch.tensor(t, dtype=DT))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_t_not_finite(bad):
    with pytest.raises(InvalidInputError, match=r"`t` must be finite; got \[0\.0, (nan|inf)\]"):
        odeint(decay, Y0, torch.tensor([0.0, bad], dtype=DT))


def test_t_as_list_is_accepted():
    ys = odeint(decay, Y0, [0.0, 1.0])
    assert torch.allclose(ys[-1], Y0 * math.exp(-1), atol=1e-7)


# --------------------------------------------------------------------------- f's output

def test_f_wrong_shape():
    with pytest.raises(FunctionOutputError,
                       match=r"`func` returned shape \(2, 2\) but the state has shape \(2, 3\)"):
        odeint(lambda t, y: y[:, :2], Y0, T01)


def test_f_wrong_shape_per_sample():
    with pytest.raises(FunctionOutputError, match=r"returned shape \(2, 3, 1\)"):
        odeint(lambda t, y: y.unsqueeze(-1), Y0, T01, options={"per_sample": True})


def test_f_wrong_dtype():
    with pytest.raises(FunctionOutputError,
                       match=r"`func` returned dtype torch\.float32 but the state has dtype "
                             r"torch\.float64"):
        odeint(lambda t, y: (-y).float(), Y0, T01)


@pytest.mark.parametrize("out,desc", [([1.0], "list of length 1"), (None, "NoneType None"),
                                      (np.ones((2, 3)), "ndarray of shape")])
def test_f_returns_non_tensor(out, desc):
    with pytest.raises(FunctionOutputError,
                       match=r"`func` must return a tensor shaped like y \(2, 3\); got "
                             + re.escape(desc)):
        odeint(lambda t, y: out, Y0, T01)


def test_f_returns_wrong_structure_for_tuple_state():
    with pytest.raises(FunctionOutputError, match=r"same structure as y \(2 tensors\)"):
        odeint(lambda t, s: s[0], (Y0, Y0.clone()), T01)


def test_f_wrong_shape_in_tuple_part():
    with pytest.raises(FunctionOutputError, match=r"returned shape \(2,\) but the state has "
                                                  r"shape \(2, 3\)"):
        odeint(lambda t, s: (s[0], s[1][:, 0]), (Y0, Y0.clone()), T01)


def test_func_not_callable():
    with pytest.raises(InvalidInputError, match=r"`func` must be callable f\(t, y\); got int"):
        odeint(3, Y0, T01)


# --------------------------------------------------------------------------- arguments

def test_unknown_method_lists_valid_ones():
    with pytest.raises(InvalidInputError, match=r"`method` must be one of .*; got 'rk45'") as ei:
        odeint(decay, Y0, T01, method="rk45")
    msg = str(ei.value)
    for name in TABLEAUS:
        assert f"'{name}'" in msg


@pytest.mark.parametrize("h", [0.0, -0.1, math.nan, math.inf])
def test_step_size_invalid(h):
    with pytest.raises(InvalidInputError,
                       match=r"`step_size` must be a finite number > 0; got " + re.escape(repr(h))):
        odeint(decay, Y0, T01, method="rk4", options={"step_size": h})


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value", [-1e-3, math.nan, math.inf])
def test_tolerance_invalid(name, value):
    with pytest.raises(InvalidInputError,
                       match=rf"`{name}` must be a finite number >= 0; got "
                             rf"{re.escape(repr(value))}"):
        odeint(decay, Y0, T01, **{name: value})


def test_tolerances_both_zero():
    with pytest.raises(InvalidInputError, match=r"`rtol` and `atol` cannot both be 0"):
        odeint(decay, Y0, T01, rtol=0.0, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_y0_not_floating(dtype):
    with pytest.raises(InvalidInputError,
                       match=rf"`y0` must have a floating-point dtype; got Tensor of shape "
                             rf"\(2, 3\) and dtype {re.escape(str(dtype))}"):
        odeint(decay, torch.ones(2, 3, dtype=dtype), T01)


@pytest.mark.parametrize("y0", [3.0, [1.0, 2.0]], ids=["float", "list"])
def test_y0_not_tensor(y0):
    with pytest.raises(InvalidInputError, match=r"`y0` must be a floating-point tensor"):
        odeint(decay, y0, T01)


def test_y0_tuple_mixed_dtypes():
    with pytest.raises(InvalidInputError, match=r"must share dtype and device"):
        odeint(lambda t, s: s, (Y0, Y0.float()), T01)


def test_y0_empty_tuple():
    with pytest.raises(InvalidInputError, match=r"non-empty tuple"):
        odeint(decay, (), T01)


def test_per_sample_needs_batch_dim():
    with pytest.raises(InvalidInputError,
                       match=r"`per_sample=True` needs `y0` of shape \(B, \*event\)"):
        odeint(decay, torch.tensor(1.0, dtype=DT), T01, options={"per_sample": True})


def test_unknown_option_key():
    with pytest.raises(InvalidInputError,
                       match=r"unknown `options` \['stepsize'\]; valid options are "
                             r"\[.*'step_size'"):
        odeint(decay, Y0, T01, options={"stepsize": 0.1})


@pytest.mark.parametrize("opts,match", [
    ({"first_step": -1.0}, r"`first_step` must be a finite number > 0; got -1\.0"),
    ({"first_step": 0.0}, r"`first_step` must be a finite number > 0; got 0\.0"),
    ({"max_steps": 0}, r"`max_steps` must be an integer >= 1; got 0"),
    ({"max_steps": 2.5}, r"`max_steps` must be an integer >= 1; got 2\.5"),
    ({"poll_every": 0}, r"`poll_every` must be an integer >= 1; got 0"),
])
def test_option_values_invalid(opts, match):
    with pytest.raises(InvalidInputError, match=match):
        odeint(decay, Y0, T01, options=opts)


def test_first_step_with_fixed_method():
    with pytest.raises(InvalidInputError, match=r"`first_step` applies to adaptive methods only"):
        odeint(decay, Y0, T01, method="rk4", options={"first_step": 0.1})


def test_controller_type():
    with pytest.raises(InvalidInputError, match=r"`controller` must be a PIDController; got dict"):
        solve_ode(decay, Y0, T01, controller={"safety": 0.9})


# --------------------------------------------------------------------------- dense output

def test_evaluate_needs_dense():
    sol = solve_ode(decay, Y0, T01)
    with pytest.raises(InvalidInputError, match=r"needs a solve with `dense=True`"):
        sol.evaluate(0.5)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("tq", [1.5, -0.1, [0.5, 1.01]])
def test_evaluate_outside_interval(tq, per_sample):
    sol = solve_ode(decay, Y0, T01, dense=True, per_sample=per_sample)
    with pytest.raises(InvalidInputError,
                       match=r"`t` for evaluate must lie in the solved interval \[0, 1\]"):
        sol.evaluate(tq)


def test_evaluate_outside_interval_reverse_time():
    sol = solve_ode(decay, Y0, torch.tensor([2.0, 1.0], dtype=DT), dense=True)
    sol.evaluate([1.0, 1.5, 2.0])  # inside: fine
    with pytest.raises(InvalidInputError, match=r"solved interval \[1, 2\]; got values in "
                                                r"\[0\.5, 0\.5\]"):
        sol.evaluate(0.5)


# --------------------------------------------------------------------------- numerical failure

TS_BLOWUP = torch.tensor([0.0, 0.5, 0.9, 2.0], dtype=DT)


def _blowup(t, y):  # y' = y^2, y(0) = 1: y = 1 / (1 - t), blows up at t = 1
    return y * y


def _check_partial(err, expected_filled, n_out):
    """Outputs before the failure hold the solution, the rest are NaN."""
    assert err.ys is not None and err.ys.shape[0] == n_out
    k = len(expected_filled)
    assert torch.allclose(err.ys[:k].reshape(k, -1)[:, 0],
                          torch.tensor(expected_filled, dtype=DT), rtol=1e-5, atol=0)
    assert torch.isnan(err.ys[k:]).all(), err.ys


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "tsit5", "dopri8"])
def test_blowup_adaptive(method):
    with pytest.raises((StepSizeUnderflowError, NonFiniteError), match=r"at t=1(\.0+)?\b") as ei:
        odeint(_blowup, torch.ones(1, dtype=DT), TS_BLOWUP, method=method)
    err = ei.value
    assert abs(float(err.t) - 1.0) < 1e-3
    _check_partial(err, [1.0, 2.0, 10.0], 4)
    assert err.stats is not None and int(err.stats["n_steps"]) > 0


def test_singular_rhs_underflow():
    """f = 1/(1 - t): y = -log(1 - t), singular at t = 1."""
    with pytest.raises(StepSizeUnderflowError,
                       match=r"the step size underflowed at t=1 \(integrating to t=2\)") as ei:
        odeint(lambda t, y: torch.ones_like(y) / (1 - t), torch.zeros(1, dtype=DT), TS_BLOWUP)
    err = ei.value
    assert abs(float(err.t) - 1.0) < 1e-3
    _check_partial(err, [0.0, math.log(2.0), -math.log(0.1)], 4)


def test_blowup_fixed_step_non_finite():
    with pytest.raises(NonFiniteError, match=r"non-finite at t=1\.03 \(step 103 of 200\)") as ei:
        odeint(_blowup, torch.ones(1, dtype=DT), TS_BLOWUP, method="rk4",
               options={"step_size": 0.01})
    err = ei.value
    assert float(err.t) == pytest.approx(1.03)
    _check_partial(err, [1.0, 2.0, 10.0], 4)


def test_nan_from_f_adaptive():
    """f returns NaN after t = 0.7: the solve stops there with an error, never silent NaN."""
    def f(t, y):
        return torch.where(t > 0.7, torch.full_like(y, math.nan), -y)

    with pytest.raises((StepSizeUnderflowError, NonFiniteError), match=r"at t=0\.7\b") as ei:
        odeint(f, torch.ones(1, dtype=DT), TS_BLOWUP)
    err = ei.value
    assert abs(float(err.t) - 0.7) < 1e-6
    _check_partial(err, [1.0, math.exp(-0.5)], 4)


def test_nan_from_f_fixed_step():
    def f(t, y):
        return torch.where(t > 0.7, torch.full_like(y, math.nan), -y)

    with pytest.raises(NonFiniteError, match=r"non-finite at t=0\.8") as ei:
        odeint(f, torch.ones(1, dtype=DT), TS_BLOWUP, method="euler", options={"step_size": 0.1})
    _check_partial(ei.value, [1.0, 0.9 ** 5], 4)


def test_non_finite_y0():
    with pytest.raises(NonFiniteError, match=r"non-finite at t=0 ") as ei:
        odeint(decay, torch.tensor([1.0, math.nan], dtype=DT), TS_BLOWUP)
    err = ei.value
    assert float(err.t) == 0.0
    assert torch.isnan(err.ys[1:]).all()


def test_blowup_per_sample_only_failing_row():
    """Per sample: row 0 blows up at t = 1, rows 1, 2 (y0 = 0.1, 0.2) finish at t = 2.
    err.t is per row; the finished rows' outputs are complete, row 0's are NaN after t=1."""
    y0 = torch.tensor([[1.0], [0.1], [0.2]], dtype=DT)
    with pytest.raises((StepSizeUnderflowError, NonFiniteError),
                       match=r"for 1 of 3 rows") as ei:
        solve_ode(_blowup, y0, TS_BLOWUP, per_sample=True)
    err = ei.value
    assert err.t.shape == (3,)
    assert abs(float(err.t[0]) - 1.0) < 1e-3 and torch.equal(err.t[1:], torch.full((2,), 2.0,
                                                                                   dtype=DT))
    exact = 1.0 / (1.0 / y0[1:, 0] - TS_BLOWUP.unsqueeze(-1))           # (4, 2)
    assert torch.allclose(err.ys[:, 1:, 0], exact, rtol=1e-6)
    assert torch.allclose(err.ys[:3, 0, 0], torch.tensor([1.0, 2.0, 10.0], dtype=DT), rtol=1e-5)
    assert torch.isnan(err.ys[3, 0]).all()
    assert err.stats["nfe"].shape == (3,)


def test_step_size_underflow_at_dt_min():
    # regression: a step rejected at dt_min used to be retried until max_steps
    with pytest.raises(StepSizeUnderflowError, match=r"underflowed at t=0\.9"):
        solve_ode(_blowup, torch.ones(1, dtype=DT), TS_BLOWUP, max_steps=300,
                  controller=PIDController(dt_min=1e-2))


@pytest.mark.parametrize("key", ["max_steps", "max_num_steps"])
def test_max_steps_exceeded(key):
    ts = torch.tensor([0.0, 0.1, 0.5, 50.0, 100.0], dtype=DT)
    with pytest.raises(MaxStepsExceededError,
                       match=r"`max_steps`=20 steps were attempted without reaching t=100; "
                             r"stopped at t=\d") as ei:
        odeint(lambda t, y: torch.cos(10 * t) * y, torch.ones(3, dtype=DT), ts,
               options={key: 20})
    err = ei.value
    t_reached = float(err.t)
    assert 0.5 < t_reached < 50.0
    assert int(err.stats["n_steps"]) == 20
    exact = torch.exp(torch.sin(10 * ts[:3]) / 10)
    assert torch.allclose(err.ys[:3, 0], exact, rtol=1e-6)
    assert torch.isnan(err.ys[3:]).all(), err.ys  # outputs at t=50 and t=100 not reached


def test_max_steps_exceeded_per_sample():
    y0 = torch.tensor([[1.0], [1.0], [1.0]], dtype=DT)
    k = torch.tensor([[1.0], [50.0], [100.0]], dtype=DT)
    with pytest.raises(MaxStepsExceededError, match=r"for 2 of 3 rows") as ei:
        solve_ode(lambda t, y: -k * y * torch.cos(k * t.unsqueeze(-1)), y0,
                  torch.tensor([0.0, 2.0], dtype=DT), per_sample=True, max_steps=40)
    err = ei.value
    assert err.t.shape == (3,) and float(err.t[0]) == 2.0 and bool((err.t[1:] < 2.0).all())
    assert torch.isfinite(err.ys[-1, 0]).all() and torch.isnan(err.ys[-1, 1:]).all()
    assert int(err.stats["n_steps"][0]) < 40 and bool((err.stats["n_steps"][1:] == 40).all())


def test_failure_never_hangs_on_poll_every():
    """With polling every 16 steps the failure still surfaces (a few steps late)."""
    with pytest.raises((StepSizeUnderflowError, NonFiniteError)) as ei:
        solve_ode(_blowup, torch.ones(1, dtype=DT), TS_BLOWUP, poll_every=16)
    assert abs(float(ei.value.t) - 1.0) < 1e-3
