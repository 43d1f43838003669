"""Gradient modes: how a solve is differentiated.

* `DirectAdjoint` — autograd through every step (the default);
* `CheckpointAdjoint` — each step's graph is recomputed in the backward pass from its
  stored inputs: exact gradients of the discrete solution, memory O(steps · state);
* `BacksolveAdjoint` — the continuous adjoint, solved backwards from the stored outputs:
  memory independent of the steps; its fields configure the backward solve.

``solve_ode(gradient='direct'|'checkpoint'|'backsolve', adjoint_options={...})`` maps onto
these objects (`as_gradient_mode`, `BacksolveAdjoint.with_options`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Optional, Union

from ..engine.callbacks import as_step_hooks
from ..errors import InvalidInputError
from ..implicit.methods import resolve_method
from ..validation import check_int, check_nonnegative, check_positive

__all__ = ["DirectAdjoint", "CheckpointAdjoint", "BacksolveAdjoint", "GradientMode",
           "as_gradient_mode", "check_adjoint_options", "GRADIENT_MODES"]

GRADIENT_MODES = ("direct", "checkpoint", "backsolve")
_ADJOINT_OPTION_NAMES = ("method", "rtol", "atol", "norm", "step_size", "max_steps",
                         "first_step", "callback")


@dataclass(frozen=True)
class DirectAdjoint:
    """Backpropagate through the steps (autograd keeps every step's graph)."""


@dataclass(frozen=True)
class CheckpointAdjoint:
    """Keep only each step's inputs; recompute its graph during the backward pass."""


@dataclass(frozen=True)
class BacksolveAdjoint:
    """Continuous adjoint. ``norm``: 'default', 'seminorm' (parameter and time channels out
    of error control) or a callable; None is 'default' in joint mode and 'seminorm' per
    sample. The other fields configure the backward solve; None takes the forward's value
    (``first_step``: Hairer's algorithm). ``method`` names an ODE method (checked by the ODE
    backsolve) or, for SDEs, the stochastic adjoint's method (the only field SDEs take)."""

    norm: Union[str, Callable, None] = None
    rtol: Optional[float] = None
    atol: Optional[float] = None
    method: Optional[Any] = None
    step_size: Optional[float] = None
    max_steps: Optional[int] = None
    first_step: Optional[float] = None
    callback: Any = None   # step hooks of the backward solves (on the flat [y, a, a_t, a_θ])

    def __post_init__(self) -> None:
        given = {k: getattr(self, k) for k in _ADJOINT_OPTION_NAMES
                 if getattr(self, k) is not None and k != "method"}
        for key, value in check_adjoint_options(given).items():
            object.__setattr__(self, key, value)

    def with_options(self, options: Optional[Dict[str, Any]]) -> "BacksolveAdjoint":
        """This mode updated by torchdiffeq-style ``adjoint_options``."""
        return replace(self, **check_adjoint_options(options)) if options else self

    def backward_kwargs(self, forward: Dict[str, Any], norm: Callable) -> Dict[str, Any]:
        """Keyword arguments of the backward solves, given the forward solve's."""
        def pick(key: str) -> Any:
            value = getattr(self, key)
            return forward[key] if value is None else value
        return dict(method=pick("method"), rtol=pick("rtol"), atol=pick("atol"),
                    step_size=pick("step_size"), max_steps=pick("max_steps"),
                    first_step=self.first_step, controller=forward["controller"],
                    error_norm=norm, callback=self.callback)


GradientMode = Union[DirectAdjoint, CheckpointAdjoint, BacksolveAdjoint]
_BY_NAME = {"direct": DirectAdjoint, "checkpoint": CheckpointAdjoint,
            "backsolve": BacksolveAdjoint}


def as_gradient_mode(gradient: Any) -> GradientMode:
    """A gradient mode object from a mode or its name."""
    if isinstance(gradient, (DirectAdjoint, CheckpointAdjoint, BacksolveAdjoint)):
        return gradient
    if isinstance(gradient, str) and gradient in _BY_NAME:
        return _BY_NAME[gradient]()
    raise InvalidInputError(
        f"`gradient` must be one of {list(GRADIENT_MODES)}; got {gradient!r} (or pass a "
        "DirectAdjoint, CheckpointAdjoint or BacksolveAdjoint)")


def check_adjoint_options(opts: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Validate torchdiffeq-style ``adjoint_options`` (messages name the option)."""
    opts = dict(opts or {})
    unknown = sorted(set(opts) - set(_ADJOINT_OPTION_NAMES))
    if unknown:
        raise InvalidInputError(f"unknown `adjoint_options` {unknown}; valid options are "
                                f"{sorted(_ADJOINT_OPTION_NAMES)}")
    norm = opts.get("norm", "default")
    if not (callable(norm) or (isinstance(norm, str) and norm in ("default", "seminorm"))):
        raise InvalidInputError(
            f"`adjoint_options['norm']` must be 'default', 'seminorm' or a callable; got {norm!r}")
    if "method" in opts:
        resolve_method(opts["method"], "adjoint_method")
    for key, check in (("rtol", check_nonnegative), ("atol", check_nonnegative),
                       ("step_size", check_positive), ("first_step", check_positive),
                       ("max_steps", check_int)):
        if opts.get(key) is not None:
            opts[key] = check(f"adjoint_{key}" if key in ("rtol", "atol")
                              else f"adjoint_options['{key}']", opts[key])
    if opts.get("rtol") == 0 and opts.get("atol") == 0:
        raise InvalidInputError("`adjoint_rtol` and `adjoint_atol` cannot both be 0")
    if opts.get("callback") is not None:
        as_step_hooks(opts["callback"])   # validated here, built by each backward solve
    return opts
