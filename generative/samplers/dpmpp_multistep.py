"""Multistep DPM-Solver++ of order 2 and 3, deterministic or stochastic (Lu et al. 2022,
"DPM-Solver++"; the SDE variants as k-diffusion's ``sample_dpmpp_2m_sde`` /
``sample_dpmpp_3m_sde``), in the scaled variables of `levels` (one score evaluation a step).

With ``h = lambda_{i+1} - lambda_i`` (``lambda = -log sigma~``) and ``eta >= 0`` the step
is the exponential integrator of the SDE whose noise is ``eta`` times the posterior's:

    x~_{i+1} = (sigma~_{i+1} / sigma~_i) e^{-eta h} x~_i + (1 - e^{-(1+eta) h}) D_i
               + (corrections from D_{i-1}, D_{i-2}) + sigma~_{i+1} sqrt(1 - e^{-2 eta h}) z

- order 2 (``dpmpp_2m_sde``; ``eta = 0`` is DPM-Solver++(2M)): ``solver_type`` ``'midpoint'``
  adds ``(1 - e^{-H}) (D_i - D_{i-1}) / (2 r)``, ``'heun'`` ``phi_2 (D_i - D_{i-1}) / r``
  with ``H = (1 + eta) h``, ``r = h_{i-1} / h``, ``phi_2 = 1 - (1 - e^{-H}) / H``.
- order 3 (``dpmpp_3m``: ``eta = 0``; ``dpmpp_3m_sde``): the second-order divided
  differences of the last three denoisers with ``phi_2, phi_3`` (Lu et al. 2022, eq. 3M).

The first steps use the lower orders the history allows. ``eta = 0`` draws no noise.
"""
from __future__ import annotations

from typing import Any, List

import torch

from dynamics.checks import check_choice

from ..errors import InputError
from .base import Hook, Model
from .grid import Grid
from .levels import Levels
from .noise import NoiseSampler

Tensor = torch.Tensor

__all__ = ["dpmpp_multistep", "dpmpp_3m", "dpmpp_2m_sde", "dpmpp_3m_sde", "check_eta"]


def check_eta(eta: Any, hi: float = float("inf")) -> float:
    """``eta`` as a float in ``[0, hi]``, or a clear error."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not (0 <= eta <= hi):
        raise InputError(f"`eta` must be a number in [0, {hi:g}]; got {eta!r}")
    return float(eta)


def _correction(d: List[Tensor], h: List[Tensor], big_h: Tensor, order: int,
                solver_type: str) -> Any:
    """The multistep terms from the denoisers ``d`` (newest first) and steps ``h``."""
    phi_2 = torch.expm1(-big_h) / big_h + 1
    if order >= 3 and len(d) >= 3:
        r0, r1 = h[1] / h[0], h[2] / h[0]
        d1_0, d1_1 = (d[0] - d[1]) / r0, (d[1] - d[2]) / r1
        d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        return phi_2 * d1 - (phi_2 / big_h - 0.5) * d2
    if len(d) >= 2:
        r = h[1] / h[0]
        if order == 2 and solver_type == "midpoint":
            return 0.5 * -torch.expm1(-big_h) * (d[0] - d[1]) / r
        return phi_2 * (d[0] - d[1]) / r
    return 0.0


def dpmpp_multistep(model: Model, x: Tensor, grid: Grid, callback: Hook,
                    noise: NoiseSampler, *, order: int = 2, eta: float = 0.0,
                    s_noise: float = 1.0, solver_type: str = "midpoint") -> Tensor:
    """DPM-Solver++ multistep steps of ``order`` 2 or 3 with noise ``eta`` (one NFE each)."""
    if order not in (2, 3):
        raise InputError(f"`order` must be 2 or 3; got {order!r}")
    eta, s_noise = check_eta(eta), check_eta(s_noise)
    check_choice("solver_type", solver_type, ("midpoint", "heun"))
    lv = Levels(model, grid, x)
    sig, xt = lv.sig, lv.scale(x)
    ds: List[Tensor] = []
    hs: List[Tensor] = []
    for i in range(lv.n):
        d = lv.denoise(xt, i)
        h = torch.log(sig[i]) - torch.log(sig[i + 1])
        ds, hs = [d] + ds[:2], [h] + hs[:2]
        big_h = h * (1 + eta)
        xt = sig[i + 1] / sig[i] * torch.exp(-eta * h) * xt - torch.expm1(-big_h) * d
        xt = xt + _correction(ds, hs, big_h, order, solver_type)
        if eta > 0:
            xt = xt + noise(xt, grid.ts[i], grid.ts[i + 1]) * sig[i + 1] * \
                torch.sqrt(-torch.expm1(-2 * eta * h)) * s_noise
        xt = lv.done(callback, i + 1, xt, d)
    return lv.unscale(xt)


def dpmpp_3m(model: Model, x: Tensor, grid: Grid, callback: Hook,
             noise: NoiseSampler) -> Tensor:
    """DPM-Solver++(3M), deterministic."""
    return dpmpp_multistep(model, x, grid, callback, noise, order=3)


def dpmpp_2m_sde(model: Model, x: Tensor, grid: Grid, callback: Hook,
                 noise: NoiseSampler, *, eta: float = 1.0, s_noise: float = 1.0,
                 solver_type: str = "midpoint") -> Tensor:
    """DPM-Solver++(2M) SDE (``eta = 1``: the reverse SDE's noise)."""
    return dpmpp_multistep(model, x, grid, callback, noise, order=2, eta=eta,
                           s_noise=s_noise, solver_type=solver_type)


def dpmpp_3m_sde(model: Model, x: Tensor, grid: Grid, callback: Hook,
                 noise: NoiseSampler, *, eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """DPM-Solver++(3M) SDE."""
    return dpmpp_multistep(model, x, grid, callback, noise, order=3, eta=eta, s_noise=s_noise)
