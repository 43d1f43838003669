"""The adaptive loop: error control per batch (joint mode) or per row (``per_sample``).

No host sync in the step loop except one poll every ``poll_every`` steps that checks
completion, non-finite state, step-size underflow and ``max_steps`` together. Steps end
exactly on the final time and never cross more than ``OUTPUT_WINDOW`` output times;
outputs inside a step come from the method's dense output (`OutputWriter`).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from ..errors import MaxStepsExceededError, NonFiniteError, StepSizeUnderflowError
from ..ode.rk import CompiledTableau, extra_stages, rk_step
from .compaction import Compactor
from .controller import ErrorNorm, PIDController, _bcast, initial_step_size
from .flat import CountedFunc
from .outputs import OutputWriter

Tensor = torch.Tensor

__all__ = ["solve_adaptive", "OUTPUT_WINDOW"]

OUTPUT_WINDOW = 8


def solve_adaptive(fn: CountedFunc, ct: CompiledTableau, y0: Tensor, k0: Tensor, t: Tensor,
                   direction: float, rtol: float, atol: float, norm: ErrorNorm,
                   controller: PIDController, per_sample: bool, B: int, dense: bool,
                   max_steps: int, first_step: Optional[float], poll_every: int,
                   step: Callable = rk_step, compact: bool = False
                   ) -> Tuple[Tensor, Dict[str, Any], Optional[list]]:
    tab = ct.tab
    dtype, device = y0.dtype, y0.device
    n_out = t.shape[0]
    window = min(n_out - 2, OUTPUT_WINDOW)  # interior outputs handled per step
    need_extra = bool(ct.extra) and (window > 0 or dense)
    t_end = t[-1]  # times keep their graph: gradients w.r.t. t flow through the clamped steps
    row_shape = (B,) if per_sample else ()

    tt = t[0].expand(row_shape).clone()
    if first_step is not None:
        h = torch.full(row_shape, first_step, dtype=dtype, device=device)
    else:
        with torch.no_grad():
            h = initial_step_size(fn, tt.detach(), y0.detach(), k0.detach(), direction,
                                  tab.order, rtol, atol, norm)
    h = direction * h
    if controller.dt_max < math.inf or controller.dt_min > 0:
        h = torch.sign(h) * h.abs().clamp(controller.dt_min, controller.dt_max)
    history = controller.init_history(h)

    outputs = OutputWriter(t, y0, window, per_sample, B) if window > 0 else None
    zero = torch.zeros(row_shape, dtype=torch.long, device=device)
    nfe = zero + fn.calls
    n_steps, n_acc = zero.clone(), zero.clone()
    done = torch.zeros(row_shape, dtype=torch.bool, device=device)
    stuck = torch.zeros(row_shape, dtype=torch.bool, device=device)  # rejected at dt_min
    records = [] if dense else None
    compactor = Compactor(y0, B) if compact else None
    evals = ct.evals_per_step + (len(ct.extra) if need_extra else 0)
    y = y0
    it = 0
    while True:
        # ---- a step that ends exactly on the next stop (t_end, or the window's last output)
        t_stop = outputs.stop() if outputs is not None else t_end
        remaining = t_stop - tt
        clamped = h.abs() >= remaining.detach().abs()
        h_try = torch.where(clamped, remaining, h)
        t_new = torch.where(clamped, t_stop, tt + h_try)
        hb = _bcast(h_try, y)
        if not tab.fsal:
            # a checkpointed step evaluates its first stage inside (graph not stored)
            k0 = fn(tt, y) if step is rk_step else None
        y1, ks, err, err_low = step(fn, ct, tt, y, h_try, hb, k0, True)
        if k0 is None:
            k0 = ks[0]
        # ---- error control (never differentiated)
        with torch.no_grad():
            ratio = _error_ratio(err, err_low, y, y1, rtol, atol, norm)
            accept, h_next, history = controller.propose(h_try, ratio, history, tab.error_order)
            # after a step shortened to hit a stop, fall back to the unshortened proposal
            h_next = torch.where(clamped & accept,
                                 direction * torch.maximum(h_next.abs(), h.abs()), h_next)
            h = torch.where(done, h, h_next)
        active = ~done
        if controller.dt_min > 0:
            stuck = stuck | (~accept & active & (h_try.abs() <= controller.dt_min))
        if need_extra:
            ks = extra_stages(fn, ct, tt, y, h_try, hb, ks)
        if outputs is not None:
            outputs.write(ct, tt, t_new, y, h_try, ks, accept)
        if records is not None:
            records.append((tt, h_try, y, ks, accept & active))
        # ---- advance
        acc_b = _bcast(accept, y)
        y = torch.where(acc_b, y1, y)
        if tab.fsal:
            k0 = torch.where(acc_b, ks[tab.n_stages - 1], k0)
        tt = torch.where(accept, t_new, tt)
        nfe = nfe + evals * active
        n_steps = n_steps + active
        n_acc = n_acc + (accept & active)
        done = tt == t_end
        it += 1
        if it % poll_every == 0:
            status = torch.stack([
                done.all(),
                ~(torch.isfinite(y).all() & torch.isfinite(k0).all()),
                (((tt + h == tt) | stuck) & ~done).any(),
                ((n_steps >= max_steps) & ~done).any(),
                (~torch.isfinite(h) & ~done).any(),
            ]).tolist()
            if any(status[1:]):
                # the last output was not reached by rows that are not done: NaN there
                y_end = torch.where(_bcast(done, y), y, torch.full_like(y, math.nan))
                counts = (nfe, n_steps, n_acc)
                if compactor is not None:
                    y_end, counts = compactor.full(y_end, counts)
                ys = (outputs.result(y_end) if outputs is not None
                      else torch.stack([y0, y_end]))
                _raise_failure(status, tt, done, ys, _adaptive_stats(*counts, fn.calls),
                               t_end, per_sample, B, max_steps, ratio)
            if status[0]:
                break
            if compactor is not None and bool(done.any()):
                keep = compactor.retire(done, y, (nfe, n_steps, n_acc))
                tt, h, y, k0, nfe, n_steps, n_acc, done, stuck = (
                    v[keep] for v in (tt, h, y, k0, nfe, n_steps, n_acc, done, stuck))
                history = tuple(v[keep] for v in history)
                if outputs is not None:
                    outputs.select(keep)
    counts = (nfe, n_steps, n_acc)
    if compactor is not None:
        y, counts = compactor.full(y, counts)
    ys = outputs.result(y) if outputs is not None else torch.stack([y0, y])
    return ys, _adaptive_stats(*counts, fn.calls), records


def _error_ratio(err: Tensor, err_low: Optional[Tensor], y0: Tensor, y1: Tensor, rtol: float,
                 atol: float, norm: ErrorNorm) -> Tensor:
    scale = torch.maximum(y0.abs(), y1.abs()).mul_(rtol).add_(atol)
    if err_low is None:
        return norm(err / scale)
    # DOP853: combine the 5th- and 3rd-order estimates (Hairer, Nørsett & Wanner).
    e5 = norm(err / scale).square()
    e3 = norm(err_low / scale).square()
    denom = (e5 + 0.01 * e3).sqrt()
    return torch.where(denom > 0, e5 / denom.clamp_min(1e-300), torch.zeros_like(e5))


def _adaptive_stats(nfe: Tensor, n_steps: Tensor, n_acc: Tensor, calls: int) -> Dict[str, Any]:
    return {"nfe": nfe, "n_steps": n_steps, "n_accepted": n_acc, "n_rejected": n_steps - n_acc,
            "n_f_calls": calls}


def _raise_failure(status: List[bool], tt: Tensor, done: Tensor, ys: Tensor,
                   stats: Dict[str, Any], t_end: Tensor, per_sample: bool, B: int,
                   max_steps: int, ratio: Tensor) -> None:
    """Raise the error the poll found (``status`` = done, non-finite, underflow, max_steps,
    non-finite step); ``ratio`` is the last step's error ratio."""
    t_reached = tt.detach()
    where = (f"t={float(t_reached):.6g}" if not per_sample else
             f"t in [{float(t_reached[~done].min()):.6g}, {float(t_reached[~done].max()):.6g}] "
             f"for {int((~done).sum())} of {B} rows")
    until = f"(integrating to t={float(t_end):.6g})"
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
            f"the step size underflowed at {where} (integrating to t={float(t_end):.6g}); the "
            "problem may be stiff or singular there, or the tolerances too tight",
            t=t_reached, ys=ys, stats=stats)
    raise MaxStepsExceededError(
        f"`max_steps`={max_steps} steps were attempted without reaching t={float(t_end):.6g}; "
        f"stopped at {where}. Raise max_steps or loosen rtol/atol", t=t_reached, ys=ys,
        stats=stats)
