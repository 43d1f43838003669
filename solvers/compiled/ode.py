"""The compiled ODE solve behind ``solve_ode(..., compile=True)``.

A validated `ODEProblem` runs on an explicit `RungeKutta` (any tableau: rk4, dopri5, tsit5,
...) whose steps are compiled: a fixed grid in chunks (`compiled.fixed`), an adaptive solve
one compiled attempt at a time (`compiled.adaptive`). Outputs, statistics and errors are
the eager solve's; f's batched calls are counted on the host from the method's structure
(a host counter inside the graph would force a recompile per call).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch

from ..adjoint.modes import DirectAdjoint, GradientMode
from ..engine.controller import ErrorNorm
from ..engine.fixed import DenseGridWriter, fixed_stats
from ..engine.flat import CountedFunc, FlatState
from ..engine.integrate import ODEProblem, _explain_stiffness, integrate
from ..engine.solution import ODESolution, Stats
from ..errors import MaxStepsExceededError, NonFiniteError, StepSizeUnderflowError
from ..implicit.methods import ImplicitMethod
from ..ode.rk import compile_tableau
from ..ode.runge_kutta import RungeKutta
from .adaptive import AdaptiveProgram, output_window, solve_adaptive_compiled
from .fixed import dense_steps, run_fixed
from .graphs import GraphedChunk
from .options import CompileOptions, as_compile_options, refuse
from .program import FixedProgram, cached_program

Tensor = torch.Tensor

__all__ = ["check_compile", "integrate_compiled", "integrate_or_compile", "CompileOptions"]


def check_compile(compile: Any, gradient: GradientMode, compact: bool
                  ) -> Optional[CompileOptions]:
    """The compile options of a `solve_ode` call (None: eager), refusing by name the
    options that cannot run compiled."""
    opts = as_compile_options(compile)
    if opts is None:
        return None
    if not isinstance(gradient, DirectAdjoint):
        raise refuse("gradient", type(gradient).__name__,
                     "only 'direct' (autograd through the compiled steps) is compiled")
    if compact:
        raise refuse("compact", True, "retiring rows changes the batch shape at every poll, "
                     "a recompile each")
    return opts


def integrate_or_compile(func: Callable, p: ODEProblem, compiled: Optional[CompileOptions],
                         checkpoint: bool, compact: bool) -> ODESolution:
    """`engine.integrate` (eager), or the compiled path when ``compiled`` is given."""
    if compiled is None:
        return integrate(func, p, checkpoint=checkpoint, compact=compact)
    return integrate_compiled(func, p, compiled)


def integrate_compiled(func: Callable, p: ODEProblem, opts: CompileOptions) -> ODESolution:
    """Run a prepared (non-trivial) problem on the compiled path."""
    if isinstance(p.tab, ImplicitMethod):
        raise refuse("method", p.tab.name, "an implicit method's Newton iterations and "
                     "Jacobian refreshes are host decisions; use an explicit method")
    if p.dense:
        raise refuse("dense", True, "the record of every step is host-side bookkeeping")
    if p.hooks is not None:
        raise refuse("callback", p.hooks.after or p.hooks.before,
                     "per-step hooks are Python between the steps")
    y, flat, t = p.y, p.flat, p.t
    B = y.shape[0] if p.per_sample else 1
    fn = CountedFunc(func, flat)
    pure = _uncounted(func, flat)
    shapes = tuple(tuple(s) for s in flat.shapes) if flat.is_tuple else None
    key = (func, p.tab, y.dtype, y.device, shapes, p.per_sample and B, opts)
    if p.adaptive:
        ys, stats = _adaptive(fn, pure, p, key, opts, B)
    else:
        ys, stats = _fixed(fn, pure, p, key, opts, B)
    return ODESolution(flat.unflatten(ys, (t.shape[0], *flat.lead)), t, stats)


def _uncounted(func: Callable, flat: FlatState) -> Callable:
    """f on the flat state, not counted (the compiled graphs call it)."""
    if not flat.is_tuple:
        return func
    return lambda t, y: flat.flatten(func(t, flat.unflatten(y, flat.lead)))


def _rk_calls(solver: RungeKutta, state_given: bool, k: int) -> int:
    """Batched calls of f in k steps: every stage, less the first stage of the first step
    when carried in and of the later ones for FSAL methods."""
    return k * len(solver.ct.stage_terms) - int(state_given) - (k - 1) * int(solver.tab.fsal)


def _fixed(fn: CountedFunc, pure: Callable, p: ODEProblem, key: tuple, opts: CompileOptions,
           B: int) -> Tuple[Tensor, Stats]:
    y = p.y
    rows = B if p.per_sample else None
    program = cached_program(("ode-fixed",) + key, lambda: FixedProgram(
        RungeKutta(compile_tableau(p.tab, y.dtype, y.device), with_error=False), pure, opts,
        rows))
    solver = program.solver
    chunk = _graphed(program, opts, y) if opts.cuda_graphs else program.chunk
    grid = p.step_control.grid(p.t, p.direction)
    hs = grid[1:] - grid[:-1]
    writer = DenseGridWriter(solver, fn, y, p.t, grid, p.direction, False)
    row_shape = (B,) if p.per_sample else ()
    k0 = solver.init(fn, grid[0].expand(B) if p.per_sample else grid[0], y)

    def nonfinite(n: int) -> None:
        raise NonFiniteError(
            f"the state became non-finite by t={float(grid[n + 1]):.6g} (step {n + 1} of "
            f"{len(hs)}, compiled); reduce `step_size` or check f", t=grid[n + 1],
            ys=writer.partial(), stats=fixed_stats(fn.calls, n + 1, row_shape, y.device))

    def count(given: bool, k: int) -> None:
        fn.calls += _rk_calls(solver, given, k)

    run_fixed(program, chunk, y, k0, grid, hs, writer, {n for n in writer.by_step if n >= 0},
              dense_steps(writer), p.poll_every, nonfinite, count, rows=rows)
    return writer.result(), fixed_stats(fn.calls, len(hs), row_shape, y.device)


def _graphed(program: FixedProgram, opts: CompileOptions, y: Tensor) -> GraphedChunk:
    """The program's chunk replayed from CUDA graphs (kept on the program)."""
    if y.device.type != "cuda":
        raise refuse("CompileOptions.cuda_graphs", True,
                     f"CUDA graphs need a CUDA state; got device {y.device}")
    if torch.is_grad_enabled():
        raise refuse("CompileOptions.cuda_graphs", True, "a graph replays values only: "
                     "call the solve under torch.no_grad()")
    if program.graphed is None:
        program.graphed = GraphedChunk(program.chunk)
    return program.graphed


def _adaptive(fn: CountedFunc, pure: Callable, p: ODEProblem, key: tuple,
              opts: CompileOptions, B: int) -> Tuple[Tensor, Stats]:
    y, flat = p.y, p.flat
    if opts.cuda_graphs:
        raise refuse("CompileOptions.cuda_graphs", True, "graphs capture fixed-grid loops; "
                     "an adaptive solve's step count is known only at its polls")
    norm = p.error_norm if p.error_norm is not None else \
        ErrorNorm(p.per_sample, flat.sizes if flat.is_tuple else None)
    ct = compile_tableau(p.tab, y.dtype, y.device)
    window = output_window(RungeKutta(ct), p.t)
    ctrl_key = (p.rtol, p.atol, p.error_norm, p.controller, p.direction, window > 0)
    program = cached_program(("ode-adaptive",) + key + ctrl_key, lambda: AdaptiveProgram(
        RungeKutta(ct), pure, p.rtol, p.atol, norm, p.controller, p.direction, window > 0,
        opts))
    t0 = p.t[0].expand(B) if p.per_sample else p.t[0]
    k0 = program.solver.init(fn, t0, y)
    try:
        return solve_adaptive_compiled(program, fn, y, k0, p.t, p.direction, p.rtol, p.atol,
                                       norm, p.controller, p.per_sample, B, p.max_steps,
                                       p.first_step, p.poll_every)
    except (MaxStepsExceededError, StepSizeUnderflowError) as err:
        _explain_stiffness(fn, err, p.t, y, p.per_sample)
        raise
