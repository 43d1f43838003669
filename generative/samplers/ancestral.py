"""Ancestral sampling: DDPM's posterior step for VP SDEs (Ho et al. 2020) and SMLD's for VE
SDEs (Song et al. 2021, Appendix F), on the grid from T down to t_min."""
from __future__ import annotations

from typing import Tuple

import torch

from dynamics import VESDE, VPSDE, CosineVPSDE, LinearSDE
from dynamics.broadcast import expand_coef

from ..errors import InputError
from .base import Hook, Model, run_predictor
from .noise import NoiseSampler
from .grid import Grid
from .reverse_diffusion import check_discretization

Tensor = torch.Tensor

__all__ = ["ancestral", "ancestral_step", "check_ancestral", "ANCESTRAL_SDES"]

ANCESTRAL_SDES = (VPSDE, CosineVPSDE, VESDE)


def check_ancestral(sde: LinearSDE) -> None:
    if not isinstance(sde, ANCESTRAL_SDES):
        raise InputError(
            f"the `ancestral` sampler needs a VP (VPSDE, CosineVPSDE: DDPM) or VE (VESDE: SMLD) "
            f"SDE; got {type(sde).__name__}. Use 'reverse_diffusion', 'em', 'pc' or 'ode'")


def ancestral_step(model: Model, x: Tensor, t: Tensor, dt: Tensor,
                   noise: NoiseSampler) -> Tuple[Tensor, Tensor]:
    """One ancestral step from t to t - dt: returns ``(x, x_mean)``."""
    sde = model.sde
    score = model.score(x, t)
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
    return x_mean + std * noise(x, t, t - dt), x_mean


def ancestral(model: Model, x: Tensor, grid: Grid, callback: Hook,
              noise: NoiseSampler) -> Tensor:
    """Ancestral steps on the uniform grid."""
    check_ancestral(model.sde)
    ts = grid.ts
    check_discretization(model.sde, x, ts)
    return run_predictor(ancestral_step, model, x, ts, callback, noise)
