"""The fixed-grid loop: fixed-step methods, or any method under a `ConstantStepSize` or
`StepTo` controller (``step_size=`` is a `ConstantStepSize`).

The grid is known up front; outputs between grid points come from the method's dense
output. The only host sync is a finiteness poll every ``poll_every`` steps.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import InvalidInputError, NonFiniteError
from ..ode.interpolation import interpolate_stages
from ..ode.rk import CompiledTableau, extra_stages, rk_step
from ..ode.butcher import ButcherTableau
from .flat import CountedFunc

Tensor = torch.Tensor

__all__ = ["solve_fixed", "no_dense_message"]


def _map_outputs(grid: Tensor, t: Tensor, direction: float) -> Dict[int, List[Tuple[int, float]]]:
    """For each step n, the outputs j inside (grid[n], grid[n+1]] with their θ (host-side)."""
    g = grid.detach().cpu().double().numpy() * direction
    o = t.detach().cpu().double().numpy() * direction
    idx = np.searchsorted(g, o, side="left")
    by_step: Dict[int, List[Tuple[int, float]]] = {}
    for j, (i, oj) in enumerate(zip(idx, o)):
        if i == 0:
            by_step.setdefault(-1, []).append((j, 0.0))
            continue
        i = min(int(i), len(g) - 1)
        theta = (oj - g[i - 1]) / (g[i] - g[i - 1])
        by_step.setdefault(i - 1, []).append((j, float(min(max(theta, 0.0), 1.0))))
    return by_step


def solve_fixed(fn: CountedFunc, ct: CompiledTableau, y0: Tensor, k0: Tensor, t: Tensor,
                direction: float, grid: Tensor, per_sample: bool, B: int,
                dense: bool, poll_every: int, step: Callable = rk_step
                ) -> Tuple[Tensor, Dict[str, Any], Optional[list]]:
    """Step on ``grid`` (from a `ConstantStepSize` or `StepTo`); returns
    ``(ys, stats, dense records)``."""
    off_grid = grid is not t
    by_step = _map_outputs(grid, t, direction)
    n_steps = grid.shape[0] - 1
    ts = grid.unbind(0)
    hs = (grid[1:] - grid[:-1]).unbind(0)
    reuse_extra = (not ct.tab.fsal and len(ct.extra) == 1 and ct.extra[0][0] == 1.0
                   and ct.extra[0][1] == ct.b_terms)
    outs: List[Optional[Tensor]] = [None] * t.shape[0]
    for j, _ in by_step.get(-1, []):
        outs[j] = y0
    records = [] if dense else None
    y = y0
    for n in range(n_steps):
        tn = ts[n].expand(B) if per_sample else ts[n]
        h = hs[n]
        if k0 is None and step is rk_step:
            k0 = fn(tn, y)  # a checkpointed step evaluates it inside (graph not stored)
        y1, ks, _, _ = step(fn, ct, tn, y, h, h, k0, False)
        k_next = ks[-1] if ct.tab.fsal else None
        here = by_step.get(n, [])
        # When the grid is not t itself, outputs (but the last, which ends the grid) come
        # from the dense output so they stay differentiable in t.
        interior = [(j, th) for j, th in here
                    if th < 1.0 or (off_grid and j != len(outs) - 1)]
        if interior or dense:
            if ct.dense is None:
                raise InvalidInputError(no_dense_message(ct.tab))
            if ct.extra:
                ks = extra_stages(fn, ct, tn, y, h, h, ks)
                if reuse_extra:
                    k_next = ks[-1]
            if records is not None:
                records.append((ts[n], h, y, ks))
        if interior:
            js = torch.tensor([j for j, _ in interior], device=t.device)
            theta = (t[js] - ts[n]) / h  # differentiable in t (values from the host map)
            vals = interpolate_stages(ct, y, h, ks, theta, per_sample=False)
            for w, (j, _) in enumerate(interior):
                outs[j] = vals[w]
        for j, th in here:
            if outs[j] is None:
                outs[j] = y1
        y, k0 = y1, k_next
        if (n + 1) % poll_every == 0 or n == n_steps - 1:
            if not bool(torch.isfinite(y).all()):
                ys = torch.stack([o if o is not None else torch.full_like(y0, math.nan)
                                  for o in outs])
                raise NonFiniteError(
                    f"the state became non-finite at t={float(ts[n + 1]):.6g} (step {n + 1} of "
                    f"{n_steps}); reduce `step_size` or check f", t=ts[n + 1], ys=ys,
                    stats=_fixed_stats(fn.calls, n + 1, per_sample, B, y0.device))
    return torch.stack(outs), _fixed_stats(fn.calls, n_steps, per_sample, B, y0.device), records


def no_dense_message(tab: ButcherTableau) -> str:
    return (f"`method` ButcherTableau {tab.name!r} has no dense output (`dense` is None), "
            "which output times inside a step (and `dense=True`) need; give the tableau "
            "`dense` coefficients, or use output times on the step grid")


def _fixed_stats(calls: int, n_steps: int, per_sample: bool, B: int,
                 device: torch.device) -> Dict[str, Any]:
    full = torch.full((B,) if per_sample else (), 1, dtype=torch.long, device=device)
    return {"nfe": full * calls, "n_steps": full * n_steps, "n_accepted": full * n_steps,
            "n_rejected": full * 0, "n_f_calls": calls}
