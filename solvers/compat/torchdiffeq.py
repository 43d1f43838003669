"""torchdiffeq's public API on `solvers`: ``import solvers.compat.torchdiffeq as torchdiffeq``.

`odeint`, `odeint_adjoint`, `odeint_event` and `odeint_dense` take torchdiffeq's arguments,
method names and ``options`` (``step_size``, ``grid_constructor``, ``interp``, ``perturb``
for fixed grids; ``first_step``, ``min_step``, ``max_step``, ``step_t``, ``jump_t``,
``safety``, ``ifactor``, ``dfactor``, ``max_num_steps`` for adaptive methods; ``norm`` for
both, called on the state as the user sees it) and return what torchdiffeq returns. The
options of `solvers.odeint` (``per_sample``, ``compact``, ``poll_every``, ``gradient``,
``max_steps``) are accepted too. Remaining differences: docs/torchdiffeq_compat.md.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import InvalidInputError, describe
from ..events.gradient import attach_event_gradient
from ..events.solve import Event, solve_events
from ..ode.solve import solve_ode
from .td_adams import adams_event, adams_grid
from .td_adjoint import AdjointOutput, adjoint_norms, augmented_parts
from .td_callbacks import ADJOINT_CALLBACKS, adjoint_hooks, step_hooks
from .td_options import ADAMS, Flat, Plan, get_method, parse
from .td_scipy import scipy_solve
from .td_solve import integrate

Tensor = torch.Tensor

__all__ = ["odeint", "odeint_adjoint", "odeint_event", "odeint_dense"]
__version__ = "0.2.5"  # the torchdiffeq release whose API this follows


def _check_t(t: Any, y0: Tensor) -> Tensor:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() != 1 \
            or t.numel() == 0:
        raise InvalidInputError(f"`t` must be a non-empty 1-D floating point tensor; got "
                                f"{describe(t)}")
    diff = t[1:] > t[:-1]
    if not (bool(diff.all()) or bool((t[1:] < t[:-1]).all())):
        raise InvalidInputError("`t` must be strictly increasing or decreasing")
    return t.to(device=y0.device, dtype=y0.real.dtype if y0.is_complex() else y0.dtype)


def _tol(name: str, v: Any) -> float:
    if isinstance(v, torch.Tensor):
        if v.requires_grad:
            raise InvalidInputError(f"`{name}` cannot require gradient")
        if v.numel() != 1:
            raise InvalidInputError(f"`{name}` must be a scalar (per-element tolerances are "
                                    f"not supported); got {describe(v)}")
        return float(v)
    if isinstance(v, (tuple, list)):
        raise InvalidInputError(f"`{name}` must be a scalar; per-part tolerances of tuple "
                                f"states are not supported (got {v!r})")
    return v


def _prepare(func: Callable, y0: Any, t: Any, method: Optional[str],
             options: Optional[Dict[str, Any]], hooks: bool, adjoint: bool = False
             ) -> Tuple[Flat, Callable, Tensor, Plan]:
    """The flat state and field, checked times and the plan; torchdiffeq's callbacks
    become step hooks where the solve takes them (``hooks``; ``adjoint``: the adjoint
    callbacks are hooked by the backward solves)."""
    flat = Flat(y0)
    plan = parse(method, options, flat)
    cb = step_hooks(func, plan.name, plan.fixed, hooks, flat.split, adjoint)
    if cb is not None:
        plan.kwargs["callback"] = cb
    return flat, flat.func(func), _check_t(t, flat.y0), plan


def odeint(func: Callable, y0: Any, t: Tensor, *, rtol: float = 1e-7, atol: float = 1e-9,
           method: Optional[str] = None, options: Optional[Dict[str, Any]] = None,
           event_fn: Optional[Callable] = None) -> Any:
    """torchdiffeq's ``odeint``: the states at ``t`` (``(len(t), *y0.shape)``, a tuple for
    tuple ``y0``); with ``event_fn``, ``(event_t, states at [t[0], event_t])``."""
    if method == "scipy_solver" and event_fn is None:
        return _scipy(func, y0, t, rtol, atol, options)
    flat, f, t, plan = _prepare(func, y0, t, method, options, hooks=True)
    rtol, atol = _tol("rtol", rtol), _tol("atol", atol)
    if event_fn is not None:
        return _event_solve(f, flat, t, plan, rtol, atol, event_fn, adjoint=None)

    def solve(fn: Callable, y: Tensor, times: Tensor) -> Tensor:
        if plan.adams is not None:
            return adams_grid(fn, y, times, plan.adams, rtol, atol, perturb=plan.perturb,
                              callback=plan.kwargs.get("callback"), **plan.adams_options)
        return solve_ode(fn, y, times, method=plan.tableau, rtol=rtol, atol=atol,
                         **plan.kwargs).ys
    return flat.split(integrate(solve, f, flat.y0, t, plan), (t.shape[0],))


def _scipy(func: Callable, y0: Any, t: Tensor, rtol: Any, atol: Any,
           options: Optional[Dict[str, Any]]) -> Any:
    """``method='scipy_solver'``: `scipy.integrate.solve_ivp`, no gradient."""
    flat = Flat(y0)
    step_hooks(func, "scipy_solver", False, False, flat.split)
    t = _check_t(t, flat.y0)
    ys = scipy_solve(flat.func(func), flat.y0, t, _tol("rtol", rtol), _tol("atol", atol),
                     options)
    return flat.split(ys, (t.shape[0],))


def _borrowed_adjoint(func: Callable, y0: Any, t: Tensor, method: str,
                      options: Optional[Dict[str, Any]], kwargs: Dict[str, Any]) -> Any:
    """The values of ``method`` (scipy_solver or an Adams method) with the gradient of the
    same problem solved by the adjoint of ``adjoint_method`` (default dopri5 for scipy, the
    3/8-rule rk4 on the same grid for Adams): one extra forward solve."""
    keep = ("min_step", "max_step", "norm") if method == "scipy_solver" else \
        ("step_size", "grid_constructor", "interp", "perturb", "norm")
    opts = {k: v for k, v in (options or {}).items() if k in keep}
    if method == "scipy_solver":
        values = _scipy(func, y0, t, kwargs["rtol"], kwargs["atol"], options)
    else:
        with torch.no_grad():
            values = odeint(func, y0, t, rtol=kwargs["rtol"], atol=kwargs["atol"],
                            method=method, options=options)
    grad_method = kwargs.pop("adjoint_method", None) or \
        ("dopri5" if method == "scipy_solver" else "rk4")
    grads = odeint_adjoint(_AdjointCallbacksOnly(func) if isinstance(func, nn.Module) else func,
                           y0, t, method=grad_method, options=opts, **kwargs)
    if isinstance(grads, tuple):
        return tuple(g + (v - g).detach() for g, v in zip(grads, values))
    return grads + (values - grads).detach()


class _AdjointCallbacksOnly(nn.Module):
    """``func`` for a borrowed gradient's solve: the same field and parameters with only
    the ``*_adjoint`` callbacks (the forward ones ran in the values' own solve)."""

    def __init__(self, func: nn.Module) -> None:
        super().__init__()
        self.func = func
        for name in ADJOINT_CALLBACKS:
            if callable(getattr(func, name, None)):
                setattr(self, name, getattr(func, name))

    def forward(self, t: Tensor, y: Any) -> Any:
        return self.func(t, y)


def _adjoint_setup(func: Callable, method: Optional[str], options: Optional[Dict[str, Any]],
                   adjoint_method: Optional[str], adjoint_options: Optional[Dict[str, Any]],
                   adjoint_params: Optional[Sequence[Tensor]]) -> Tuple[Dict, list]:
    if adjoint_params is None and not isinstance(func, nn.Module):
        raise InvalidInputError(
            "func must be an instance of nn.Module to specify the adjoint parameters; "
            "alternatively they can be specified explicitly via the `adjoint_params` argument. "
            "If there are no parameters then it is allowable to set `adjoint_params=()`.")
    if adjoint_method != method and adjoint_method is not None and options is not None \
            and adjoint_options is None:
        raise InvalidInputError(
            "If `adjoint_method != method` then we cannot infer `adjoint_options` from "
            "`options`. So as `options` has been passed then `adjoint_options` must be "
            "passed as well.")
    if adjoint_options is None:
        adjoint_options = {k: v for k, v in (options or {}).items() if k != "norm"}
    params = list(func.parameters()) if adjoint_params is None else list(adjoint_params)
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise InvalidInputError(f"`adjoint_params` must contain tensors only; item {i} "
                                    f"is {describe(p)}")
    return dict(adjoint_options), [p for p in params if p.requires_grad]


def _engine_adjoint_options(adj: Dict[str, Any], rtol: float, atol: float,
                            method: Any) -> Dict[str, Any]:
    """The backward-solve options `solve_ode` takes, from torchdiffeq's adjoint options."""
    out: Dict[str, Any] = {"rtol": rtol, "atol": atol, "method": get_method(method)}
    for theirs, ours in (("step_size", "step_size"), ("first_step", "first_step"),
                         ("max_num_steps", "max_steps")):
        if adj.get(theirs) is not None:
            out[ours] = adj[theirs]
    return out


def odeint_adjoint(func: Callable, y0: Any, t: Tensor, *, rtol: float = 1e-7,
                   atol: float = 1e-9, method: Optional[str] = None,
                   options: Optional[Dict[str, Any]] = None,
                   event_fn: Optional[Callable] = None, adjoint_rtol: Optional[float] = None,
                   adjoint_atol: Optional[float] = None, adjoint_method: Optional[str] = None,
                   adjoint_options: Optional[Dict[str, Any]] = None,
                   adjoint_params: Optional[Sequence[Tensor]] = None) -> Any:
    """torchdiffeq's ``odeint_adjoint``: `odeint` whose backward pass solves the adjoint ODE
    (``adjoint_params``: default ``func.parameters()``; a plain function needs them)."""
    if (method == "scipy_solver" or method in ADAMS) and event_fn is None:
        return _borrowed_adjoint(func, y0, t, method, options, dict(
            rtol=rtol, atol=atol, adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol,
            adjoint_method=adjoint_method, adjoint_options=adjoint_options,
            adjoint_params=adjoint_params))
    adj, params = _adjoint_setup(func, method, options, adjoint_method, adjoint_options,
                                 adjoint_params)
    flat, f, t, plan = _prepare(func, y0, t, method, options, hooks=True, adjoint=True)
    rtol, atol = _tol("rtol", rtol), _tol("atol", atol)
    holder, engine_norm = adjoint_norms(adj.get("norm"), flat, plan.state_norm, params)
    engine = _engine_adjoint_options(
        adj, rtol if adjoint_rtol is None else _tol("adjoint_rtol", adjoint_rtol),
        atol if adjoint_atol is None else _tol("adjoint_atol", adjoint_atol),
        method if adjoint_method is None else adjoint_method)
    if not plan.kwargs.get("per_sample", False):
        engine["norm"] = engine_norm
    back = adjoint_hooks(func, plan.fixed, augmented_parts(flat, params))
    if back is not None:
        engine["callback"] = back

    def solve(fn: Callable, y: Tensor, times: Tensor) -> Tensor:
        return solve_ode(fn, y, times, method=plan.tableau, rtol=rtol, atol=atol,
                         gradient="backsolve", adjoint_params=params,
                         adjoint_options=engine, **plan.kwargs).ys
    if event_fn is not None:
        return _event_solve(f, flat, t, plan, rtol, atol, event_fn, adjoint=solve)
    ys = AdjointOutput.apply(holder, integrate(solve, f, flat.y0, t, plan))
    return flat.split(ys, (t.shape[0],))


def _combined(event_fn: Callable, flat: Flat, t0: Tensor, y0: Tensor) -> Callable:
    """torchdiffeq's combination of a multivariate event function: every component made
    positive at the start, the event is the first zero of their minimum."""
    with torch.no_grad():
        signs = torch.sign(torch.as_tensor(event_fn(t0, flat.split(y0))))

    def g(t: Tensor, y: Tensor) -> Tensor:
        return torch.min(torch.as_tensor(event_fn(t, flat.split(y))) * signs)
    return g


def _event_solve(f: Callable, flat: Flat, t: Tensor, plan: Plan, rtol: float, atol: float,
                 event_fn: Callable, adjoint: Optional[Callable]) -> Tuple[Tensor, Any]:
    """``(event_t, [y0, y(event_t)])``: no gradient through the event time (`odeint_event`
    adds it); the state's gradient is the solve's at the fixed event time."""
    if t.shape[0] != 2:
        raise InvalidInputError("We require len(t) == 2 when in event handling mode, but got "
                                f"len(t)={t.shape[0]}.")
    y0 = flat.y0
    g = _combined(event_fn, flat, t[0], y0)
    if float(g(t[0].detach(), y0.detach())) == 0:
        return t[0].detach(), flat.split(torch.stack([y0, y0]), (2,))
    d = 1.0 if float(t[1]) > float(t[0]) else -1.0
    if plan.adams is not None:
        return _adams_event(f, flat, t, plan, rtol, atol, g, d, adjoint)
    kw = dict(plan.kwargs)
    if plan.fixed:
        if plan.step_size is None:
            raise InvalidInputError("Event handling for fixed step solvers currently requires "
                                    "`step_size` to be provided in options.")
        kw["step_size"] = plan.step_size
    with torch.set_grad_enabled(adjoint is None and torch.is_grad_enabled()):
        res = solve_events(f, y0, (t[0], d * math.inf), Event(g), method=plan.tableau,
                           rtol=rtol, atol=atol, first_chunk=abs(float(t[1] - t[0])),
                           event_gradient=False, **kw)
    t_event = res.t.detach()
    if adjoint is None:
        y_event = res.y
    else:
        y_event = integrate(adjoint, f, y0, torch.stack([t[0], t_event.to(t.dtype)]), plan)[-1]
        if y_event.requires_grad:  # as torchdiffeq: a graph, but no gradient flows to it
            t_event = t_event + 0 * y_event.sum()
    return t_event, flat.split(torch.stack([y0, y_event]), (2,))


def _adams_event(f: Callable, flat: Flat, t: Tensor, plan: Plan, rtol: float, atol: float,
                 g: Callable, d: float, adjoint: Optional[Callable]) -> Tuple[Tensor, Any]:
    if plan.step_size is None:
        raise InvalidInputError("Event handling for fixed step solvers currently requires "
                                "`step_size` to be provided in options.")
    y0 = flat.y0
    with torch.set_grad_enabled(adjoint is None and torch.is_grad_enabled()):
        t_event, y_event = adams_event(f, y0, t[0], d * plan.step_size, g, plan.adams, rtol,
                                       atol, **plan.adams_options)
    t_event = t_event.detach()
    if adjoint is not None:
        y_event = integrate(adjoint, f, y0, torch.stack([t[0], t_event]), plan)[-1]
    return t_event, flat.split(torch.stack([y0, y_event]), (2,))


def odeint_event(func: Callable, y0: Any, t0: Tensor, *, event_fn: Callable,
                 reverse_time: bool = False, odeint_interface: Callable = odeint,
                 **kwargs: Any) -> Tuple[Tensor, Any]:
    """torchdiffeq's ``odeint_event``: solve from ``t0`` until ``event_fn(t, y)`` is zero;
    returns ``(event_t, states at [t0, event_t])`` where ``event_t`` and the last state carry
    the implicit-function gradient (`solvers.events.gradient`)."""
    if not isinstance(t0, torch.Tensor):
        raise InvalidInputError(f"`t0` must be a tensor; got {describe(t0)}")
    step = -1.0 if reverse_time else 1.0
    t = torch.cat([t0.reshape(-1), t0.reshape(-1).detach() + step])
    event_t, solution = odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
    flat = Flat(y0)
    state = flat.join(tuple(s[-1] for s in solution)) if flat.is_tuple else solution[-1]
    g = _combined(event_fn, flat, t[0], flat.y0)
    t_star, y_star = attach_event_gradient(flat.func(func), g, event_t, state)
    if flat.is_tuple:
        parts = flat.split(y_star)
        return t_star, tuple(torch.cat([s[:-1], p[None]]) for s, p in zip(solution, parts))
    return t_star, torch.cat([solution[:-1], y_star[None]])


def odeint_dense(func: Callable, y0: Tensor, t0: Tensor, t1: Tensor, *, rtol: float = 1e-7,
                 atol: float = 1e-9, method: Optional[str] = None,
                 options: Optional[Dict[str, Any]] = None) -> Callable[[Tensor], Tensor]:
    """torchdiffeq's ``odeint_dense``: a function evaluating the dopri5 dense output on
    ``[t0, t1]`` (``y0`` a tensor, as in torchdiffeq)."""
    if not isinstance(y0, torch.Tensor):
        raise InvalidInputError(f"`y0` must be a tensor for odeint_dense; got {describe(y0)}")
    if method not in (None, "dopri5"):
        raise InvalidInputError(f"odeint_dense supports method='dopri5' only; got {method!r}")
    t = torch.stack([torch.as_tensor(t0), torch.as_tensor(t1)]).to(y0.dtype)
    plan = parse("dopri5", options, Flat(y0))
    sol = solve_ode(func, y0, t, method=plan.tableau, rtol=_tol("rtol", rtol),
                    atol=_tol("atol", atol), dense=True, **plan.kwargs)
    return sol.evaluate
