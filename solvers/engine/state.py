"""Typed state of the adaptive loop: what every row carries from one step to the next.

Shapes: 0-dim per-row quantities in joint mode, ``(B,)`` per sample; ``y`` is the flat
state ``(N,)`` or ``(B, N)`` and ``state`` what the solver carries (None, a tensor shaped
like ``y`` such as an FSAL stage, or a tuple of them). `LoopState.where` advances the rows
whose step was accepted; `LoopState.select` keeps a subset of rows (per-sample compaction).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Tuple

import torch

from .controller import _bcast

Tensor = torch.Tensor

__all__ = ["LoopState", "StepEnd", "map_state"]


def map_state(fn: Callable[..., Tensor], *states: Any) -> Any:
    """Apply ``fn`` leafwise to solver states of one structure (None, a tensor, a tuple)."""
    first = states[0]
    if first is None:
        return None
    if isinstance(first, torch.Tensor):
        return fn(*states)
    return tuple(map_state(fn, *parts) for parts in zip(*states))


class StepEnd(NamedTuple):
    """Where an attempted step ends: time, state, and the solver state for the next step
    (None when the next step evaluates its own)."""

    t: Tensor
    y: Tensor
    state: Any


@dataclass(slots=True)
class LoopState:
    """Per-row time, state, solver state, step size, controller history and counters
    (``nfe0``: the evaluations before the first step; `counts` derives each row's nfe)."""

    t: Tensor
    y: Tensor
    state: Any
    h: Tensor
    history: Tuple[Tensor, Tensor]
    nfe0: Tensor
    n_steps: Tensor
    n_accepted: Tensor
    done: Tensor
    stuck: Tensor  # rejected at dt_min
    t_end: Tensor  # where each row stops: 0-dim, or (B,) with per-row output times

    evals: int = 0  # evaluations per attempted step: nfe = nfe0 + evals * n_steps

    @classmethod
    def start(cls, t0: Tensor, y0: Tensor, state: Any, h: Tensor,
              history: Tuple[Tensor, Tensor], calls: int, t_end: Tensor,
              evals: int) -> "LoopState":
        """Rows at ``t0`` (already expanded to the row shape) with ``calls`` evaluations,
        integrating to ``t_end`` with ``evals`` evaluations per attempted step."""
        zero = torch.zeros(t0.shape, dtype=torch.long, device=y0.device)
        no = torch.zeros(t0.shape, dtype=torch.bool, device=y0.device)
        return cls(t0, y0, state, h, history, zero + calls, zero.clone(), zero.clone(), no,
                   no.clone(), t_end, evals)

    def where(self, accept: Tensor, new: StepEnd) -> None:
        """Rows where ``accept`` move to ``new``; the others stay."""
        acc_b = _bcast(accept, self.y)
        self.y = torch.where(acc_b, new.y, self.y)
        if new.state is not None and self.state is not None:
            # (a None state stays None: the next attempt evaluates its own)
            self.state = map_state(lambda a, b: torch.where(_bcast(accept, a), a, b),
                                   new.state, self.state)
        self.t = torch.where(accept, new.t, self.t)

    def count(self, active: Tensor, accept: Tensor) -> None:
        """Count one attempted step of the ``active`` rows; rows at ``t_end`` are done."""
        self.n_steps = self.n_steps + active
        self.n_accepted = self.n_accepted + (accept & active)
        self.done = self.t == self.t_end

    def counts(self) -> Tuple[Tensor, Tensor, Tensor]:
        """``(nfe, n_steps, n_accepted)`` per row."""
        return self.nfe0 + self.evals * self.n_steps, self.n_steps, self.n_accepted

    def select(self, keep: Tensor) -> None:
        """Keep only the rows ``keep`` (indices)."""
        self.t, self.y, self.h = self.t[keep], self.y[keep], self.h[keep]
        self.state = map_state(lambda v: v[keep], self.state)
        self.history = tuple(v[keep] for v in self.history)
        self.nfe0, self.n_steps = self.nfe0[keep], self.n_steps[keep]
        self.n_accepted, self.done, self.stuck = (self.n_accepted[keep], self.done[keep],
                                                  self.stuck[keep])
        if self.t_end.dim():
            self.t_end = self.t_end[keep]
