"""torchdiffeq's inputs translated to `solve_ode`: methods, ``options``, tuple states and
the user's ``norm`` (which torchdiffeq calls on the state as the user sees it).

Tuple states are flattened here, as torchdiffeq does, so that the error norm and the
adjoint norm see torchdiffeq's tuples; the results are split back by `Flat.split`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from ..engine.controller import PIDController
from ..errors import InvalidInputError, describe
from ..implicit.methods import IMPLICIT_METHODS, ImplicitMethod
from ..ode.butcher import ButcherTableau
from ..ode.tableaus import TABLEAUS
from .tableaus import COMPAT_TABLEAUS

Tensor = torch.Tensor

__all__ = ["METHODS", "IMPLICIT", "Flat", "Plan", "get_method", "parse",
           "rms_norm", "mixed_norm"]

# torchdiffeq's method names -> ours; `rk4` there is Kutta's 3/8 rule
METHODS: Dict[str, ButcherTableau] = {
    "dopri8": TABLEAUS["dopri8"], "dopri5": TABLEAUS["dopri5"], "tsit5": TABLEAUS["tsit5"],
    "bosh3": TABLEAUS["bosh3"], "fehlberg2": COMPAT_TABLEAUS["fehlberg2"],
    "adaptive_heun": COMPAT_TABLEAUS["adaptive_heun"], "euler": TABLEAUS["euler"],
    "midpoint": TABLEAUS["midpoint"], "heun2": TABLEAUS["heun"],
    "heun3": COMPAT_TABLEAUS["heun3"], "rk4": COMPAT_TABLEAUS["rk4_38"],
}
# Adams multistep methods (`td_adams`): name -> implicit corrector
ADAMS = {"explicit_adams": False, "implicit_adams": True, "fixed_adams": True}
# torchdiffeq's fixed-grid implicit set: the solvers' implicit methods of the same names
IMPLICIT = ("implicit_euler", "implicit_midpoint", "trapezoid", "radauIIA3", "gl4",
            "radauIIA5", "gl6", "sdirk2", "trbdf2")
_ALL_NAMES = sorted(METHODS) + sorted(ADAMS) + ["scipy_solver"] + list(IMPLICIT)
_ADAPTIVE_OPTS = ("norm", "first_step", "min_step", "max_step", "step_t", "jump_t", "safety",
                  "ifactor", "dfactor", "max_num_steps", "dtype")
_FIXED_OPTS = ("norm", "step_size", "grid_constructor", "interp", "perturb")
_OURS = ("per_sample", "compact", "poll_every", "gradient", "max_steps")


def get_method(method: Optional[str]) -> Union[ButcherTableau, ImplicitMethod]:
    """The tableau (or implicit method) for a torchdiffeq method name (None: dopri5);
    ValueError otherwise."""
    name = "dopri5" if method is None else method
    if isinstance(name, (ButcherTableau, ImplicitMethod)):
        return name
    if name in METHODS:
        return METHODS[name]
    if name in IMPLICIT:
        return IMPLICIT_METHODS[name]
    if name == "scipy_solver" or name in ADAMS:
        raise InvalidInputError(f"`method` {name!r} is handled by odeint/odeint_adjoint "
                                "only (not as adjoint_method)")
    raise InvalidInputError(f'Invalid method "{name}". Must be one of '
                            f"{_ALL_NAMES}")


def rms_norm(x: Tensor) -> Tensor:
    """torchdiffeq's default norm: root mean square over the whole tensor."""
    return x.abs().pow(2).mean().sqrt()


def mixed_norm(parts: Tuple[Tensor, ...]) -> Tensor:
    """torchdiffeq's default norm of a tuple: the largest RMS norm of the parts."""
    if len(parts) == 0:
        return torch.zeros(())
    return torch.stack([rms_norm(p).reshape(()) for p in parts]).max()


class Flat:
    """A tensor or tuple state as one tensor (tuples flattened and concatenated)."""

    def __init__(self, y0: Any) -> None:
        if isinstance(y0, torch.Tensor):
            self.shapes: Optional[List[torch.Size]] = None
            self.shape = y0.shape
            self.y0 = y0
            return
        if not isinstance(y0, tuple) or not y0 or not all(isinstance(p, torch.Tensor)
                                                          for p in y0):
            raise InvalidInputError(
                f"`y0` must be either a torch.Tensor or a tuple of tensors; got {describe(y0)}")
        self.shapes = [p.shape for p in y0]
        self.sizes = [p.numel() for p in y0]
        self.shape = torch.Size([sum(self.sizes)])
        self.y0 = torch.cat([p.reshape(-1) for p in y0])

    @property
    def is_tuple(self) -> bool:
        return self.shapes is not None

    def split(self, y: Tensor, lead: Tuple[int, ...] = ()) -> Any:
        """The user's structure of a flat state with leading dimensions ``lead``."""
        if self.shapes is None:
            return y
        out, start = [], 0
        for n, s in zip(self.sizes, self.shapes):
            part = y[..., start:start + n]   # a slice and a view, as torchdiffeq's outputs
            start += n
            try:
                out.append(part.view((*lead, *s)))
            except RuntimeError:
                out.append(part.reshape((*lead, *s)))
        return tuple(out)

    def join(self, y: Any) -> Tensor:
        if self.shapes is None:
            return y
        return torch.cat([p.reshape(-1) for p in y])

    def func(self, func: Callable) -> Callable:
        """``func`` on the flat state (tuple outputs concatenated)."""
        if self.shapes is None:
            return func
        return lambda t, y: torch.cat([f.reshape(-1) for f in func(t, self.split(y))])

    def norm(self, norm: Optional[Callable]) -> Callable[[Tensor], Any]:
        """The state norm torchdiffeq uses, on the flat state."""
        if norm is None:
            return rms_norm if self.shapes is None else \
                (lambda z: mixed_norm(self.split(z)))
        if self.shapes is None:
            return lambda z: norm(z.reshape(self.shape))
        return lambda z: norm(self.split(z))


@dataclass
class Plan:
    """How one torchdiffeq call maps onto `solve_ode`."""

    tableau: Union[ButcherTableau, ImplicitMethod]
    kwargs: Dict[str, Any] = field(default_factory=dict)   # for solve_ode
    state_norm: Callable[[Tensor], Any] = rms_norm        # torchdiffeq's norm on flat y
    step_size: Optional[float] = None
    grid_constructor: Optional[Callable] = None
    interp: str = "linear"
    perturb: bool = False
    step_t: Optional[Tensor] = None
    jump_t: Optional[Tensor] = None
    adams: Optional[bool] = None       # an Adams method: whether it corrects (implicit)
    adams_options: Dict[str, int] = field(default_factory=dict)   # max_order, max_iters

    @property
    def name(self) -> str:
        return self.tableau.name if self.adams is None else \
            ("implicit_adams" if self.adams else "explicit_adams")

    @property
    def fixed(self) -> bool:
        return not self.tableau.adaptive


def _as_float(name: str, v: Any) -> float:
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
        raise InvalidInputError(f"`options['{name}']` must be a number; got {describe(v)}")
    return float(v)


def parse(method: Optional[str], options: Optional[Dict[str, Any]], flat: Flat) -> Plan:
    """A `Plan` from torchdiffeq's ``method`` and ``options`` (unknown options warn and are
    ignored, as in torchdiffeq)."""
    if options is not None and not isinstance(options, dict):
        raise InvalidInputError(f"`options` must be a dict or None; got {describe(options)}")
    opts = dict(options or {})
    if method in ADAMS:
        plan = Plan(COMPAT_TABLEAUS["rk4_38"], adams=ADAMS[method])
        for key in ("max_order", "max_iters"):
            if key in opts:
                plan.adams_options[key] = int(_as_float(key, opts.pop(key)))
    else:
        plan = Plan(get_method(method))
    known = (_FIXED_OPTS if plan.fixed else _ADAPTIVE_OPTS) + _OURS
    unused = {k: opts.pop(k) for k in list(opts) if k not in known}
    if unused:
        warnings.warn(f"{plan.name}: Unexpected arguments {unused}")
    user_norm = opts.pop("norm", None)
    plan.state_norm = flat.norm(user_norm)
    for key in _OURS:
        if key in opts:
            plan.kwargs[key] = opts.pop(key)
    if plan.fixed:
        _parse_fixed(plan, opts)
        return plan
    _parse_adaptive(plan, opts)
    if user_norm is not None or flat.is_tuple:   # else the engine's RMS norm is the same
        if plan.kwargs.get("per_sample", False):
            raise InvalidInputError(
                "`options['per_sample']` with a tuple y0 or `options['norm']` is not "
                "supported here; use solvers.solve_ode(per_sample=True, error_norm=...)")
        plan.kwargs["error_norm"] = _tensor_norm(plan.state_norm)
    return plan


def _tensor_norm(norm: Callable[[Tensor], Any]) -> Callable[[Tensor], Tensor]:
    """A norm whose result is a 0-dim tensor of the input's dtype (torchdiffeq allows a
    Python number or a 1-element tensor)."""
    def wrapped(z: Tensor) -> Tensor:
        return torch.as_tensor(norm(z), dtype=z.dtype, device=z.device).reshape(())
    return wrapped


def _parse_fixed(plan: Plan, opts: Dict[str, Any]) -> None:
    if opts.get("step_size") is not None and opts.get("grid_constructor") is not None:
        raise InvalidInputError("step_size and grid_constructor are mutually exclusive arguments.")
    if opts.get("step_size") is not None:
        plan.step_size = _as_float("step_size", opts["step_size"])
        if not plan.step_size > 0 or not math.isfinite(plan.step_size):
            raise InvalidInputError(f"`options['step_size']` must be a finite number > 0; got "
                                    f"{plan.step_size!r}")
    gc = opts.get("grid_constructor")
    if gc is not None and not callable(gc):
        raise InvalidInputError(f"`options['grid_constructor']` must be callable; got "
                                f"{describe(gc)}")
    plan.grid_constructor = gc
    plan.interp = opts.get("interp", "linear")
    if plan.interp not in ("linear", "cubic"):
        raise InvalidInputError(f"Unknown interpolation method {plan.interp}")
    plan.perturb = bool(opts.get("perturb", False))


def _parse_adaptive(plan: Plan, opts: Dict[str, Any]) -> None:
    ctrl = {}
    for theirs, ours in (("safety", "safety"), ("ifactor", "factor_max"),
                         ("dfactor", "factor_min"), ("min_step", "dt_min"),
                         ("max_step", "dt_max")):
        if theirs in opts:
            ctrl[ours] = _as_float(theirs, opts.pop(theirs))
    if ctrl.get("dt_min", 0.0) > 0:
        ctrl["force_dt_min"] = True  # torchdiffeq accepts any step of size min_step
    if ctrl:
        plan.kwargs["controller"] = PIDController(**ctrl)
    if opts.get("first_step") is not None:
        plan.kwargs["first_step"] = _as_float("first_step", opts["first_step"])
    plan.kwargs.setdefault("max_steps", int(_as_float(
        "max_num_steps", opts.get("max_num_steps", 2 ** 31 - 1))))  # torchdiffeq's default
    for key in ("step_t", "jump_t"):
        v = opts.get(key)
        if v is not None:
            try:
                v = torch.as_tensor(v, dtype=torch.float64).reshape(-1)
            except (TypeError, ValueError, RuntimeError):
                raise InvalidInputError(f"`options['{key}']` must be a 1-D tensor of times; "
                                        f"got {describe(v)}") from None
            setattr(plan, key, v.detach())
    given = [v for v in (plan.step_t, plan.jump_t) if v is not None]
    if given:
        both = torch.cat(given)
        if both.unique().numel() != both.numel():
            raise InvalidInputError(
                "`step_t` and `jump_t` must not have any repeated elements between them.")
