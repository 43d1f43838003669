"""The compiled adaptive step and its thin driver loop.

`AdaptiveProgram.attempt` is one attempted step of the engine's adaptive loop
(`engine.adaptive.advance`, the eager loop's body) as one graph: the step clamped to the
next stop, the solver's step, the error ratio, the PID controller's proposal, accept/reject
by ``torch.where``, the dense output written into the output buffer, the counters. Those
are tensor operations already; the only change is an output writer that reads its stop
time by ``index_select`` (a 0-dim index tensor would be a data-dependent host read) and
never skips the interpolation on the host.

`solve_adaptive_compiled` calls it in a Python loop that polls (the engine's `_poll`: done,
non-finite, step underflow, ``max_steps``) every ``poll_every`` attempts, so the batched
calls of f (``n_f_calls``) equal the eager loop's at the same ``poll_every``.
"""
from __future__ import annotations

from typing import Any, Tuple

import torch

from ..engine.adaptive import FULL_POLL, OUTPUT_WINDOW, _adaptive_stats, _poll, _start, advance
from ..engine.controller import ErrorNorm, PIDController
from ..engine.outputs import OutputWriter
from ..engine.solution import Stats
from ..engine.state import LoopState
from ..ode.runge_kutta import RungeKutta
from .options import CompileOptions
from .program import compile_fresh

Tensor = torch.Tensor

__all__ = ["AdaptiveProgram", "SyncFreeOutputs", "solve_adaptive_compiled", "output_window"]


def output_window(solver: RungeKutta, t: Tensor) -> int:
    """The pending outputs a step may cross, as the engine's loop takes them (0: the step
    ends on the last output, no dense output needed)."""
    return min(t.shape[0] - 2, OUTPUT_WINDOW if solver.interpolates else 1)


class SyncFreeOutputs(OutputWriter):
    """`OutputWriter` without host reads: the stop time by ``index_select`` and every step's
    interpolation written (masked) even when it crosses no output."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lazy = False

    def stop(self) -> Tensor:
        idx = (self.oi + (self.window - 1)).clamp_max(self.n_out - 1)
        if self.row_times:
            return self.t_pad[idx, self.rows]
        return self.t_pad.index_select(0, idx.reshape(-1)).reshape(idx.shape)


class AdaptiveProgram:
    """``attempt(s, outputs) -> ratio``: one attempted step of ``solver`` on ``terms``,
    compiled; it advances the `LoopState` ``s`` and the `SyncFreeOutputs` (or None) in
    place and returns the step's error ratio (for the poll's failure report)."""

    def __init__(self, solver: RungeKutta, terms: Any, rtol: float, atol: float,
                 norm: ErrorNorm, controller: PIDController, direction: float,
                 densify: bool, options: CompileOptions) -> None:
        self.solver, self.densify = solver, densify
        self.evals = solver.evals_per_step + (solver.dense_evals if densify else 0)

        def attempt(s: LoopState, outputs: Any) -> Tensor:
            t_stop = s.t_end if outputs is None else outputs.stop()
            return advance(terms, solver, s, t_stop, (rtol, atol, norm, controller, direction),
                           densify, outputs)

        self.attempt = compile_fresh(attempt, options)

    def calls(self, state_given: bool) -> int:
        """Batched calls of f in one attempt: every stage but a first one carried in, and
        the dense extra stages."""
        ct = self.solver.ct
        return len(ct.stage_terms) - int(state_given) + (len(ct.extra) if self.densify else 0)


def solve_adaptive_compiled(program: AdaptiveProgram, fn: Any, y0: Tensor, k0: Any,
                            t: Tensor, direction: float, rtol: float, atol: float,
                            norm: ErrorNorm, controller: PIDController, per_sample: bool,
                            B: int, max_steps: int, first_step: Any,
                            poll_every: int) -> Tuple[Tensor, Stats]:
    """Integrate over ``t`` from ``y0`` and the first stage ``k0`` with the compiled
    attempt; ``fn`` is the counted f (its ``calls`` are advanced by the structural count).
    Returns ``(ys, stats)``."""
    solver = program.solver
    window = output_window(solver, t)
    s = _start(fn, solver, y0, k0, t, direction, rtol, atol, norm, controller, first_step,
               (B,) if per_sample else (), program.evals)
    outputs = SyncFreeOutputs(t, y0, window, per_sample, B) if window > 0 else None
    full_every = max(1, FULL_POLL // poll_every) * poll_every
    it = 0
    while True:
        given = s.state is not None
        ratio = program.attempt(s, outputs)
        fn.calls += program.calls(given)
        it += 1
        if it % poll_every == 0 and _poll(s, fn, y0, t[-1], outputs, None, per_sample, B,
                                          max_steps, ratio, it, it % full_every == 0):
            break
    ys = outputs.result(s.y) if outputs is not None else torch.stack([y0, s.y])
    return ys, _adaptive_stats(*s.counts(), fn.calls)
