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
                    per_sample: bool, iters: int = 12) -> Tensor:
    """|λ|max of ∂f/∂y at ``(t, y)`` by power iteration on difference quotients (a few
    calls of f, no graph): per row ``(B,)`` per sample (rows are independent), else 0-dim."""
    def norm(v: Tensor) -> Tensor:
        return v.reshape(v.shape[0], -1).norm(dim=-1) if per_sample else v.norm()

    def bc(r: Tensor) -> Tensor:
        return r.reshape(-1, *([1] * (y.dim() - 1))) if per_sample else r
    with torch.no_grad():
        f0 = fn(t, y)
        v = torch.randn(y.shape, dtype=y.dtype, device=y.device,
                        generator=torch.Generator(device=y.device).manual_seed(0))
        eps = (torch.finfo(y.dtype).eps ** 0.5) * (bc(norm(y)) + 1.0)
        rho = norm(v) * 0
        for _ in range(iters):
            v = v / bc(norm(v).clamp_min(1e-300))
            v = (fn(t, y + eps * v) - f0) / eps
            rho = norm(v)
        return torch.nan_to_num(rho, nan=0.0, posinf=0.0)


def diagnose(fn: Callable, err: SolverError, t: Tensor, y0: Tensor, per_sample: bool
             ) -> Optional[str]:
    """Why an explicit solve failed, when its step-size history looks stiff."""
    stats = err.stats or {}
    if "n_accepted" not in stats or err.t is None:
        return None
    t0 = t[0].detach()
    reached = err.t.detach().reshape(-1)
    n_acc = stats["n_accepted"].reshape(-1).clamp_min(1).to(reached.dtype)
    stuck = reached != t[-1].detach()  # per sample: the rows that ran out, not those done
    h_mean = (reached - t0).abs() / n_acc
    tt = t0.expand(y0.shape[0]) if per_sample else t0
    points: List[Any] = [(tt, y0)]
    if err.ys is not None and isinstance(err.ys, Tensor):
        finite = [j for j in range(1, err.ys.shape[0]) if bool(torch.isfinite(err.ys[j]).all())]
        if finite:
            j = finite[-1]
            points.append((t[j].expand(y0.shape[0]) if per_sample else t[j], err.ys[j]))
    rho = torch.stack([spectral_radius(fn, tp, yp, per_sample) for tp, yp in points]).amax(0)
    rho = rho.reshape(-1)
    span = float((t[-1] - t0).abs())
    hr = h_mean * rho
    stiff = stuck & (hr >= 0.3) & (hr <= 30) & (span * rho >= 1e3)
    if not bool(stiff.any()):
        return None
    r = int(stiff.nonzero()[0, 0])
    where = f" (row {r}, one of {int(stiff.sum())} such rows)" if per_sample else ""
    return (f"the problem looks stiff{where}: ∂f/∂y has eigenvalues of size "
            f"~{float(rho[r]):.3g}, and the mean accepted step {float(h_mean[r]):.3g} sits at "
            f"the explicit stability limit (h·|λ| ≈ {float(hr[r]):.2g}) over an interval of "
            f"{span * float(rho[r]):.3g} such time constants; {STIFF_HINT}")
