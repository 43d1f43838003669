"""torchdiffeq-compatible wrappers: `odeint`, `odeint_adjoint` and their ``options``."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence

import torch

from ..adjoint.modes import check_adjoint_options
from ..engine.controller import PIDController
from ..engine.flat import State
from ..errors import InvalidInputError
from ..validation import check_mapping, is_real
from .solve import solve_ode

Tensor = torch.Tensor

__all__ = ["odeint", "odeint_adjoint", "parse_options"]

_OPTION_NAMES = ("step_size", "first_step", "max_steps", "max_num_steps", "per_sample",
                 "compact", "poll_every", "safety", "ifactor", "dfactor", "dtype", "norm",
                 "gradient", "compile")


def parse_options(options: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Translate torchdiffeq-style ``options`` into `solve_ode` keyword arguments."""
    opts = check_mapping("options", options)
    unknown = sorted(set(opts) - set(_OPTION_NAMES))
    if unknown:
        raise InvalidInputError(
            f"unknown `options` {unknown}; valid options are {sorted(_OPTION_NAMES)}")
    if "max_num_steps" in opts:
        opts.setdefault("max_steps", opts.pop("max_num_steps"))
    opts.pop("max_num_steps", None)
    opts.pop("dtype", None)
    if "norm" in opts:
        opts["error_norm"] = opts.pop("norm")
    ctrl = {}
    for ours, theirs in (("safety", "safety"), ("factor_max", "ifactor"),
                         ("factor_min", "dfactor")):
        if theirs in opts:
            v = opts.pop(theirs)
            ctrl[ours] = float(v) if is_real(v) else v  # PIDController rejects the rest
    if ctrl:
        opts["controller"] = PIDController(**ctrl)
    ms = opts.get("max_steps")
    if isinstance(ms, float) and ms.is_integer():
        opts["max_steps"] = int(ms)
    return opts


def odeint(func: Callable, y0: State, t: Any, *, rtol: float = 1e-7, atol: float = 1e-9,
           method: Optional[str] = None, options: Optional[Dict[str, Any]] = None) -> State:
    """torchdiffeq-compatible ODE solve: returns the states at ``t``, shape
    ``(len(t), *y0.shape)`` (a tuple for tuple ``y0``).

    ``options`` accepts ``step_size``, ``first_step``, ``max_steps`` (alias
    ``max_num_steps``), ``per_sample``, ``poll_every``, ``norm`` (a callable error norm),
    ``gradient`` ('direct', 'checkpoint'), ``compile`` (True or a `CompileOptions`: the
    compiled path, docs/compile.md), and torchdiffeq's controller names ``safety``,
    ``ifactor`` (max growth) and ``dfactor`` (max shrink).
    """
    sol = solve_ode(func, y0, t, method=method or "dopri5", rtol=rtol, atol=atol,
                    **parse_options(options))
    return sol.ys


def odeint_adjoint(func: Callable, y0: State, t: Any, *, rtol: float = 1e-7, atol: float = 1e-9,
                   method: Optional[str] = None, options: Optional[Dict[str, Any]] = None,
                   adjoint_rtol: Optional[float] = None, adjoint_atol: Optional[float] = None,
                   adjoint_method: Optional[str] = None,
                   adjoint_options: Optional[Dict[str, Any]] = None,
                   adjoint_params: Optional[Sequence[Tensor]] = None) -> State:
    """torchdiffeq-compatible `odeint` whose backward pass is the continuous adjoint.

    Gradients flow to ``y0`` (tensor or tuple), to ``t``, and to ``adjoint_params``
    (default: the parameters of ``func`` when it is an ``nn.Module``; a plain function has
    none, and tensors it closes over receive no gradient unless listed here).
    ``adjoint_options`` takes ``norm`` ('default', 'seminorm' or a callable),
    ``step_size``, ``max_steps`` and ``first_step`` for the backward solve;
    ``adjoint_rtol``/``adjoint_atol``/``adjoint_method`` default to the forward ones.
    """
    opts = parse_options(options)
    if opts.pop("gradient", "backsolve") != "backsolve":
        raise InvalidInputError("odeint_adjoint always uses gradient='backsolve'; drop "
                                "options['gradient'] or call odeint")
    adj = check_adjoint_options(adjoint_options)
    for key, value in (("rtol", adjoint_rtol), ("atol", adjoint_atol),
                       ("method", adjoint_method)):
        if value is not None:
            adj[key] = value
    sol = solve_ode(func, y0, t, method=method or "dopri5", rtol=rtol, atol=atol,
                    gradient="backsolve", adjoint_params=adjoint_params, adjoint_options=adj,
                    **opts)
    return sol.ys
