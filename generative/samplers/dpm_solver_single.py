"""Singlestep DPM-Solver of order 1, 2 and 3 in its noise-prediction form (Lu et al. 2022,
"DPM-Solver", Algorithms 1 and 2; k-diffusion's ``DPMSolver.dpm_solver_{1,2,3}_step``), in
the scaled variables of `levels` with ``lambda = -log sigma~`` and ``eps = (x~ - D) / sigma~``.

A step of order k from lambda to lambda + h costs k score evaluations: order 2 evaluates at
``lambda + r1 h``, order 3 at ``lambda + h/3`` and ``lambda + 2h/3``. ``dpm_solver_3`` takes
steps of one ``order`` on the grid (``order * n_steps`` NFE); `dpm_adaptive` reuses the steps.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch

from ..errors import InputError
from .base import Hook, Model, StepCost
from .grid import Grid
from .levels import Levels
from .noise import NoiseSampler

Tensor = torch.Tensor

__all__ = ["dpm_solver_3", "dpm_steps", "cost", "check_order"]


def check_order(order: Any, choices: Tuple[int, ...] = (1, 2, 3)) -> int:
    if isinstance(order, bool) or order not in choices:
        raise InputError(f"`order` must be one of {', '.join(map(str, choices))}; "
                         f"got {order!r}")
    return int(order)


def cost(options: Dict[str, Any]) -> StepCost:
    """``order`` score evaluations a step (default 3)."""
    return StepCost(check_order(options.get("order", 3)))


def _eps(lv: Levels, xt: Tensor, lam: Tensor) -> Tensor:
    sig = torch.exp(-lam)
    return (xt - lv.denoise_level(xt, sig)) / sig


def dpm_steps(lv: Levels, xt: Tensor, eps: Tensor, lam: Tensor, lam_next: Tensor,
              orders: Tuple[int, ...], r1: float = 0.5) -> Dict[int, Tensor]:
    """The DPM-Solver steps of the given ``orders`` from ``x~`` at ``lam`` (``eps`` there)
    to ``lam_next``, sharing their score evaluations. Order 2 uses ``r1``; when 3 is among
    the orders, the order-2 step uses ``r1 = 1/3`` (the order-3 step's first point)."""
    h = lam_next - lam
    sig_next = torch.exp(-lam_next)
    base = xt - sig_next * torch.expm1(h) * eps
    out = {1: base} if 1 in orders else {}
    if max(orders) < 2:
        return out
    r1 = 1 / 3 if 3 in orders else r1
    s1 = lam + r1 * h
    u1 = xt - torch.exp(-s1) * torch.expm1(r1 * h) * eps
    e1 = _eps(lv, u1, s1)
    if 2 in orders:
        out[2] = base - sig_next / (2 * r1) * torch.expm1(h) * (e1 - eps)
    if 3 in orders:
        r2 = 2 / 3
        s2 = lam + r2 * h
        u2 = xt - torch.exp(-s2) * torch.expm1(r2 * h) * eps - torch.exp(-s2) * (r2 / r1) * (
            torch.expm1(r2 * h) / (r2 * h) - 1) * (e1 - eps)
        e2 = _eps(lv, u2, s2)
        out[3] = base - sig_next / r2 * (torch.expm1(h) / h - 1) * (e2 - eps)
    return out


def dpm_solver_3(model: Model, x: Tensor, grid: Grid, callback: Hook, noise: NoiseSampler,
                 *, order: int = 3) -> Tensor:
    """Singlestep DPM-Solver steps of ``order`` (1, 2 or 3; ``order`` NFE each)."""
    order = check_order(order)
    lv = Levels(model, grid, x)
    lam, xt = -torch.log(lv.sig), lv.scale(x)
    for i in range(lv.n):
        den = lv.denoise(xt, i)
        eps = (xt - den) / lv.sig[i]
        xt = dpm_steps(lv, xt, eps, lam[i], lam[i + 1], (order,))[order]
        xt = lv.done(callback, i + 1, xt, den)
    return lv.unscale(xt)
