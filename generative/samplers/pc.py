"""Predictor-corrector sampling (Song et al. 2021, Alg. 2/3): at every time on the grid from T
down to eps, ``n_corrector`` Langevin corrector steps with the signal-to-noise step rule
(`dynamics.langevin_corrector`), then one predictor step (``reverse_diffusion``, ``ancestral``,
``em`` or ``none``)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from dynamics import VPSDE, CosineVPSDE, langevin_corrector
from solvers.errors import InvalidInputError

from ._common import (FinitePoll, Project, Result, apply_project, check_discretization,
                      check_project, check_sde, check_steps, initial_state, time_grid,
                      tweedie_denoise)
from .ancestral import ancestral_step, check_ancestral
from .em import em_step
from .reverse_diffusion import reverse_diffusion_step

__all__ = ["pc_sampler", "PREDICTORS"]

PREDICTORS = {"reverse_diffusion": reverse_diffusion_step, "ancestral": ancestral_step,
              "em": em_step, "none": None}


def pc_sampler(sde, score_fn, shape: Optional[Sequence[int]] = None, *, n_steps: int = 500,
               predictor: str = "reverse_diffusion", n_corrector: int = 1, snr: float = 0.16,
               eps: Optional[float] = None, denoise: bool = False,
               x_init: Optional[torch.Tensor] = None,
               generator: Optional[torch.Generator] = None, dtype=None, device=None,
               project: Optional[Project] = None,
               poll_every: Optional[int] = None) -> Result:
    """PC sampler; ``nfe = n_steps * (n_corrector + [predictor != 'none']) (+1 if denoise)``.

    The corrector at time t uses ``alpha = 1 - beta_n`` for VP SDEs (as the reference code)
    and 1 otherwise. ``project(x, t)`` is applied after every corrector-predictor step. A
    non-finite state raises `NonFiniteError` (checked every ``poll_every`` steps).
    """
    check_sde(sde, score_fn)
    check_project(project)
    if predictor not in PREDICTORS:
        raise InvalidInputError(f"`predictor` must be one of {sorted(PREDICTORS)}; "
                                f"got {predictor!r}")
    if predictor == "ancestral":
        check_ancestral(sde)
    n_steps = check_steps("n_steps", n_steps)
    n_corrector = check_steps("n_corrector", n_corrector, minimum=0)
    step = PREDICTORS[predictor]
    if step is None and n_corrector == 0:
        raise InvalidInputError("`pc` with predictor='none' needs `n_corrector` >= 1")
    x = initial_state(sde, shape, x_init, generator, dtype, device)
    ts = time_grid(sde, n_steps, x, eps)
    check_discretization(sde, x, ts)
    poll = FinitePoll("pc", ts, x, poll_every)
    per = n_corrector + (step is not None)
    vp = isinstance(sde, (VPSDE, CosineVPSDE))
    x = apply_project(project, x, ts[0])
    for i in range(n_steps):
        t, dt = ts[i], ts[i] - ts[i + 1]
        alpha = 1.0 - sde.discretize(x[:1], t, dt)[1].flatten()[0] ** 2 if vp else 1.0
        x = langevin_corrector(score_fn, x, t, snr, n_corrector, alpha=alpha,
                               generator=generator)
        if step is not None:
            x, _ = step(sde, score_fn, x, t, dt, generator)
        x = apply_project(project, x, ts[i + 1])
        poll(i, x, per * (i + 1))
    nfe = n_steps * per
    if denoise:
        return poll.final(tweedie_denoise(sde, score_fn, x, ts[-1]), ts[-1], nfe + 1), nfe + 1
    return x, nfe
