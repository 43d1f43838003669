"""`RungeKutta`: any explicit `ButcherTableau` as a `Solver`.

The carried state is the first stage of the next step (FSAL methods reuse their last
stage; other methods evaluate it in the step, or reuse the dense extra stage
``f(t + h, y1)`` when dense output evaluated it). ``checkpoint=True`` wraps each step in
gradient checkpointing (the step's graph is recomputed during the backward pass);
``with_error=False`` skips the error estimate (fixed step sizes). On a fixed grid the loop
hands each step its stage times, formed for a block of steps at once (`StageTimes`).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch

from ..engine.controller import _bcast
from ..engine.solver import Solver, StepResult
from .interpolation import interpolate_stages, stage_interpolant
from .rk import CompiledTableau, checkpointed_rk_step, extra_stages, rk_step

Tensor = torch.Tensor

__all__ = ["RungeKutta"]


class RungeKutta(Solver):
    """An explicit Runge–Kutta method on a compiled tableau."""

    def __init__(self, ct: CompiledTableau, checkpoint: bool = False,
                 with_error: bool = True) -> None:
        tab = ct.tab
        self.ct, self.tab, self.name = ct, tab, tab.name
        self.order = tab.order
        self.error_order = tab.error_order if tab.adaptive else None
        self.interpolates = ct.dense is not None
        self.checkpoint, self.with_error = checkpoint, with_error
        self._step = checkpointed_rk_step if checkpoint else rk_step
        self.evals_per_step, self.dense_evals = ct.evals_per_step, len(ct.extra)
        # a non-FSAL method whose one extra dense stage is f(t + h, y1) hands it on
        self._reuse_extra = (not tab.fsal and len(ct.extra) == 1 and ct.extra[0][0] == 1.0
                             and ct.extra[0][1] == ct.b_terms)

    def init(self, terms: Any, t0: Tensor, y0: Tensor) -> Optional[Tensor]:
        """The first stage ``f(t0, y0)`` (validated: the first call of f)."""
        return terms.first_call(t0, y0)

    def step(self, terms: Any, t0: Tensor, h: Tensor, y0: Tensor, state: Optional[Tensor],
             control: Any = None, t1: Optional[Tensor] = None) -> StepResult:
        k0 = state
        if k0 is None and not self.checkpoint:
            k0 = terms(t0, y0)  # a checkpointed step evaluates it inside (graph not stored)
        y1, ks, err, err_low = self._step(terms, self.ct, t0, y0, h, _bcast(h, y0), k0,
                                          self.with_error, control)
        error = err if err_low is None else (err, err_low)
        return StepResult(y1, error, ks, ks[-1] if self.tab.fsal else None)

    def grid_control(self, times: Sequence[Tensor], hs: Sequence[Tensor]
                     ) -> Optional["StageTimes"]:
        """The stage times of every step (``control`` of `step`: None forms them there)."""
        return StageTimes(self.ct.c, times, hs) if len(self.ct.c) > 1 else None

    def densify(self, terms: Any, t0: Tensor, h: Tensor, y0: Tensor,
                res: StepResult) -> StepResult:
        """Evaluate the extra stages of the continuous extension (``len(ct.extra)`` calls)."""
        if not self.ct.extra:
            return res
        ks: List[Tensor] = extra_stages(terms, self.ct, t0, y0, h, _bcast(h, y0), res.dense_info)
        return res._replace(dense_info=ks, state=ks[-1] if self._reuse_extra else res.state)

    def interpolate(self, y0: Tensor, h: Tensor, dense_info: Any, theta: Tensor,
                    per_sample: bool) -> Tensor:
        return interpolate_stages(self.ct, y0, h, dense_info, theta, per_sample)

    def interpolant(self, y0: Tensor, h: Tensor, dense_info: Any,
                    per_sample: bool) -> Callable[[Tensor], Tensor]:
        return stage_interpolant(self.ct, y0, h, dense_info, per_sample)


class StageTimes:
    """Step n's stage times ``t_n + c_i h_n`` (stages 1..) on a fixed grid, formed ``block``
    steps at a time with one op per distinct c (the same elementwise op as one step's, so
    the same rounding) instead of one op per stage and step."""

    def __init__(self, c: Sequence[float], times: Sequence[Tensor], hs: Sequence[Tensor],
                 block: int = 256) -> None:
        self.cs = sorted(set(c[1:]))
        self.which = [self.cs.index(ci) for ci in c[1:]]
        self.times, self.hs, self.block = times, hs, block
        self._at, self._rows = -1, []

    def __call__(self, n: int) -> Tuple[Tensor, ...]:
        b, j = divmod(n, self.block)
        if b != self._at:
            lo, hi = b * self.block, min(len(self.hs), (b + 1) * self.block)
            t, h = torch.stack(list(self.times[lo:hi])), torch.stack(list(self.hs[lo:hi]))
            if h.dim() < t.dim():   # per-row times (k, B) on one grid: h in full, so the add
                h = h.reshape(-1, 1).expand_as(t).contiguous()   # rounds as a step's does
            cols = [torch.add(t, h, alpha=c).unbind(0) for c in self.cs]
            self._rows = list(zip(*[cols[k] for k in self.which]))
            self._at = b
        return self._rows[j]
