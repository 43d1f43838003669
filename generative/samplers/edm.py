"""Heun's second-order sampler of Karras et al. (2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", Algorithms 1 and 2) for any `dynamics` SDE, written with the
schedule accessors only.

Every linear SDE has ``x_t = alpha(t) (x0 + sigma_tilde z)`` with the *scaled noise level*
``sigma_tilde = sigma / alpha = exp(-log_snr / 2)``; in the scaled state ``x_tilde = x / alpha``
the probability-flow ODE is EDM's ``d x_tilde / d sigma_tilde = (x_tilde - D) / sigma_tilde``
with the denoiser ``D = (x + sigma^2 score) / alpha``. So the sampler runs EDM's Heun steps on
(x_tilde, sigma_tilde) for VP, VE, sub-VP, cosine and EDM SDEs alike (for ``EDMSDE`` and VE,
``alpha = 1`` and this is literally Algorithm 1), mapping each noise level back to its time with
``t_from_log_snr``. The default grid is Karras' ``sigma_tilde_i = (s_max^(1/rho) + i/N
(s_min^(1/rho) - s_max^(1/rho)))^rho``, rho = 7, from ``sigma_tilde(T)`` to
``sigma_tilde(eps)`` (requires ``sigma(eps) > 0``).

Every step is a Heun step (2 NFE): Karras' final Euler step to sigma = 0 is exactly the Tweedie
denoising step, so ``denoise=True`` reproduces Algorithm 1 with ``2 n_steps + 1`` NFE.

Stochastic churn (Algorithm 2, ``churn > 0``, default 0 = deterministic): at levels in
``[s_tmin, s_tmax]`` the level is raised to ``sigma_hat = sigma (1 + gamma)``,
``gamma = min(churn / n_steps, sqrt(2) - 1)`` (capped so sigma_hat stays <= sigma_tilde(T)), by
adding noise of std ``s_noise sqrt(sigma_hat^2 - sigma^2)``.
"""
from __future__ import annotations

import math
from typing import Any

import torch


from ..errors import InputError
from .base import Hook, Model
from .noise import NoiseSampler
from .grid import Grid

Tensor = torch.Tensor

__all__ = ["edm_heun"]


def _number(name: str, v: Any, lo: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= math.inf) \
            or math.isnan(v):
        raise InputError(f"`{name}` must be a number >= {lo:g}; got {v!r}")
    return float(v)


def edm_heun(model: Model, x: Tensor, grid: Grid, callback: Hook,
             noise: NoiseSampler, *, churn: float = 0.0,
             s_tmin: float = 0.0, s_tmax: float = math.inf, s_noise: float = 1.0) -> Tensor:
    """EDM Heun steps. ``churn``, ``s_tmin``, ``s_tmax`` (in units of sigma/alpha) and
    ``s_noise`` are Karras' S_churn, S_tmin, S_tmax, S_noise. The callback sees (and may
    replace) the unscaled state."""
    churn, s_tmin, s_tmax = _number("churn", churn), _number("s_tmin", s_tmin), \
        _number("s_tmax", s_tmax)
    s_noise = _number("s_noise", s_noise)
    sde = model.sde
    ts, a, s, lam = grid
    n_steps = len(ts) - 1
    sig = s / a                                                # sigma_tilde on the grid
    # churned levels sigma_hat and their times (computed before the loop: no host syncs)
    gamma = torch.clamp(sig[0] / sig - 1.0, max=min(churn / n_steps, math.sqrt(2) - 1))
    gamma = torch.where((sig >= s_tmin) & (sig <= s_tmax) & (churn > 0), gamma, 0.0 * gamma)
    sig_hat = sig * (1 + gamma)
    t_hat = torch.where(gamma > 0, sde.t_from_log_snr((-2 * torch.log(sig_hat)).double()).to(x),
                        ts)
    a_hat = torch.where(gamma > 0, sde.alpha(t_hat).to(x), a)

    xt = x / a[0]                                              # scaled state x / alpha
    for i in range(n_steps):
        if churn > 0:
            xt = xt + s_noise * torch.sqrt(sig_hat[i] ** 2 - sig[i] ** 2) * noise(xt, ts[i], ts[i])
        dt = sig[i + 1] - sig_hat[i]
        d = (xt - model.denoised(a_hat[i] * xt, t_hat[i], a_hat[i],
                                 a_hat[i] * sig_hat[i])) / sig_hat[i]
        x_e = xt + dt * d                                      # Euler predictor
        x0 = model.denoised(a[i + 1] * x_e, ts[i + 1], a[i + 1], s[i + 1])
        xt = xt + dt * (d + (x_e - x0) / sig[i + 1]) / 2       # trapezoidal corrector
        x = a[i + 1] * xt
        out = callback(i + 1, ts[i + 1], x, x0)
        if out is not x:
            xt = out / a[i + 1]
    return a[-1] * xt
