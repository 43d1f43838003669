"""Batched bracketing root finder: the Illinois variant of regula falsi.

Each bracket ``[a, b]`` holds a sign change of its scalar function (``g(a) g(b) <= 0``).
A step takes the secant point ``c`` and keeps the sub-bracket with the sign change; when
the same end is kept twice in a row, the other end's function value is halved (Illinois),
which makes convergence superlinear and shrinks both ends. A bracket is done when its
width is at most ``tol`` (per bracket) or ``g`` is exactly zero at an end.
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
    ``t`` lies within ``tol`` of a sign change of ``g``."""
    a, b, ga, gb = a.detach(), b.detach(), ga.detach(), gb.detach()
    side = torch.zeros_like(a)
    it = 0
    for it in range(1, max_iter + 1):
        done = ((b - a).abs() <= tol) | (ga == 0) | (gb == 0)
        if bool(done.all()):
            break
        c = _secant(a, b, ga, gb)
        gc = g(torch.where(done, b, c)).detach()
        keep_b = (torch.sign(gc) == torch.sign(gb)) & ~done   # root in [a, c]
        keep_a = ~keep_b & ~done                               # root in [c, b]
        ga = torch.where(keep_b & (side == -1), ga / 2, ga)
        gb = torch.where(keep_a & (side == 1), gb / 2, gb)
        b, gb = torch.where(keep_b, c, b), torch.where(keep_b, gc, gb)
        a, ga = torch.where(keep_a, c, a), torch.where(keep_a, gc, ga)
        side = torch.where(keep_b, -1.0, torch.where(keep_a, 1.0, side))
    t = torch.where(ga == 0, a, torch.where(gb == 0, b, _secant(a, b, ga, gb)))
    return t, it


def _secant(a: Tensor, b: Tensor, ga: Tensor, gb: Tensor) -> Tensor:
    """The secant point of each bracket, the midpoint where it is undefined, kept inside."""
    den = gb - ga
    c = torch.where(den != 0, (a * gb - b * ga) / torch.where(den != 0, den, 1.0),
                    (a + b) / 2)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    c = torch.minimum(torch.maximum(c, lo), hi)
    return torch.where(torch.isfinite(c), c, (a + b) / 2)
