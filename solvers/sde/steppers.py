"""SDE methods as `Solver` strategies for the one integration engine.

`SDEStepper` is any method of `sde.methods` (its carried state is reversible Heun's
``(z, f, g)``, empty otherwise; the control is the step's Brownian increment). Methods have
no embedded error estimate: `StepDoubling` gives one by comparing a full step with two half
steps on the same Brownian path, which it queries itself (the path's tree descent is host
logic, so each attempted step reads its two end times on the host once).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import torch
import torch.utils.checkpoint

from ..engine.solver import Solver, StepResult
from .methods import SDEMethod, reversible_heun_init

Tensor = torch.Tensor
Query = Callable[[float, float], Tuple[Tensor, Optional[Tensor]]]

__all__ = ["SDEStepper", "StepDoubling"]


class SDEStepper(Solver):
    """One SDE method: ``step(terms, t0, h, y0, state, (dW, H))`` with ``h`` a Python float;
    ``checkpoint=True`` recomputes each step's graph during the backward pass (gradient
    checkpointing: memory of the outputs, not of every step)."""

    def __init__(self, method: SDEMethod, step: Callable, noise_type: str,
                 checkpoint: bool = False) -> None:
        self.method, self.name, self._step = method, method.name, step
        self.order = method.strong_order(noise_type)
        self.checkpoint = checkpoint

    def init(self, terms: Any, t0: Tensor, y0: Tensor) -> Tuple:
        return reversible_heun_init(terms, t0, y0) if self.method.has_extra else ()

    def step(self, terms: Any, t0: Tensor, h: float, y0: Tensor, state: Tuple,
             control: Any = None, t1: Optional[Tensor] = None) -> StepResult:
        if self.checkpoint and torch.is_grad_enabled():
            y1, state = torch.utils.checkpoint.checkpoint(self._step, terms, t0, h, y0, control,
                                                          state, use_reentrant=False)
        else:
            y1, state = self._step(terms, t0, h, y0, control, state)
        return StepResult(y1, None, None, state)


class StepDoubling(Solver):
    """A method's error estimate by step doubling: the step returns the two-half-step state
    with error ``y_full - y_half``, the increments queried from ``query(ta, tb)`` (a
    Brownian path, so a rejected step re-queries the same path). The estimate's order is
    the method's strong order minus 1/2. ``attempts`` keeps every attempted step's host
    times ``(t0, t_mid, t1)``, from which the solve's path is replayed (the adjoint)."""

    def __init__(self, stepper: SDEStepper, query: Query) -> None:
        self.stepper, self.query, self.name = stepper, query, stepper.name
        self.order = stepper.order
        self.error_order = stepper.order - 0.5
        self.attempts: List[Tuple[float, float, float]] = []
        self.last_state: Tuple = ()      # after the last attempt: the final accepted one's

    def init(self, terms: Any, t0: Tensor, y0: Tensor) -> Any:
        """A carried state (reversible Heun's) runs through the two half steps."""
        return self.stepper.init(terms, t0, y0) if self.stepper.method.has_extra else None

    def step(self, terms: Any, t0: Tensor, h: Tensor, y0: Tensor, state: Any,
             control: Any = None, t1: Optional[Tensor] = None) -> StepResult:
        ta, tb = torch.stack([t0, t0 + h if t1 is None else t1]).tolist()
        tm = ta + 0.5 * (tb - ta)
        self.attempts.append((ta, tm, tb))
        inner, q = self.stepper, self.query
        st = () if state is None else state
        y_full = inner.step(terms, t0, tb - ta, y0, st, q(ta, tb)).y1
        mid = inner.step(terms, t0, tm - ta, y0, st, q(ta, tm))
        t_mid = torch.tensor(tm, dtype=t0.dtype, device=t0.device)
        half = inner.step(terms, t_mid, tb - tm, mid.y1, mid.state, q(tm, tb))
        self.last_state = half.state
        return StepResult(half.y1, y_full - half.y1, None, half.state if state is not None
                          else None)
