"""The compiled fixed-grid loop: chunks of ``unroll`` steps per compiled call.

A plain Python loop walks the grid: ``unroll`` consecutive steps run in one graph
(`FixedProgram.chunk`), and single compiled steps (`FixedProgram.one`) take the remainder
and the steps whose outputs need the solver's dense stages (an ODE output inside a step,
or off a `ConstantStepSize` grid). The engine's writers (`engine.fixed.GridWriter`,
`DenseGridWriter`) record the outputs. Measured on this CPU (docs/compile.md), a compiled
single step still pays ~20 µs of guard and wrapper cost per call, a chunk of 8 steps
pays it once, and unrolling 50 steps made inductor compile for minutes: chunks it is.

The host syncs: one finiteness check after the chunk in which every ``poll_every``-th
step falls, and one at the end.
"""
from __future__ import annotations

from typing import Any, Callable, Collection, Optional, Sequence, Tuple

import torch

from ..engine.fixed import all_finite
from ..engine.solver import StepResult
from .program import FixedProgram

Tensor = torch.Tensor

__all__ = ["run_fixed", "dense_steps"]


def run_fixed(program: FixedProgram, chunk: Callable, y: Tensor, state: Any, times: Tensor,
              hs: Sequence[Any], writer: Any, writes: Collection[int],
              dense: Collection[int], poll_every: int,
              on_nonfinite: Callable[[int], None], count: Callable[[bool, int], None],
              controls: Optional[Callable[[int], Any]] = None,
              rows: Optional[int] = None, breaks: Collection[int] = ()) -> Tuple[Tensor, Any]:
    """Step ``y`` over ``len(hs)`` steps from ``times[n]`` by ``hs[n]`` (``controls(n)``:
    step n's increments); ``chunk`` is ``program.chunk`` or its CUDA-graph replay. Steps in
    ``writes`` go to ``writer.write``; those in ``dense`` run singly with their full
    `StepResult`; a chunk never runs across a step in ``breaks`` (where the SDE step size
    changes). ``count(state_given, k)`` is told of every call of k steps. Returns the final
    state and solver state."""
    n, K = len(hs), program.unroll
    blocked = bool(dense) or bool(breaks)
    n0 = 0
    while n0 < n:
        n1 = n0 + K
        if n1 <= n and not (blocked and any(m in dense or (m > n0 and m in breaks)
                                            for m in range(n0, n1))):
            ctrl = None if controls is None else [controls(m) for m in range(n0, n1)]
            ys, new_state = chunk(times[n0:n1], hs[n0:n1], y, state, ctrl)
            count(state is not None, K)
            for j, m in enumerate(range(n0, n1)):
                if m in writes:
                    writer.write(m, times[m], hs[m], ys[j - 1] if j else y,
                                 StepResult(ys[j], None, None, None))
            y, state = ys[-1], new_state
        else:
            n1 = n0 + 1
            t0 = times[n0] if rows is None else times[n0].expand(rows)
            res = program.one(t0, hs[n0], y, state, None if controls is None else controls(n0))
            count(state is not None, 1)
            if n0 in writes:
                res = writer.write(n0, t0, hs[n0], y, res)
            y, state = res.y1, res.state
        if (n1 // poll_every > n0 // poll_every or n1 == n) and not all_finite(y):
            on_nonfinite(n1 - 1)
        n0 = n1
    return y, state


def dense_steps(writer: Any) -> set:
    """The steps of a `DenseGridWriter` whose outputs come from the dense output (it
    interpolates outputs inside a step and, off the output grid, every output but the
    last)."""
    last = len(writer.outs) - 1
    return {n for n, here in writer.by_step.items()
            if n >= 0 and any(th < 1.0 or (writer.off_grid and j != last) for j, th in here)}
