"""ODE solving: `solve_ode` (rich entry point with statistics and dense output) and
`odeint` (torchdiffeq-compatible).

Two loops share the generic RK step of `rk.py`:

* fixed grid (fixed-step methods, or any method with ``step_size``): the grid is known
  up front, outputs between grid points come from the method's dense output;
* adaptive: error control per batch (joint mode) or per row (``per_sample=True``), with
  no host sync in the step loop except one poll every ``poll_every`` steps that checks
  completion, non-finite state, step-size underflow and ``max_steps`` together.
  Steps end exactly on the final time (and never cross more than ``window`` output
  times); outputs inside a step come from the method's dense output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .controller import ErrorNorm, PIDController, _bcast, initial_step_size
from .errors import (FunctionOutputError, InvalidInputError, MaxStepsExceededError,
                     NonFiniteError, StepSizeUnderflowError, describe)
from .interpolation import DenseInterpolant, interpolate_stages
from .rk import CompiledTableau, checkpointed_rk_step, compile_tableau, extra_stages, rk_step
from .tableaus import ButcherTableau, get_tableau
from .validation import (check_adaptive_dtype, check_bool, check_error_norm, check_int,
                         check_mapping, check_positive, check_times, check_tolerances, is_real)

Tensor = torch.Tensor
State = Union[Tensor, Tuple[Tensor, ...]]

__all__ = ["solve_ode", "odeint", "ODESolution"]

DEFAULT_MAX_STEPS = 10_000
GRADIENT_MODES = ("direct", "checkpoint", "backsolve")
OUTPUT_WINDOW = 8


@dataclass
class ODESolution:
    """Result of `solve_ode`.

    Attributes:
        ys: states at the output times, shape ``(len(ts), *y0.shape)`` (a tuple for tuple y0).
        ts: the output times.
        stats: ``nfe`` (evaluations of f; per row in per-sample mode, counting only while
            the row was active), ``n_steps`` (attempted), ``n_accepted``, ``n_rejected``
            (tensors: 0-dim, or ``(B,)`` per sample) and ``n_f_calls`` (batched calls of f).
    """

    ys: State
    ts: Tensor
    stats: Dict[str, Any]
    dense: Optional[DenseInterpolant] = field(default=None, repr=False)

    def evaluate(self, t: Union[Tensor, float, Sequence[float]]) -> State:
        """Dense output at times ``t`` (needs ``solve_ode(..., dense=True)``)."""
        if self.dense is None:
            raise InvalidInputError(
                "ODESolution.evaluate needs a solve with `dense=True`; got a solution "
                "computed with dense=False")
        return self.dense.evaluate(t)


# --------------------------------------------------------------------------- inputs

class _Flat:
    """Flattens tuple states into one tensor (joint: ``(N,)``, per sample: ``(B, N)``)."""

    def __init__(self, y0: State, per_sample: bool) -> None:
        self.is_tuple = isinstance(y0, (tuple, list))
        parts = tuple(y0) if self.is_tuple else (y0,)
        self.shapes = [p.shape for p in parts]
        lead = (parts[0].shape[0],) if per_sample else ()
        self.sizes = [int(np.prod(s[len(lead):], dtype=np.int64)) for s in self.shapes]
        self.lead = lead

    def flatten(self, y: State) -> Tensor:
        if not self.is_tuple:
            return y
        return torch.cat([p.reshape(*self.lead, n) for p, n in zip(y, self.sizes)], dim=-1)

    def unflatten(self, y: Tensor, extra_lead: Tuple[int, ...] = ()) -> State:
        if not self.is_tuple:
            return y
        parts = torch.split(y, self.sizes, dim=-1)
        return tuple(p.reshape((*extra_lead, *s[len(self.lead):]))
                     for p, s in zip(parts, self.shapes))


def _check_state(y0: State, per_sample: bool) -> None:
    parts = tuple(y0) if isinstance(y0, (tuple, list)) else (y0,)
    if len(parts) == 0:
        raise InvalidInputError("`y0` must be a tensor or a non-empty tuple of tensors; got ()")
    for p in parts:
        if not isinstance(p, torch.Tensor):
            raise InvalidInputError(
                f"`y0` must be a floating-point tensor or a tuple of them; got {describe(p)}")
        if not p.is_floating_point():
            raise InvalidInputError(
                f"`y0` must have a floating-point dtype; got {describe(p)}")
    dtypes = {p.dtype for p in parts}
    devices = {p.device for p in parts}
    if len(dtypes) > 1 or len(devices) > 1:
        raise InvalidInputError(
            f"all tensors of a tuple `y0` must share dtype and device; got {dtypes}, {devices}")
    if per_sample:
        if any(p.dim() == 0 for p in parts) or len({p.shape[0] for p in parts}) > 1:
            raise InvalidInputError(
                "`per_sample=True` needs `y0` of shape (B, *event) (every tuple part with the "
                f"same B); got shapes {[tuple(p.shape) for p in parts]}")


class _Func:
    """Wraps the user's f: unflattens tuple states, counts batched calls, and validates
    the first output."""

    def __init__(self, func: Callable, flat: _Flat) -> None:
        if not callable(func):
            raise InvalidInputError(f"`func` must be callable f(t, y); got {describe(func)}")
        self.func = func
        self.flat = flat
        self.calls = 0

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        if not self.flat.is_tuple:
            return self.func(t, y)
        return self.flat.flatten(self.func(t, self.flat.unflatten(y, self.flat.lead)))

    def first_call(self, t: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        yy = self.flat.unflatten(y, self.flat.lead) if self.flat.is_tuple else y
        out = self.func(t, yy)
        expected = tuple(yy) if self.flat.is_tuple else (yy,)
        got = tuple(out) if self.flat.is_tuple and isinstance(out, (tuple, list)) else (out,)
        if len(got) != len(expected):
            raise FunctionOutputError(
                f"`func` must return the same structure as y ({len(expected)} tensors); got "
                f"{describe(out)}")
        for g, e in zip(got, expected):
            if not isinstance(g, torch.Tensor):
                raise FunctionOutputError(
                    f"`func` must return a tensor shaped like y {tuple(e.shape)}; "
                    f"got {describe(g)}")
            if g.shape != e.shape:
                raise FunctionOutputError(
                    f"`func` returned shape {tuple(g.shape)} but the state has shape "
                    f"{tuple(e.shape)}; f(t, y) must return dy/dt with y's shape")
            if g.dtype != e.dtype:
                raise FunctionOutputError(
                    f"`func` returned dtype {g.dtype} but the state has dtype {e.dtype}")
        return self.flat.flatten(out) if self.flat.is_tuple else out


# --------------------------------------------------------------------------- fixed grid

def _make_grid(t: Tensor, step_size: Optional[float], direction: float) -> Tensor:
    if step_size is None:
        return t
    t0, t1 = t[0], t[-1]
    span = float((t1 - t0).abs().detach())
    n = max(1, int(math.ceil(span / step_size - 1e-9)))
    k = torch.arange(n + 1, dtype=t.dtype, device=t.device)
    grid = t0 + direction * step_size * k
    return torch.cat([grid[:-1], t1.reshape(1)])


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


def _solve_fixed(fn: _Func, ct: CompiledTableau, y0: Tensor, k0: Tensor, t: Tensor,
                 direction: float, step_size: Optional[float], per_sample: bool, B: int,
                 dense: bool, poll_every: int, step: Callable = rk_step
                 ) -> Tuple[Tensor, Dict[str, Any], Optional[list]]:
    grid = _make_grid(t, step_size, direction)
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
        # With `step_size` the grid is not t itself: outputs (but the last, which ends the
        # grid) come from the dense output so they stay differentiable in t.
        interior = [(j, th) for j, th in here
                    if th < 1.0 or (step_size is not None and j != len(outs) - 1)]
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


# --------------------------------------------------------------------------- adaptive

def _solve_adaptive(fn: _Func, ct: CompiledTableau, y0: Tensor, k0: Tensor, t: Tensor,
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

    outputs = _OutputWriter(t, y0, window, per_sample, B) if window > 0 else None
    zero = torch.zeros(row_shape, dtype=torch.long, device=device)
    nfe = zero + fn.calls
    n_steps, n_acc = zero.clone(), zero.clone()
    done = torch.zeros(row_shape, dtype=torch.bool, device=device)
    stuck = torch.zeros(row_shape, dtype=torch.bool, device=device)  # rejected at dt_min
    records = [] if dense else None
    compactor = _Compactor(y0, B) if compact else None
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


class _Compactor:
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


class _OutputWriter:
    """Writes interior output times crossed by accepted steps into a buffer, sync-free.

    Each step looks at a window of the next ``window`` pending outputs per row; steps
    never go past the window's last output, so none is skipped. On the CPU, where reading
    a flag costs no device sync, steps that cross no output skip the interpolation.
    """

    def __init__(self, t: Tensor, y0: Tensor, window: int, per_sample: bool, B: int) -> None:
        n_out = t.shape[0]
        self.n_out, self.window, self.per_sample = n_out, window, per_sample
        self.shape = y0.shape
        self.t_pad = torch.cat([t, t[-1:].expand(window)])
        self.ar = torch.arange(window, device=t.device)
        self.oi = torch.ones((B,) if per_sample else (), dtype=torch.long, device=t.device)
        rows = (B, y0[0].numel()) if per_sample else tuple(y0.shape)
        self.buf = torch.full((n_out + window, *rows), math.nan, dtype=y0.dtype,
                              device=y0.device)
        self.buf[0] = y0.reshape(rows)
        self.lazy = y0.device.type == "cpu"
        self.rows = torch.arange(B, device=t.device) if per_sample else None

    def stop(self) -> Tensor:
        return self.t_pad[(self.oi + (self.window - 1)).clamp_max(self.n_out - 1)]

    def write(self, ct: CompiledTableau, tt: Tensor, t_new: Tensor, y: Tensor, h: Tensor,
              ks: List[Tensor], accept: Tensor) -> None:
        d = torch.sign(h)
        if self.per_sample:
            idx = self.oi.unsqueeze(-1) + self.ar                                 # (B, W)
            t_w = self.t_pad[idx]
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
        vals = interpolate_stages(ct, y, h, ks, theta, self.per_sample)
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


# --------------------------------------------------------------------------- entry points

_OPTION_NAMES = ("step_size", "first_step", "max_steps", "max_num_steps", "per_sample",
                 "compact", "poll_every", "safety", "ifactor", "dfactor", "dtype", "norm",
                 "gradient")


def solve_ode(func: Callable, y0: State, t: Any, *, method: str = "dopri5",
              rtol: float = 1e-7, atol: float = 1e-9, per_sample: bool = False,
              dense: bool = False, max_steps: int = DEFAULT_MAX_STEPS,
              controller: Optional[PIDController] = None, step_size: Optional[float] = None,
              first_step: Optional[float] = None, poll_every: Optional[int] = None,
              error_norm: Optional[Callable[[Tensor], Tensor]] = None,
              gradient: str = "direct", adjoint_params: Optional[Sequence[Tensor]] = None,
              adjoint_options: Optional[Dict[str, Any]] = None,
              compact: bool = False) -> ODESolution:
    """Solve dy/dt = func(t, y) and return the states at times ``t`` with statistics.

    Args:
        func: ``f(t, y)``, a callable or ``nn.Module``. ``t`` is a 0-dim tensor of y's dtype,
            or a ``(B,)`` tensor (each row's own time) when ``per_sample=True``.
        y0: initial state ``(B, *event)`` (any shape in joint mode) or a tuple of tensors.
        t: 1-D strictly monotone output times (decreasing integrates backwards).
        method: one of `solvers.TABLEAUS` (``euler``, ``midpoint``, ``heun``, ``rk4``,
            ``bosh3``, ``dopri5``, ``tsit5``, ``dopri8``) or a `ButcherTableau`.
        rtol, atol: tolerances of adaptive methods; error ratio
            ``RMS(err / (atol + rtol * max(|y0|, |y1|)))``.
        per_sample: every batch row gets its own step size, error norm and accept/reject
            (f is still called on the full batch; finished rows stop advancing).
        dense: keep every step's continuous extension so `ODESolution.evaluate` works.
        max_steps: maximum attempted steps (per row in per-sample mode).
        controller: step-size controller (default: `PIDController()`).
        step_size: fixed step for any method (no error control). Fixed-step methods without
            it step on the output grid ``t``.
        first_step: initial step of adaptive methods (default: Hairer's algorithm).
        poll_every: steps between host syncs (default 1 on CPU, 16 on accelerators).
        error_norm: norm of the scaled error replacing the default RMS norm; maps the
            flattened state (``(N,)``, or ``(B, N)`` per sample) to a 0-dim or ``(B,)`` tensor.
        gradient: how backpropagation works: ``'direct'`` (autograd through the steps),
            ``'checkpoint'`` (store each step's inputs only and recompute its graph in the
            backward pass: exact gradients of the discrete solution, memory O(steps·state)),
            or ``'backsolve'`` (continuous adjoint, memory independent of the steps;
            see `odeint_adjoint` for ``adjoint_params`` and ``adjoint_options``).
        compact: with ``per_sample=True`` and an adaptive method, rows that have finished
            leave the batch at each poll, so f is called on the active rows only. Only for
            f whose rows are independent (no per-row parameters indexed by position).
    """
    for name, flag in (("per_sample", per_sample), ("dense", dense), ("compact", compact)):
        check_bool(name, flag)
    if gradient not in GRADIENT_MODES:
        raise InvalidInputError(
            f"`gradient` must be one of {list(GRADIENT_MODES)}; got {gradient!r}")
    if compact and (not per_sample or dense or gradient == "backsolve"):
        raise InvalidInputError(
            "`compact=True` needs per_sample=True, dense=False and gradient 'direct' or "
            f"'checkpoint'; got per_sample={per_sample}, dense={dense}, gradient={gradient!r}")
    if gradient != "backsolve" and (adjoint_params is not None or adjoint_options is not None):
        raise InvalidInputError("`adjoint_params` and `adjoint_options` apply to "
                                f"gradient='backsolve' only; got gradient={gradient!r}")
    tab = get_tableau(method)
    _check_state(y0, per_sample)
    parts = tuple(y0) if isinstance(y0, (tuple, list)) else (y0,)
    dtype, device = parts[0].dtype, parts[0].device
    t, _, direction = check_times(t, dtype, device)
    rtol, atol = check_tolerances(rtol, atol)
    if step_size is not None:
        step_size = check_positive("step_size", step_size)
    if first_step is not None:
        first_step = check_positive("first_step", first_step)
    max_steps = check_int("max_steps", max_steps)
    poll_every = (1 if device.type == "cpu" else 16) if poll_every is None else \
        check_int("poll_every", poll_every)
    controller = controller if controller is not None else PIDController()
    if not isinstance(controller, PIDController):
        raise InvalidInputError(
            f"`controller` must be a PIDController; got {describe(controller)}")
    adaptive = tab.adaptive and step_size is None
    if adaptive:
        check_adaptive_dtype(dtype, f"adaptive method {tab.name!r}")
    if not tab.adaptive and step_size is None and first_step is not None:
        raise InvalidInputError("`first_step` applies to adaptive methods only; "
                                f"method {tab.name!r} is fixed-step (use `step_size`)")
    if tab.dense is None and (dense or (adaptive and t.shape[0] > 2)):
        raise InvalidInputError(no_dense_message(tab))
    if error_norm is not None and not callable(error_norm):
        raise InvalidInputError(f"`error_norm` must be callable; got {describe(error_norm)}")

    flat = _Flat(y0, per_sample)
    y = flat.flatten(y0)
    if y.numel() == 0 or (t.shape[0] == 1 and gradient != "backsolve"):
        # nothing to integrate: y0 at every output time
        return _constant_solution(y, t, flat, per_sample)
    if gradient == "backsolve":
        from .adjoint import solve_backsolve
        return solve_backsolve(func, y0, t, method=method, rtol=rtol, atol=atol,
                               per_sample=per_sample, dense=dense, max_steps=max_steps,
                               controller=controller, step_size=step_size,
                               first_step=first_step, poll_every=poll_every,
                               error_norm=error_norm, adjoint_params=adjoint_params,
                               adjoint_options=adjoint_options)
    B = y.shape[0] if per_sample else 1
    if adaptive and error_norm is not None:
        check_error_norm(error_norm, y, (B,) if per_sample else ())
    fn = _Func(func, flat)
    ct = compile_tableau(tab, dtype, device)
    t0 = t[0].expand(B) if per_sample else t[0]
    k0 = fn.first_call(t0, y)
    step = checkpointed_rk_step if gradient == "checkpoint" and torch.is_grad_enabled() \
        else rk_step

    if not adaptive:
        ys, stats, records = _solve_fixed(fn, ct, y, k0, t, direction, step_size, per_sample,
                                          B, dense, poll_every, step)
        interp = (DenseInterpolant.from_fixed(ct, records, direction)
                  if dense else None)
    else:
        norm = error_norm if error_norm is not None else \
            ErrorNorm(per_sample, flat.sizes if flat.is_tuple else None)
        ys, stats, records = _solve_adaptive(fn, ct, y, k0, t, direction, rtol, atol, norm,
                                             controller, per_sample, B, dense, max_steps,
                                             first_step, poll_every, step, compact)
        interp = (DenseInterpolant.from_adaptive(ct, records, direction, per_sample)
                  if dense else None)
    if interp is not None:
        interp.unflatten = lambda v: flat.unflatten(v, (v.shape[0], *flat.lead))
    return ODESolution(flat.unflatten(ys, (t.shape[0], *flat.lead)), t, stats, interp)


def _constant_solution(y: Tensor, t: Tensor, flat: _Flat, per_sample: bool) -> ODESolution:
    """The solution when nothing is integrated (one output time, or an empty state)."""
    n = t.shape[0]
    ys = y.unsqueeze(0).expand(n, *y.shape)
    ys = ys if n == 1 else ys.clone()
    zero = torch.zeros((y.shape[0],) if per_sample else (), dtype=torch.long, device=y.device)
    stats = {"nfe": zero, "n_steps": zero, "n_accepted": zero, "n_rejected": zero,
             "n_f_calls": 0}
    return ODESolution(flat.unflatten(ys, (n, *flat.lead)), t, stats)


def parse_options(options: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Translate torchdiffeq-style ``options`` into `solve_ode` keyword arguments."""
    opts = check_mapping("options", options)
    unknown = sorted(set(opts) - set(_OPTION_NAMES))
    if unknown:
        raise InvalidInputError(
            f"unknown `options` {unknown}; valid options are {sorted(_OPTION_NAMES)}")
    if "max_num_steps" in opts:
        opts.setdefault("max_steps", opts.pop("max_num_steps"))
    opts.pop("max_num_steps", None)
    opts.pop("dtype", None)
    if "norm" in opts:
        opts["error_norm"] = opts.pop("norm")
    ctrl = {}
    for ours, theirs in (("safety", "safety"), ("factor_max", "ifactor"),
                         ("factor_min", "dfactor")):
        if theirs in opts:
            v = opts.pop(theirs)
            ctrl[ours] = float(v) if is_real(v) else v  # PIDController rejects the rest
    if ctrl:
        opts["controller"] = PIDController(**ctrl)
    ms = opts.get("max_steps")
    if isinstance(ms, float) and ms.is_integer():
        opts["max_steps"] = int(ms)
    return opts


def odeint(func: Callable, y0: State, t: Any, *, rtol: float = 1e-7, atol: float = 1e-9,
           method: Optional[str] = None, options: Optional[Dict[str, Any]] = None) -> State:
    """torchdiffeq-compatible ODE solve: returns the states at ``t``, shape
    ``(len(t), *y0.shape)`` (a tuple for tuple ``y0``).

    ``options`` accepts ``step_size``, ``first_step``, ``max_steps`` (alias
    ``max_num_steps``), ``per_sample``, ``poll_every``, ``norm`` (a callable error norm),
    ``gradient`` ('direct', 'checkpoint'), and torchdiffeq's controller names ``safety``,
    ``ifactor`` (max growth) and ``dfactor`` (max shrink).
    """
    sol = solve_ode(func, y0, t, method=method or "dopri5", rtol=rtol, atol=atol,
                    **parse_options(options))
    return sol.ys
