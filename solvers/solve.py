"""`solve`: the general entry point, taking the strategy objects.

``solve(terms, solver, y0, saveat, controller=..., adjoint=...)`` integrates an `ODETerm`
or an `SDETerm` with a solver (a tableau name or `ButcherTableau` for ODEs, an SDE method
name), a step-size controller (`PIDController`, `ConstantStepSize`, `StepTo`), a gradient
mode (`DirectAdjoint`, `CheckpointAdjoint`, `BacksolveAdjoint`) and a `SaveAt`. `solve_ode`,
`solve_sde`, `odeint` and `sdeint` are the same engine behind keyword arguments.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from .adjoint.modes import DirectAdjoint, GradientMode
from .engine.controller import ConstantStepSize, PIDController, StepSizeController
from .engine.flat import State
from .engine.integrate import DEFAULT_MAX_STEPS
from .engine.solution import Solution
from .errors import InvalidInputError, SolverError, describe
from .ode.solve import solve_ode
from .saveat import SaveAt
from .sde.solve import solve_sde
from .terms import ODETerm, SDETerm
from .validation import check_bool

Tensor = torch.Tensor

__all__ = ["solve"]


def solve(terms: Any, solver: Any, y0: State, saveat: SaveAt, *,
          controller: Optional[StepSizeController] = None,
          adjoint: Optional[GradientMode] = None, first_step: Optional[float] = None,
          per_sample: bool = False, max_steps: Optional[int] = None,
          poll_every: Optional[int] = None, throw: bool = True) -> Solution:
    """Integrate ``terms`` from ``saveat.ts[0]`` to ``saveat.ts[-1]`` and return a `Solution`.

    Args:
        terms: `ODETerm` or `SDETerm`.
        solver: ODEs: a name of `TABLEAUS` or a `ButcherTableau` (None: ``dopri5``); SDEs: a
            name of `SDE_METHODS` (None: torchsde's default for the SDE).
        y0: the initial state (a tensor, or a tuple of tensors for ODEs).
        saveat: a `SaveAt` (output times, dense output, step ends).
        controller: `PIDController` (adaptive; its ``rtol``/``atol`` default to 1e-7/1e-9
            for ODEs, 1e-5/1e-4 for SDEs), `ConstantStepSize`, or `StepTo` (ODEs). Default:
            a `PIDController` for ODEs, ``ConstantStepSize(1e-3)`` for SDEs.
        adjoint: gradient mode (default `DirectAdjoint`).
        first_step: initial step of an adaptive solve (ODE default: Hairer's algorithm;
            SDE default 1e-3).
        per_sample: per-row step control (ODEs).
        max_steps: maximum attempted steps.
        poll_every: steps between host syncs.
        throw: False returns the partial solution of a failed solve (NaN where not reached)
            with ``result`` naming the error instead of raising it.
    """
    if not isinstance(saveat, SaveAt):
        raise InvalidInputError(f"`saveat` must be a SaveAt(ts=...); got {describe(saveat)}")
    check_bool("throw", throw)
    adjoint = DirectAdjoint() if adjoint is None else adjoint
    try:
        if isinstance(terms, ODETerm):
            return _solve_ode(terms, solver, y0, saveat, controller, adjoint, first_step,
                              per_sample, max_steps, poll_every)
        if isinstance(terms, SDETerm):
            return _solve_sde(terms, solver, y0, saveat, controller, adjoint, first_step,
                              per_sample, max_steps, poll_every)
    except SolverError as err:
        if throw or err.ys is None:
            raise
        return Solution(err.ys, torch.as_tensor(saveat.ts), err.stats, result=type(err).__name__)
    raise InvalidInputError(f"`terms` must be an ODETerm or an SDETerm; got {describe(terms)}")


def _solve_ode(terms: ODETerm, solver: Any, y0: State, saveat: SaveAt, controller: Any,
               adjoint: GradientMode, first_step: Optional[float], per_sample: bool,
               max_steps: Optional[int], poll_every: Optional[int]) -> Solution:
    if saveat.steps and per_sample:
        raise InvalidInputError("`SaveAt(steps=True)` needs a joint-mode solve (rows of a "
                                "per-sample solve take different steps); got per_sample=True")
    sol = solve_ode(terms.func, y0, saveat.ts, method="dopri5" if solver is None else solver,
                    per_sample=per_sample, dense=saveat.dense or saveat.steps,
                    max_steps=DEFAULT_MAX_STEPS if max_steps is None else max_steps,
                    controller=controller, first_step=first_step, poll_every=poll_every,
                    gradient=adjoint)
    if saveat.steps:
        d = sol.dense  # joint mode: the accepted steps, in order
        sol.step_ts = torch.cat([d.t0s[1:], (d.t0s[-1] + d.hs[-1]).reshape(1)])
        sol.step_ys = d.evaluate(sol.step_ts)
        if not saveat.dense:
            sol.dense = None
    return sol


def _solve_sde(terms: SDETerm, solver: Any, y0: Tensor, saveat: SaveAt, controller: Any,
               adjoint: GradientMode, first_step: Optional[float], per_sample: bool,
               max_steps: Optional[int], poll_every: Optional[int]) -> Solution:
    if per_sample or saveat.dense:
        raise InvalidInputError("SDE solves have no per-sample step control or dense output; "
                                f"got per_sample={per_sample}, SaveAt(dense={saveat.dense})")
    controller = ConstantStepSize(1e-3) if controller is None else controller
    options = {k: v for k, v in (("max_steps", max_steps), ("poll_every", poll_every))
               if v is not None}
    if isinstance(controller, ConstantStepSize):
        kw = dict(dt=controller.dt)
    elif isinstance(controller, PIDController):
        options["controller"] = controller
        kw = dict(adaptive=True, dt=1e-3 if first_step is None else first_step,
                  dt_min=controller.dt_min or 1e-5)  # sdeint's dt_min unless given
        if controller.rtol is not None:
            kw.update(rtol=controller.rtol, atol=controller.atol)
    else:
        raise InvalidInputError(f"`controller` for SDEs must be a ConstantStepSize or a "
                                f"PIDController; got {describe(controller)}")
    if saveat.steps:
        options["save_steps"] = True
    return solve_sde(terms.sde, y0, saveat.ts, bm=terms.brownian, method=solver,
                     names=terms.names, options=options, gradient=adjoint, **kw)
