"""Probability-flow ODE sampler: integrate ``dx/dt = f x - g^2 score / 2`` from T down to eps
with any `solvers` Runge-Kutta method, adaptive (rtol/atol, optionally per-sample step sizes)
or with ``n_steps`` fixed steps. The NFE is read from the solver's statistics."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from solvers import FIXED_METHODS, TABLEAUS, solve_ode
from solvers.errors import InvalidInputError, NonFiniteError

from ._common import (FinitePoll, Project, Result, check_sde, check_steps, initial_state,
                      time_grid, tweedie_denoise)

__all__ = ["ode_sampler", "ode_stages"]


def ode_stages(method: str) -> int:
    """Function evaluations per step of a `solvers` method (for NFE budgets)."""
    if method not in TABLEAUS:
        raise InvalidInputError(f"`method` must be one of {sorted(TABLEAUS)}; got {method!r}")
    return len(TABLEAUS[method].b)


def ode_sampler(sde, score_fn, shape: Optional[Sequence[int]] = None, *, method: str = "dopri5",
                n_steps: Optional[int] = None, rtol: float = 1e-5, atol: float = 1e-5,
                per_sample: bool = False, eps: Optional[float] = None, denoise: bool = False,
                x_init: Optional[torch.Tensor] = None,
                generator: Optional[torch.Generator] = None, dtype=None, device=None,
                project: Optional[Project] = None, poll_every: Optional[int] = None,
                **solver_options) -> Result:
    """Samples from the probability-flow ODE.

    ``n_steps`` gives fixed steps (required for fixed-step methods such as ``euler`` / ``rk4``;
    optional for adaptive ones, which otherwise use ``rtol``/``atol``). ``per_sample`` gives
    every row its own adaptive step size; nfe is then a ``(B,)`` tensor. Extra keyword
    arguments go to `solvers.solve_ode` (``max_steps``, ``controller``, ...); ``poll_every``
    is its poll interval (a non-finite state raises `NonFiniteError`). A per-step
    ``project`` is not supported: the solve runs inside `solvers.solve_ode`, which has no
    per-step hook (a jump of the state between adaptive steps would also void its reused FSAL
    stage and error estimates).
    """
    check_sde(sde, score_fn)
    if project is not None:
        raise InvalidInputError(
            "the `ode` sampler does not support `project` (a per-step projection, e.g. "
            "inpainting by replacement): it integrates inside solvers.solve_ode, which has no "
            "per-step hook. Use a step-based sampler (em, reverse_diffusion, ancestral, pc, "
            "ddim, dpmpp_2m, dpmpp_2s, edm_heun) or a conditional score")
    ode_stages(method)
    if n_steps is None and method in FIXED_METHODS:
        raise InvalidInputError(f"`n_steps` is required with the fixed-step method {method!r}; "
                                f"give n_steps (or an nfe budget) or an adaptive method")
    x = initial_state(sde, shape, x_init, generator, dtype, device)
    ts = time_grid(sde, 1, x, eps)
    poll = FinitePoll("ode", ts, x, poll_every)
    if n_steps is not None:
        n_steps = check_steps("n_steps", n_steps)
        solver_options["step_size"] = float(ts[0] - ts[1]) / n_steps
    try:
        sol = solve_ode(sde.probability_flow(score_fn), x, ts, method=method, rtol=rtol,
                        atol=atol, per_sample=per_sample, poll_every=poll.every, **solver_options)
    except NonFiniteError as err:
        raise poll.wrap(err) from err
    x = sol.ys[-1]
    nfe = sol.stats["nfe"]
    nfe = nfe.to(torch.long) if per_sample else int(nfe)
    if denoise:
        return poll.final(tweedie_denoise(sde, score_fn, x, ts[-1]), ts[-1], nfe + 1), nfe + 1
    return x, nfe
