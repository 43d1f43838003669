"""torchdiffeq's fixed-grid Adams methods: ``explicit_adams`` (Adams–Bashforth) and
``implicit_adams`` / ``fixed_adams`` (Adams–Bashforth predictor, Adams–Moulton corrector
by functional iteration).

As torchdiffeq: the first two steps are 3/8-rule RK4 steps; then step ``n`` uses the
``min(n, max_order - 1)`` last values of f (variable order up to 11), with the
coefficients of a uniform grid. The corrector iterates at most ``max_iters`` times, until
successive increments agree to ``rtol``/``atol`` in the max norm, and otherwise warns and
drops the oldest stored f. Coefficients come from the backward-difference forms
``y1 = y0 + h Σ_m γ_m ∇^m f`` (γ by the standard recursions, exact in fractions).
"""
from __future__ import annotations

import collections
import functools
import warnings
from fractions import Fraction
from math import comb
from typing import Any, Callable, List, Tuple

import torch

from ..errors import MaxStepsExceededError
from ..events.root import default_tol, illinois
from ..ode.solve import solve_ode
from .tableaus import RK4_38
from .td_solve import hermite, nudged

Tensor = torch.Tensor

__all__ = ["bashforth", "moulton", "adams_grid", "adams_step", "adams_event"]

_START = 3  # steps with fewer stored f values are RK4 steps


@functools.lru_cache(maxsize=None)
def _gammas(k: int, implicit: bool) -> Tuple[Fraction, ...]:
    g: List[Fraction] = [Fraction(1)]
    for m in range(1, k):
        s = sum(g[i] / (m + 1 - i) for i in range(m))
        g.append(-s if implicit else 1 - s)
    return tuple(g)


@functools.lru_cache(maxsize=None)
def bashforth(k: int) -> Tuple[float, ...]:
    """k-step Adams–Bashforth weights of f_n, f_{n-1}, ..., f_{n-k+1}."""
    g = _gammas(k, False)
    return tuple(float((-1) ** j * sum(g[m] * comb(m, j) for m in range(j, k)))
                 for j in range(k))


@functools.lru_cache(maxsize=None)
def moulton(k: int) -> Tuple[float, ...]:
    """Adams–Moulton weights of f_{n+1}, f_n, ..., f_{n-k+1} (k + 1 values)."""
    g = _gammas(k + 1, True)
    return tuple(float((-1) ** j * sum(g[m] * comb(m, j) for m in range(j, k + 1)))
                 for j in range(k + 1))


def _converged(a: Tensor, b: Tensor, rtol: float, atol: float) -> bool:
    tol = atol + rtol * torch.maximum(a.abs(), b.abs())
    return bool(((a - b).abs() / tol).max() < 1)


def _weighted(dt: Tensor, coef: Tuple[float, ...], fs: Any, dtype: torch.dtype) -> Tensor:
    """``dt Σ c_j f_j`` accumulated in float64 and cast back, as torchdiffeq does: the
    high-order weights are large and alternate (order 11: up to ~1e3), so a float32 sum
    loses digits (explicit_adams in float32 was off by 38% on torchdiffeq's sine problem)."""
    acc = sum(c * f.double() for c, f in zip(coef, fs))
    return (dt.double() * acc).to(dtype)


def adams_step(func: Callable, hist: collections.deque, t0: Tensor, t1: Tensor, y: Tensor,
               implicit: bool, rtol: float, atol: float, max_iters: int) -> Tensor:
    """One step from (t0, y); ``hist`` holds the last values of f, newest first, and gets
    f(t0, y) prepended. Returns the increment."""
    dt = t1 - t0
    hist.appendleft(func(t0, y))
    order = min(len(hist), hist.maxlen)
    if order < _START:
        return solve_ode(func, y, torch.stack([t0, t1]), method=RK4_38).ys[-1] - y
    dy = _weighted(dt, bashforth(order), hist, y.dtype)
    if not implicit:
        return dy
    coef = moulton(order)
    delta = _weighted(dt, coef[1:], hist, y.dtype)
    for _ in range(max_iters):
        dy_old = dy
        dy = dt * coef[0] * func(t1, y + dy) + delta
        if _converged(dy_old, dy, rtol, atol):
            return dy
    warnings.warn("Functional iteration did not converge. Solution may be incorrect.")
    hist.pop()
    return dy


def adams_grid(func: Callable, y0: Tensor, grid: Tensor, implicit: bool, rtol: float,
               atol: float, max_order: int = 12, max_iters: int = 4,
               perturb: bool = False, callback: Any = None) -> Tensor:
    """The states on ``grid`` (``(len(grid), *y0.shape)``); ``perturb``: f is evaluated
    just inside each step at its ends (`td_solve.nudged`); ``callback.before_step(t0, y0,
    h)`` is called before each step."""
    hist: collections.deque = collections.deque(maxlen=max_order - 1)
    ys, y = [y0], y0
    for i in range(grid.shape[0] - 1):
        if callback is not None:
            callback.before_step(grid[i], y, grid[i + 1] - grid[i])
        f = nudged(func, grid[i], grid[i + 1], perturb, perturb)
        y = y + adams_step(f, hist, grid[i], grid[i + 1], y, implicit, rtol, atol, max_iters)
        ys.append(y)
    return torch.stack(ys)


def adams_event(func: Callable, y0: Tensor, t0: Tensor, dt: float, g: Callable,
                implicit: bool, rtol: float, atol: float, max_order: int = 12,
                max_iters: int = 4, max_steps: int = 20000) -> Tuple[Tensor, Tensor]:
    """Step by ``dt`` until ``g(t, y)`` changes sign (as torchdiffeq's fixed-grid event
    loop, at most ``max_steps`` steps); the root is found by the Illinois method on the
    last step's cubic Hermite interpolant. Returns ``(t*, y(t*))``."""
    hist: collections.deque = collections.deque(maxlen=max_order - 1)
    t, y = t0, y0
    g0 = _scalar(g(t, y))
    for _ in range(max_steps):
        t1 = t + dt
        y1 = y + adams_step(func, hist, t, t1, y, implicit, rtol, atol, max_iters)
        g1 = _scalar(g(t1, y1))
        if torch.sign(g1) != torch.sign(g0):
            return _root(func, g, t, y, hist[0], t1, y1, g0, g1)
        t, y = t1, y1
    raise MaxStepsExceededError(f"event handling: no event within {max_steps} steps")


def _scalar(v: Tensor) -> Tensor:
    return torch.as_tensor(v).detach().reshape(1)


def _root(func: Callable, g: Callable, t0: Tensor, y0: Tensor, f0: Tensor, t1: Tensor,
          y1: Tensor, g0: Tensor, g1: Tensor) -> Tuple[Tensor, Tensor]:
    f1 = func(t1, y1)
    h = t1 - t0

    def at(t: Tensor) -> Tensor:
        return hermite((t - t0) / h, h, y0, f0, y1, f1)
    with torch.no_grad():
        a, b = t0.detach().reshape(1), t1.detach().reshape(1)
        t, _ = illinois(lambda x: _scalar(g(x[0], at(x[0]))), a, b, g0, g1, default_tol(b))
    return t[0], at(t[0])
