"""Ancestral sampling: DDPM's posterior step for VP SDEs (Ho et al. 2020) and SMLD's for VE
SDEs (Song et al. 2021, Appendix F), on the grid from T down to eps."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from dynamics import VESDE, VPSDE, CosineVPSDE, call_score
from dynamics.broadcast import expand_coef
from solvers.errors import InvalidInputError

from ._common import Project, Result, check_sde, noise, run_predictor

__all__ = ["ancestral_sampler", "ancestral_step", "check_ancestral", "ANCESTRAL_SDES"]

ANCESTRAL_SDES = (VPSDE, CosineVPSDE, VESDE)


def check_ancestral(sde) -> None:
    if not isinstance(sde, ANCESTRAL_SDES):
        raise InvalidInputError(
            f"the `ancestral` sampler needs a VP (VPSDE, CosineVPSDE: DDPM) or VE (VESDE: SMLD) "
            f"SDE; got {type(sde).__name__}. Use 'reverse_diffusion', 'em', 'pc' or 'ode'")


def ancestral_step(sde, score_fn, x, t, dt, generator=None):
    """One ancestral step from t to t - dt: returns ``(x, x_mean)``."""
    check_ancestral(sde)
    score = call_score(score_fn, x, t)
    if isinstance(sde, VESDE):        # SMLD: sigma_i -> sigma_{i-1}
        var = expand_coef(sde.sigma(t) ** 2, x)
        var_prev = expand_coef(sde.sigma(t - dt) ** 2, x)
        x_mean = x + (var - var_prev) * score
        std = torch.sqrt(var_prev * (var - var_prev) / var)
    else:                              # DDPM, VP: beta_n = g_n^2 from discretize
        _, g_n = sde.discretize(x, t, dt)
        beta = g_n ** 2
        x_mean = (x + beta * score) / torch.sqrt(1.0 - beta)
        std = g_n
    return x_mean + std * noise(x, generator), x_mean


def ancestral_sampler(sde, score_fn, shape: Optional[Sequence[int]] = None, *,
                      n_steps: int = 500, eps: Optional[float] = None, denoise: bool = False,
                      x_init: Optional[torch.Tensor] = None,
                      generator: Optional[torch.Generator] = None, dtype=None,
                      device=None, project: Optional[Project] = None,
                      poll_every: Optional[int] = None) -> Result:
    """``n_steps`` ancestral steps from T to eps; ``nfe = n_steps (+1 if denoise)``.
    ``project(x, t)`` is applied after every step; a non-finite state raises `NonFiniteError`
    (checked every ``poll_every`` steps, see `_common`)."""
    check_sde(sde, score_fn)
    check_ancestral(sde)
    return run_predictor(ancestral_step, sde, score_fn, shape, n_steps=n_steps, eps=eps,
                         denoise=denoise, x_init=x_init, generator=generator, dtype=dtype,
                         device=device, project=project, name="ancestral",
                         poll_every=poll_every)
