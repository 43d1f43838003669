"""`EventMonitor`: event detection as a step hook of the integration loops.

After every accepted step the monitor evaluates each event function at the step's end and
compares its sign with its sign at the step's start (`crossing`; only a sign flag per row
is carried). A terminal crossing ends its row (per sample) or the solve (joint) through
the hook's return value: the adaptive loop stops those rows at the end of the step; a
fixed grid runs on, and the monitor ignores the stopped rows. The monitor keeps each
crossing step as the solver made it (start time, size, start and end state, dense
information); `EventMonitor.locate` completes its dense output and finds the crossing on
it with the Illinois root finder (`events.root`). Nothing is evaluated on steps without a
crossing.

On the CPU, where reading a flag is cheap, only steps with a crossing are kept. On
accelerators the terminal crossing step is merged into a per-row record with
``torch.where`` every step (no host read), and non-terminal records are filtered every
``FLUSH`` steps with one host read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..engine.callbacks import StepHooks
from ..engine.solver import StepResult
from ..engine.state import map_state
from .root import default_tol, illinois
from .rows import Rows

Tensor = torch.Tensor

__all__ = ["EventMonitor", "Crossing", "sign_flag", "crossing"]

FLUSH = 64  # non-terminal records kept between host reads (accelerators)


def cheap_read(device: torch.device) -> bool:
    """Whether reading a flag on the host is cheap (no device sync): the CPU."""
    return device.type == "cpu"


def sign_flag(g: Tensor, direction: int) -> Tensor:
    """What a crossing in ``direction`` changes: ``g > 0`` (direction -1), ``g < 0`` (+1),
    ``sign(g)`` (0)."""
    if direction < 0:
        return g > 0
    if direction > 0:
        return g < 0
    return torch.sign(g)


def crossing(f0: Tensor, f1: Tensor, direction: int) -> Tensor:
    """Rows whose flag went from ``f0`` to ``f1`` across zero: positive to non-positive
    (-1), negative to non-negative (+1), either (0: ``f0 (f0 - f1) > 0``)."""
    if direction != 0:
        return f0 > f1
    return f0 * (f0 - f1) > 0


@dataclass
class Crossing:
    """A kept step: per-row start time ``t0`` and size ``h`` ``(R,)``, the states ``y0``,
    ``y1`` and dense information as the loop and solver hold them, and per event index
    the rows ``(R,)`` that crossed in it."""

    t0: Tensor
    h: Tensor
    y0: Tensor
    y1: Tensor
    info: Any
    rows: Dict[int, Tensor]


class EventMonitor(StepHooks):
    """Watches a solve's steps for sign changes of ``events`` (see the module docstring);
    ``inner`` are the user's own step hooks, called first."""

    def __init__(self, rows: Rows, events: Sequence[Any], t0: Tensor, y0: Tensor,
                 inner: Optional[StepHooks] = None) -> None:
        super().__init__(None, None)
        self.rows, self.events, self.inner = rows, list(events), inner
        self.terminal = [i for i, e in enumerate(self.events) if e.terminal]
        self.others = [i for i, e in enumerate(self.events) if not e.terminal]
        shape = (rows.n,) if rows.per_sample else ()     # the loops' row shape
        self.stopped = torch.zeros(shape, dtype=torch.bool, device=y0.device)
        t_rows = t0.detach().expand(shape)
        self.flags = [sign_flag(rows.step_values(e.fn, t_rows, y0), e.direction)
                      for e in self.events]
        self.cheap_read = cheap_read(y0.device)
        self.stop_step: Optional[Crossing] = None
        self.pending: List[Crossing] = []
        self.solver: Any = None
        self.terms: Any = None
        self.calls = self.iterations = 0

    @property
    def active(self) -> Tensor:
        """Rows that no terminal event has stopped ``(R,)``."""
        return (~self.stopped).reshape(self.rows.n)

    def bind(self, solver: Any, terms: Any) -> None:
        self.solver, self.terms = solver, terms
        if self.inner is not None:
            self.inner.bind(solver, terms)

    def before_step(self, t0: Tensor, y0: Tensor, h: Any) -> None:
        if self.inner is not None:
            self.inner.before_step(t0, y0, h)

    def after_step(self, t0: Tensor, y0: Tensor, h: Any, y1: Tensor, accepted: Any,
                   res: Optional[StepResult] = None) -> Optional[Tensor]:
        """Update the sign flags; returns the stopped rows (row shape of ``t0``)."""
        if self.inner is not None:
            self.inner.after_step(t0, y0, h, y1, accepted)
        acc = accepted > self.stopped
        crossed = []
        with torch.no_grad():
            t1 = t0 + h
            for i, e in enumerate(self.events):
                flag = torch.where(acc, sign_flag(self.rows.step_values(e.fn, t1, y1),
                                                  e.direction), self.flags[i])
                crossed.append(crossing(self.flags[i], flag, e.direction))
                self.flags[i] = flag
        step = (t0, h, y0, y1, res.dense_info)
        if self.others:
            self._keep_others(step, crossed)
        if not self.terminal:
            return None
        stop = crossed[self.terminal[0]]
        for i in self.terminal[1:]:
            stop = stop | crossed[i]
        self._keep_stop(step, {i: crossed[i] for i in self.terminal}, stop)
        self.stopped = self.stopped | stop
        return self.stopped

    def _keep_stop(self, step: tuple, rows: Dict[int, Tensor], stop: Tensor) -> None:
        """Merge the step where each row stopped into the kept record (a row stops once:
        never overwritten); on the CPU only steps with a stop are merged."""
        if self.cheap_read and not bool(stop.any()):
            return
        step, rows, stop = self._as_rows(step, rows, stop)
        kept = self.stop_step
        if kept is None:
            self.stop_step = Crossing(*step, rows)
            return
        t0, h, y0, y1, info = step
        m = self.rows.state_mask(stop, y0)
        kept.t0, kept.h = torch.where(stop, t0, kept.t0), torch.where(stop, h, kept.h)
        kept.y0, kept.y1 = torch.where(m, y0, kept.y0), torch.where(m, y1, kept.y1)
        kept.info = map_state(lambda a, b: torch.where(m, a, b), tuple(info), tuple(kept.info))
        kept.rows = {i: torch.where(stop, r, kept.rows[i]) for i, r in rows.items()}

    def _as_rows(self, step: tuple, rows: Dict[int, Tensor], stop: Tensor) -> tuple:
        """A step's times and masks as ``(R,)`` rows, the times without a graph."""
        n = self.rows.n
        t0, h, y0, y1, info = step
        t0 = t0.detach().reshape(-1).expand(n)
        h = torch.as_tensor(h).detach().reshape(-1).expand(n)
        return ((t0, h, y0, y1, info), {i: m.reshape(-1).expand(n) for i, m in rows.items()},
                stop.reshape(-1).expand(n))

    def _keep_others(self, step: tuple, crossed: List[Tensor]) -> None:
        rows = {i: crossed[i] for i in self.others}
        if self.cheap_read:
            if bool(torch.stack(list(rows.values())).any()):
                step, rows, _ = self._as_rows(step, rows, crossed[0])
                self.pending.append(Crossing(*step, rows))
            return
        step, rows, _ = self._as_rows(step, rows, crossed[0])
        self.pending.append(Crossing(*step, rows))
        if len(self.pending) >= FLUSH:
            self.pending = _with_rows(self.pending)

    # ------------------------------------------------------------------ location

    def locate(self, tol: Optional[float], d: float) -> Tuple[Optional[tuple], list]:
        """Locate the kept crossings; returns ``(stop, hits)``: ``stop`` is
        ``(t, y, which, rows)`` of the rows stopped since the last call (None if none),
        ``hits`` the ``(event, t, y, row mask)`` of every crossing (terminal ones included)."""
        stop, hits = None, []
        if self.stop_step is not None:
            stop, hits = self._locate_stop(self.stop_step, tol, d)
        for c in _with_rows(self.pending):
            y_at = self._dense(c)
            for i, m in c.rows.items():
                t = self._root(self.events[i].fn, y_at, c, m, tol)
                if stop is not None:   # crossings after the row's terminal stop are not
                    m = m & ~(stop[3] & (d * t > d * stop[0]))   # reached
                hits.append((i, t, y_at(t), m))
        self.stop_step, self.pending = None, []
        return stop, hits

    def _locate_stop(self, c: Crossing, tol: Optional[float], d: float) -> tuple:
        y_at = self._dense(c)
        best = torch.full_like(c.t0, math.inf)
        which = torch.full(c.t0.shape, -1, dtype=torch.long, device=c.t0.device)
        found = []
        for i, m in c.rows.items():
            t = self._root(self.events[i].fn, y_at, c, m, tol)
            first = m & (d * t < best)
            best = torch.where(first, d * t, best)
            which = torch.where(first, torch.full_like(which, i), which)
            found.append((i, t, m))
        stopped = which >= 0
        t_stop = torch.where(stopped, best * d, c.t0 + c.h)
        y_stop = y_at(t_stop)
        hits = [(i, t, y_stop if len(found) == 1 else y_at(t), m & (which == i))
                for i, t, m in found]
        return (t_stop, y_stop, which, stopped), hits

    def _dense(self, c: Crossing) -> Callable[[Tensor], Tensor]:
        """The kept step's dense output as ``y(t)`` for row times ``t`` ``(R,)`` inside it,
        differentiable at fixed ``t`` (extra dense stages are evaluated here)."""
        per = self.rows.per_sample
        t0, h = (c.t0, c.h) if per else (c.t0[0], c.h[0])
        calls = self.terms.calls
        res = self.solver.densify(self.terms, t0, h, c.y0,
                                  StepResult(c.y1, None, list(c.info), None))
        self.calls += self.terms.calls - calls
        poly = self.solver.interpolant(c.y0, h, res.dense_info, per)
        safe_h = torch.where(c.h != 0, c.h, torch.ones_like(c.h))

        def y_at(t: Tensor) -> Tensor:
            theta = (t.detach() - c.t0) / safe_h
            return poly(theta.unsqueeze(-1) if per else theta)[0]
        return y_at

    def _root(self, fn: Callable, y_at: Callable[[Tensor], Tensor], c: Crossing,
              rows: Tensor, tol: Optional[float]) -> Tensor:
        """The crossing time of ``fn`` in the kept step for ``rows`` (others: the step's
        end)."""
        b = c.t0 + c.h
        a = torch.where(rows, c.t0, b)           # rows without a crossing: an empty bracket
        ga = self.rows.values(fn, a, torch.where(self.rows.state_mask(rows, c.y0), c.y0,
                                                 c.y1))
        gb = self.rows.values(fn, b, c.y1)
        tol_t = default_tol(b) if tol is None else torch.full_like(b, tol)
        with torch.no_grad():
            t, it = illinois(lambda x: self.rows.raw_values(fn, x, y_at(x)), a, b, ga, gb,
                             tol_t)
        self.iterations += it
        return torch.where(rows, t, b)


def _with_rows(records: List[Crossing]) -> List[Crossing]:
    """The records in which some row crossed (one host read for all of them)."""
    if not records:
        return []
    any_row = torch.stack([torch.stack(list(c.rows.values())).any() for c in records])
    return [c for c, keep in zip(records, any_row.tolist()) if keep]
