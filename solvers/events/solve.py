"""`solve_events`: integrate until event functions cross zero.

Crossings are detected as the solve steps (`events.monitor`): after each accepted step
every event function is evaluated at the step's end, and a sign change marks the step. A
terminal event ends the solve (joint mode) or its own row (``per_sample=True``; the other
rows go on) at the end of that step; the crossing is then located by the Illinois root
finder (`events.root`) on that step's dense output (kept as the solver made it), to
``event_tol`` in time. A function that crosses and recrosses zero within one step is
missed. The stop time carries the implicit-function gradient (`events.gradient`).

Adaptive methods integrate the whole span in one solve; fixed-step methods, which cannot
end rows early, and infinite horizons advance in chunks (the first ``first_chunk`` long,
each next one twice as long).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..adjoint.modes import CheckpointAdjoint, DirectAdjoint, as_gradient_mode
from ..engine.callbacks import as_step_hooks
from ..engine.controller import PIDController
from ..engine.integrate import integrate, prepare_ode
from ..errors import InvalidInputError, MaxStepsExceededError, describe
from ..implicit.methods import resolve_method
from .monitor import EventMonitor
from .rows import Rows, where_rows

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
        hit_event, hit_t, hit_y, hit_row: every located crossing (terminal and not) as
            tensors, in time order per row: event index ``(H,)``, time ``(H,)``, state
            ``(H, ...)`` and row ``(H,)`` (-1 in joint mode).
        stats: ``nfe`` (all chunks), ``n_chunks``, ``n_root_iterations``.
    """

    t: Tensor
    y: Tensor
    event: Tensor
    hit_event: Tensor
    hit_t: Tensor
    hit_y: Tensor
    hit_row: Tensor
    stats: Dict[str, Any] = field(default_factory=dict)

    @property
    def hits(self) -> List[EventHit]:
        """The crossings as `EventHit` objects (built from the ``hit_*`` tensors)."""
        rows = self.hit_row.tolist()
        return [EventHit(int(e), t, y, None if r < 0 else r) for e, t, y, r in
                zip(self.hit_event.tolist(), self.hit_t.unbind(0), self.hit_y.unbind(0),
                    rows)]


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
        first_chunk: length of the first chunk (default: the whole span for adaptive
            methods, ``|t1 - t0| / 16`` for fixed steps; 1 if the span is infinite).
        max_steps: total steps over all chunks (per row) before `MaxStepsExceededError`.
        event_gradient: attach the implicit-function gradient to the stop time and state
            (False: the time carries none, the state only the solve's at fixed time).
        solve_kwargs: further `solve_ode` options (``controller``, ``step_size``,
            ``first_step``, ``poll_every``, ``error_norm``, ``callback``, and ``gradient``
            ``'direct'`` or ``'checkpoint'``).
    """
    t0, t1, events = _check(y0, t_span, events)
    d = 1.0 if t1 > float(t0) else -1.0
    checkpoint = _gradient(solve_kwargs)
    rows = Rows(func, y0, per_sample)
    monitor = EventMonitor(rows, events, t0, y0, as_step_hooks(solve_kwargs.pop("callback",
                                                                                None)))
    loop = _Loop(rows, monitor, t0, y0, d)
    kw = dict(method=method, rtol=rtol, atol=atol, per_sample=per_sample, dense=False,
              controller=None, step_size=None, first_step=None, poll_every=None,
              error_norm=None)
    kw.update(solve_kwargs)
    adaptive = _adaptive(kw)
    h = _first_chunk(first_chunk, abs(t1 - float(t0)), adaptive)
    carry_step = kw["first_step"] is None and adaptive
    steps = 0
    while bool(monitor.active.any()) and d * (float(loop.tc) - t1) < 0:
        te = float(loop.tc) + d * h
        te = min(te, t1) if d > 0 else max(te, t1)
        sol = _chunk(func, loop, te, kw, max_steps - steps, checkpoint)
        n = int(sol.stats["n_accepted"].max())
        steps += n
        loop.chunk(sol, te, event_tol)
        if carry_step:  # the next chunk starts with this chunk's mean step
            kw["first_step"] = abs(te - float(sol.ts[0])) / max(n, 1)
        if steps >= max_steps and bool(monitor.active.any()) and d * (te - t1) < 0:
            raise MaxStepsExceededError(_no_event(max_steps, te))
        h *= 2
    return loop.finish(event_gradient)


def _gradient(solve_kwargs: Dict[str, Any]) -> bool:
    """Whether steps are checkpointed; only forward gradient modes apply (the state at an
    event comes from the forward solve's kept crossing step)."""
    for key in ("dense", "compact"):
        if key in solve_kwargs:
            raise InvalidInputError(f"solve_events: `{key}` is not an option of solve_events "
                                    f"(got {key}={solve_kwargs[key]!r})")
    gradient = solve_kwargs.pop("gradient", "direct")
    mode = as_gradient_mode(gradient)
    if not isinstance(mode, (DirectAdjoint, CheckpointAdjoint)):
        raise InvalidInputError(f"solve_events: `gradient` must be 'direct' or 'checkpoint'; "
                                f"got {gradient!r}")
    return isinstance(mode, CheckpointAdjoint)


def _first_chunk(first_chunk: Optional[float], span: float, adaptive: bool) -> float:
    if first_chunk is not None:
        return float(first_chunk)
    if not math.isfinite(span):
        return 1.0
    return span if adaptive else span / 16


def _chunk(func: Callable, loop: "_Loop", te: float, kw: Dict[str, Any], budget: int,
           checkpoint: bool) -> Any:
    """One solve from the loop's time to ``te``, watched by the monitor."""
    t = torch.stack([loop.tc, loop.tc.new_tensor(te)])
    p = prepare_ode(loop.y, t, max_steps=max(budget, 1), callback=loop.monitor, **kw)
    try:
        return integrate(func, p, checkpoint=checkpoint and torch.is_grad_enabled())
    except MaxStepsExceededError as err:
        raise MaxStepsExceededError(_no_event(budget, float(err.t.max()))) from err


def _no_event(max_steps: int, t: float) -> str:
    return (f"solve_events: no terminal event within max_steps={max_steps} steps "
            f"(reached t={t:.6g})")


def _adaptive(kw: Dict[str, Any]) -> bool:
    ctrl = kw.get("controller")
    return resolve_method(kw["method"]).adaptive and kw.get("step_size") is None and \
        (ctrl is None or isinstance(ctrl, PIDController))


class _Loop:
    """The chunk loop's state: current time and state, where rows stopped, the hits."""

    def __init__(self, rows: Rows, monitor: EventMonitor, t0: Tensor, y0: Tensor,
                 d: float) -> None:
        self.rows, self.monitor, self.d = rows, monitor, d
        self.tc, self.y = t0, y0
        self.t_stop = t0.detach().expand(rows.n).clone()
        self.y_stop = rows.rowwise(y0)
        self.which = torch.full((rows.n,), -1, dtype=torch.long, device=y0.device)
        self.hits: List[Tuple[Tensor, ...]] = []  # (event, t, y, row) per location
        self.nfe = self.n_chunks = 0

    def chunk(self, sol: Any, te: float, event_tol: Optional[float]) -> None:
        """Locate the chunk's crossings; record them and where rows stopped."""
        self.n_chunks += 1
        stop, hits = self.monitor.locate(event_tol, self.d)
        self.nfe += int(torch.as_tensor(sol.stats["nfe"]).max())
        for i, t, y, m in hits:
            self._add_hits(i, t, y, m)
        if stop is not None:
            t_stop, y_stop, which, stopped = stop
            self.t_stop = torch.where(stopped, t_stop, self.t_stop)
            self.y_stop = where_rows(stopped, self.rows.rowwise(y_stop), self.y_stop)
            self.which = torch.where(stopped, which, self.which)
        self.tc = self.tc.new_tensor(te)
        self.y = sol.ys[-1]

    def _add_hits(self, i: int, t: Tensor, y: Tensor, m: Tensor) -> None:
        """Keep the crossings of event ``i`` in rows ``m`` (one indexing op per tensor)."""
        rows = m.nonzero().flatten()
        if self.rows.per_sample:
            self.hits.append((torch.full_like(rows, i), t[rows], y[rows], rows))
        else:
            self.hits.append((torch.full_like(rows, i), t[rows], y.unsqueeze(0)[rows],
                              torch.full_like(rows, -1)))

    def finish(self, gradient: bool) -> EventSolution:
        """Rows that never stopped end where the loop ended; terminal stops get the
        implicit-function gradient."""
        active, m = self.monitor.active, self.monitor
        self.y_stop = where_rows(active, self.rows.rowwise(self.y), self.y_stop)
        t_stop, y_stop = self.t_stop, self.y_stop
        if gradient and torch.is_grad_enabled():
            t_stop, y_stop = self.rows.event_gradient(m.events, self.which, t_stop, y_stop)
        t_stop = torch.where(active, self.tc.expand_as(self.t_stop), t_stop)
        stats = {"nfe": self.nfe + m.calls, "n_chunks": self.n_chunks,
                 "n_root_iterations": m.iterations}
        return EventSolution(*self.rows.unrow(t_stop, y_stop, self.which), *self._sorted_hits(),
                             stats)

    def _sorted_hits(self) -> Tuple[Tensor, ...]:
        """The hit tensors in time order within each row (rows in order)."""
        if not self.hits:
            y = self.y_stop[:0]
            empty = torch.zeros(0, dtype=torch.long, device=y.device)
            return empty, self.t_stop[:0].detach(), y, empty.clone()
        event, t, y, row = (torch.cat(parts) for parts in zip(*self.hits))
        order = torch.sort(self.d * t.detach(), stable=True).indices
        order = order[torch.sort(row[order], stable=True).indices]
        return event[order], t[order], y[order], row[order]
