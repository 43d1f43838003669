"""The gradient of an event time by the implicit function theorem.

An event time t* solves ``g(t*, y(t*; θ); θ) = 0``. Differentiating,
``dt*/dθ = -(∂g/∂θ + ∂g/∂y · ∂y/∂θ) / (∂g/∂t + ∂g/∂y · f(t*, y*))``, and the state at the
event has total derivative ``dy*/dθ = ∂y/∂θ + f(t*, y*) dt*/dθ``. `attach_event_gradient`
adds both as zero-valued terms on the located ``(t*, y*)``, so autograd sees them whatever
produced ``y*`` (any gradient mode).
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch

Tensor = torch.Tensor

__all__ = ["attach_event_gradient"]


def attach_event_gradient(func: Callable, g: Callable, t: Tensor, y: Tensor,
                          per_sample: bool = False) -> Tuple[Tensor, Tensor]:
    """``(t*, y*)`` carrying the implicit-function gradient of the event time.

    ``t`` is the located time (its own graph is ignored), ``y`` the state there, with the
    graph of the solve at fixed ``t``. ``g(t, y)`` is the event function: 0-dim, or ``(B,)``
    per sample with ``t`` of shape ``(B,)``. In per-sample mode rows must be independent.
    """
    t = t.detach()
    with torch.enable_grad():
        tt = t.clone().requires_grad_(True)
        yy = y.detach().requires_grad_(True)
        gv = g(tt, yy)
        gt, gy = torch.autograd.grad(gv.sum(), (tt, yy), allow_unused=True)
    with torch.no_grad():
        f = func(t, y.detach())
        gy = torch.zeros_like(yy) if gy is None else gy
        dims = tuple(range(1, y.dim())) if per_sample else tuple(range(y.dim()))
        dgdt = (gy * f).sum(dim=dims) if dims else gy * f
        if gt is not None:
            dgdt = dgdt + gt
    value = g(t, y)
    t_star = t - (value - value.detach()) / dgdt
    dt = t_star - t
    shape = (-1,) + (1,) * (y.dim() - 1) if per_sample else ()
    return t_star, y + f * dt.reshape(shape)
