"""Step callbacks: hooks the integration loops call around every attempted step.

``callback`` of `solve_ode` is an object with ``before_step(t0, y0, h)`` and/or
``after_step(t0, y0, h, y1, accepted)`` methods, or a plain callable (the ``after_step``
hook). ``t0``/``h`` are the step's start and size (0-dim tensors, or ``(B,)`` per sample),
``y0``/``y1`` its start and end states (tuples for tuple states), ``accepted`` a bool
tensor (always True on a fixed grid). The hooks see tensors as the loop holds them:
reading one on the host (``bool(accepted)``) costs a device sync per step.

Internal hooks (`events.EventMonitor`) subclass `StepHooks`: ``bind`` hands them the
solve's solver and terms, ``after_step`` also receives the step's `StepResult`, and an
``after_step`` that returns a bool tensor of the row shape ends those rows at the step's
end (the adaptive loop; a fixed grid runs on).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from ..errors import InvalidInputError, describe

Tensor = torch.Tensor

__all__ = ["StepHooks", "as_step_hooks"]


class StepHooks:
    """The validated hooks of one solve, presenting user states (unflattened)."""

    def __init__(self, before: Optional[Callable], after: Optional[Callable],
                 unflatten: Callable[[Tensor], Any] = lambda y: y) -> None:
        self.before, self.after, self.unflatten = before, after, unflatten

    def bind(self, solver: Any, terms: Any) -> None:
        """Called once per solve with its `Solver` and terms (default: nothing)."""

    def before_step(self, t0: Tensor, y0: Tensor, h: Any) -> None:
        if self.before is not None:
            self.before(t0, self.unflatten(y0), h)

    def after_step(self, t0: Tensor, y0: Tensor, h: Any, y1: Tensor, accepted: Any,
                   res: Any = None) -> Optional[Tensor]:
        """Call the user's hook (``res``: the step's `StepResult`, for internal hooks);
        returns the rows to stop (None: the user's hooks never stop a solve)."""
        if self.after is not None:
            self.after(t0, self.unflatten(y0), h, self.unflatten(y1), accepted)
        return None


def as_step_hooks(callback: Any) -> Optional[StepHooks]:
    """`StepHooks` from a ``callback`` argument (None: no hooks)."""
    if callback is None or isinstance(callback, StepHooks):
        return callback
    before = getattr(callback, "before_step", None)
    after = getattr(callback, "after_step", None)
    if before is None and after is None:
        if not callable(callback):
            raise InvalidInputError(
                "`callback` must be callable after_step(t0, y0, h, y1, accepted) or an object "
                f"with before_step / after_step methods; got {describe(callback)}")
        after = callback
    for name, fn in (("before_step", before), ("after_step", after)):
        if fn is not None and not callable(fn):
            raise InvalidInputError(f"`callback.{name}` must be callable; got {describe(fn)}")
    return StepHooks(before, after)
