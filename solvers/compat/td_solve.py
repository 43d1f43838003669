"""torchdiffeq's stepping options on the public `solve_ode`: fixed grids with linear or
cubic output interpolation, ``grid_constructor``, ``perturb``, ``step_t`` and ``jump_t``.

* Fixed-step methods step on a grid (``t``, ``step_size`` or ``grid_constructor``) and the
  outputs between grid points are interpolated from the grid values: linearly
  (``interp='linear'``, torchdiffeq's default) or by the cubic Hermite polynomial through
  ``(y_k, f_k)`` and ``(y_{k+1}, f_{k+1})`` (``'cubic'``).
* ``step_t`` and ``jump_t`` split the integration into pieces ending at those times; at a
  ``jump_t`` time f is evaluated on the side of the piece being integrated (the next
  representable time inside it), so a discontinuity of f there is never straddled.
  ``perturb=True`` does the same at every grid point of a fixed-step solve.
"""
from __future__ import annotations

from typing import Callable, List, Sequence

import torch

from ..engine.controller import ConstantStepSize
from ..errors import InvalidInputError, describe
from .td_options import Plan

Tensor = torch.Tensor
Solve = Callable[[Callable, Tensor, Tensor], Tensor]  # (func, y0, times) -> ys

__all__ = ["integrate", "nudged", "piecewise", "interpolate", "hermite"]


def nudged(func: Callable, a: Tensor, b: Tensor, at_a: bool, at_b: bool) -> Callable:
    """``func`` evaluated just inside ``[a, b]`` when called exactly at a marked end."""
    if not (at_a or at_b):
        return func
    av, bv = float(a), float(b)

    def f(t: Tensor, y: Tensor) -> Tensor:
        tv = float(t)
        if (at_a and tv == av) or (at_b and tv == bv):
            target = torch.full_like(t, bv if tv == av else av)
            t = t + (torch.nextafter(t.detach(), target) - t.detach())
        return func(t, y)
    return f


def piecewise(solve: Solve, func: Callable, y0: Tensor, t: Tensor, cuts: Sequence[float],
              jumps: Sequence[float]) -> Tensor:
    """Outputs at ``t`` integrating in pieces that end at the ``cuts`` inside the span;
    f is nudged inside each piece at the ``jumps``."""
    d = 1.0 if t.shape[0] < 2 or float(t[-1]) >= float(t[0]) else -1.0
    t0, t1 = float(t[0]), float(t[-1])
    inner = sorted({c for c in cuts if d * t0 < d * c < d * t1}, key=lambda c: d * c)
    jump_set = set(jumps)
    bounds: List[Tensor] = [t[0]] + [torch.tensor(c, dtype=t.dtype, device=t.device)
                                     for c in inner] + [t[-1]]
    outs, y, j = [y0], y0, 1
    for a, b in zip(bounds[:-1], bounds[1:]):
        inside = []
        while j < t.shape[0] - 1 and d * float(t[j]) < d * float(b):
            inside.append(t[j])
            j += 1
        f = nudged(func, a, b, float(a) in jump_set, float(b) in jump_set)
        ys = solve(f, y, torch.stack([a, *inside, b]))
        outs.extend(ys[1:-1].unbind(0))
        y = ys[-1]
        if j < t.shape[0] and float(t[j]) == float(b):
            outs.append(y)
            j += 1
    return torch.stack(outs[:t.shape[0]])


def _grid(func: Callable, y0: Tensor, t: Tensor, plan: Plan) -> Tensor:
    d = 1.0 if float(t[-1]) >= float(t[0]) else -1.0
    if plan.step_size is not None:
        return ConstantStepSize(plan.step_size).grid(t, d)
    if plan.grid_constructor is None:
        return t
    grid = plan.grid_constructor(func, y0, t)
    if not isinstance(grid, torch.Tensor) or grid.dim() != 1 or grid.shape[0] < 2 or \
            float(grid[0]) != float(t[0]) or float(grid[-1]) != float(t[-1]):
        raise InvalidInputError("`options['grid_constructor']` must return a 1-D tensor "
                                f"from t[0] to t[-1]; got {describe(grid)}")
    return grid.to(t.dtype)


def interpolate(grid: Tensor, ys: Tensor, t: Tensor, func: Callable, cubic: bool) -> Tensor:
    """Values at ``t`` from grid values ``ys`` (linear, or cubic Hermite with f)."""
    d = 1.0 if float(grid[-1]) >= float(grid[0]) else -1.0
    k = torch.searchsorted((d * grid).detach().contiguous(), (d * t).detach().contiguous())
    k = (k - 1).clamp(0, grid.shape[0] - 2)
    g0, g1 = grid[k], grid[k + 1]
    shape = (-1,) + (1,) * (ys.dim() - 1)
    h = (g1 - g0).reshape(shape)
    s = ((t - g0).reshape(shape)) / h
    y0, y1 = ys[k], ys[k + 1]
    if not cubic:
        return y0 + s * (y1 - y0)
    used = sorted(set(k.tolist()) | set((k + 1).tolist()))
    fs = {i: func(grid[i], ys[i]) for i in used}
    f0 = torch.stack([fs[i] for i in k.tolist()])
    f1 = torch.stack([fs[i + 1] for i in k.tolist()])
    return hermite(s, h, y0, f0, y1, f1)


def hermite(s: Tensor, h: Tensor, y0: Tensor, f0: Tensor, y1: Tensor, f1: Tensor) -> Tensor:
    """The cubic Hermite polynomial through ``(y0, f0)`` and ``(y1, f1)`` at fraction ``s``
    of a step ``h``."""
    h00, h10 = (1 + 2 * s) * (1 - s) ** 2, s * (1 - s) ** 2
    h01, h11 = s * s * (3 - 2 * s), s * s * (s - 1)
    return h00 * y0 + h10 * h * f0 + h01 * y1 + h11 * h * f1


def integrate(solve: Solve, func: Callable, y0: Tensor, t: Tensor, plan: Plan) -> Tensor:
    """The states at ``t`` (shape ``(len(t), *y0.shape)``) as torchdiffeq computes them."""
    if t.shape[0] == 1:
        return y0.unsqueeze(0)
    if not plan.fixed:
        cuts = [c for ts in (plan.step_t, plan.jump_t) if ts is not None
                for c in ts.tolist()]
        if not cuts:
            return solve(func, y0, t)
        jumps = [] if plan.jump_t is None else plan.jump_t.tolist()
        return piecewise(solve, func, y0, t, cuts, jumps)
    grid = _grid(func, y0, t, plan)
    if plan.perturb and plan.adams is None:   # Adams steps perturb inside their loop
        inner = grid[1:-1].tolist()
        ys = piecewise(solve, func, y0, grid, inner, [float(grid[0])] + inner + [float(grid[-1])])
    else:
        ys = solve(func, y0, grid)
    if grid is t:
        return ys
    return interpolate(grid, ys, t, func, plan.interp == "cubic")
