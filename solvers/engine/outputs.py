"""Interior output times of an adaptive solve, written from each accepted step's dense
output without a host sync."""
from __future__ import annotations

import math

import torch

from .controller import _bcast
from .solver import Solver, StepResult

Tensor = torch.Tensor

__all__ = ["OutputWriter"]


class OutputWriter:
    """Writes interior output times crossed by accepted steps into a buffer, sync-free.

    Each step looks at a window of the next ``window`` pending outputs per row; steps
    never go past the window's last output, so none is skipped. On the CPU, where reading
    a flag costs no device sync, steps that cross no output skip the interpolation.
    """

    def __init__(self, t: Tensor, y0: Tensor, window: int, per_sample: bool, B: int) -> None:
        n_out = t.shape[0]
        self.n_out, self.window, self.per_sample = n_out, window, per_sample
        self.shape = y0.shape
        self.t_pad = torch.cat([t, t[-1:].expand(window, *t.shape[1:])])
        self.row_times = t.dim() == 2  # (T, B): each row its own output times
        self.ar = torch.arange(window, device=t.device)
        self.oi = torch.ones((B,) if per_sample else (), dtype=torch.long, device=t.device)
        rows = (B, y0[0].numel()) if per_sample else tuple(y0.shape)
        self.buf = torch.full((n_out + window, *rows), math.nan, dtype=y0.dtype,
                              device=y0.device)
        self.buf[0] = y0.reshape(rows)
        self.lazy = y0.device.type == "cpu"
        self.rows = torch.arange(B, device=t.device) if per_sample else None

    def stop(self) -> Tensor:
        idx = (self.oi + (self.window - 1)).clamp_max(self.n_out - 1)
        return self.t_pad[idx, self.rows] if self.row_times else self.t_pad[idx]

    def write(self, solver: Solver, tt: Tensor, t_new: Tensor, y: Tensor, h: Tensor,
              res: StepResult, accept: Tensor) -> None:
        d = torch.sign(h)
        if self.per_sample:
            idx = self.oi.unsqueeze(-1) + self.ar                                 # (B, W)
            t_w = self.t_pad[idx, self.rows.unsqueeze(-1)] if self.row_times else self.t_pad[idx]
            tt_, tn_, h_, acc_ = (tt.unsqueeze(-1), t_new.unsqueeze(-1), h.unsqueeze(-1),
                                  accept.unsqueeze(-1))
        else:
            idx = self.oi + self.ar                                               # (W,)
            t_w = self.t_pad[idx]
            tt_, tn_, h_, acc_ = tt, t_new, h, accept
        d_ = d.unsqueeze(-1) if self.per_sample else d
        crossed = acc_ & ((t_w - tt_) * d_ > 0) & ((t_w - tn_) * d_ <= 0) & (idx < self.n_out - 1)
        if self.lazy and not bool(crossed.any()):
            return
        theta = (t_w - tt_) / torch.where(h_ == 0, torch.ones_like(h_), h_)
        if solver.interpolates:
            vals = solver.interpolate(y, h, res.dense_info, theta, self.per_sample)
        else:  # steps stop on every output (window 1): the output is the step's end
            vals = res.y1.unsqueeze(0)
        if self.per_sample:
            vals = vals.reshape(self.window, y.shape[0], -1)
            # advanced indexing / index_put_ save only indices for backward (gather would
            # save the buffer, which the in-place write then invalidates)
            cur = self.buf[idx.T, self.rows]
            self.buf.index_put_((idx.T, self.rows),
                                torch.where(crossed.T.unsqueeze(-1), vals, cur))
        else:
            cur = self.buf.index_select(0, idx)
            self.buf.index_copy_(0, idx, torch.where(_bcast(crossed, vals), vals, cur))
        self.oi = self.oi + crossed.sum(-1)

    def select(self, keep: Tensor) -> None:
        """Keep only the given working rows (compaction)."""
        self.oi, self.rows = self.oi[keep], self.rows[keep]

    def result(self, y_end: Tensor) -> Tensor:
        ys = self.buf[:self.n_out].reshape(self.n_out, *self.shape)
        return torch.cat([ys[:-1], y_end.unsqueeze(0)])
