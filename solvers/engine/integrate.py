"""One validated ODE problem (`ODEProblem`) and its forward integration.

`prepare_ode` validates every argument of an ODE solve once and returns the typed
problem; `integrate` runs it through the fixed-grid or adaptive loop; `integrate_ode` is
both (the forward pass used by `solve_ode` and by the backsolve adjoint, which solves its
augmented system with it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from ..errors import (InvalidInputError, MaxStepsExceededError, NonFiniteError,
                      StepSizeUnderflowError, describe)
from ..ode.interpolation import DenseInterpolant
from ..ode.rk import compile_tableau
from ..ode.runge_kutta import RungeKutta
from ..implicit.base import ImplicitSolver, Settings
from ..implicit.methods import ImplicitMethod, resolve_method
from ..implicit.stiffness import diagnose
from ..validation import (check_adaptive_dtype, check_error_norm, check_int, check_positive,
                          check_row_times, check_times, check_tolerances)
from .adaptive import solve_adaptive
from .callbacks import StepHooks, as_step_hooks
from .controller import ConstantStepSize, ErrorNorm, PIDController, StepSizeController, StepTo
from .fixed import DenseGridWriter, fixed_stats, no_dense_message, run_grid
from .flat import CountedFunc, FlatState, State, check_state
from .solution import ODESolution, constant_solution

Tensor = torch.Tensor

__all__ = ["ODEProblem", "prepare_ode", "integrate", "integrate_ode", "DEFAULT_MAX_STEPS"]

DEFAULT_MAX_STEPS = 10_000


@dataclass(frozen=True)
class ODEProblem:
    """A validated ODE solve: the method, times, tolerances, loop options and flat state."""

    tab: Any  # a ButcherTableau (explicit RK) or an ImplicitMethod
    t: Tensor
    direction: float
    rtol: float
    atol: float
    per_sample: bool
    dense: bool
    max_steps: int
    controller: StepSizeController
    step_size: Optional[float]
    first_step: Optional[float]
    poll_every: int
    error_norm: Optional[Callable[[Tensor], Tensor]]
    flat: FlatState
    y: Tensor
    hooks: Optional[StepHooks] = None

    @property
    def step_control(self) -> StepSizeController:
        """The controller that drives the steps: ``step_size`` is a `ConstantStepSize`, a
        fixed-step method without one steps on the output times (`StepTo`)."""
        if self.step_size is not None:
            return ConstantStepSize(self.step_size)
        if isinstance(self.controller, PIDController) and not self.tab.adaptive:
            return StepTo(self.t)
        return self.controller

    @property
    def adaptive(self) -> bool:
        return isinstance(self.step_control, PIDController)

    @property
    def trivial(self) -> bool:
        """Nothing to integrate: an empty state or a single output time."""
        return self.y.numel() == 0 or self.t.shape[0] == 1


def prepare_ode(y0: State, t: Any, *, method: Any, rtol: Any, atol: Any, per_sample: bool,
                dense: bool, max_steps: Any, controller: Optional[StepSizeController],
                step_size: Any, first_step: Any, poll_every: Any,
                error_norm: Optional[Callable[[Tensor], Tensor]],
                callback: Any = None) -> ODEProblem:
    """Validate the arguments of an ODE solve (messages name the argument)."""
    tab = resolve_method(method)
    check_state(y0, per_sample)
    parts = tuple(y0) if isinstance(y0, (tuple, list)) else (y0,)
    dtype, device = parts[0].dtype, parts[0].device
    t, direction = _output_times(t, per_sample, parts[0], step_size, controller)
    controller = controller if controller is not None else PIDController()
    if isinstance(controller, PIDController) and controller.rtol is not None:
        rtol, atol = controller.rtol, controller.atol
    if isinstance(controller, PIDController) and controller.norm is not None:
        error_norm = controller.norm
    rtol, atol = check_tolerances(rtol, atol)
    if step_size is not None:
        step_size = check_positive("step_size", step_size)
    if first_step is not None:
        first_step = check_positive("first_step", first_step)
    max_steps = check_int("max_steps", max_steps)
    poll_every = (1 if device.type == "cpu" else 16) if poll_every is None else \
        check_int("poll_every", poll_every)
    if not isinstance(controller, (PIDController, ConstantStepSize, StepTo)):
        raise InvalidInputError(
            f"`controller` must be a PIDController; got {describe(controller)} (or a "
            "ConstantStepSize or StepTo for a fixed grid)")
    adaptive = tab.adaptive and step_size is None and isinstance(controller, PIDController)
    if adaptive:
        check_adaptive_dtype(dtype, f"adaptive method {tab.name!r}")
    if not tab.adaptive and step_size is None and first_step is not None:
        raise InvalidInputError("`first_step` applies to adaptive methods only; "
                                f"method {tab.name!r} is fixed-step (use `step_size`)")
    if tab.dense is None and (dense or (adaptive and t.shape[0] > 2)):
        raise InvalidInputError(no_dense_message(tab))
    if error_norm is not None and not callable(error_norm):
        raise InvalidInputError(f"`error_norm` must be callable; got {describe(error_norm)}")
    flat = FlatState(y0, per_sample)
    hooks = as_step_hooks(callback)
    if hooks is not None and flat.is_tuple:
        hooks.unflatten = lambda v: flat.unflatten(v, flat.lead)
    return ODEProblem(tab, t, direction, rtol, atol, per_sample, dense, max_steps, controller,
                      step_size, first_step, poll_every, error_norm, flat, flat.flatten(y0),
                      hooks)


def _output_times(t: Any, per_sample: bool, y0: Tensor, step_size: Any,
                  controller: Any) -> Tuple[Tensor, float]:
    """The output times and direction: 1-D, or ``(T, B)`` per-row times with
    ``per_sample=True`` (each row its own grid: the adaptive loop, or steps on the output
    times; a `ConstantStepSize` or another `StepTo` grid has no per-row meaning)."""
    try:
        rows = per_sample and torch.as_tensor(t).dim() == 2
    except (TypeError, ValueError, RuntimeError):
        rows = False
    if not rows:
        t, _, direction = check_times(t, y0.dtype, y0.device)
        return t, direction
    t, direction = check_row_times(t, y0.shape[0], y0.dtype, y0.device)
    if step_size is not None or isinstance(controller, (ConstantStepSize, StepTo)):
        raise InvalidInputError(
            "per-row output times `t` of shape (T, B) step adaptively or on the output times "
            f"themselves; got step_size={step_size!r}, controller={describe(controller)}")
    return t, direction


def integrate(func: Callable, p: ODEProblem, checkpoint: bool = False,
              compact: bool = False) -> ODESolution:
    """Run a prepared (non-trivial) problem; ``checkpoint`` wraps each RK step in
    gradient checkpointing, ``compact`` retires finished rows (per sample)."""
    y, flat, t = p.y, p.flat, p.t
    B = y.shape[0] if p.per_sample else 1
    if p.adaptive and p.error_norm is not None:
        check_error_norm(p.error_norm, y, (B,) if p.per_sample else ())
    fn = CountedFunc(func, flat)
    solver = _build_solver(p, y, checkpoint and torch.is_grad_enabled(), compact)
    if p.hooks is not None:
        p.hooks.bind(solver, fn)
    k0 = solver.init(fn, t[0].expand(B) if p.per_sample else t[0], y)
    if not p.adaptive:
        ys, stats, records = _integrate_grid(fn, solver, p, y, k0, B)
        interp = DenseInterpolant.from_fixed(solver.ct, records, p.direction) if p.dense else None
    else:
        norm = p.error_norm if p.error_norm is not None else \
            ErrorNorm(p.per_sample, flat.sizes if flat.is_tuple else None)
        try:
            ys, stats, records = solve_adaptive(fn, solver, y, k0, t, p.direction, p.rtol,
                                                p.atol, norm, p.controller, p.per_sample, B,
                                                p.dense, p.max_steps, p.first_step,
                                                p.poll_every, compact, hooks=p.hooks)
        except (MaxStepsExceededError, StepSizeUnderflowError) as err:
            if not isinstance(solver, ImplicitSolver):
                _explain_stiffness(fn, err, t, y, p.per_sample)
            raise
        interp = (DenseInterpolant.from_adaptive(solver.ct, records, p.direction, p.per_sample)
                  if p.dense else None)
    if interp is not None:
        interp.unflatten = lambda v: flat.unflatten(v, (v.shape[0], *flat.lead))
    if isinstance(solver, ImplicitSolver):
        stats.update(solver.counters((B,) if p.per_sample else (), y.device))
    return ODESolution(flat.unflatten(ys, (t.shape[0], *flat.lead)), t, stats, interp)


def _explain_stiffness(fn: CountedFunc, err: Exception, t: Tensor, y: Tensor,
                       per_sample: bool) -> None:
    """Add the stiffness diagnosis to an explicit solve's failure message (in place)."""
    why = diagnose(fn, err, t, y, per_sample)
    if why is not None:
        err.args = (f"{err.args[0]}. {why[0].upper()}{why[1:]}",) + err.args[1:]


def _build_solver(p: ODEProblem, y: Tensor, checkpoint: bool, compact: bool) -> Any:
    """The problem's `Solver`: a `RungeKutta` on the compiled tableau, or the implicit
    method's solver (its Newton norm uses the solve's rtol/atol)."""
    if not isinstance(p.tab, ImplicitMethod):
        return RungeKutta(compile_tableau(p.tab, y.dtype, y.device), checkpoint=checkpoint,
                          with_error=p.adaptive)
    if compact:
        raise InvalidInputError(f"`compact=True` is not offered with implicit method "
                                f"{p.tab.name!r} (its Jacobians are kept per row position)")
    ctrl = p.step_control
    dt_min = ctrl.dt_min if isinstance(ctrl, PIDController) else 0.0
    return p.tab.build(Settings(p.rtol, p.atol, p.per_sample, p.adaptive, dt_min, checkpoint),
                       y.dtype, y.device)


def _integrate_grid(fn: CountedFunc, solver: Any, p: ODEProblem, y: Tensor, k0: Tensor,
                    B: int) -> Tuple[Tensor, Dict[str, Any], Optional[list]]:
    """The fixed-grid solve of the step controller's grid: ``(ys, stats, dense records)``."""
    grid = p.step_control.grid(p.t, p.direction)
    writer = DenseGridWriter(solver, fn, y, p.t, grid, p.direction, p.dense)
    times = [g.expand(B) for g in grid.unbind(0)] if p.per_sample else grid.unbind(0)
    hs = (grid[1:] - grid[:-1]).unbind(0)
    row_shape = (B,) if p.per_sample else ()

    def nonfinite(n: int) -> None:
        raise NonFiniteError(
            f"the state became non-finite at t={float(grid[n + 1]):.6g} (step {n + 1} of "
            f"{len(hs)}); reduce `step_size` or check f", t=grid[n + 1], ys=writer.partial(),
            stats=fixed_stats(fn.calls, n + 1, row_shape, y.device))

    run_grid(solver, fn, y, k0, times, hs, writer, p.poll_every, on_nonfinite=nonfinite,
             hooks=p.hooks)
    return writer.result(), fixed_stats(fn.calls, len(hs), row_shape, y.device), writer.records


def integrate_ode(func: Callable, y0: State, t: Any, *, method: Any = "dopri5",
                  rtol: Any = 1e-7, atol: Any = 1e-9, per_sample: bool = False,
                  dense: bool = False, max_steps: Any = DEFAULT_MAX_STEPS,
                  controller: Optional[StepSizeController] = None, step_size: Any = None,
                  first_step: Any = None, poll_every: Any = None,
                  error_norm: Optional[Callable[[Tensor], Tensor]] = None,
                  callback: Any = None) -> ODESolution:
    """Validate and integrate (autograd through the steps)."""
    p = prepare_ode(y0, t, method=method, rtol=rtol, atol=atol, per_sample=per_sample,
                    dense=dense, max_steps=max_steps, controller=controller,
                    step_size=step_size, first_step=first_step, poll_every=poll_every,
                    error_norm=error_norm, callback=callback)
    if p.trivial:
        return constant_solution(p.y, p.t, p.flat, p.per_sample)
    return integrate(func, p)
