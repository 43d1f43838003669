"""Reverse-diffusion predictor (Song et al. 2021): invert the forward discretisation
``x_t = x_{t-dt} + f_n + g_n z`` (`sde.discretize`) with the score,
``x_{t-dt} = x_t - f_n + g_n^2 score + g_n z``."""
from __future__ import annotations

from typing import Tuple

import torch

from dynamics import VPSDE, CosineVPSDE, LinearSDE

from ..errors import InputError
from .base import Hook, Model, run_predictor
from .noise import NoiseSampler
from .grid import Grid

Tensor = torch.Tensor

__all__ = ["reverse_diffusion", "reverse_diffusion_step", "check_discretization"]


def check_discretization(sde: LinearSDE, x: Tensor, ts: Tensor) -> None:
    """Raise a clear error when the grid is too coarse for ``sde.discretize`` (one host sync):
    DDPM's step needs ``beta_n = beta(t) dt < 1`` (else sqrt(1 - beta_n) is NaN)."""
    dt = ts[0] - ts[1]
    f_n, g_n = sde.discretize(x[:1], ts[0], dt)
    beta = float(g_n.flatten()[0]) ** 2
    vp = isinstance(sde, (VPSDE, CosineVPSDE))
    if not bool(torch.isfinite(f_n).all()) or not torch.isfinite(g_n).all() or \
            (vp and beta >= 1.0):
        n = len(ts) - 1
        raise InputError(
            f"`n_steps` = {n} is too coarse for {type(sde).__name__}.discretize: the first step "
            f"(t = {float(ts[0]):g}, dt = {float(dt):g}) has beta_n = g_n^2 = {beta:.3g}, but "
            f"the discrete step needs beta_n < 1; use more steps")


def reverse_diffusion_step(model: Model, x: Tensor, t: Tensor, dt: Tensor,
                           noise: NoiseSampler) -> Tuple[Tensor, Tensor]:
    """One step from t to t - dt: returns ``(x, x_mean)``."""
    rev_f, rev_g = model.reverse.discretize(x, t, dt)
    x_mean = x - rev_f
    return x_mean + rev_g * noise(x, t, t - dt), x_mean


def reverse_diffusion(model: Model, x: Tensor, grid: Grid, callback: Hook,
                      noise: NoiseSampler) -> Tensor:
    """Reverse-diffusion steps on the uniform grid."""
    ts = grid.ts
    check_discretization(model.sde, x, ts)
    return run_predictor(reverse_diffusion_step, model, x, ts, callback, noise)
