"""Probability-flow ODE sampler: integrate ``dx/dt = f x - g^2 score / 2`` from T down to t_min
with any `solvers` Runge-Kutta method, adaptive (rtol/atol, optionally per-sample step sizes)
or with fixed steps. NFE is read from the solver's statistics.

With a callback the solve runs piecewise between the grid points (one solve per fixed step;
for an adaptive solve the grid is ``[T, t_min]``), and the callback may replace the state
between pieces: each piece restarts the method (its FSAL stage and step-size controller).
"""
from __future__ import annotations

from typing import Any, Dict

import torch

from dynamics.checks import check_choice
from solvers import FIXED_METHODS, TABLEAUS, solve_ode
from solvers.errors import NonFiniteError

from ..errors import InputError
from .base import Hook, Model, StepCost
from .grid import Grid
from .noise import NoiseSampler

Tensor = torch.Tensor

__all__ = ["ode", "cost"]


def cost(options: Dict[str, Any]) -> StepCost:
    """A step of ``method`` costs its stages, less the first for FSAL methods (it is the last
    stage of the step before), which spend it once before the first step."""
    tableau = TABLEAUS[check_choice("method", options.get("method", "dopri5"), sorted(TABLEAUS))]
    return StepCost(len(tableau.b) - tableau.fsal, setup=int(tableau.fsal))


def ode(model: Model, x: Tensor, grid: Grid, callback: Hook,
        noise: NoiseSampler, *, fixed_steps: bool = False,
        method: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5,
        per_sample: bool = False, **solver_options: Any) -> Tensor:
    """Solve the probability flow over the grid: ``fixed_steps`` takes one step of ``method``
    per grid interval, else an adaptive solve (``rtol``/``atol``; ``per_sample`` gives every row
    its own step size and a ``(B,)`` NFE). Extra keyword arguments go to `solvers.solve_ode`
    (``max_steps``, ``controller``, ...)."""
    cost({"method": method})
    if not fixed_steps and method in FIXED_METHODS:
        raise InputError(f"`n_steps` is required with the fixed-step method {method!r}; "
                         f"give n_steps (or an nfe budget) or an adaptive method")
    ts = grid.ts
    n = len(ts) - 1
    if fixed_steps and callback.passive:
        solver_options["step_size"] = float(ts[0] - ts[-1]) / n
        ts, n = ts[[0, -1]], 1
    nfe = 0
    for i in range(n):
        if fixed_steps and not callback.passive:
            solver_options["step_size"] = float(ts[i] - ts[i + 1])
        try:
            sol = solve_ode(model.flow, x, ts[i:i + 2], method=method, rtol=rtol, atol=atol,
                            per_sample=per_sample, poll_every=callback.poll.every,
                            **solver_options)
        except NonFiniteError as err:
            raise callback.poll.wrap(err) from err
        nfe = nfe + (sol.stats["nfe"].to(torch.long) if per_sample else int(sol.stats["nfe"]))
        model.nfe = nfe
        x = callback(i + 1, ts[i + 1], sol.ys[-1]) if not callback.passive else sol.ys[-1]
    return x
