"""DEIS (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator"),
the multistep "log-rho" form of diffusers' ``DEISMultistepScheduler``, order 1 to 3, in the
scaled variables of `levels` (``rho = sigma~``, ``eps = (x~ - D) / rho``):

    x~_{i+1} = x~_i + sum_j c_j eps_{i-j},   c_j = int_{rho_i}^{rho_{i+1}} L_j(log rho) d rho

with ``L_j`` the Lagrange basis in ``log rho`` on the last ``order`` grid points (integrated by
Gauss-Legendre in ``u = log rho``, weight ``e^u``: accurate to round-off). Order 1 is DDIM. One
score evaluation a step; the first steps use the orders the history allows, and with
``lower_order_final`` (diffusers' default) grids of fewer than 15 steps end with orders 2, 1.
"""
from __future__ import annotations

from typing import List

import numpy as np
import torch

from .base import Hook, Model
from .dpm_solver_single import check_order
from .grid import Grid
from .levels import Levels
from .lms import lagrange_integrals
from .noise import NoiseSampler

Tensor = torch.Tensor

__all__ = ["deis", "step_orders"]


def step_orders(n: int, order: int, lower_order_final: bool, small: int = 15) -> List[int]:
    """The order of each of ``n`` multistep steps: warm-up from 1, and with
    ``lower_order_final`` on grids of fewer than ``small`` steps the last two capped at 1, 2."""
    out = [min(order, i + 1) for i in range(n)]
    if lower_order_final and n < small:
        out[-1] = 1
        if n >= 2:
            out[-2] = min(out[-2], 2)
    return out


def deis(model: Model, x: Tensor, grid: Grid, callback: Hook, noise: NoiseSampler, *,
         order: int = 3, lower_order_final: bool = True) -> Tensor:
    """DEIS steps of ``order`` 1 to 3 (one NFE each)."""
    order = check_order(order)
    lv = Levels(model, grid, x)
    xt = lv.scale(x)
    log_rho = np.log(lv.sig.double().cpu().numpy())                # one host sync, float64
    eps: List[Tensor] = []
    for i, p in enumerate(step_orders(lv.n, order, lower_order_final)):
        den = lv.denoise(xt, i)
        eps = [(xt - den) / lv.sig[i]] + eps[:order - 1]
        coef = lagrange_integrals([log_rho[i - k] for k in range(p)], log_rho[i],
                                  log_rho[i + 1], 16, np.exp)
        xt = xt + sum(c * e for c, e in zip(coef, eps[:p]))
        xt = lv.done(callback, i + 1, xt, den)
    return lv.unscale(xt)
