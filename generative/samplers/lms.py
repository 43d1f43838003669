"""Linear multistep (Adams-Bashforth in the noise level) on ``dx~/dsigma~ = (x~ - D) /
sigma~`` in the scaled variables of `levels` (k-diffusion's ``sample_lms``, order 4 by
default): the slope's Lagrange interpolant through the last ``order`` grid points, integrated
exactly over the step (Gauss-Legendre, exact for these polynomials). One score evaluation a
step; the first steps use the orders the history allows.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from ..errors import InputError
from .base import Hook, Model
from .grid import Grid
from .levels import Levels
from .noise import NoiseSampler

Tensor = torch.Tensor

__all__ = ["lms", "lms_coefficients", "lagrange_integrals"]


def lagrange_integrals(nodes: Sequence[float], lo: float, hi: float, n_quad: int,
                       weight: Optional[Callable[[np.ndarray], np.ndarray]] = None
                       ) -> List[float]:
    """``int_lo^hi L_j(u) w(u) du`` for the Lagrange basis ``L_j`` on ``nodes`` (weight 1 by
    default), by ``n_quad``-point Gauss-Legendre: exact when ``L_j w`` is a polynomial of
    degree < 2 n_quad, else accurate to round-off for smooth weights over short intervals."""
    u, w = np.polynomial.legendre.leggauss(n_quad)
    tau = (hi - lo) / 2 * u + (hi + lo) / 2
    w = w * (hi - lo) / 2 * (1.0 if weight is None else weight(tau))
    out = []
    for j, nj in enumerate(nodes):
        basis = np.ones_like(tau)
        for k, nk in enumerate(nodes):
            if k != j:
                basis *= (tau - nk) / (nj - nk)
        out.append(float((w * basis).sum()))
    return out


def lms_coefficients(sig: List[float], i: int, order: int) -> List[float]:
    """The weights of the slopes at ``sig[i], sig[i-1], ...`` (``order`` of them) in
    ``x~_{i+1} - x~_i``: integrals over ``[sig[i], sig[i+1]]`` of their Lagrange basis."""
    return lagrange_integrals([sig[i - k] for k in range(order)], sig[i], sig[i + 1],
                              max(order, 1))


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
