"""Flow-matching paths ``x_t = alpha(t) x0 + sigma(t) z`` (x0 data, z ~ N(0, I)), as
`dynamics.GaussianPath` s: t = 0 is data and t = T (= 1 unless stated) is noise, matching the
diffusion clock, so sampling integrates ``dx/dt = v(x, t)`` from T down to 0.

The marginal field ``v(x, t) = E[alpha' x0 + sigma' z | x_t = x]`` is the probability-flow
field of the linear SDE with the same alpha, sigma; `dynamics.parameterization` converts it
to and from the score, noise, x0 and v. Any path works with `GaussianMixture`'s exact marginals
(they need only alpha and sigma).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from solvers.errors import describe

from .errors import InputError
from .broadcast import TimeLike, as_time_tensor
from .checks import check_positive
from .gaussian_path import GaussianPath

Tensor = torch.Tensor
TimeFn = Callable[[Tensor], Tensor]

__all__ = ["LinearPath", "CosinePath", "AlphaSigmaPath"]


class LinearPath(GaussianPath):
    """Rectified flow / linear path ``x_t = (1 - t) x0 + t z``; conditional velocity ``z - x0``."""

    def alpha(self, t: TimeLike) -> Tensor:
        return 1.0 - as_time_tensor(t)

    def sigma(self, t: TimeLike) -> Tensor:
        return as_time_tensor(t) * 1.0

    def d_alpha(self, t: TimeLike) -> Tensor:
        return torch.full_like(as_time_tensor(t), -1.0)

    def d_sigma(self, t: TimeLike) -> Tensor:
        return torch.ones_like(as_time_tensor(t))

    def t_from_log_snr(self, log_snr: TimeLike) -> Tensor:
        return torch.sigmoid(-0.5 * as_time_tensor(log_snr))


class CosinePath(GaussianPath):
    """Variance-preserving path ``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)``."""

    def alpha(self, t: TimeLike) -> Tensor:
        return torch.cos(0.5 * math.pi * as_time_tensor(t))

    def sigma(self, t: TimeLike) -> Tensor:
        return torch.sin(0.5 * math.pi * as_time_tensor(t))

    def d_alpha(self, t: TimeLike) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * as_time_tensor(t))

    def d_sigma(self, t: TimeLike) -> Tensor:
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * as_time_tensor(t))

    def t_from_log_snr(self, log_snr: TimeLike) -> Tensor:
        return torch.atan(torch.exp(-0.5 * as_time_tensor(log_snr))) * (2.0 / math.pi)


def _autograd_derivative(fn: TimeFn, t: Tensor) -> Tensor:
    with torch.enable_grad():
        tt = t.detach().requires_grad_(True)
        y = fn(tt)
        (d,) = torch.autograd.grad(y.sum(), tt)
    return d


class AlphaSigmaPath(GaussianPath):
    """General path from callables ``alpha(t)``, ``sigma(t)`` (elementwise tensor functions).

    Derivatives default to autograd of the given functions.
    """

    def __init__(self, alpha: TimeFn, sigma: TimeFn, d_alpha: Optional[TimeFn] = None,
                 d_sigma: Optional[TimeFn] = None, T: float = 1.0) -> None:
        for name, fn in (("alpha", alpha), ("sigma", sigma), ("d_alpha", d_alpha),
                         ("d_sigma", d_sigma)):
            if fn is not None and not callable(fn):
                raise InputError(f"`{name}` must be a callable of t; got {describe(fn)}")
        self._alpha, self._sigma = alpha, sigma
        self._d_alpha, self._d_sigma = d_alpha, d_sigma
        self.T = check_positive("T", T)

    def alpha(self, t: TimeLike) -> Tensor:
        return self._alpha(as_time_tensor(t))

    def sigma(self, t: TimeLike) -> Tensor:
        return self._sigma(as_time_tensor(t))

    def d_alpha(self, t: TimeLike) -> Tensor:
        t = as_time_tensor(t)
        return self._d_alpha(t) if self._d_alpha else _autograd_derivative(self._alpha, t)

    def d_sigma(self, t: TimeLike) -> Tensor:
        t = as_time_tensor(t)
        return self._d_sigma(t) if self._d_sigma else _autograd_derivative(self._sigma, t)
