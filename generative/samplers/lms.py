"""Linear multistep (Adams-Bashforth in the noise level) on ``dx~/dsigma~ = (x~ - D) /
sigma~`` in the scaled variables of `levels` (k-diffusion's ``sample_lms``, order 4 by
default): the slope's Lagrange interpolant through the last ``order`` grid points, integrated
exactly over the step (Gauss-Legendre, exact for these polynomials). One score evaluation a
step; the first steps use the orders the history allows.
"""
from __future__ import annotations

from typing import List

import numpy as np
import torch

from ..errors import InputError
from .base import Hook, Model
from .grid import Grid
from .levels import Levels
from .noise import NoiseSampler

Tensor = torch.Tensor

__all__ = ["lms", "lms_coefficients"]


def lms_coefficients(sig: List[float], i: int, order: int) -> List[float]:
    """The weights of the slopes at ``sig[i], sig[i-1], ...`` (``order`` of them) in
    ``x~_{i+1} - x~_i``: integrals over ``[sig[i], sig[i+1]]`` of the Lagrange basis."""
    nodes, weights = np.polynomial.legendre.leggauss(order)     # exact to degree 2 order - 1
    lo, hi = sig[i], sig[i + 1]
    tau = (hi - lo) / 2 * nodes + (hi + lo) / 2
    pts = [sig[i - k] for k in range(order)]
    out = []
    for j in range(order):
        basis = np.ones_like(tau)
        for k in range(order):
            if k != j:
                basis *= (tau - pts[k]) / (pts[j] - pts[k])
        out.append(float((weights * basis).sum() * (hi - lo) / 2))
    return out


def lms(model: Model, x: Tensor, grid: Grid, callback: Hook, noise: NoiseSampler, *,
        order: int = 4) -> Tensor:
    """LMS steps of ``order`` 1 to 4 (one NFE each)."""
    if isinstance(order, bool) or order not in (1, 2, 3, 4):
        raise InputError(f"`order` must be 1, 2, 3 or 4; got {order!r}")
    lv = Levels(model, grid, x)
    xt = lv.scale(x)
    sig = lv.sig.double().tolist()                              # one host sync, float64
    slopes: List[Tensor] = []
    for i in range(lv.n):
        den = lv.denoise(xt, i)
        slopes = [(xt - den) / lv.sig[i]] + slopes[:order - 1]
        coef = lms_coefficients(sig, i, len(slopes))
        xt = xt + sum(c * d for c, d in zip(coef, slopes))
        xt = lv.done(callback, i + 1, xt, den)
    return lv.unscale(xt)
