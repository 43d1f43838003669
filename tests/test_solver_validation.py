"""Bad input to every solver entry point: one clear message, never a hang, a traceback from
the internals or a silent result (issue 14, item 5).

Each table row is (id, call, error class, regex the message must match). Messages name the
argument, the expected form and what was received. Numerical failures carry stats; empty
batches return empty results; float16 with adaptive control is refused up front.
"""
from __future__ import annotations

import math
import time

import pytest
import torch

from solvers import (BrownianInterval, ButcherTableau, ErrorNorm, FunctionOutputError,
                     GridIncrements, InvalidInputError, NonFiniteError, PIDController,
                     divergence, odeint, odeint_adjoint, sdeint, sdeint_adjoint, solve_ode,
                     solve_sde)

F64 = torch.float64
Y0 = torch.ones(3, 2, dtype=F64)
T = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
CPU = torch.device("cpu")


def decay(t, y):
    return -y


def nan_after_half(t, y):
    t = t.reshape(-1, *([1] * (y.dim() - 1))) if t.dim() else t
    return torch.where(t > 0.5, torch.full_like(y, math.nan), -y)


class Toy:
    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return -y

    def g(self, t, y):
        return 0.1 * torch.ones_like(y)


class NanAfterHalf(Toy):
    def f(self, t, y):
        return nan_after_half(t, y)


class ToyModule(torch.nn.Module, Toy):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(1.0, dtype=F64))

    def f(self, t, y):
        return -self.a * y


class Field(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2).double()

    def forward(self, t, y):
        return self.lin(y)


def _sde(**kw):
    return lambda: solve_sde(Toy(), Y0, T, method="euler", **kw)


def _adaptive_sde(**kw):
    return lambda: solve_sde(Toy(), Y0, T, method="euler", adaptive=True, **kw)


def _tableau(**kw):
    base = dict(name="t", c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), order=2)
    base.update(kw)
    return lambda: ButcherTableau(**base)


def _check(call, err, pattern):
    start = time.perf_counter()
    with pytest.raises(err, match=pattern):
        call()
    assert time.perf_counter() - start < 5.0, "validation must fail fast, not after a crawl"


# --------------------------------------------------------------------------- ODE

ODE_CASES = [
    ("poll_every=True", lambda: solve_ode(decay, Y0, T, poll_every=True),
     r"`poll_every` must be an integer >= 1; got True"),
    ("per_sample='yes'", lambda: solve_ode(decay, Y0, T, per_sample="yes"),
     r"`per_sample` must be True or False; got str 'yes'"),
    ("dense=1", lambda: solve_ode(decay, Y0, T, dense=1),
     r"`dense` must be True or False; got int 1"),
    ("compact='x'", lambda: solve_ode(decay, Y0, T, per_sample=True, compact="x"),
     r"`compact` must be True or False; got str 'x'"),
    ("error_norm not callable", lambda: solve_ode(decay, Y0, T, error_norm="x"),
     r"`error_norm` must be callable; got str 'x'"),
    ("max_steps='x'", lambda: solve_ode(decay, Y0, T, max_steps="x"),
     r"`max_steps` must be an integer >= 1; got 'x'"),
    ("odeint options='x'", lambda: odeint(decay, Y0, T, options="x"),
     r"`options` must be a dict or None; got str 'x'"),
    ("odeint options safety='x'", lambda: odeint(decay, Y0, T, options={"safety": "x"}),
     r"PIDController: `safety` must be a real number; got str 'x'"),
    ("t=['a']", lambda: odeint(decay, Y0, ["a", "b"]),
     r"`t` must be a 1-D tensor of times; got list of length 2"),
    ("method tableau without dense", lambda: solve_ode(
        decay, Y0, T, method=_tableau(b_err=(0.5, -0.5), error_order=1)()),
     r"ButcherTableau 't' has no dense output"),
    ("adjoint_rtol=nan", lambda: odeint_adjoint(Field(), Y0, T, adjoint_rtol=math.nan),
     r"`adjoint_rtol` must be a finite number >= 0; got nan"),
    ("adjoint rtol=atol=0", lambda: odeint_adjoint(Field(), Y0, T, adjoint_rtol=0.0,
                                                   adjoint_atol=0.0),
     r"`adjoint_rtol` and `adjoint_atol` cannot both be 0"),
    ("adjoint_method bogus", lambda: odeint_adjoint(Field(), Y0, T, adjoint_method="bogus"),
     r"`adjoint_method` must be one of \[.*'dopri5'.*\] or a ButcherTableau; got 'bogus'"),
    ("adjoint step_size=-1", lambda: odeint_adjoint(Field(), Y0, T,
                                                    adjoint_options={"step_size": -1.0}),
     r"`adjoint_options\['step_size'\]` must be a finite number > 0; got -1\.0"),
    ("adjoint max_steps='x'", lambda: odeint_adjoint(Field(), Y0, T,
                                                     adjoint_options={"max_steps": "x"}),
     r"`adjoint_options\['max_steps'\]` must be an integer >= 1; got 'x'"),
    ("evaluate nan", lambda: solve_ode(decay, Y0, T, dense=True).evaluate(math.nan),
     r"`t` for evaluate must lie in the solved interval \[0, 1\]"),
    ("evaluate 'a'", lambda: solve_ode(decay, Y0, T, dense=True).evaluate("a"),
     r"`t` for evaluate must be a time or a 1-D sequence of times; got 'a'"),
]


@pytest.mark.parametrize("call,pattern", [c[1:] for c in ODE_CASES],
                         ids=[c[0] for c in ODE_CASES])
def test_ode_bad_input(call, pattern):
    _check(call, InvalidInputError, pattern)


@pytest.mark.parametrize("norm,got", [
    (lambda x: x.abs(), r"got Tensor of shape \(3, 2\)"),
    (lambda x: 1.0, r"got float 1\.0"),
    (lambda x: x.sum() > 0, r"got Tensor of shape \(\) and dtype torch\.bool"),
], ids=["elementwise", "float", "bool"])
def test_error_norm_of_the_wrong_form(norm, got):
    _check(lambda: solve_ode(decay, Y0, T, error_norm=norm), FunctionOutputError,
           r"`error_norm` must map the flattened state \(3, 2\) to a floating-point tensor of "
           r"shape \(\); " + got)


def test_error_norm_per_sample_shape():
    _check(lambda: solve_ode(decay, Y0, T, per_sample=True, error_norm=lambda x: x.sum()),
           FunctionOutputError, r"tensor of shape \(3,\); got Tensor of shape \(\)")


def test_adjoint_norm_of_the_wrong_shape_names_error_norm():
    y = Y0.clone().requires_grad_()
    ys = odeint_adjoint(Field(), y, T, adjoint_options={"norm": lambda z: z.abs()})
    with pytest.raises(FunctionOutputError, match=r"`error_norm` must map the flattened state"):
        ys.sum().backward()


# --------------------------------------------------------------------------- SDE

SDE_CASES = [
    ("adaptive rtol=nan", _adaptive_sde(rtol=math.nan),
     r"`rtol` must be a finite number >= 0; got nan"),
    ("adaptive atol=nan", _adaptive_sde(atol=math.nan),
     r"`atol` must be a finite number >= 0; got nan"),
    ("adaptive rtol=inf", _adaptive_sde(rtol=math.inf),
     r"`rtol` must be a finite number >= 0; got inf"),
    ("adaptive rtol=True", _adaptive_sde(rtol=True),
     r"`rtol` must be a finite number >= 0; got True"),
    ("adaptive rtol=atol=0", _adaptive_sde(rtol=0.0, atol=0.0),
     r"`rtol` and `atol` cannot both be 0"),
    ("adaptive='yes'", _sde(adaptive="yes"), r"`adaptive` must be True or False; got str"),
    ("dt_min='x'", _sde(dt_min="x"), r"`dt_min` must be a finite number > 0; got 'x'"),
    ("poll_every=0", _sde(options={"poll_every": 0}),
     r"`options\['poll_every'\]` must be an integer >= 1; got 0"),
    ("poll_every='x'", _sde(options={"poll_every": "x"}),
     r"`options\['poll_every'\]` must be an integer >= 1; got 'x'"),
    ("poll_every=2.5", _sde(options={"poll_every": 2.5}),
     r"`options\['poll_every'\]` must be an integer >= 1; got 2\.5"),
    ("adaptive poll_every=0", _adaptive_sde(options={"poll_every": 0}),
     r"`options\['poll_every'\]` must be an integer >= 1; got 0"),
    ("controller='pid'", _adaptive_sde(options={"controller": "pid"}),
     r"`options\['controller'\]` must be a PIDController; got str 'pid'"),
    ("seed='abc'", _sde(options={"seed": "abc"}),
     r"`options\['seed'\]` must be an integer seed; got str 'abc'"),
    ("seed=2.5", _sde(options={"seed": 2.5}),
     r"`options\['seed'\]` must be an integer seed; got float 2\.5"),
    ("max_steps='x'", _sde(options={"max_steps": "x"}),
     r"`options\['max_steps'\]` must be an integer >= 1; got 'x'"),
    ("max_steps=0", _adaptive_sde(options={"max_steps": 0}),
     r"`options\['max_steps'\]` must be an integer >= 1; got 0"),
    ("chunk_size=0", _sde(options={"chunk_size": 0}),
     r"`options\['chunk_size'\]` must be an integer >= 1; got 0"),
    ("chunk_size=-3", _sde(options={"chunk_size": -3}),
     r"`options\['chunk_size'\]` must be an integer >= 1; got -3"),
    ("tol='x'", _adaptive_sde(options={"tol": "x"}),
     r"`options\['tol'\]` must be a finite number > 0; got 'x'"),
    ("grad_free='x'", lambda: solve_sde(Toy(), Y0, T, method="milstein",
                                        options={"grad_free": "x"}),
     r"`options\['grad_free'\]` must be True or False; got str 'x'"),
    ("options='x'", _sde(options="x"), r"`options` must be a dict or None; got str 'x'"),
    ("names='x'", _sde(names="x"), r"`names` must be a dict or None; got str 'x'"),
    ("bm='x'", lambda: sdeint(Toy(), Y0, T, bm="x"),
     r"`bm` must be a Brownian motion called as bm\(ta, tb\).*; got str 'x'"),
    ("ts nan", lambda: sdeint(Toy(), Y0, [0.0, math.nan]),
     r"`ts` must be finite; got \[0\.0, nan\]"),
    ("adjoint seed='abc'", lambda: sdeint_adjoint(ToyModule(), Y0, T, options={"seed": "abc"}),
     r"`options\['seed'\]` must be an integer seed; got str 'abc'"),
    ("adjoint adaptive rtol=nan", lambda: sdeint_adjoint(ToyModule(), Y0, T, method="euler",
                                                         adaptive=True, rtol=math.nan),
     r"`rtol` must be a finite number >= 0; got nan"),
]


@pytest.mark.parametrize("call,pattern", [c[1:] for c in SDE_CASES],
                         ids=[c[0] for c in SDE_CASES])
def test_sde_bad_input(call, pattern):
    _check(call, InvalidInputError, pattern)


@pytest.mark.parametrize("bad_t", [[0.0, 1.0, 1.0], [0.0, math.inf], torch.zeros(2, 2)],
                         ids=["repeated", "inf", "2d"])
def test_ode_and_sde_share_the_time_check(bad_t):
    """One validation module: the same bad grid gets the same message, `t` vs `ts`."""
    with pytest.raises(InvalidInputError) as ode_err:
        odeint(decay, Y0, bad_t)
    with pytest.raises(InvalidInputError) as sde_err:
        sdeint(Toy(), Y0, bad_t)
    assert str(ode_err.value).replace("`t`", "`ts`") == str(sde_err.value)


@pytest.mark.parametrize("rtol,atol", [(math.nan, 1e-3), (0.0, 0.0), (True, 1e-3)])
def test_ode_and_sde_share_the_tolerance_check(rtol, atol):
    with pytest.raises(InvalidInputError) as ode_err:
        solve_ode(decay, Y0, T, rtol=rtol, atol=atol)
    with pytest.raises(InvalidInputError) as sde_err:
        solve_sde(Toy(), Y0, T, method="euler", adaptive=True, rtol=rtol, atol=atol)
    assert str(ode_err.value) == str(sde_err.value)


def test_controller_dt_min_above_dt_min_terminates():
    """Steps are accepted at the controller's dt_min (used to retry forever)."""
    sol = solve_sde(Toy(), Y0, T, method="euler", adaptive=True, dt=0.5,
                    options={"seed": 0, "controller": PIDController(dt_min=0.25)})
    assert torch.isfinite(sol.ys).all() and sol.stats["n_steps"] < 50


# --------------------------------------------------------------------------- Brownian motion

BI = "BrownianInterval: "
GI = "GridIncrements: "


def _bi(**kw):
    base = dict(t0=0.0, t1=1.0, size=(2, 3))
    base.update(kw)
    return lambda: BrownianInterval(**base)


def _gi(steps=(0.1,) * 4, size=(2,), dtype=F64, entropy=0, levy=False, chunk_size=2, k=0):
    return lambda: GridIncrements(list(steps), size, dtype, CPU, entropy, levy, chunk_size).get(k)


BROWNIAN_CASES = [
    ("entropy='abc'", _bi(entropy="abc"), BI + r"`entropy` must be an integer seed; got str"),
    ("entropy=2.5", _bi(entropy=2.5), BI + r"`entropy` must be an integer seed; got float 2\.5"),
    ("entropy=nan", _bi(entropy=math.nan), BI + r"`entropy` must be an integer seed; got float"),
    ("dtype=int64", _bi(dtype=torch.int64),
     BI + r"`dtype` must be a floating-point torch\.dtype .*; got torch\.int64"),
    ("dtype='float32'", _bi(dtype="float32"), BI + r"`dtype` must be .*; got 'float32'"),
    ("size=(2.5,)", _bi(size=(2.5,)),
     BI + r"`size` must be a shape \(an int or a sequence of ints >= 0\); got \(2\.5,\)"),
    ("size=-1", _bi(size=-1), BI + r"`size` must be a shape .*; got -1"),
    ("size='ab'", _bi(size="ab"), BI + r"`size` must be a shape .*; got 'ab'"),
    ("size=True", _bi(size=True), BI + r"`size` must be a shape .*; got True"),
    ("t0='a'", _bi(t0="a"), BI + r"`t0` must be a finite number; got 'a'"),
    ("t1=nan", _bi(t1=math.nan), BI + r"`t1` must be a finite number; got nan"),
    ("tol='x'", _bi(tol="x"), BI + r"`tol` must be a finite number > 0; got 'x'"),
    ("query ta=nan", lambda: _bi(entropy=0)()(math.nan, 0.5),
     BI + r"`ta` must be a finite number; got nan"),
    ("query tb=nan", lambda: _bi(entropy=0)()(0.2, math.nan),
     BI + r"`tb` must be a finite number; got nan"),
    ("query ta='a'", lambda: _bi(entropy=0)()("a", 0.5),
     BI + r"`ta` must be a finite number; got 'a'"),
    ("grid chunk_size=0", _gi(chunk_size=0), GI + r"`chunk_size` must be an integer >= 1; got 0"),
    ("grid entropy='abc'", _gi(entropy="abc"), GI + r"`entropy` must be an integer seed"),
    ("grid dtype=int64", _gi(dtype=torch.int64), GI + r"`dtype` must be a floating-point"),
    ("grid steps nan", _gi(steps=(0.1, math.nan)),
     GI + r"`steps` must be a sequence of finite numbers; got \[0\.1, nan\]"),
    ("grid size=(2.5,)", _gi(size=(2.5,)), GI + r"`size` must be a shape"),
    ("grid step out of range", _gi(k=10), GI + r"step index must lie in \[0, 4\)"),
]


@pytest.mark.parametrize("call,pattern", [c[1:] for c in BROWNIAN_CASES],
                         ids=[c[0] for c in BROWNIAN_CASES])
def test_brownian_bad_input(call, pattern):
    _check(call, InvalidInputError, pattern)


def test_brownian_accepts_integer_like_entropy_and_tensor_times():
    bm = BrownianInterval(0.0, 1.0, (2,), entropy=torch.tensor(7), dtype=F64)
    ref = BrownianInterval(0.0, 1.0, (2,), entropy=7, dtype=F64)
    ta, tb = torch.tensor(0.1, dtype=F64), torch.tensor(0.6, dtype=F64)
    assert torch.equal(bm(ta, tb), ref(0.1, 0.6))


# --------------------------------------------------------------------------- tableaus, controllers

TABLEAU_CASES = [
    ("a row too long", _tableau(a=((), (1.0, 2.0))),
     r"ButcherTableau 't': `a\[1\]` must have 1 entries; got 2"),
    ("a too few rows", _tableau(a=((),)), r"`a` must hold 2 rows"),
    ("b wrong length", _tableau(b=(1.0,)), r"`b` must have 2 entries; got 1"),
    ("row sum != c", _tableau(a=((), (0.5,))),
     r"row a\[1\] must sum to c\[1\] = 1\.0; got sum 0\.5"),
    ("c[0] != 0", _tableau(c=(0.5, 1.0), a=((), (0.5,))), r"`c\[0\]` must be 0"),
    ("b sum != 1", _tableau(b=(0.5, 0.6)), r"`b` must sum to 1 \(consistency\); got sum 1\.1"),
    ("nan coefficient", _tableau(b=(math.nan, 0.5)), r"`b` must be a sequence of finite numbers"),
    ("string row", _tableau(b="ab"), r"`b` must be a sequence of finite numbers; got 'ab'"),
    ("order=0", _tableau(order=0), r"`order` must be an integer >= 1; got 0"),
    ("b_err without error_order", _tableau(b_err=(0.5, -0.5)),
     r"`error_order` must be an integer >= 1 \(b_err is given\); got None"),
    ("b_err wrong length", _tableau(b_err=(0.5,), error_order=1), r"`b_err` must have 2 entries"),
    ("b_err_low without b_err", _tableau(b_err_low=(0.5, -0.5)), r"`b_err_low` needs `b_err`"),
    ("bad fsal", _tableau(b_err=(0.5, -0.5), error_order=1, fsal=True),
     r"`fsal=True` needs the last stage to be f\(t \+ h, y1\)"),
    ("dense wrong rows", _tableau(dense=((1.0,),)), r"`dense` must hold 2 rows"),
    ("dense ragged", _tableau(dense=((1.0,), (1.0, 2.0))), r"`dense\[1\]` must have 1 entries"),
    ("empty name", _tableau(name=""), r"`name` must be a non-empty string"),
]


@pytest.mark.parametrize("call,pattern", [c[1:] for c in TABLEAU_CASES],
                         ids=[c[0] for c in TABLEAU_CASES])
def test_bad_tableau(call, pattern):
    _check(call, InvalidInputError, pattern)


def test_tableau_from_lists_is_usable():
    tab = ButcherTableau(name="heun2", c=[0.0, 1.0], a=[[], [1.0]], b=[0.5, 0.5], order=2)
    ys = solve_ode(decay, Y0, torch.tensor([0.0, 1.0], dtype=F64), method=tab).ys
    ref = solve_ode(decay, Y0, torch.tensor([0.0, 1.0], dtype=F64), method="heun").ys
    assert torch.equal(ys, ref)


@pytest.mark.parametrize("kw,pattern", [
    ({"safety": "0.5"}, r"PIDController: `safety` must be a real number; got str '0\.5'"),
    ({"icoeff": None}, r"PIDController: `icoeff` must be a real number; got NoneType None"),
    ({"dt_max": math.nan}, r"PIDController: `dt_max` must be a real number; got float nan"),
    ({"pcoeff": math.inf}, r"PIDController: `pcoeff` must be finite; got inf"),
    ({"factor_max": True}, r"PIDController: `factor_max` must be a real number; got bool"),
], ids=["str", "None", "nan", "inf", "bool"])
def test_bad_controller(kw, pattern):
    _check(lambda: PIDController(**kw), InvalidInputError, pattern)


def test_error_norm_rejects_unbatched_per_sample_input():
    _check(lambda: ErrorNorm(True)(torch.tensor(1.0)), InvalidInputError,
           r"ErrorNorm: per-sample mode needs a state of shape \(B, \.\.\.\); got Tensor")


# --------------------------------------------------------------------------- divergence

@pytest.mark.filterwarnings("ignore:divergence. torch.func could not:RuntimeWarning")
@pytest.mark.parametrize("fn", [
    lambda x: x.detach() * 2,
    lambda x: torch.from_numpy(x.detach().numpy() * 2),  # torch.func fails: autograd loop
    lambda x: torch.zeros_like(x),
], ids=["detach", "numpy", "ignores x"])
@pytest.mark.parametrize("method", ["exact", "hutchinson", "hutch++"])
def test_divergence_of_a_function_detached_from_x(fn, method):
    _check(lambda: divergence(fn, Y0, method=method, n_probes=3), InvalidInputError,
           r"fn: expected fn\(x\) to depend on x through autograd .* no autograd graph to x")


def test_divergence_of_a_zero_jacobian_still_works():
    """A graph with a zero Jacobian (e.g. a zero-initialised last layer) is not 'detached'."""
    _, div = divergence(lambda x: 0.0 * x, Y0)
    assert torch.equal(div, torch.zeros(3, dtype=F64))


# --------------------------------------------------------------------------- empty batch

E = torch.zeros(0, 2, dtype=F64)


@pytest.mark.parametrize("call", [
    lambda: odeint(decay, E, T),
    lambda: odeint(decay, E, T, method="rk4"),
    lambda: solve_ode(decay, E, T, per_sample=True).ys,
    lambda: solve_ode(decay, E, T, gradient="checkpoint").ys,
    lambda: odeint_adjoint(Field(), E, T),
    lambda: sdeint(Toy(), E, T),
    lambda: solve_sde(Toy(), E, T, method="euler", adaptive=True).ys,
    lambda: sdeint_adjoint(ToyModule(), E, T),
], ids=["odeint", "odeint-rk4", "per_sample", "checkpoint", "odeint_adjoint", "sdeint",
        "solve_sde-adaptive", "sdeint_adjoint"])
def test_empty_batch_returns_an_empty_result(call):
    start = time.perf_counter()
    ys = call()
    assert ys.shape == (3, 0, 2) and time.perf_counter() - start < 5.0


def test_empty_batch_backward_and_stats():
    y = E.clone().requires_grad_()
    odeint_adjoint(Field(), y, T).sum().backward()
    assert y.grad.shape == (0, 2)
    y = E.clone().requires_grad_()
    sdeint_adjoint(ToyModule(), y, T).sum().backward()
    assert y.grad.shape == (0, 2)
    sol = solve_ode(decay, E, T, per_sample=True)
    assert sol.stats["nfe"].shape == (0,) and sol.stats["n_f_calls"] == 0


def test_tuple_state_with_an_empty_part():
    ys = odeint(lambda t, y: (-y[0], -y[1]), (E, Y0), T)
    assert ys[0].shape == (3, 0, 2)
    torch.testing.assert_close(ys[1], odeint(decay, Y0, T), rtol=0, atol=0)


@pytest.mark.parametrize("method,n", [("exact", 1), ("hutchinson", 2), ("hutch++", 3)])
def test_divergence_of_an_empty_batch(method, n):
    out, div = divergence(lambda x: 2 * x, E, method=method, n_probes=n)
    assert out.shape == (0, 2) and div.shape == (0,)


# --------------------------------------------------------------------------- low precision

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_adaptive_is_refused_up_front(dtype):
    _check(lambda: solve_ode(decay, Y0.to(dtype), T), InvalidInputError,
           rf"adaptive method 'dopri5' needs `y0` in float32 or float64 .*got a state of dtype "
           rf"{dtype}")
    _check(lambda: solve_sde(Toy(), Y0.to(dtype), T, method="euler", adaptive=True),
           InvalidInputError, r"`adaptive=True` needs `y0` in float32 or float64")


def test_low_precision_fixed_step_works():
    ys = solve_ode(decay, Y0.half(), T, method="rk4").ys
    assert ys.dtype == torch.float16 and torch.isfinite(ys).all()
    torch.testing.assert_close(ys[-1].double(), Y0 * math.exp(-1), rtol=2e-3, atol=0)
    ys = sdeint(Toy(), Y0.half(), T, method="euler", dt=0.05, options={"seed": 0})
    assert ys.dtype == torch.float16 and torch.isfinite(ys).all()


# --------------------------------------------------------------------------- numerical failures

@pytest.mark.parametrize("kw", [{}, {"per_sample": True}, {"per_sample": True, "compact": True},
                                {"method": "tsit5"}],
                         ids=["joint", "per_sample", "compact", "tsit5"])
def test_f_nan_mid_solve_is_non_finite_not_underflow(kw):
    with pytest.raises(NonFiniteError, match=r"f\(t, y\) returned non-finite values at t"
                       ) as ei:
        solve_ode(nan_after_half, Y0, T, **kw)
    err = ei.value
    assert torch.allclose(err.t.double(), torch.tensor(0.5, dtype=F64))
    assert err.stats is not None and bool((err.stats["n_steps"] > 0).all())
    torch.testing.assert_close(err.ys[1], Y0 * math.exp(-0.5), rtol=1e-5, atol=0)


def test_fixed_grid_non_finite_carries_stats():
    with pytest.raises(NonFiniteError) as ei:
        solve_ode(nan_after_half, Y0, T, method="rk4", step_size=0.1)
    stats = ei.value.stats
    assert stats is not None and int(stats["n_steps"]) == 6 and int(stats["nfe"]) > 0


def test_nan_step_size_is_detected_at_the_first_full_poll():
    # the failure checks run every FULL_POLL steps (the done check every poll); the rows
    # do not advance meanwhile, so the error names the time where it happened
    from solvers.engine.adaptive import FULL_POLL
    with pytest.raises(NonFiniteError, match=r"the step size became non-finite at t=0") as ei:
        solve_ode(decay, Y0, T, error_norm=lambda x: x.sum() * math.nan)
    assert int(ei.value.stats["n_steps"]) == FULL_POLL


def test_adaptive_sde_failure_reports_its_steps():
    with pytest.raises(NonFiniteError, match=r"non-finite at t=0\.5") as ei:
        solve_sde(NanAfterHalf(), Y0, T, method="euler", adaptive=True, options={"seed": 0})
    stats = ei.value.stats
    assert stats["n_steps"] > 0 and stats["n_accepted"] > 0 and stats["nfe_f"] > 0
    assert stats["n_steps"] == stats["n_accepted"] + stats["n_rejected"]
