"""Batched bracketing root finder: the Illinois variant of regula falsi.

Each bracket ``[a, b]`` holds a sign change of its scalar function (``g(a) g(b) <= 0``).
A step replaces ``b`` by the secant point ``c``; when the sign change lies between ``c``
and the old ``b``, the old ``b`` becomes ``a``, otherwise ``g(a)`` is halved (Illinois),
which makes convergence superlinear and shrinks both ends. A bracket is done when its
width is at most ``tol`` (per bracket), when the newest secant step moved the estimate by
at most ``tol`` (convergence is superlinear, so the error is then far below ``tol``; the
far end of the bracket may still be wide), or when ``g`` is exactly zero at an end.
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch

Tensor = torch.Tensor

__all__ = ["illinois", "default_tol"]


def default_tol(t: Tensor) -> Tensor:
    """8 ulps of the time: ``8 * eps(dtype) * max(1, |t|)`` (the state's precision bounds
    how well the dense output resolves a root anyway)."""
    return 8 * torch.finfo(t.dtype).eps * t.detach().abs().clamp_min(1.0)


def illinois(g: Callable[[Tensor], Tensor], a: Tensor, b: Tensor, ga: Tensor, gb: Tensor,
             tol: Tensor, max_iter: int = 100) -> Tuple[Tensor, int]:
    """Roots of ``g`` (vectorised: ``g`` maps times of shape ``(R,)`` to values ``(R,)``)
    in the brackets ``[a, b]`` with values ``ga``, ``gb``. Returns ``(t, iterations)``;
    ``t`` lies within ``tol`` of a sign change of ``g`` (see the module docstring)."""
    a, b, ga, gb = a.detach(), b.detach(), ga.detach(), gb.detach()
    it = 0
    moved = torch.full_like(b, float("inf"))
    for it in range(1, max_iter + 1):
        done = ((b - a).abs() <= tol) | (moved <= tol) | (gb == 0) | (ga == 0)
        if bool(done.all()):
            break
        c = torch.where(done, b, _secant(a, b, ga, gb))
        moved = (c - b).abs()
        gc = g(c).detach()
        flip = gc * gb < 0                   # the sign change is between c and the old b
        m = 1 - gc / gb                      # Anderson-Bjorck scaling of the kept end
        m = torch.where(m > 0, m, 0.5)
        a, ga = torch.where(flip, b, a), torch.where(flip, gb, ga * m)
        b, gb = c, gc
    return torch.where((ga == 0) & (gb != 0), a, b), it


def _secant(a: Tensor, b: Tensor, ga: Tensor, gb: Tensor) -> Tensor:
    """The secant point ``b - g(b) (b - a) / (g(b) - g(a))``, kept inside the bracket (the
    midpoint where it is undefined)."""
    c = b - gb * (b - a) / (gb - ga)
    inside = (c - a) * (c - b) <= 0         # False for NaN (0 / 0) too
    return torch.where(inside, c, (a + b) / 2)
