"""The adaptive loop, one for every `Solver` with an error estimate (explicit RK's embedded
pair, `StepDoubling` for SDE methods): error control per batch (joint mode) or per row
(``per_sample``).

No host sync in the step loop except one poll every ``poll_every`` steps that checks
completion; every ``FULL_POLL`` steps (and at the end) it also checks for a non-finite
state, step-size underflow and ``max_steps``. Steps end
exactly on the final time and never cross more than ``OUTPUT_WINDOW`` output times;
outputs inside a step come from the solver's dense output (`OutputWriter`); solvers
without one stop on every output time.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..errors import MaxStepsExceededError, NonFiniteError, StepSizeUnderflowError
from .compaction import Compactor
from .callbacks import StepHooks
from .controller import ErrorNorm, PIDController, _bcast, initial_step_size
from .outputs import OutputWriter
from .solution import Stats
from .solver import Solver
from .state import LoopState, StepEnd

Tensor = torch.Tensor

__all__ = ["solve_adaptive", "advance", "error_ratio", "OUTPUT_WINDOW"]

OUTPUT_WINDOW = 8
FULL_POLL = 16  # steps between the polls' failure checks (the done check is every poll)


def solve_adaptive(fn: Any, solver: Solver, y0: Tensor, k0: Any, t: Tensor,
                   direction: float, rtol: float, atol: float, norm: ErrorNorm,
                   controller: PIDController, per_sample: bool, B: int, dense: bool,
                   max_steps: int, first_step: Optional[float], poll_every: int,
                   compact: bool = False, steps: bool = False,
                   hooks: Optional[StepHooks] = None
                   ) -> Tuple[Tensor, Dict[str, Any], Optional[list]]:
    """Integrate ``fn`` (the solver's terms; ``fn.calls`` counts its batched calls) over
    ``t`` from ``y0`` and the solver state ``k0``; returns ``(ys, stats, step records)``.
    The records ``(t0, h, y0, dense_info, accepted)`` of every attempted step are kept when
    ``dense`` (``(t0, h, None, None, accepted)`` when only ``steps``); ``hooks`` are called
    around every attempted step (an ``after_step`` that returns a row mask ends those
    rows where they are)."""
    window = min(t.shape[0] - 2, OUTPUT_WINDOW if solver.interpolates else 1)
    densify = window > 0 or dense
    t_end = t[-1]  # times keep their graph: gradients w.r.t. t flow through the clamped steps
    evals = solver.evals_per_step + (solver.dense_evals if densify else 0)
    s = _start(fn, solver, y0, k0, t, direction, rtol, atol, norm, controller, first_step,
               (B,) if per_sample else (), evals)
    outputs = OutputWriter(t, y0, window, per_sample, B) if window > 0 else None
    records = [] if dense or steps else None
    compactor = Compactor(y0, B) if compact else None
    full_every = max(1, FULL_POLL // poll_every) * poll_every
    it = 0
    while True:
        t_stop = outputs.stop() if outputs is not None else s.t_end
        ratio = advance(fn, solver, s, t_stop, (rtol, atol, norm, controller, direction),
                        densify, outputs, records, dense, hooks)
        it += 1
        if it % poll_every == 0 and _poll(s, fn, y0, t_end, outputs, compactor, per_sample, B,
                                          max_steps, ratio, it, it % full_every == 0):
            break
    y, counts = s.y, s.counts()
    if compactor is not None:
        y, counts = compactor.full(y, counts)
    ys = outputs.result(y) if outputs is not None else torch.stack([y0, y])
    return ys, _adaptive_stats(*counts, fn.calls), records


def _start(fn: Any, solver: Solver, y0: Tensor, k0: Any, t: Tensor,
           direction: float, rtol: float, atol: float, norm: ErrorNorm,
           controller: PIDController, first_step: Optional[float],
           row_shape: Tuple[int, ...], evals: int) -> LoopState:
    """The loop state at ``t[0]``, with the first step size (Hairer's algorithm from the
    first stage ``k0`` unless ``first_step`` is given) clipped to the controller's bounds."""
    tt = t[0].expand(row_shape).clone()
    if first_step is not None:
        h = torch.full(row_shape, first_step, dtype=y0.dtype, device=y0.device)
    else:
        with torch.no_grad():
            h = initial_step_size(fn, tt.detach(), y0.detach(), k0.detach(), direction,
                                  solver.order, rtol, atol, norm)
    h = direction * h
    if controller.dt_max < math.inf or controller.dt_min > 0:
        h = torch.sign(h) * h.abs().clamp(controller.dt_min, controller.dt_max)
    return LoopState.start(tt, y0, k0, h, controller.init_history(h), fn.calls, t[-1], evals)


def advance(fn: Any, solver: Solver, s: LoopState, t_stop: Tensor, control: tuple,
            densify: bool, outputs: Optional[OutputWriter] = None,
            records: Optional[list] = None, dense: bool = False,
            hooks: Optional[StepHooks] = None) -> Tensor:
    """The loop body: one attempted step of every row toward ``t_stop``, applied to ``s``
    (and to the outputs, step records and hooks when given); ``control`` is ``(rtol, atol,
    norm, controller, direction)``. Returns the step's error ratio."""
    controller = control[3]
    t_prev, y_prev = s.t, s.y
    res, h_try, t_new, accept, ratio = _attempt(fn, solver, s, t_stop, *control, hooks)
    active = ~s.done
    if controller.dt_min > 0:
        s.stuck = s.stuck | (~accept & active & (h_try.abs() <= controller.dt_min))
    step = res
    if densify:
        res = solver.densify(fn, t_prev, h_try, y_prev, res)
    if outputs is not None:
        outputs.write(solver, t_prev, t_new, y_prev, h_try, res, accept)
    if records is not None:
        records.append((t_prev, h_try, y_prev if dense else None,
                        res.dense_info if dense else None, accept & active))
    s.where(accept, StepEnd(t_new, res.y1, res.state))
    if hooks is not None:
        stop = hooks.after_step(t_prev, y_prev, h_try, res.y1, accept & active, step)
        if stop is not None:  # those rows end where this step left them
            s.t_end = torch.where(stop, s.t, s.t_end)
    s.count(active, accept)
    return ratio


def _attempt(fn: Any, solver: Solver, s: LoopState, t_stop: Tensor, rtol: float, atol: float,
             norm: ErrorNorm, controller: PIDController, direction: float,
             hooks: Optional[StepHooks] = None) -> tuple:
    """One step that ends exactly on ``t_stop`` if it would reach it, and its error control
    (never differentiated): updates ``s.h`` and ``s.history``; returns
    ``(step result, h_try, t_new, accept, ratio)``."""
    remaining = t_stop - s.t       # |h| >= |remaining|, with h and remaining signed alike
    clamped = s.h >= remaining.detach() if direction > 0 else s.h <= remaining.detach()
    h_try = torch.where(clamped, remaining, s.h)
    t_new = torch.where(clamped, t_stop, s.t + h_try)
    if hooks is not None:
        hooks.before_step(s.t, s.y, h_try)
    res = solver.step(fn, s.t, h_try, s.y, s.state, None, t_new)
    if res.state is None:
        s.state = None  # the next attempt evaluates its own first stage
    with torch.no_grad():
        ratio = error_ratio(res.error, s.y, res.y1, rtol, atol, norm)
        accept, h_next, s.history = controller.propose(h_try, ratio, s.history,
                                                       solver.error_order)
        # after a step shortened to hit a stop, fall back to the unshortened proposal (the
        # larger in magnitude); done rows keep stepping by 0
        longer = torch.maximum(h_next, s.h) if direction > 0 else torch.minimum(h_next, s.h)
        s.h = torch.where(clamped & accept, longer, h_next)
    return res, h_try, t_new, accept, ratio


def _poll(s: LoopState, fn: Any, y0: Tensor, t_end: Tensor,
          outputs: Optional[OutputWriter], compactor: Optional[Compactor], per_sample: bool,
          B: int, max_steps: int, ratio: Tensor, it: int, full: bool) -> bool:
    """The one host sync: True when every row is done; retires finished rows when
    compacting. The failure checks (non-finite state, step underflow, non-finite step,
    ``max_steps``) run when ``full``, at ``max_steps`` and at the end, and raise: a failing
    row does not advance (its steps are rejected), so a late check reports the same time.
    Rows not done have made ``it`` attempts, so ``max_steps`` is a host count."""
    if not full and it < max_steps and not bool(s.done.all()):
        return _retire(s, outputs, compactor)
    status = torch.stack([
        s.done.all(),
        ~_finite(s.y, s.state),
        (((s.t + s.h == s.t) | s.stuck) & ~s.done).any(),
        (~torch.isfinite(s.h) & ~s.done).any(),
    ]).tolist()
    status.insert(3, it >= max_steps and not status[0])
    if any(status[1:]):
        # the last output was not reached by rows that are not done: NaN there
        y_end = torch.where(_bcast(s.done, s.y), s.y, torch.full_like(s.y, math.nan))
        counts = s.counts()
        if compactor is not None:
            y_end, counts = compactor.full(y_end, counts)
        ys = outputs.result(y_end) if outputs is not None else torch.stack([y0, y_end])
        _raise_failure(status, s.t, s.done, ys, _adaptive_stats(*counts, fn.calls), t_end,
                       per_sample, B, max_steps, ratio)
    return True if status[0] else _retire(s, outputs, compactor)


def _retire(s: LoopState, outputs: Optional[OutputWriter],
            compactor: Optional[Compactor]) -> bool:
    """Drop finished rows from the batch when compacting; False (the loop goes on)."""
    if compactor is not None and bool(s.done.any()):
        keep = compactor.retire(s.done, s.y, s.counts())
        s.select(keep)
        if outputs is not None:
            outputs.select(keep)
    return False


def _finite(y: Tensor, state: Any) -> Tensor:
    """Whether the state and the solver's carried tensors (an FSAL stage) are finite."""
    ok = torch.isfinite(y).all()
    if isinstance(state, torch.Tensor):
        ok = ok & torch.isfinite(state).all()
    return ok


def error_ratio(error: Any, y0: Tensor, y1: Tensor, rtol: float, atol: float,
                norm: ErrorNorm) -> Tensor:
    """The step's error ratio (<= 1 accepts): the norm of the error over
    ``atol + rtol max(|y0|, |y1|)``; ``error`` a pair ``(err, err_low)`` combines DOP853's
    5th- and 3rd-order estimates (Hairer, Nørsett & Wanner)."""
    scale = torch.maximum(y0.abs(), y1.abs()).mul_(rtol).add_(atol)
    if isinstance(error, torch.Tensor):
        return norm(error / scale)
    err, err_low = error
    e5 = norm(err / scale).square()
    e3 = norm(err_low / scale).square()
    denom = (e5 + 0.01 * e3).sqrt()
    return torch.where(denom > 0, e5 / denom.clamp_min(1e-300), torch.zeros_like(e5))


def _adaptive_stats(nfe: Tensor, n_steps: Tensor, n_acc: Tensor, calls: int) -> Stats:
    return Stats(nfe=nfe, n_steps=n_steps, n_accepted=n_acc, n_rejected=n_steps - n_acc,
                 n_f_calls=calls)


def _raise_failure(status: List[bool], tt: Tensor, done: Tensor, ys: Tensor,
                   stats: Dict[str, Any], t_end: Tensor, per_sample: bool, B: int,
                   max_steps: int, ratio: Tensor) -> None:
    """Raise the error the poll found (``status`` = done, non-finite, underflow, max_steps,
    non-finite step); ``ratio`` is the last step's error ratio."""
    t_reached = tt.detach()
    where = (f"t={float(t_reached):.6g}" if not per_sample else
             f"t in [{float(t_reached[~done].min()):.6g}, {float(t_reached[~done].max()):.6g}] "
             f"for {int((~done).sum())} of {B} rows")
    end = _times_text(t_end)
    until = f"(integrating to t={end})"
    if status[1]:
        raise NonFiniteError(f"the state or f(t, y) became non-finite at {where} {until}",
                             t=t_reached, ys=ys, stats=stats)
    if status[4]:
        raise NonFiniteError(f"the step size became non-finite at {where} {until}; check f "
                             "and `error_norm` near t0 (or pass `first_step`)", t=t_reached,
                             ys=ys, stats=stats)
    if status[2] and bool((~torch.isfinite(ratio) & ~done).any()):
        raise NonFiniteError(f"f(t, y) returned non-finite values at {where} {until}: every "
                             "step from there was rejected until the step size underflowed",
                             t=t_reached, ys=ys, stats=stats)
    if status[2]:
        raise StepSizeUnderflowError(
            f"the step size underflowed at {where} (integrating to t={end}); the "
            "problem may be stiff or singular there, or the tolerances too tight",
            t=t_reached, ys=ys, stats=stats)
    raise MaxStepsExceededError(
        f"`max_steps`={max_steps} steps were attempted without reaching t={end}; "
        f"stopped at {where}. Raise max_steps or loosen rtol/atol", t=t_reached, ys=ys,
        stats=stats)


def _times_text(t: Tensor) -> str:
    """A time, or the range of per-row times, for a message."""
    t = t.detach()
    if t.dim() == 0:
        return f"{float(t):.6g}"
    return f"{float(t.min()):.6g}..{float(t.max()):.6g} (per row)"
