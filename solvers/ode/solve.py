"""`solve_ode`: the rich ODE entry point (statistics, dense output, gradient modes)."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch

from ..adjoint.backsolve import solve_backsolve
from ..adjoint.modes import (BacksolveAdjoint, CheckpointAdjoint, GradientMode,
                             as_gradient_mode)
from ..compiled.ode import CompileOptions, check_compile, integrate_or_compile
from ..engine.controller import StepSizeController
from ..engine.flat import State
from ..engine.integrate import DEFAULT_MAX_STEPS, prepare_ode
from ..engine.solution import ODESolution, constant_solution
from ..errors import InvalidInputError
from ..validation import check_bool

Tensor = torch.Tensor

__all__ = ["solve_ode"]


def solve_ode(func: Callable, y0: State, t: Any, *, method: str = "dopri5",
              rtol: float = 1e-7, atol: float = 1e-9, per_sample: bool = False,
              dense: bool = False, max_steps: int = DEFAULT_MAX_STEPS,
              controller: Optional[StepSizeController] = None,
              step_size: Optional[float] = None,
              first_step: Optional[float] = None, poll_every: Optional[int] = None,
              error_norm: Optional[Callable[[Tensor], Tensor]] = None,
              gradient: Union[str, GradientMode] = "direct",
              adjoint_params: Optional[Sequence[Tensor]] = None,
              adjoint_options: Optional[Dict[str, Any]] = None,
              compact: bool = False, callback: Any = None, compile: Any = False) -> ODESolution:
    """Solve dy/dt = func(t, y) and return the states at times ``t`` with statistics.

    Args:
        func: ``f(t, y)``, a callable or ``nn.Module``. ``t`` is a 0-dim tensor of y's dtype,
            or a ``(B,)`` tensor (each row's own time) when ``per_sample=True``.
        y0: initial state ``(B, *event)`` (any shape in joint mode) or a tuple of tensors.
        t: 1-D strictly monotone output times (decreasing integrates backwards); with
            ``per_sample=True`` also ``(T, B)``, each row its own times.
        method: a name of `TABLEAUS` or `IMPLICIT_METHODS`, or a `ButcherTableau`.
        rtol, atol: tolerances of adaptive methods; error ratio
            ``RMS(err / (atol + rtol * max(|y0|, |y1|)))``.
        per_sample: every batch row gets its own step size, error norm and accept/reject
            (f is still called on the full batch; finished rows stop advancing).
        dense: keep every step's continuous extension so `ODESolution.evaluate` works.
        max_steps: maximum attempted steps (per row in per-sample mode).
        controller: `PIDController` (default), or `ConstantStepSize` / `StepTo` for a fixed
            grid (any method); fixed-step methods otherwise step on the output times.
        step_size: shorthand for ``controller=ConstantStepSize(step_size)``.
        first_step: initial step of adaptive methods (default: Hairer's algorithm).
        poll_every: steps between host syncs (default 1 on CPU, 16 on accelerators).
        error_norm: norm of the scaled error replacing the default RMS norm; maps the
            flattened state (``(N,)``, or ``(B, N)`` per sample) to a 0-dim or ``(B,)`` tensor.
        gradient: a gradient mode (`DirectAdjoint`, `CheckpointAdjoint`, `BacksolveAdjoint`;
            see `solvers.adjoint.modes`) or its name ``'direct'``, ``'checkpoint'``,
            ``'backsolve'``; ``adjoint_params`` and ``adjoint_options`` as in `odeint_adjoint`.
        compact: with ``per_sample=True`` and an adaptive method, rows that have finished
            leave the batch at each poll, so f is called on the active rows only. Only for
            f whose rows are independent (no per-row parameters indexed by position).
        callback: forward step hooks (`engine.callbacks`; backward: BacksolveAdjoint's).
        compile: True or a `CompileOptions`: compiled steps (`solvers.compiled`, docs/compile.md).
    """
    mode, backsolve, compiled = _check_gradient_args(gradient, per_sample, dense, compact,
                                                     adjoint_params, adjoint_options, compile)
    p = prepare_ode(y0, t, method=method, rtol=rtol, atol=atol, per_sample=per_sample,
                    dense=dense, max_steps=max_steps, controller=controller,
                    step_size=step_size, first_step=first_step, poll_every=poll_every,
                    error_norm=error_norm, callback=callback)
    if p.y.numel() == 0 or (p.t.shape[0] == 1 and not backsolve):  # nothing to integrate
        return constant_solution(p.y, p.t, p.flat, per_sample)
    if backsolve:
        return solve_backsolve(func, y0, p.t, mode=mode, method=method, rtol=p.rtol,
                               atol=p.atol, per_sample=per_sample, dense=dense,
                               max_steps=p.max_steps, controller=p.controller,
                               step_size=p.step_size, first_step=p.first_step,
                               poll_every=p.poll_every, error_norm=error_norm,
                               adjoint_params=adjoint_params, adjoint_options=adjoint_options,
                               callback=callback)
    return integrate_or_compile(func, p, compiled, isinstance(mode, CheckpointAdjoint), compact)


def _check_gradient_args(gradient: Any, per_sample: bool, dense: bool, compact: bool,
                         adjoint_params: Optional[Sequence[Tensor]],
                         adjoint_options: Optional[Dict[str, Any]], compile: Any = False
                         ) -> Tuple[GradientMode, bool, Optional[CompileOptions]]:
    """The gradient mode, whether it is the backsolve adjoint, and the compile options,
    checked with the options that depend on the mode."""
    for name, flag in (("per_sample", per_sample), ("dense", dense), ("compact", compact)):
        check_bool(name, flag)
    mode = as_gradient_mode(gradient)
    backsolve = isinstance(mode, BacksolveAdjoint)
    if compact and (not per_sample or dense or backsolve):
        raise InvalidInputError(
            "`compact=True` needs per_sample=True, dense=False and gradient 'direct' or "
            f"'checkpoint'; got per_sample={per_sample}, dense={dense}, gradient={gradient!r}")
    if not backsolve and (adjoint_params is not None or adjoint_options is not None):
        raise InvalidInputError("`adjoint_params` and `adjoint_options` apply to "
                                f"gradient='backsolve' only; got gradient={gradient!r}")
    return mode, backsolve, check_compile(compile, mode, compact)
