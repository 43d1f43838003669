"""Per-sample compaction: finished rows leave the working batch."""
from __future__ import annotations

from typing import Tuple

import torch

Tensor = torch.Tensor

__all__ = ["Compactor"]


class Compactor:
    """Per-sample ``compact=True``: finished rows leave the working batch at each poll, so
    f is called on the still-active rows only (for f whose rows are independent)."""

    def __init__(self, y0: Tensor, B: int) -> None:
        self.rows = torch.arange(B, device=y0.device)  # global ids of the working rows
        self.y_end = torch.zeros_like(y0)
        self.counts = None

    def retire(self, done: Tensor, y: Tensor, counts: Tuple[Tensor, ...]) -> Tensor:
        """Store the finished rows' results; return the indices of the rows to keep."""
        fin, keep = done.nonzero().squeeze(1), (~done).nonzero().squeeze(1)
        gid = self.rows[fin]
        self.y_end = self.y_end.index_put((gid,), y[fin])
        if self.counts is None:
            self.counts = tuple(torch.zeros(self.y_end.shape[0], dtype=c.dtype,
                                            device=c.device) for c in counts)
        self.counts = tuple(full.index_put((gid,), c[fin])
                            for full, c in zip(self.counts, counts))
        self.rows = self.rows[keep]
        return keep

    def full(self, y: Tensor, counts: Tuple[Tensor, ...]) -> Tuple[Tensor, Tuple[Tensor, ...]]:
        """Full-batch end state and counters from the finished and the working rows."""
        if self.counts is None:
            return y, counts
        return (self.y_end.index_put((self.rows,), y),
                tuple(full.index_put((self.rows,), c) for full, c in zip(self.counts, counts)))
