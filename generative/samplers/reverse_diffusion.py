"""Reverse-diffusion predictor (Song et al. 2021): invert the forward discretisation
``x_t = x_{t-dt} + f_n + g_n z`` (`sde.discretize`) with the score,
``x_{t-dt} = x_t - f_n + g_n^2 score + g_n z``."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ._common import Project, Result, check_sde, noise, run_predictor

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
                              device=None, project: Optional[Project] = None,
                              poll_every: Optional[int] = None) -> Result:
    """``n_steps`` reverse-diffusion steps from T to eps; ``nfe = n_steps (+1 if denoise)``.
    ``project(x, t)`` is applied after every step; a non-finite state raises `NonFiniteError`
    (checked every ``poll_every`` steps, see `_common`)."""
    check_sde(sde, score_fn)
    return run_predictor(reverse_diffusion_step, sde, score_fn, shape, n_steps=n_steps, eps=eps,
                         denoise=denoise, x_init=x_init, generator=generator, dtype=dtype,
                         device=device, project=project, name="reverse_diffusion",
                         poll_every=poll_every)
