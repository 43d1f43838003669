"""torchdiffeq's step callbacks on the solvers' step hooks (`solve_ode(callback=...)`).

torchdiffeq calls ``func.callback_step(t0, y0, dt)`` before every step and
``func.callback_accept_step`` / ``func.callback_reject_step`` after each adaptive step,
with ``y0`` in the user's structure; fixed-grid solvers call ``callback_step`` only, and
it warns about callbacks a solver does not call. The solvers' backsolve adjoint takes no
step hooks yet, so with `odeint_adjoint` (and ``scipy_solver``) every callback, including
the ``*_adjoint`` ones, is reported as not called.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Set

import torch

__all__ = ["CALLBACKS", "TorchdiffeqHooks", "step_hooks"]

CALLBACKS = ("callback_step", "callback_accept_step", "callback_reject_step")
_ADJOINT = tuple(c + "_adjoint" for c in CALLBACKS)


class TorchdiffeqHooks:
    """``before_step`` / ``after_step`` calling the torchdiffeq callbacks of ``func``."""

    def __init__(self, func: Any, names: Set[str], split: Callable[[torch.Tensor], Any]) -> None:
        self.func, self.names, self.split = func, names, split

    def before_step(self, t0: torch.Tensor, y0: torch.Tensor, h: Any) -> None:
        if "callback_step" in self.names:
            self.func.callback_step(t0, self.split(y0), h)

    def after_step(self, t0: torch.Tensor, y0: torch.Tensor, h: Any, y1: Any,
                   accepted: Any) -> None:
        name = "callback_accept_step" if bool(torch.as_tensor(accepted).all()) else \
            "callback_reject_step"
        if name in self.names:
            getattr(self.func, name)(t0, self.split(y0), h)


def step_hooks(func: Any, method: str, fixed: bool, hooks_supported: bool,
               split: Callable[[torch.Tensor], Any]) -> Optional[TorchdiffeqHooks]:
    """The hooks for the callbacks ``func`` defines (None if none), warning about those
    that will not be called."""
    present = {n for n in CALLBACKS + _ADJOINT if callable(getattr(func, n, None))}
    supported: Set[str] = set()
    if hooks_supported:
        supported = {"callback_step"} if fixed else set(CALLBACKS)
    ignored = present - supported
    if ignored:
        warnings.warn(f"Solver '{method}' does not support callbacks {sorted(ignored)}")
    used = present & supported
    return TorchdiffeqHooks(func, used, split) if used else None
