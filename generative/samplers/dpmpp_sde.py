"""Singlestep stochastic DPM-Solver++ samplers, two score evaluations a step, in the scaled
variables of `levels` (k-diffusion's ``sample_dpmpp_2s_ancestral`` and ``sample_dpmpp_sde``).

- ``dpmpp_2s_ancestral``: an ancestral split of each move (`levels.ancestral_levels`: a
  deterministic DPM-Solver++(2S) step to ``sigma_down``, midpoint in lambda = -log sigma~,
  then noise ``sigma_up``). ``eta = 0`` is DPM-Solver++(2S).
- ``dpmpp_sde``: DPM-Solver++ (stochastic, Lu et al. 2022) with the intermediate point at
  fraction ``r`` of the step in lambda; each of its two sub-moves is an ancestral move, and
  the second uses ``(1 - 1/(2r)) D + 1/(2r) D_r``. Its two draws per step are the moves
  ``t -> s`` and ``t -> t_next`` and must be increments of one path: its default noise is
  ``'brownian'`` (as k-diffusion's). With independent draws (``noise='indexed'``) the
  samples are biased: on the test mixture (4000 samples, 20 steps) the MMD to the data is
  0.0095 against 0.0004 with Brownian noise (data-vs-data: within +-0.0006).
"""
from __future__ import annotations

import torch

from ..errors import InputError
from .base import Hook, Model
from .dpmpp_multistep import check_eta
from .grid import Grid
from .levels import Levels, ancestral_levels
from .noise import NoiseSampler

Tensor = torch.Tensor

__all__ = ["dpmpp_2s_ancestral", "dpmpp_sde"]


def _dpm_move(xt: Tensor, d: Tensor, sig: Tensor, sig_to: Tensor) -> Tensor:
    """The first-order DPM-Solver++ (DDIM) move of ``x~`` from ``sig`` to ``sig_to``."""
    return (sig_to / sig) * xt - torch.expm1(torch.log(sig_to) - torch.log(sig)) * d


def dpmpp_2s_ancestral(model: Model, x: Tensor, grid: Grid, callback: Hook,
                       noise: NoiseSampler, *, eta: float = 1.0,
                       s_noise: float = 1.0) -> Tensor:
    """DPM-Solver++(2S) ancestral steps (two NFE each)."""
    eta, s_noise = check_eta(eta), check_eta(s_noise)
    lv = Levels(model, grid, x)
    sig, xt = lv.sig, lv.scale(x)
    down, up = ancestral_levels(sig[:-1], sig[1:], eta)
    mid = torch.sqrt(sig[:-1] * down)                      # midpoint in log sigma~
    for i in range(lv.n):
        d = lv.denoise(xt, i)
        u = _dpm_move(xt, d, sig[i], mid[i])
        d_mid = lv.denoise_level(u, mid[i])
        xt = _dpm_move(xt, d_mid, sig[i], down[i])
        if eta > 0:
            xt = xt + noise(xt, grid.ts[i], grid.ts[i + 1]) * s_noise * up[i]
        xt = lv.done(callback, i + 1, xt, d)
    return lv.unscale(xt)


def dpmpp_sde(model: Model, x: Tensor, grid: Grid, callback: Hook, noise: NoiseSampler, *,
              eta: float = 1.0, s_noise: float = 1.0, r: float = 0.5) -> Tensor:
    """DPM-Solver++ (stochastic) steps (two NFE each), intermediate point at fraction ``r``."""
    eta, s_noise = check_eta(eta), check_eta(s_noise)
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not (0 < r <= 1):
        raise InputError(f"`r` must be a number in (0, 1]; got {r!r}")
    lv = Levels(model, grid, x)
    sig, xt = lv.sig, lv.scale(x)
    lam = -torch.log(sig)
    s_mid = torch.exp(-(lam[:-1] + r * (lam[1:] - lam[:-1])))   # sigma~ at the point s
    t_mid, _ = lv.time(s_mid)
    fac = 1 / (2 * r)
    for i in range(lv.n):
        d = lv.denoise(xt, i)
        down, up = ancestral_levels(sig[i], s_mid[i], eta)
        u = _dpm_move(xt, d, sig[i], down)
        if eta > 0:
            u = u + noise(xt, grid.ts[i], t_mid[i]) * s_noise * up
        d_2 = lv.denoise_level(u, s_mid[i])
        down, up = ancestral_levels(sig[i], sig[i + 1], eta)
        xt = _dpm_move(xt, (1 - fac) * d + fac * d_2, sig[i], down)
        if eta > 0:
            xt = xt + noise(xt, grid.ts[i], grid.ts[i + 1]) * s_noise * up
        xt = lv.done(callback, i + 1, xt, d)
    return lv.unscale(xt)
