"""DDPM on any grid ("respaced", Nichol & Dhariwal 2021), for any linear SDE: each move
``t -> s`` samples the posterior of the forward kernel, ``x_s ~ N(mu(x_t, x0_hat), v)``, with
the data prediction ``x0_hat`` (Tweedie) and the transition ``x_t | x_s`` of mean ``(alpha_t /
alpha_s) x_s`` and variance ``var_ts = sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2``:

    mu = alpha_s x0_hat + sigma_s^2 (alpha_t / alpha_s) / sigma_t^2 (x_t - alpha_t x0_hat)

``variance='fixed_small'``: ``v = sigma_s^2 var_ts / sigma_t^2`` (the posterior's; equal in law
to DDIM with eta = 1), ``'fixed_large'``: ``v = var_ts`` (DDPM's beta_t on a VP SDE, as
diffusers' ``DDPMScheduler`` with ``variance_type='fixed_large'``). One NFE a step; end with
``denoise=True`` for the DDPM paper's noiseless last step.
"""
from __future__ import annotations

import torch

from dynamics.checks import check_choice

from .base import Hook, Model
from .grid import Grid
from .noise import NoiseSampler

Tensor = torch.Tensor

__all__ = ["ddpm", "VARIANCES"]

VARIANCES = ("fixed_small", "fixed_large")


def ddpm(model: Model, x: Tensor, grid: Grid, callback: Hook, noise: NoiseSampler, *,
         variance: str = "fixed_small") -> Tensor:
    """DDPM posterior steps on the grid with ``variance`` 'fixed_small' or 'fixed_large'."""
    check_choice("variance", variance, VARIANCES)
    ts, a, s, _ = grid
    ratio = a[1:] / a[:-1]                                     # alpha_s / alpha_t, s after t
    var_ts = s[:-1] ** 2 - s[1:] ** 2 / ratio ** 2             # Var(x_t | x_s)
    coef = s[1:] ** 2 / (ratio * s[:-1] ** 2)                  # sigma_s^2 alpha_ts / sigma_t^2
    v = var_ts if variance == "fixed_large" else s[1:] ** 2 * var_ts / s[:-1] ** 2
    std = torch.sqrt(torch.clamp(v, min=0.0))
    for i in range(len(ts) - 1):
        x0 = model.denoised(x, ts[i], a[i], s[i])
        x = a[i + 1] * x0 + coef[i] * (x - a[i] * x0) + std[i] * noise(x, ts[i], ts[i + 1])
        x = callback(i + 1, ts[i + 1], x, x0)
    return x
