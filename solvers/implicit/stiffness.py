"""Stiffness diagnosis for an explicit solve that ran out of steps or step size.

Stiff problems make explicit methods take steps at their stability limit, ``h ρ ≈ 3``
(ρ the spectral radius of ∂f/∂y), however smooth the solution: the tell-tale history is
a mean accepted step ``h̄`` with ``h̄ ρ`` of order one while the interval spans thousands
of ``1/ρ``. `diagnose` estimates ρ by power iteration with finite-difference
Jacobian–vector products at the start and at the last output reached, and returns a
sentence for the error message (or None when the history does not look stiff).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

import torch

from ..errors import SolverError

Tensor = torch.Tensor

__all__ = ["spectral_radius", "diagnose", "STIFF_HINT"]

STIFF_HINT = "use an implicit method: method='kvaerno5', 'rodas4' or 'radauIIA5'"


def spectral_radius(fn: Callable[[Tensor, Tensor], Tensor], t: Tensor, y: Tensor,
                    iters: int = 12) -> float:
    """|λ|max of ∂f/∂y at ``(t, y)`` (whole state), by power iteration on difference
    quotients (a few calls of f; no graph)."""
    with torch.no_grad():
        f0 = fn(t, y)
        v = torch.randn(y.shape, dtype=y.dtype, device=y.device,
                        generator=torch.Generator(device=y.device).manual_seed(0))
        scale = float(y.abs().max()) + 1.0
        rho = 0.0
        for _ in range(iters):
            v = v / v.norm().clamp_min(1e-300)
            eps = (torch.finfo(y.dtype).eps ** 0.5) * scale
            w = (fn(t, y + eps * v) - f0) / eps
            rho = float(w.norm())
            if not (rho > 0 and rho < float("inf")):
                return 0.0
            v = w
        return rho


def diagnose(fn: Callable, err: SolverError, t: Tensor, y0: Tensor, per_sample: bool
             ) -> Optional[str]:
    """Why an explicit solve failed, when its step-size history looks stiff."""
    stats = err.stats or {}
    if "n_accepted" not in stats or err.t is None:
        return None
    t0 = t[0].detach()
    reached = err.t.detach().reshape(-1)
    n_acc = stats["n_accepted"].reshape(-1).clamp_min(1).to(reached.dtype)
    h_mean = float(((reached - t0).abs() / n_acc).max())
    tt = t0.expand(y0.shape[0]) if per_sample else t0
    points: List[Any] = [(tt, y0)]
    if err.ys is not None and isinstance(err.ys, Tensor):
        finite = [j for j in range(1, err.ys.shape[0]) if bool(torch.isfinite(err.ys[j]).all())]
        if finite:
            j = finite[-1]
            points.append((t[j].expand(y0.shape[0]) if per_sample else t[j], err.ys[j]))
    rho = max(spectral_radius(fn, tp, yp) for tp, yp in points)
    span = float((t[-1] - t0).abs())
    if rho <= 0 or not (0.3 <= h_mean * rho <= 30) or span * rho < 1e3:
        return None
    return (f"the problem looks stiff: ∂f/∂y has eigenvalues of size ~{rho:.3g}, and the "
            f"mean accepted step {h_mean:.3g} sits at the explicit stability limit "
            f"(h·|λ| ≈ {h_mean * rho:.2g}) over an interval of {span * rho:.3g} such time "
            f"constants; {STIFF_HINT}")
