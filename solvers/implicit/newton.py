"""Batched simplified Newton iteration with per-row convergence, and the error a failed
iteration raises.

Solves ``G(z) = 0`` for every row at once with a fixed (simplified) iteration matrix
``M ≈ ∂G/∂z``: ``z ← z - M⁻¹ G(z)``. Each row has its own convergence test (Hairer &
Wanner II, IV.8): with the increments' scaled RMS norms ``‖Δ_k‖`` and the rate
``θ_k = ‖Δ_k‖ / ‖Δ_{k-1}‖``, a row has converged when ``θ_k/(1-θ_k) ‖Δ_k‖ <= κ`` (or
``‖Δ_0‖ <= κ`` at the first iteration) and has failed when ``θ_k >= 1`` (divergence), its
increment is not finite, or ``max_iter`` iterations pass. Rows that converged or failed
stop changing; the loop ends when no row is iterating (one host sync per iteration).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from ..errors import StepSizeUnderflowError

Tensor = torch.Tensor

__all__ = ["NewtonResult", "newton", "NewtonFailureError", "SLOW_RATE"]

SLOW_RATE = 0.05  # a contraction rate above this asks for a fresh Jacobian


class NewtonFailureError(StepSizeUnderflowError):
    """The Newton iteration of an implicit method did not converge at the smallest step
    (``dt_min``, time resolution, or the fixed step size)."""


class NewtonResult(NamedTuple):
    """The iterate ``z`` (rows first), per row: failed, slow (rate > `SLOW_RATE`), and
    the number of iterations (the evaluations of G the row took part in)."""

    z: Tensor
    failed: Tensor
    slow: Tensor
    iters: Tensor


def _row_rms(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1).square().mean(-1).sqrt()


def newton(residual: Callable[[Tensor], Tensor], solve: Callable[[Tensor], Tensor],
           z0: Tensor, scale: Tensor, kappa: float, max_iter: int) -> NewtonResult:
    """Simplified Newton on ``residual(z)`` (shape of ``z``, rows first) with ``solve(v) =
    M⁻¹ v``; ``scale`` (broadcasting against ``z``) scales the increments' norms."""
    R = z0.shape[0]
    dev = z0.device
    z = z0
    active = torch.ones(R, dtype=torch.bool, device=dev)
    failed = torch.zeros_like(active)
    slow = torch.zeros_like(active)
    iters = torch.zeros(R, dtype=torch.long, device=dev)
    prev = None
    for k in range(max_iter):
        dz = -solve(residual(z))
        iters = iters + active
        nrm = _row_rms(dz / scale)
        bad = ~torch.isfinite(nrm)
        if prev is None:
            theta = torch.zeros_like(nrm)
            done = nrm <= kappa
        else:
            theta = nrm / prev.clamp_min(1e-300)
            done = (theta < 1) & (theta / (1 - theta).clamp_min(1e-300) * nrm <= kappa)
            bad = bad | (theta >= 1)
        done = done | (nrm == 0)
        bad = bad & ~(nrm == 0)
        step = active & ~bad
        z = torch.where(step.reshape(R, *([1] * (z.dim() - 1))), z + dz, z)
        slow = slow | (active & (theta > SLOW_RATE))
        failed = failed | (active & bad)
        active = active & ~bad & ~done
        prev = nrm
        if not bool(active.any()):
            break
    failed = failed | active
    return NewtonResult(z, failed, slow | failed, iters)
