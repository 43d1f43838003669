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
``sigma_tilde(t_min)`` (requires ``sigma(t_min) > 0``).

Every step is a Heun step (2 NFE): Karras' final Euler step to sigma = 0 is exactly the Tweedie
denoising step, so ``denoise=True`` reproduces Algorithm 1 with ``2 n_steps + 1`` NFE.

Stochastic churn (Algorithm 2, ``churn > 0``, default 0 = deterministic): at levels in
``[s_tmin, s_tmax]`` the level is raised to ``sigma_hat = sigma (1 + gamma)``,
``gamma = min(churn / N, sqrt(2) - 1)`` (capped so sigma_hat stays <= sigma_tilde(T)), by
adding noise of std ``s_noise sqrt(sigma_hat^2 - sigma^2)``; N is ``n_steps`` by default, or
``churn_steps`` (the paper's N counts the final step to sigma = 0: ``n_steps + 1``).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import torch


from ..errors import InputError
from .base import Hook, Model, check_steps
from .noise import NoiseSampler
from .grid import Grid
from .levels import Levels

Tensor = torch.Tensor

__all__ = ["edm_heun", "churn_levels", "check_number"]


def check_number(name: str, v: Any, lo: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= math.inf) \
            or math.isnan(v):
        raise InputError(f"`{name}` must be a number >= {lo:g}; got {v!r}")
    return float(v)


def churn_levels(lv: Levels, churn: float, s_tmin: float, s_tmax: float,
                 churn_steps: Optional[int] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """Karras' churned levels ``sigma_hat = sigma (1 + gamma)`` on the grid, with their times
    and alphas (computed before the loop: no host syncs). ``gamma = min(churn / N, sqrt(2) -
    1)`` at levels in ``[s_tmin, s_tmax]``, capped so sigma_hat <= sigma~(T); ``N`` =
    ``churn_steps`` (default the grid's steps; Karras' Algorithm 2 and k-diffusion count the
    final step to sigma = 0 too: ``n_steps + 1`` with ``denoise=True``)."""
    sig, ts, a = lv.sig, lv.ts, lv.a
    n = lv.n if churn_steps is None else check_steps("churn_steps", churn_steps)
    gamma = torch.clamp(sig[0] / sig - 1.0, max=min(churn / n, math.sqrt(2) - 1))
    gamma = torch.where((sig >= s_tmin) & (sig <= s_tmax) & (churn > 0), gamma, 0.0 * gamma)
    sig_hat = sig * (1 + gamma)
    t_hat, a_hat = lv.time(sig_hat)
    return sig_hat, torch.where(gamma > 0, t_hat, ts), torch.where(gamma > 0, a_hat, a)


def edm_heun(model: Model, x: Tensor, grid: Grid, callback: Hook,
             noise: NoiseSampler, *, churn: float = 0.0, s_tmin: float = 0.0,
             s_tmax: float = math.inf, s_noise: float = 1.0,
             churn_steps: Optional[int] = None) -> Tensor:
    """EDM Heun steps. ``churn``, ``s_tmin``, ``s_tmax`` (in units of sigma/alpha) and
    ``s_noise`` are Karras' S_churn, S_tmin, S_tmax, S_noise; ``churn_steps`` the N of
    S_churn / N (`churn_levels`). The callback sees (and may replace) the unscaled state."""
    churn, s_tmin, s_tmax = check_number("churn", churn), check_number("s_tmin", s_tmin), \
        check_number("s_tmax", s_tmax)
    s_noise = check_number("s_noise", s_noise)
    lv = Levels(model, grid, x)
    ts, a, s, sig = lv.ts, lv.a, lv.s, lv.sig
    sig_hat, t_hat, a_hat = churn_levels(lv, churn, s_tmin, s_tmax, churn_steps)
    xt = lv.scale(x)
    for i in range(lv.n):
        if churn > 0:
            xt = xt + s_noise * torch.sqrt(sig_hat[i] ** 2 - sig[i] ** 2) * noise(xt, ts[i], ts[i])
        dt = sig[i + 1] - sig_hat[i]
        d = (xt - model.denoised(a_hat[i] * xt, t_hat[i], a_hat[i],
                                 a_hat[i] * sig_hat[i])) / sig_hat[i]
        x_e = xt + dt * d                                      # Euler predictor
        x0 = model.denoised(a[i + 1] * x_e, ts[i + 1], a[i + 1], s[i + 1])
        xt = xt + dt * (d + (x_e - x0) / sig[i + 1]) / 2       # trapezoidal corrector
        xt = lv.done(callback, i + 1, xt, x0)
    return lv.unscale(xt)
