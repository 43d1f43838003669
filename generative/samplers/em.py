"""Euler-Maruyama on the reverse-time SDE ``dx = [f - g^2 score] dt + g dw`` from T down to eps,
solved by `solvers.solve_sde` with a decreasing time grid (negative steps, |dt| variance). With a
per-step projection the same steps run in the shared predictor loop (`em_step`), since
`solvers.solve_sde` has no per-step hook."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from solvers.errors import NonFiniteError
from solvers import solve_sde

from ._common import (FinitePoll, Project, Result, check_sde, check_steps, initial_state, noise,
                      run_predictor, time_grid, tweedie_denoise)

__all__ = ["em_sampler", "em_step"]


def em_step(sde, score_fn, x, t, dt, generator=None):
    """One reverse EM step from t to t - dt: returns ``(x, x_mean)``."""
    x_mean = x - sde.reverse(score_fn).f(t, x) * dt
    return x_mean + sde.g(t, x) * dt ** 0.5 * noise(x, generator), x_mean


def em_sampler(sde, score_fn, shape: Optional[Sequence[int]] = None, *, n_steps: int = 500,
               eps: Optional[float] = None, denoise: bool = False,
               x_init: Optional[torch.Tensor] = None,
               generator: Optional[torch.Generator] = None, dtype=None, device=None,
               project: Optional[Project] = None,
               poll_every: Optional[int] = None) -> Result:
    """``n_steps`` Euler-Maruyama steps of the reverse SDE.

    ``nfe`` is the solver's drift count: ``n_steps + 1`` (solvers checks f's output shape once
    before stepping), +1 with ``denoise``. With ``project(x, t)`` (applied after every step)
    the steps run in a Python loop of `em_step` and ``nfe = n_steps (+1 if denoise)``.
    A non-finite state raises `NonFiniteError` (checked every ``poll_every`` steps)."""
    check_sde(sde, score_fn)
    if project is not None:
        return run_predictor(em_step, sde, score_fn, shape, n_steps=n_steps, eps=eps,
                             denoise=denoise, x_init=x_init, generator=generator, dtype=dtype,
                             device=device, project=project, discrete=False, name="em",
                             poll_every=poll_every)
    n_steps = check_steps("n_steps", n_steps)
    x = initial_state(sde, shape, x_init, generator, dtype, device)
    ts = time_grid(sde, n_steps, x, eps)
    poll = FinitePoll("em", ts, x, poll_every)
    seed = int(torch.randint(0, 2 ** 62, (), generator=generator, device=(
        generator.device if generator is not None else "cpu")))
    h = (float(ts[0]) - float(ts[-1])) / n_steps     # in double: exactly n_steps steps
    try:
        sol = solve_sde(sde.reverse(score_fn), x, ts[[0, -1]], method="euler", dt=h,
                        options={"seed": seed, "poll_every": poll.every})
    except NonFiniteError as err:
        raise poll.wrap(err) from err
    x, nfe = sol.ys[-1], int(sol.stats["nfe_f"])
    if denoise:
        x, nfe = poll.final(tweedie_denoise(sde, score_fn, x, ts[-1]), ts[-1], nfe + 1), nfe + 1
    return x, nfe
