"""DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models"), second order, data-prediction form, for any `dynamics` SDE, written
with the schedule accessors only.

With ``lambda = log(alpha / sigma)`` (half the log-SNR), ``h = lambda_next - lambda`` and the
data prediction ``D = (x + sigma^2 score) / alpha``, the probability-flow ODE is solved exactly
in its linear part:

    x_next = (sigma_next / sigma) x - alpha_next * expm1(-h) * D_hat

- ``dpmpp_2m_sampler`` (multistep, Algorithm 2): ``D_hat = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}``
  with ``r = h_{i-1} / h_i``; the first step is first order (DDIM). One NFE per step.
- ``dpmpp_2s_sampler`` (singlestep, Algorithm 1 with ``r = 1/2``): an intermediate DDIM step
  to ``lambda + h/2`` and ``D_hat = D(u, s)`` there. Two NFE per step.

Time discretisations (``schedule``): ``'logsnr'`` (uniform lambda, the paper's default for
low-resolution data), ``'time'`` (uniform t), ``'time_quadratic'`` and ``'karras'``.
"""
from __future__ import annotations

import torch

from .base import Hook, Model
from .noise import NoiseSampler
from .grid import Grid

Tensor = torch.Tensor

__all__ = ["dpmpp_2m", "dpmpp_2s"]


def dpmpp_2m(model: Model, x: Tensor, grid: Grid, callback: Hook,
             noise: NoiseSampler) -> Tensor:
    """DPM-Solver++(2M) steps, one score evaluation each."""
    ts, a, s, lam = grid
    lam = lam / 2                                             # lambda = log(alpha / sigma)
    d_prev = h_prev = None
    for i in range(len(ts) - 1):
        d = model.denoised(x, ts[i], a[i], s[i])
        h = lam[i + 1] - lam[i]
        d_hat = d if d_prev is None else d + (d - d_prev) * (h / (2 * h_prev))
        x = (s[i + 1] / s[i]) * x - a[i + 1] * torch.expm1(-h) * d_hat
        x = callback(i + 1, ts[i + 1], x, d)
        d_prev, h_prev = d, h
    return x


def dpmpp_2s(model: Model, x: Tensor, grid: Grid, callback: Hook,
             noise: NoiseSampler) -> Tensor:
    """DPM-Solver++(2S) steps, two score evaluations each (the midpoint in lambda)."""
    sde = model.sde
    ts, a, s, lam = grid
    # midpoints in log-SNR and their times, alphas and sigmas (before the loop: no host syncs)
    lam_mid = (lam[:-1] + lam[1:]) / 2
    t_mid = sde.t_from_log_snr(lam_mid.double()).to(x)
    a_mid, s_mid = sde.alpha(t_mid).to(x), sde.sigma(t_mid).to(x)
    lam = lam / 2
    for i in range(len(ts) - 1):
        h = lam[i + 1] - lam[i]
        d = model.denoised(x, ts[i], a[i], s[i])
        u = (s_mid[i] / s[i]) * x - a_mid[i] * torch.expm1(-h / 2) * d
        d_mid = model.denoised(u, t_mid[i], a_mid[i], s_mid[i])
        x = (s[i + 1] / s[i]) * x - a[i + 1] * torch.expm1(-h) * d_mid
        x = callback(i + 1, ts[i + 1], x, d_mid)
    return x
