"""The compiled SDE solve: `solve_sde` / `sdeint` on a fixed grid with compiled steps.

The problem is validated by the engine's `SDESolver` (same grid, same Brownian increments
for the same ``options['seed']`` or ``bm``: the increments are drawn outside the graphs,
chunk by chunk as the eager solve draws them, and passed in), then `compiled.fixed` runs
``unroll`` steps per compiled call. The SDE's evaluations are counted by tensor counters
inside the graphs (read once at the end). Methods whose step differentiates g with
autograd (Milstein without ``grad_free``, the log-ODE method's general-noise area term)
cannot be traced and are refused by name, as are adaptive steps (the Brownian tree's
descent is host logic).
"""
from __future__ import annotations

import copy
import sys
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from ..brownian.grid import GridIncrements
from ..engine.fixed import GridWriter
from ..engine.solution import SDESolution
from ..errors import NonFiniteError
from ..sde.solve import solve_sde as solve_sde_eager
from ..sde.solver import SDESolver, _QueryNoise
from .fixed import run_fixed
from .options import CompileOptions, as_compile_options, refuse
from .program import FixedProgram, cached_program

Tensor = torch.Tensor

__all__ = ["solve_sde", "sdeint", "MAX_STEP_SIZES"]

#: distinct step sizes a compiled SDE grid may have (each is one specialisation)
MAX_STEP_SIZES = 4


def solve_sde(sde: Any, y0: Tensor, ts: Union[Tensor, Sequence[float]], *, bm: Any = None,
              method: Optional[str] = None, dt: float = 1e-3, adaptive: bool = False,
              names: Optional[Dict[str, str]] = None, options: Optional[Dict[str, Any]] = None,
              compile: Any = True) -> SDESolution:
    """`solvers.solve_sde` on a fixed grid with the steps compiled (``compile``: True or a
    `CompileOptions`; False runs the eager solve). Arguments as `solvers.sdeint`; gradients
    flow by autograd through the compiled steps."""
    opts = as_compile_options(compile)
    if opts is None:
        return solve_sde_eager(sde, y0, ts, bm=bm, method=method, dt=dt, adaptive=adaptive,
                               names=names, options=options)
    if adaptive:
        raise refuse("adaptive", True, "step doubling queries the Brownian tree on the host "
                     "at every attempt; use a fixed dt")
    solver = SDESolver(sde, y0, ts, bm=bm, method=method, dt=dt, names=names, options=options)
    _check(solver, opts)
    if solver.trivial:
        ys, _ = solver.run(y0)
    else:
        ys = _run(solver, y0, opts)
    sol = SDESolution(ys=ys, ts=solver.ts, stats=solver.result_stats())
    if solver.step_record is not None:
        sol.step_ts, sol.step_ys = solver.step_record
    return sol


def sdeint(sde: Any, y0: Tensor, ts: Union[Tensor, Sequence[float]], **kwargs: Any) -> Tensor:
    """`solvers.sdeint` compiled: ys of shape ``(len(ts), *y0.shape)`` (`solve_sde`'s
    arguments)."""
    return solve_sde(sde, y0, ts, **kwargs).ys


def _check(solver: SDESolver, opts: CompileOptions) -> None:
    name, nt = solver.method.name, solver.terms.noise_type
    if name == "milstein" and nt != "additive" and not solver.options.get("grad_free"):
        raise refuse("method", name, "its dg·g term calls torch.autograd.grad inside the "
                     "step; pass options={'grad_free': True} (the derivative-free form)")
    if solver.levy == "A":
        raise refuse("method", name, "the Lévy-area term of general noise differentiates g "
                     "with torch.autograd.grad inside the step")
    if opts.cuda_graphs:
        raise refuse("CompileOptions.cuda_graphs", True, "SDE steps take their step size as "
                     "a Python float, which a captured graph would freeze")


def _program(solver: SDESolver, opts: CompileOptions) -> FixedProgram:
    """The compiled steps of this SDE and method, on terms counting in tensors."""
    t = solver.terms
    key = ("sde", t.sde, solver.method.name, t.sde_type, t.noise_type,
           bool(solver.options.get("grad_free")), t._f, t._g, t._fg, t._gp, t._fgp,
           solver.dtype, solver.device, opts)

    def build() -> FixedProgram:
        terms = copy.copy(t)
        terms.nfe_f = torch.zeros((), dtype=torch.long, device=solver.device)
        terms.nfe_g = torch.zeros((), dtype=torch.long, device=solver.device)
        return FixedProgram(solver.stepper, terms, opts, None)

    return cached_program(key, build)


def _run(solver: SDESolver, y0: Tensor, opts: CompileOptions) -> Tensor:
    """The fixed-grid solve (the eager `SDESolver._run_fixed`'s grid, noise and writer)."""
    times, save, hs = solver.fixed_plan(y0)
    n = len(hs)
    steps = _shared_steps(hs, times)
    tgrid = torch.tensor(times, dtype=solver.dtype, device=solver.device)
    noise = (GridIncrements(hs, solver.noise_shape, solver.dtype, solver.device,
                            solver._entropy(), solver.levy, solver._chunk_size())
             if solver.bm is None else _QueryNoise(solver.bm, times, solver.levy))
    writer = GridWriter(y0, save, solver.options.get("save_steps", False))
    writes = range(n) if writer.steps is not None else {k for k in range(n) if save[k]}
    state = solver.stepper.init(solver.terms, solver.t0, y0)
    # reversible Heun's z0 is y0 itself: an aliased input would be one more specialisation
    state = tuple(v.clone() if v is y0 else v for v in state)
    program = _program(solver, opts)
    counted = program.terms
    counted.nfe_f.zero_()
    counted.nfe_g.zero_()

    def nonfinite(k: int) -> None:
        solver.stats.update(n_steps=k + 1, n_accepted=k + 1)
        _add_counts(solver, counted)
        raise solver._fail(NonFiniteError, f"the SDE state became non-finite by t="
                           f"{times[k + 1]:.6g} (method {solver.method.name!r}, dt="
                           f"{solver.dt:g}, compiled)", times[k + 1], writer.written(k))

    breaks = {k for k in range(1, n) if steps[k] != steps[k - 1]}
    run_fixed(program, program.chunk, y0, state, tgrid, steps, writer, writes, (),
              solver.poll_every, nonfinite, lambda given, k: None, controls=noise.get,
              breaks=breaks)
    solver.stats.update(n_steps=n, n_accepted=n, n_rejected=0)
    _add_counts(solver, counted)
    if writer.steps is not None:
        solver.step_record = (tgrid[1:], torch.stack(writer.steps))
    return writer.result()


def _shared_steps(hs: List[float], times: List[float]) -> List[float]:
    """The step sizes with those equal up to the grid's rounding (64 ulps of its largest
    time) replaced by one float: the compiled steps take h as a Python float, which inductor
    specialises on (a recompile per distinct value), while the grid's differences
    ``times[k+1] - times[k]`` of one output interval differ in their last bits. Raises
    when more than `MAX_STEP_SIZES` distinct sizes remain."""
    tol = 64 * sys.float_info.epsilon * max(abs(times[0]), abs(times[-1]))
    sizes: List[float] = []
    out = []
    for h in hs:
        h = next((r for r in sizes if abs(h - r) <= tol), h)
        if h not in sizes:
            sizes.append(h)
        out.append(h)
    if len(sizes) > MAX_STEP_SIZES:
        raise refuse("ts", f"<{len(sizes)} step sizes>", f"each distinct step size of the "
                     f"fixed grid compiles separately (at most {MAX_STEP_SIZES}): give output "
                     f"times spaced by multiples of one step, or use solvers.sdeint")
    return out


def _add_counts(solver: SDESolver, counted: Any) -> None:
    """Add the graphs' evaluation counts to the solve's (one host read)."""
    f, g = torch.stack([counted.nfe_f, counted.nfe_g]).tolist()
    solver.terms.nfe_f += f
    solver.terms.nfe_g += g
