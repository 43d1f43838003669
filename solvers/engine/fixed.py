"""The fixed-grid loop, one for ODE and SDE solvers: a `Solver` steps on a grid known up
front (a `ConstantStepSize` or `StepTo` controller, a fixed-step method's output times, or
the SDE grid of step size <= dt), and a writer records the outputs.

The only host sync is a finiteness poll every ``poll_every`` steps; step times and sizes
are indexed from precomputed lists. `DenseGridWriter` fills output times inside a step
from the solver's dense output (ODE); `GridWriter` records the states at flagged grid
points (SDE).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import InvalidInputError
from ..ode.butcher import ButcherTableau
from .callbacks import StepHooks
from .solution import Stats
from .solver import Solver, StepResult

Tensor = torch.Tensor

_TRUE = torch.tensor(True)

__all__ = ["run_grid", "all_finite", "GridWriter", "DenseGridWriter", "map_outputs",
           "no_dense_message", "fixed_stats"]


def run_grid(solver: Solver, terms: Any, y0: Tensor, state: Any, times: Sequence[Any],
             hs: Sequence[Any], writer: Any, poll_every: int,
             control: Optional[Callable[[int], Any]] = None,
             on_nonfinite: Optional[Callable[[int], None]] = None,
             hooks: Optional[StepHooks] = None) -> Tuple[Tensor, Any]:
    """Step ``y0`` through ``len(hs)`` steps from ``times[n]`` by ``hs[n]``; ``control(n)``
    gives step n's driving increment (SDEs; None: the solver's `grid_control`). Every
    ``poll_every`` steps and at the end, ``on_nonfinite(n)`` is called (it raises) if the
    state is no longer finite. Returns the final state and solver state; the outputs are in
    ``writer``. ``hooks`` are called around every step."""
    n_steps = len(hs)
    y = y0
    if control is None:
        control = solver.grid_control(times, hs)
    for n in range(n_steps):
        t0, h = times[n], hs[n]
        if hooks is not None:
            hooks.before_step(t0, y, h)
        res = solver.step(terms, t0, h, y, state, None if control is None else control(n))
        out = writer.write(n, t0, h, y, res)
        if hooks is not None:  # internal hooks get the step as the solver made it
            hooks.after_step(t0, y, h, out.y1, _TRUE, res)
        y, state = out.y1, out.state
        if ((n + 1) % poll_every == 0 or n == n_steps - 1) and not all_finite(y):
            on_nonfinite(n)
    return y, state


def all_finite(y: Tensor) -> bool:
    """Whether every entry of ``y`` is finite, with one reduction and one host read: a sum
    with a NaN or infinite term is not finite, so a finite sum settles it; only a non-finite
    sum (also reached by overflow of finite terms) is checked entry by entry. ``x - x == 0``
    holds for finite real and complex ``x`` only."""
    s = (y.detach() if y.requires_grad else y).sum().item()
    return (s - s) == 0 or bool(torch.isfinite(y).all())


class GridWriter:
    """Keeps ``y0`` and the state after every step n with ``save[n]`` (and after every step
    when ``steps``)."""

    def __init__(self, y0: Tensor, save: Sequence[bool], steps: bool = False) -> None:
        self.save, self.outs = save, [y0]
        self.steps: Optional[List[Tensor]] = [] if steps else None

    def write(self, n: int, t0: Any, h: Any, y: Tensor, res: StepResult) -> StepResult:
        if self.save[n]:
            self.outs.append(res.y1)
        if self.steps is not None:
            self.steps.append(res.y1)
        return res

    def written(self, n: int) -> List[Tensor]:
        """The outputs reached before step n ended (for a failure report)."""
        return self.outs[:-1] if self.save[n] else self.outs

    def result(self) -> Tensor:
        return torch.stack(self.outs)


def map_outputs(grid: Tensor, t: Tensor, direction: float) -> Dict[int, List[Tuple[int, float]]]:
    """For each step n, the outputs j inside (grid[n], grid[n+1]] with their θ (host-side);
    step -1 holds outputs at the first grid time."""
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


class DenseGridWriter:
    """Outputs ``t`` of an ODE solve on ``grid``: the state at grid points, the solver's dense
    output inside steps (and, when the grid is not ``t`` itself, at every output but the
    last, so outputs stay differentiable in t). ``dense`` keeps every step's record for a
    `DenseInterpolant`."""

    def __init__(self, solver: Solver, terms: Any, y0: Tensor, t: Tensor, grid: Tensor,
                 direction: float, dense: bool) -> None:
        self.solver, self.terms, self.t = solver, terms, t
        self.off_grid = grid is not t
        # outputs on the grid itself (also per-row times (T, B)): output n+1 ends step n
        self.by_step = (map_outputs(grid, t, direction) if self.off_grid else
                        {n - 1: [(n, 0.0 if n == 0 else 1.0)] for n in range(t.shape[0])})
        self.outs: List[Optional[Tensor]] = [None] * t.shape[0]
        for j, _ in self.by_step.get(-1, []):
            self.outs[j] = y0
        self.records: Optional[list] = [] if dense else None
        self.grid_times = grid.unbind(0)
        self.y0 = y0

    def write(self, n: int, t0: Tensor, h: Tensor, y: Tensor, res: StepResult) -> StepResult:
        here = self.by_step.get(n)
        if here is None:
            if self.records is None:
                return res                    # most steps: no output, no dense record
            here = []
        last = len(self.outs) - 1
        interior = [(j, th) for j, th in here if th < 1.0 or (self.off_grid and j != last)]
        if interior or self.records is not None:
            if not self.solver.interpolates:
                raise InvalidInputError(no_dense_message(self.solver.tab))
            res = self.solver.densify(self.terms, t0, h, y, res)
            if self.records is not None:
                self.records.append((self.grid_times[n], h, y, res.dense_info))
        if interior:
            js = torch.tensor([j for j, _ in interior], device=self.t.device)
            theta = (self.t[js] - self.grid_times[n]) / h  # differentiable in t
            vals = self.solver.interpolate(y, h, res.dense_info, theta, per_sample=False)
            for w, (j, _) in enumerate(interior):
                self.outs[j] = vals[w]
        for j, _ in here:
            if self.outs[j] is None:
                self.outs[j] = res.y1
        return res

    def partial(self) -> Tensor:
        """The outputs so far, NaN where not reached."""
        return torch.stack([o if o is not None else torch.full_like(self.y0, math.nan)
                            for o in self.outs])

    def result(self) -> Tensor:
        return torch.stack(self.outs)


def no_dense_message(tab: ButcherTableau) -> str:
    return (f"`method` ButcherTableau {tab.name!r} has no dense output (`dense` is None), "
            "which output times inside a step (and `dense=True`) need; give the tableau "
            "`dense` coefficients, or use output times on the step grid")


def fixed_stats(calls: int, n_steps: int, row_shape: Tuple[int, ...],
                device: torch.device) -> Stats:
    """Statistics of a fixed-grid solve: every step accepted."""
    full = torch.ones(row_shape, dtype=torch.long, device=device)
    return Stats(nfe=full * calls, n_steps=full * n_steps, n_accepted=full * n_steps,
                 n_rejected=full * 0, n_f_calls=calls)
