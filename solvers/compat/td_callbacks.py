"""torchdiffeq's step callbacks on the solvers' step hooks (`solve_ode(callback=...)`).

torchdiffeq calls ``func.callback_step(t0, y0, dt)`` before every step and
``func.callback_accept_step`` / ``func.callback_reject_step`` after each adaptive step,
with ``y0`` in the user's structure; fixed-grid solvers call ``callback_step`` only, and
it warns about callbacks a solver does not call. With `odeint_adjoint` the forward
callbacks hook the forward solve and the ``*_adjoint`` ones the backward solves
(`BacksolveAdjoint(callback=)`), whose state is torchdiffeq's ``(t, y, adj_y,
*adj_params)``; ``scipy_solver`` calls none.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Set

import torch

__all__ = ["CALLBACKS", "ADJOINT_CALLBACKS", "TorchdiffeqHooks", "step_hooks", "adjoint_hooks"]

CALLBACKS = ("callback_step", "callback_accept_step", "callback_reject_step")
ADJOINT_CALLBACKS = tuple(c + "_adjoint" for c in CALLBACKS)


class TorchdiffeqHooks:
    """``before_step`` / ``after_step`` calling the torchdiffeq callbacks of ``func``
    (``suffix='_adjoint'``: the adjoint ones)."""

    def __init__(self, func: Any, names: Set[str], split: Callable[[torch.Tensor], Any],
                 suffix: str = "") -> None:
        self.func, self.names, self.split, self.suffix = func, names, split, suffix

    def before_step(self, t0: torch.Tensor, y0: torch.Tensor, h: Any) -> None:
        name = "callback_step" + self.suffix
        if name in self.names:
            getattr(self.func, name)(t0, self.split(y0), h)

    def after_step(self, t0: torch.Tensor, y0: torch.Tensor, h: Any, y1: Any,
                   accepted: Any) -> None:
        name = ("callback_accept_step" if bool(torch.as_tensor(accepted).all()) else
                "callback_reject_step") + self.suffix
        if name in self.names:
            getattr(self.func, name)(t0, self.split(y0), h)


def _supported(fixed: bool) -> Set[str]:
    return {"callback_step"} if fixed else set(CALLBACKS)


def step_hooks(func: Any, method: str, fixed: bool, hooks_supported: bool,
               split: Callable[[torch.Tensor], Any], adjoint: bool = False
               ) -> Optional[TorchdiffeqHooks]:
    """The hooks for the forward callbacks ``func`` defines (None if none), warning about
    those that will not be called (``adjoint``: the ``*_adjoint`` ones will be, by
    `adjoint_hooks`)."""
    present = {n for n in CALLBACKS + ADJOINT_CALLBACKS if callable(getattr(func, n, None))}
    supported: Set[str] = _supported(fixed) if hooks_supported else set()
    if adjoint:
        supported = supported | {n + "_adjoint" for n in supported}
    ignored = present - supported
    if ignored:
        warnings.warn(f"Solver '{method}' does not support callbacks {sorted(ignored)}")
    used = present & supported & set(CALLBACKS)
    return TorchdiffeqHooks(func, used, split) if used else None


def adjoint_hooks(func: Any, fixed: bool, split: Callable[[torch.Tensor], Any]
                  ) -> Optional[TorchdiffeqHooks]:
    """Hooks of the backward solves calling the ``*_adjoint`` callbacks (None if none)."""
    used = {n + "_adjoint" for n in _supported(fixed)
            if callable(getattr(func, n + "_adjoint", None))}
    return TorchdiffeqHooks(func, used, split, "_adjoint") if used else None
