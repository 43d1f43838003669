"""`solve_events`: integrate until event functions cross zero.

The solve advances in chunks (the first ``first_chunk`` long, each next one twice as long,
up to ``t_span[1]``), each a `solve_ode` with dense output. Sign changes of every event
function are looked for on ``2n + 1`` evenly spaced points of a chunk of ``n`` steps
(so a function that crosses and recrosses zero between two such points is missed), and
located by the Illinois root finder (`events.root`) on the dense output to ``event_tol``
in time. A terminal event stops the batch (joint mode) or its own row (``per_sample=True``;
the other rows go on, and a stopped row is still stepped with the batch but its results
are ignored). The stop time carries the implicit-function gradient (`events.gradient`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from ..engine.controller import PIDController
from ..errors import InvalidInputError, MaxStepsExceededError, describe
from ..ode.solve import solve_ode
from ..implicit.methods import resolve_method
from .root import default_tol, illinois
from .rows import Rows

Tensor = torch.Tensor

__all__ = ["Event", "EventHit", "EventSolution", "solve_events"]


@dataclass(frozen=True)
class Event:
    """An event function ``fn(t, y)`` (0-dim, or ``(B,)`` per sample) and how to react.

    ``direction``: +1 counts only crossings from negative to positive, -1 only from
    positive to negative, 0 both. ``terminal``: stop there (the batch, or the row in
    per-sample mode); otherwise the crossing is recorded and the solve goes on.
    """

    fn: Callable[[Tensor, Tensor], Tensor]
    direction: int = 0
    terminal: bool = True

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise InvalidInputError(f"Event: `fn` must be callable; got {describe(self.fn)}")
        if self.direction not in (-1, 0, 1) or isinstance(self.direction, bool):
            raise InvalidInputError(
                f"Event: `direction` must be -1, 0 or 1; got {self.direction!r}")
        if not isinstance(self.terminal, bool):
            raise InvalidInputError(
                f"Event: `terminal` must be True or False; got {self.terminal!r}")


@dataclass
class EventHit:
    """One located crossing: event index, time, state, and row (None in joint mode)."""

    event: int
    t: Tensor
    y: Tensor
    row: Optional[int] = None


@dataclass
class EventSolution:
    """Result of `solve_events`.

    Attributes:
        t: where each row stopped: the terminal event's time (with its implicit-function
            gradient) or ``t_span[1]``; 0-dim, or ``(B,)`` per sample.
        y: the state there (shape of ``y0``).
        event: index of the terminal event that stopped it, -1 if none (long tensor).
        hits: every located crossing (terminal and not), in time order per row.
        stats: ``nfe`` (all chunks), ``n_chunks``, ``n_root_iterations``.
    """

    t: Tensor
    y: Tensor
    event: Tensor
    hits: List[EventHit]
    stats: Dict[str, Any] = field(default_factory=dict)


def _check(y0: Any, t_span: Any, events: Any) -> tuple:
    if not isinstance(y0, torch.Tensor) or not y0.is_floating_point():
        raise InvalidInputError(f"`y0` must be a floating-point tensor; got {describe(y0)}")
    try:
        t0, t1 = (float(v) for v in t_span)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`t_span` must be a pair (t0, t1); got {describe(t_span)}") \
            from None
    if not math.isfinite(t0) or math.isnan(t1) or t1 == t0:
        raise InvalidInputError(f"`t_span` must be (t0, t1) with t0 finite and t1 != t0 (t1 "
                                f"may be ±inf); got {t_span!r}")
    if isinstance(events, Event):
        events = [events]
    if not isinstance(events, (list, tuple)) or not events or \
            not all(isinstance(e, Event) for e in events):
        raise InvalidInputError(f"`events` must be an Event or a non-empty list of Events; "
                                f"got {describe(events)}")
    start = t_span[0] if isinstance(t_span[0], torch.Tensor) else \
        torch.tensor(t0, dtype=torch.float64)
    return start.to(y0.dtype).reshape(()), t1, list(events)


def solve_events(func: Callable, y0: Tensor, t_span: Sequence[Any],
                 events: Any, *, per_sample: bool = False, method: Any = "dopri5",
                 rtol: float = 1e-7, atol: float = 1e-9, event_tol: Optional[float] = None,
                 first_chunk: Optional[float] = None, max_steps: int = 100_000,
                 event_gradient: bool = True, **solve_kwargs: Any) -> EventSolution:
    """Solve dy/dt = func(t, y) from ``t_span[0]`` until a terminal event or ``t_span[1]``.

    Args:
        func, y0, method, rtol, atol, per_sample: as `solve_ode` (``y0`` a tensor;
            ``(B, ...)`` per sample, where f and the event functions see row times ``(B,)``).
        t_span: ``(t0, t1)``; ``t1`` may be ``±inf`` (then a terminal event must occur
            within ``max_steps`` steps). ``t0`` may be a tensor with a gradient.
        events: an `Event` or a list of them.
        event_tol: time tolerance of the root finder (default 8 ulps of the time).
        first_chunk: length of the first chunk (default ``|t1 - t0|`` or 1 if infinite).
        max_steps: total steps over all chunks (per row) before `MaxStepsExceededError`.
        event_gradient: attach the implicit-function gradient to the stop time and state
            (False: the time carries none, the state only the solve's at fixed time).
        solve_kwargs: further `solve_ode` options (``controller``, ``step_size``,
            ``gradient``, ...).
    """
    t0, t1, events = _check(y0, t_span, events)
    d = 1.0 if t1 > float(t0) else -1.0
    rows = Rows(func, y0, per_sample)
    state = _Loop(rows, events, t0, y0, d, event_tol)
    span = abs(t1 - float(t0))
    h = float(first_chunk) if first_chunk is not None else \
        (span / 16 if math.isfinite(span) else 1.0)
    kw = dict(method=method, rtol=rtol, atol=atol, per_sample=per_sample, **solve_kwargs)
    carry_step = "first_step" not in kw and _adaptive(kw)
    steps = 0
    while bool(state.active.any()) and d * (float(state.tc) - t1) < 0:
        te = float(state.tc) + d * h
        te = min(te, t1) if d > 0 else max(te, t1)
        sol = solve_ode(func, state.y, torch.stack([state.tc, state.tc.new_tensor(te)]),
                        dense=True, **kw)
        n = int(sol.stats["n_accepted"].max()) if "n_accepted" in sol.stats else 1
        steps += n
        state.nfe += int(torch.as_tensor(sol.stats["nfe"]).max())
        state.chunk(sol, te, max(n, 1))
        if carry_step:  # the next chunk starts with this chunk's mean step
            kw["first_step"] = abs(te - float(sol.ts[0])) / max(n, 1)
        if steps > max_steps and bool(state.active.any()):
            raise MaxStepsExceededError(f"solve_events: no terminal event within max_steps="
                                        f"{max_steps} steps (reached t={te:.6g})")
        h *= 2
    return state.finish(event_gradient)


def _adaptive(kw: Dict[str, Any]) -> bool:
    ctrl = kw.get("controller")
    return resolve_method(kw["method"]).adaptive and kw.get("step_size") is None and \
        (ctrl is None or isinstance(ctrl, PIDController))


class _Loop:
    """The chunk loop's state: current time and state, rows still going, results."""

    def __init__(self, rows: Rows, events: List[Event], t0: Tensor, y0: Tensor, d: float,
                 event_tol: Optional[float]) -> None:
        self.rows, self.events, self.d = rows, events, d
        self.tc, self.y = t0, y0
        self.active = torch.ones(rows.n, dtype=torch.bool, device=y0.device)
        self.t_stop = t0.detach().expand(rows.n).clone()
        self.y_stop = rows.rowwise(y0)
        self.which = torch.full((rows.n,), -1, dtype=torch.long, device=y0.device)
        self.tol = event_tol
        self.hits: List[EventHit] = []
        self.nfe = self.iters = self.n_chunks = 0

    def chunk(self, sol: Any, te: float, n: int) -> None:
        """Look for crossings in one chunk; record them and stop rows at terminal ones."""
        self.n_chunks += 1
        grid = torch.linspace(float(self.tc), te, 2 * n + 1, dtype=self.tc.dtype,
                              device=self.tc.device)
        found = []
        for i, e in enumerate(self.events):
            g = self.rows.grid_values(sol, grid, e.fn)                       # (K, R)
            for has, a, b, ga, gb in _brackets(g, grid, e.direction, self.active):
                found.append((i, e.terminal, self._locate(sol, e.fn, a, b, ga, gb, has), has))
        stop = torch.full_like(self.t_stop, math.inf)                        # in d * t
        for i, terminal, t, has in found:
            if terminal:
                stop = torch.where(has & (self.d * t < stop), self.d * t, stop)
        self._record(sol, found, stop)
        self.tc = self.tc.new_tensor(te)
        self.y = sol.ys[-1]

    def _locate(self, sol: Any, fn: Callable, a: Tensor, b: Tensor, ga: Tensor, gb: Tensor,
                has: Tensor) -> Tensor:
        tol = default_tol(b) if self.tol is None else torch.full_like(b, self.tol)
        t, it = illinois(lambda x: self.rows.values_at(sol, x, fn), a, b, ga, gb, tol)
        self.iters += it
        return torch.where(has, t, b)

    def _record(self, sol: Any, found: list, stop: Tensor) -> None:
        stopped = torch.isfinite(stop) & self.active
        for i, terminal, t, has in found:
            dt = self.d * t
            ok = has & self.active & ((dt == stop) if terminal else (dt <= stop))
            rows = ok.nonzero().flatten().tolist()
            if rows:
                y_at = self.rows.at(sol, t)
                for r in rows:
                    self.hits.append(EventHit(i, t[r], self.rows.row(y_at, r),
                                              r if self.rows.per_sample else None))
            if terminal:
                self.which = torch.where(ok & stopped, torch.full_like(self.which, i),
                                         self.which)
        if bool(stopped.any()):
            t_new = torch.where(stopped, stop * self.d, sol.ts[-1].detach())
            y_at = self.rows.rowwise(self.rows.at(sol, t_new))
            self.t_stop = torch.where(stopped, t_new, self.t_stop)
            self.y_stop = _where_rows(stopped, y_at, self.y_stop)
        self.active = self.active & ~stopped

    def finish(self, gradient: bool) -> EventSolution:
        """Rows that never stopped end where the loop ended; terminal stops get the
        implicit-function gradient."""
        self.y_stop = _where_rows(self.active, self.rows.rowwise(self.y), self.y_stop)
        t_end = self.tc.expand_as(self.t_stop)
        t_stop, y_stop = self.t_stop, self.y_stop
        if gradient:
            t_stop, y_stop = self.rows.event_gradient(self.events, self.which, t_stop, y_stop)
        t_stop = torch.where(self.active, t_end, t_stop)
        self.hits.sort(key=lambda h: (h.row or 0, self.d * float(h.t)))
        stats = {"nfe": self.nfe, "n_chunks": self.n_chunks, "n_root_iterations": self.iters}
        return EventSolution(*self.rows.unrow(t_stop, y_stop, self.which), self.hits, stats)


def _where_rows(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(mask.reshape(-1, *([1] * (a.dim() - 1))), a, b)


def _brackets(g: Tensor, grid: Tensor, direction: int, active: Tensor):
    """Per crossing rank: ``(mask, a, b, ga, gb)`` of each row's next sign change."""
    up = (g[:-1] < 0) & (g[1:] >= 0)
    down = (g[:-1] > 0) & (g[1:] <= 0)
    cross = up if direction > 0 else down if direction < 0 else (up | down)
    cross = cross & active.unsqueeze(0)                                       # (K-1, R)
    rank = cross.long().cumsum(0)
    for j in range(1, int(rank.max()) + 1 if cross.any() else 1):
        sel = cross & (rank == j)
        has = sel.any(0)
        k = sel.long().argmax(0)
        cols = torch.arange(g.shape[1], device=g.device)
        yield (has, grid[k], grid[k + 1], g[k, cols], g[k + 1, cols])
