"""Reverse-diffusion predictor (Song et al. 2021): invert the forward discretisation
``x_t = x_{t-dt} + f_n + g_n z`` (`sde.discretize`) with the score,
``x_{t-dt} = x_t - f_n + g_n^2 score + g_n z``."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ._common import (Result, check_discretization, check_sde, check_steps, initial_state,
                      noise, time_grid, tweedie_denoise)

__all__ = ["reverse_diffusion_sampler", "reverse_diffusion_step"]


def reverse_diffusion_step(sde, score_fn, x, t, dt, generator=None):
    """One step from t to t - dt: returns ``(x, x_mean)``."""
    rev_f, rev_g = sde.reverse(score_fn).discretize(x, t, dt)
    x_mean = x - rev_f
    return x_mean + rev_g * noise(x, generator), x_mean


def reverse_diffusion_sampler(sde, score_fn, shape: Optional[Sequence[int]] = None, *,
                              n_steps: int = 500, eps: Optional[float] = None,
                              denoise: bool = False, x_init: Optional[torch.Tensor] = None,
                              generator: Optional[torch.Generator] = None, dtype=None,
                              device=None) -> Result:
    """``n_steps`` reverse-diffusion steps from T to eps; ``nfe = n_steps (+1 if denoise)``."""
    check_sde(sde, score_fn)
    n_steps = check_steps("n_steps", n_steps)
    x = initial_state(sde, shape, x_init, generator, dtype, device)
    ts = time_grid(sde, n_steps, x, eps)
    check_discretization(sde, x, ts)
    for i in range(n_steps):
        x, _ = reverse_diffusion_step(sde, score_fn, x, ts[i], ts[i] - ts[i + 1], generator)
    if denoise:
        return tweedie_denoise(sde, score_fn, x, ts[-1]), n_steps + 1
    return x, n_steps
