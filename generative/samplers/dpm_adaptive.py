"""Adaptive DPM-Solver-12 / 23 (Lu et al. 2022, "DPM-Solver", Section 4.2; k-diffusion's
``sample_dpm_adaptive``): from sigma~(T) down to sigma~(eps) in ``lambda = -log sigma~``, each
attempted step computes a low- and a high-order DPM-Solver step (orders 1 and 2, or 2 and 3,
sharing their evaluations: ``order`` NFE an attempt), and an integral controller on the error
``||(x_low - x_high) / max(atol, rtol max(|x_low|, |x_prev|))|| / sqrt(numel)`` (over the
whole batch) accepts the step and rescales ``h``. Rejected attempts count in the NFE. Given
``n_steps`` or an ``nfe`` budget instead, it takes that many fixed DPM-Solver steps of
``order`` on the grid (as k-diffusion's DPM-Solver-fast, without its final lower orders). A
non-finite error estimate raises `solvers.errors.NonFiniteError` at once (one host sync a
step: the error is read for the controller anyway).
"""
from __future__ import annotations

import math
from typing import Any, Dict

import torch

from .base import Hook, Model, StepCost
from .dpm_solver_single import check_order, dpm_solver_3, dpm_steps
from .edm import check_number
from .grid import Grid
from .levels import Levels
from .noise import NoiseSampler

Tensor = torch.Tensor

__all__ = ["dpm_adaptive", "PIDController", "cost"]


def cost(options: Dict[str, Any]) -> StepCost:
    """``order`` score evaluations an attempted step."""
    return StepCost(check_order(options.get("order", 3), (2, 3)))


class PIDController:
    """k-diffusion's PID step-size controller on the inverse error, with the arctan limiter
    ``1 + atan(f - 1)``; accepts when the factor is >= ``accept_safety``."""

    def __init__(self, h: float, pcoeff: float, icoeff: float, dcoeff: float, order: float,
                 accept_safety: float, eps: float = 1e-8) -> None:
        self.h, self.safety, self.eps = h, accept_safety, eps
        self.b = ((pcoeff + icoeff + dcoeff) / order, -(pcoeff + 2 * dcoeff) / order,
                  dcoeff / order)
        self.inv = [0.0, 0.0, 0.0]
        self.started = False

    def propose(self, error: float) -> bool:
        inv = 1 / (error + self.eps)
        if not self.started:
            self.inv, self.started = [inv, inv, inv], True
        self.inv[0] = inv
        f = self.inv[0] ** self.b[0] * self.inv[1] ** self.b[1] * self.inv[2] ** self.b[2]
        f = 1 + math.atan(f - 1)
        accept = f >= self.safety
        if accept:
            self.inv[2], self.inv[1] = self.inv[1], self.inv[0]
        self.h *= f
        return accept


def dpm_adaptive(model: Model, x: Tensor, grid: Grid, callback: Hook, noise: NoiseSampler,
                 *, fixed_steps: bool = False, order: int = 3, rtol: float = 0.05,
                 atol: float = 0.0078, h_init: float = 0.05, pcoeff: float = 0.0,
                 icoeff: float = 1.0, dcoeff: float = 0.0,
                 accept_safety: float = 0.81) -> Tensor:
    """Adaptive DPM-Solver of ``order`` 2 (steps 1/2) or 3 (steps 2/3)."""
    order = check_order(order, (2, 3))
    if fixed_steps:                          # an NFE budget / n_steps: fixed steps of order
        return dpm_solver_3(model, x, grid, callback, noise, order=order)
    rtol, atol, h_init = (check_number(k, v) for k, v in
                          (("rtol", rtol), ("atol", atol), ("h_init", h_init)))
    lv = Levels(model, grid, x)
    lam_end = float(-torch.log(lv.sig[-1]))
    s = -torch.log(lv.sig[0])
    pid = PIDController(h_init, pcoeff, icoeff, dcoeff, order, accept_safety)
    xt = lv.scale(x)
    x_prev = xt
    while float(s) < lam_end - 1e-5:
        t = torch.clamp(s + pid.h, max=lam_end)
        eps = (xt - lv.denoise_level(xt, torch.exp(-s))) / torch.exp(-s)
        steps = dpm_steps(lv, xt, eps, s, t, (order - 1, order))
        low, high = steps[order - 1], steps[order]
        delta = torch.clamp(rtol * torch.maximum(low.abs(), x_prev.abs()), min=atol)
        error = float(torch.linalg.norm((low - high) / delta)) / math.sqrt(xt.numel())
        if not math.isfinite(error):             # NaN/inf: no step size would help
            callback.poll.now(high, lv.time(torch.exp(-t))[0], model.nfe)
        if pid.propose(error):
            x_prev, xt, s = low, high, t
    xt = lv.done(callback, 1, xt, None)
    return lv.unscale(xt)
