"""`Rows`: joint and per-sample event handling seen the same way, as R rows (R = 1 in
joint mode, R = B per sample) with one time and one event value per row.

Event functions and f are always called on the full batch in row order, so per-row
parameters indexed by position stay aligned.
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch

from .gradient import attach_event_gradient

Tensor = torch.Tensor

__all__ = ["Rows", "where_rows"]


class Rows:
    def __init__(self, func: Callable, y0: Tensor, per_sample: bool) -> None:
        self.func, self.per_sample = func, per_sample
        self.n = y0.shape[0] if per_sample else 1

    def raw_values(self, fn: Callable, t: Tensor, y: Tensor) -> Tensor:
        """Event values ``(R,)`` for row times ``t`` ``(R,)`` and state ``y`` (in the
        caller's grad mode)."""
        out = fn(t, y) if self.per_sample else fn(t[0], y)
        return torch.as_tensor(out).reshape(self.n)

    def step_values(self, fn: Callable, t: Tensor, y: Tensor) -> Tensor:
        """Event values in the loops' row shape (that of ``t``: 0-dim joint, ``(B,)``)."""
        out = torch.as_tensor(fn(t, y))
        return out if out.shape == t.shape else out.reshape(t.shape)

    @torch.no_grad()
    def values(self, fn: Callable, t: Tensor, y: Tensor) -> Tensor:
        """`raw_values` without a graph."""
        return self.raw_values(fn, t, y)

    def state_mask(self, rows: Tensor, y: Tensor) -> Tensor:
        """A row mask ``(R,)`` broadcastable against the state ``y``."""
        if not self.per_sample:
            return rows.reshape(())
        return rows.reshape(-1, *([1] * (y.dim() - 1)))

    def rowwise(self, y: Tensor) -> Tensor:
        return y if self.per_sample else y.unsqueeze(0)

    def row(self, y: Tensor, r: int) -> Tensor:
        return y[r] if self.per_sample else y

    def unrow(self, t: Tensor, y: Tensor, which: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        if self.per_sample:
            return t, y, which
        return t[0], y[0], which[0]

    def event_gradient(self, events, which: Tensor, t: Tensor, y: Tensor
                       ) -> Tuple[Tensor, Tensor]:
        """Attach the implicit-function gradient of each row's terminal event."""
        for i in sorted(set(which[which >= 0].tolist())):
            fn = events[i].fn
            if self.per_sample:
                ti, yi = attach_event_gradient(self.func, fn, t, y, per_sample=True)
                m = which == i
                t = torch.where(m, ti, t)
                y = where_rows(m, yi, y)
            else:
                ti, yi = attach_event_gradient(self.func, fn, t[0], y[0])
                t, y = ti.reshape(1), yi.unsqueeze(0)
        return t, y


def where_rows(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Rows of ``a`` where ``mask`` ``(R,)``, else of ``b`` (both ``(R, ...)``)."""
    return torch.where(mask.reshape(-1, *([1] * (a.dim() - 1))), a, b)
