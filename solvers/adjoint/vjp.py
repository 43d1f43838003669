"""The vector–Jacobian products of the continuous adjoint and the backward solves'
per-interval arguments (shared by `adjoint.backsolve` and `adjoint.stiff`)."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..engine.controller import StepTo

Tensor = torch.Tensor

__all__ = ["field_vjps", "interval_kwargs"]


def field_vjps(f: Callable[[Tensor, Tensor], Tensor], t: Tensor, y: Tensor, a: Tensor,
               need_t: bool, params: Sequence[Tensor]
               ) -> Tuple[Tensor, Tensor, Tensor, List[Tensor]]:
    """``f(t, y)`` and the products ``-aᵀ ∂f/∂y``, ``-aᵀ ∂f/∂t``, ``-aᵀ ∂f/∂θ`` (zeros for
    inputs f does not depend on)."""
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        tt = t.detach().requires_grad_(need_t)
        fy = f(tt, y)
        inputs = [y] + ([tt] if need_t else []) + list(params)
        grads = (torch.autograd.grad(fy, inputs, grad_outputs=-a, allow_unused=True)
                 if fy.requires_grad else (None,) * len(inputs))  # f independent of all
    gt = or_zeros(grads[1] if need_t else None, t)
    gp = [or_zeros(g, p) for g, p in zip(grads[1 + need_t:], params)]
    return fy.detach(), or_zeros(grads[0], y), gt, gp


def interval_kwargs(solve_kw: Dict[str, Any], t: Tensor, i: int) -> Dict[str, Any]:
    """The backward solve's arguments on ``[t[i], t[i-1]]``: a `StepTo` grid becomes its
    points inside that interval, walked backwards, between the two output times."""
    ctrl = solve_kw["controller"]
    if not isinstance(ctrl, StepTo):
        return solve_kw
    grid = ctrl.grid(t, 1.0 if bool(t[-1] > t[0]) else -1.0)
    lo, hi = t[i - 1].detach(), t[i].detach()
    inside = grid[((grid - lo) * (grid - hi) < 0)]
    sub = torch.cat([t[i - 1:i], inside, t[i:i + 1]]).flip(0)
    return {**solve_kw, "controller": StepTo(sub)}


def or_zeros(g: Optional[Tensor], like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g
