"""DPM-Solver-2 steps in the scaled variables of `levels` (k-diffusion's ``sample_dpm_2`` and
``sample_dpm_2_ancestral``, after Lu et al. 2022 and Karras et al. 2022, Algorithm 2): an
Euler step of ``dx~/dsigma~ = (x~ - D) / sigma~`` to the geometric midpoint of the move, and
the full move with the slope there. Two score evaluations a step.

- ``dpm_2``: optional churn as `edm`'s (``churn``, ``s_tmin``, ``s_tmax``, ``s_noise``, with
  ``gamma = min(churn / n_steps, sqrt(2) - 1)``, k-diffusion's form).
- ``dpm_2_ancestral``: the move to ``sigma_down`` of `levels.ancestral_levels`, then noise
  ``sigma_up`` (``eta``; 0 is deterministic).
"""
from __future__ import annotations

import math

import torch

from .base import Hook, Model
from .dpmpp_multistep import check_eta
from .edm import check_number, churn_levels
from .grid import Grid
from .levels import Levels, ancestral_levels
from .noise import NoiseSampler

Tensor = torch.Tensor

__all__ = ["dpm_2", "dpm_2_ancestral"]


def _dpm2_move(lv: Levels, xt: Tensor, d: Tensor, sig: Tensor, sig_to: Tensor) -> Tensor:
    """The DPM-Solver-2 move from ``sig`` to ``sig_to`` given the slope ``d`` at ``sig``."""
    mid = torch.sqrt(sig * sig_to)
    u = xt + d * (mid - sig)
    d_mid = (u - lv.denoise_level(u, mid)) / mid
    return xt + d_mid * (sig_to - sig)


def dpm_2(model: Model, x: Tensor, grid: Grid, callback: Hook, noise: NoiseSampler, *,
          churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
          s_noise: float = 1.0) -> Tensor:
    """DPM-Solver-2 steps with optional churn."""
    lv = Levels(model, grid, x)
    sig, xt = lv.sig, lv.scale(x)
    churn, s_tmin, s_tmax = check_number("churn", churn), check_number("s_tmin", s_tmin), \
        check_number("s_tmax", s_tmax)
    sig_hat, _, _ = churn_levels(lv, churn, s_tmin, s_tmax)
    s_noise = check_eta(s_noise)
    for i in range(lv.n):
        if churn > 0:
            xt = xt + s_noise * torch.sqrt(sig_hat[i] ** 2 - sig[i] ** 2) * \
                noise(xt, grid.ts[i], grid.ts[i])
        den = lv.denoise_level(xt, sig_hat[i]) if churn > 0 else lv.denoise(xt, i)
        xt = _dpm2_move(lv, xt, (xt - den) / sig_hat[i], sig_hat[i], sig[i + 1])
        xt = lv.done(callback, i + 1, xt, den)
    return lv.unscale(xt)


def dpm_2_ancestral(model: Model, x: Tensor, grid: Grid, callback: Hook,
                    noise: NoiseSampler, *, eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """Ancestral DPM-Solver-2 steps."""
    eta, s_noise = check_eta(eta), check_eta(s_noise)
    lv = Levels(model, grid, x)
    sig, xt = lv.sig, lv.scale(x)
    down, up = ancestral_levels(sig[:-1], sig[1:], eta)
    for i in range(lv.n):
        den = lv.denoise(xt, i)
        xt = _dpm2_move(lv, xt, (xt - den) / sig[i], sig[i], down[i])
        if eta > 0:
            xt = xt + noise(xt, grid.ts[i], grid.ts[i + 1]) * s_noise * up[i]
        xt = lv.done(callback, i + 1, xt, den)
    return lv.unscale(xt)
