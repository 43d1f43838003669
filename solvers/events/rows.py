"""`Rows`: joint and per-sample event handling seen the same way, as R rows (R = 1 in
joint mode, R = B per sample) with one time and one event value per row.

Event functions and f are always called on the full batch in row order, so per-row
parameters indexed by position stay aligned.
"""
from __future__ import annotations

from typing import Callable, List, Tuple

import torch

from ..ode.interpolation import nested_horner
from .gradient import attach_event_gradient

Tensor = torch.Tensor

__all__ = ["Rows"]

_BLOCK = 256  # rows evaluated per dense-output call when rows have different times


class Rows:
    def __init__(self, func: Callable, y0: Tensor, per_sample: bool) -> None:
        self.func, self.per_sample = func, per_sample
        self.n = y0.shape[0] if per_sample else 1

    def _g(self, fn: Callable, t: Tensor, y: Tensor) -> Tensor:
        """Event values ``(R,)`` for row times ``t`` ``(R,)`` and state ``y``."""
        out = fn(t, y) if self.per_sample else fn(t[0], y)
        return torch.as_tensor(out).reshape(self.n)

    @torch.no_grad()
    def grid_values(self, sol, grid: Tensor, fn: Callable) -> Tensor:
        """Event values on a time grid shared by all rows, shape ``(K, R)``."""
        ys = sol.evaluate(grid)
        return torch.stack([self._g(fn, grid[k].expand(self.n), ys[k])
                            for k in range(grid.shape[0])]).detach()

    @torch.no_grad()
    def values_at(self, sol, t: Tensor, fn: Callable) -> Tensor:
        return self._g(fn, t, self.at(sol, t)).detach()

    def at(self, sol, t: Tensor) -> Tensor:
        """The state at row times ``t`` ``(R,)`` (joint: y at ``t[0]``; per sample: row r
        at ``t[r]``), differentiable at fixed ``t``."""
        if not self.per_sample:
            return sol.evaluate(t[:1].detach())[0]
        try:
            return _rows_at(sol.dense, t.detach())
        except AttributeError:  # another dense-output layout: one time per call, diagonal
            pass
        parts: List[Tensor] = []
        for s in range(0, self.n, _BLOCK):
            tb = t[s:s + _BLOCK].detach()
            ys = sol.evaluate(tb)                                  # (b, B, ...)
            idx = torch.arange(tb.shape[0], device=tb.device)
            parts.append(ys[idx, idx + s])
        return torch.cat(parts)

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
                y = torch.where(m.reshape(-1, *([1] * (y.dim() - 1))), yi, y)
            else:
                ti, yi = attach_event_gradient(self.func, fn, t[0], y[0])
                t, y = ti.reshape(1), yi.unsqueeze(0)
        return t, y


def _rows_at(dense, t: Tensor) -> Tensor:
    """Row r of a per-sample dense output at its own time ``t[r]``: O(steps · B), where
    `Solution.evaluate` at B times would cost O(steps · B²)."""
    d = dense.direction
    n, B = dense.t0s.shape
    ok = dense.accepted & (d * dense.t0s <= d * t)                           # (n, B)
    steps = torch.arange(n, device=t.device).unsqueeze(-1)
    first = dense.accepted.float().argmax(0)
    r = torch.where(ok.any(0), (ok * steps).amax(0), first)                  # (B,)
    rows = torch.arange(B, device=t.device)
    h = dense.hs[r, rows]
    theta = (t - dense.t0s[r, rows]) / h
    c = dense.coefs.reshape(n, dense.coefs.shape[1], B, -1)[r, :, rows]      # (B, deg, M)
    inc = nested_horner(c.unbind(1), theta.unsqueeze(-1))                    # (B, M)
    out = dense.y0s.reshape(n, B, -1)[r, rows] + h.unsqueeze(-1) * inc
    return dense.unflatten(out.reshape(dense.y0s.shape[1:]))
