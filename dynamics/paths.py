"""Flow-matching interpolation paths ``x_t = alpha(t) x0 + sigma(t) z`` (x0 data, z ~ N(0, I)).

t = 0 is data and t = T (= 1 unless stated) is noise, matching the diffusion clock, so
sampling integrates ``dx/dt = v(x, t)`` from T down to 0.

For a path with derivatives ``a' = d alpha/dt``, ``s' = d sigma/dt``:

- conditional velocity (the flow-matching regression target): ``u = a' x0 + s' z``;
- conditional vector field given x0: ``u_t(x | x0) = a' x0 + s' (x - alpha x0) / sigma``;
- marginal field ``v(x, t) = E[u | x_t = x] = a' x0_hat + s' eps_hat`` with
  ``eps_hat = -sigma score`` and ``x0_hat = (x - sigma eps_hat) / alpha`` (Tweedie), i.e.
  ``v = f x - g^2 score / 2`` with ``f = a'/alpha``, ``g^2 / 2 = sigma s' - f sigma^2`` --
  the probability-flow ODE of the linear SDE with the same alpha, sigma;
- and back: ``eps_hat = (alpha v - a' x) / (alpha s' - sigma a')``, ``score = -eps_hat / sigma``.

Any path works with `GaussianMixture`'s exact marginals (they need only alpha and sigma).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable, Optional, Sequence, Tuple, Union

import torch

from solvers.errors import InvalidInputError, describe

from .base import LinearSDE
from .broadcast import TimeLike, as_time_tensor, broadcast_time, expand_coef
from .checks import check_draw, check_positive

Tensor = torch.Tensor
TimeFn = Callable[[Tensor], Tensor]

__all__ = ["InterpolationPath", "LinearPath", "CosinePath", "AlphaSigmaPath", "SDEPath"]


class InterpolationPath(ABC):
    """Base class: subclasses define ``alpha``, ``sigma``, ``d_alpha``, ``d_sigma`` on tensors."""

    T: float = 1.0

    @abstractmethod
    def alpha(self, t: TimeLike) -> Tensor:
        """Data coefficient alpha(t)."""

    @abstractmethod
    def sigma(self, t: TimeLike) -> Tensor:
        """Noise coefficient sigma(t)."""

    @abstractmethod
    def d_alpha(self, t: TimeLike) -> Tensor:
        """d alpha / dt."""

    @abstractmethod
    def d_sigma(self, t: TimeLike) -> Tensor:
        """d sigma / dt."""

    # ---- helpers
    def _coefs(self, x: Tensor, t: TimeLike) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        tb = broadcast_time(t, x)
        return tuple(expand_coef(fn(tb), x)  # type: ignore[return-value]
                     for fn in (self.alpha, self.sigma, self.d_alpha, self.d_sigma))

    def sample(self, x0: Tensor, t: TimeLike, noise: Optional[Tensor] = None,
               generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """``(x_t, z)`` with ``x_t = alpha(t) x0 + sigma(t) z``."""
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        elif noise.shape != x0.shape:
            raise InvalidInputError(f"`noise` must have x0's shape {tuple(x0.shape)}; "
                                    f"got {describe(noise)}")
        a, s, _, _ = self._coefs(x0, t)
        return a * x0 + s * noise, noise

    def target_velocity(self, x0: Tensor, noise: Tensor, t: TimeLike) -> Tensor:
        """Conditional velocity ``a' x0 + s' z`` (the flow-matching regression target)."""
        _, _, da, ds = self._coefs(x0, t)
        return da * x0 + ds * noise

    def conditional_vector_field(self, x: Tensor, x0: Tensor, t: TimeLike) -> Tensor:
        """``u_t(x | x0) = a' x0 + s' (x - alpha x0) / sigma`` (needs sigma(t) > 0)."""
        a, s, da, ds = self._coefs(x, t)
        return da * x0 + ds * (x - a * x0) / s

    def velocity_from_x0(self, x0_hat: Tensor, x: Tensor, t: TimeLike) -> Tensor:
        """Marginal velocity from a denoiser ``x0_hat = E[x0 | x_t = x]`` (needs sigma > 0)."""
        a, s, da, ds = self._coefs(x, t)
        return da * x0_hat + ds * (x - a * x0_hat) / s

    def score_to_velocity(self, score: Tensor, x: Tensor, t: TimeLike) -> Tensor:
        """Marginal velocity from the score of p_t (needs alpha(t) != 0)."""
        a, s, da, ds = self._coefs(x, t)
        eps = -s * score
        return da * (x - s * eps) / a + ds * eps

    def velocity_to_score(self, v: Tensor, x: Tensor, t: TimeLike) -> Tensor:
        """Score of p_t from the marginal velocity (needs sigma > 0, alpha s' != sigma a')."""
        a, s, da, ds = self._coefs(x, t)
        eps = (a * v - da * x) / (a * ds - s * da)
        return -eps / s

    def velocity_to_x0(self, v: Tensor, x: Tensor, t: TimeLike) -> Tensor:
        """Denoiser ``E[x0 | x_t]`` from the marginal velocity."""
        a, s, da, ds = self._coefs(x, t)
        return (ds * x - s * v) / (a * ds - s * da)

    def prior_sample(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                     dtype: Optional[torch.dtype] = None,
                     device: Optional[Union[str, torch.device]] = None) -> Tensor:
        """``z ~ N(0, I)`` of shape ``(B, *event)`` (x_T = alpha(T) x0 + sigma(T) z); arguments
        are checked by `dynamics.checks.check_draw`."""
        shape, device = check_draw(shape, generator, dtype, device)
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearPath(InterpolationPath):
    """Rectified flow / linear path ``x_t = (1 - t) x0 + t z``; conditional velocity ``z - x0``."""

    def alpha(self, t: TimeLike) -> Tensor:
        return 1.0 - as_time_tensor(t)

    def sigma(self, t: TimeLike) -> Tensor:
        return as_time_tensor(t) * 1.0

    def d_alpha(self, t: TimeLike) -> Tensor:
        return torch.full_like(as_time_tensor(t), -1.0)

    def d_sigma(self, t: TimeLike) -> Tensor:
        return torch.ones_like(as_time_tensor(t))


class CosinePath(InterpolationPath):
    """Variance-preserving path ``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)``."""

    def alpha(self, t: TimeLike) -> Tensor:
        return torch.cos(0.5 * math.pi * as_time_tensor(t))

    def sigma(self, t: TimeLike) -> Tensor:
        return torch.sin(0.5 * math.pi * as_time_tensor(t))

    def d_alpha(self, t: TimeLike) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * as_time_tensor(t))

    def d_sigma(self, t: TimeLike) -> Tensor:
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * as_time_tensor(t))


def _autograd_derivative(fn: TimeFn, t: Tensor) -> Tensor:
    with torch.enable_grad():
        tt = t.detach().requires_grad_(True)
        y = fn(tt)
        (d,) = torch.autograd.grad(y.sum(), tt)
    return d


class AlphaSigmaPath(InterpolationPath):
    """General path from callables ``alpha(t)``, ``sigma(t)`` (elementwise tensor functions).

    Derivatives default to autograd of the given functions.
    """

    def __init__(self, alpha: TimeFn, sigma: TimeFn, d_alpha: Optional[TimeFn] = None,
                 d_sigma: Optional[TimeFn] = None, T: float = 1.0) -> None:
        for name, fn in (("alpha", alpha), ("sigma", sigma), ("d_alpha", d_alpha),
                         ("d_sigma", d_sigma)):
            if fn is not None and not callable(fn):
                raise InvalidInputError(f"`{name}` must be a callable of t; got {describe(fn)}")
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


class SDEPath(InterpolationPath):
    """The path of a linear SDE's kernel: ``alpha``, ``sigma`` of ``sde``, with
    ``d alpha = f alpha`` and ``d sigma = (g^2 + 2 f sigma^2) / (2 sigma)``.

    Its marginal velocity is the SDE's probability-flow field.
    """

    def __init__(self, sde: LinearSDE) -> None:
        if not isinstance(sde, LinearSDE):
            raise InvalidInputError(f"`sde` must be a dynamics.LinearSDE; got {describe(sde)}")
        self.sde = sde
        self.T = sde.T

    def alpha(self, t: TimeLike) -> Tensor:
        return self.sde.alpha(t)

    def sigma(self, t: TimeLike) -> Tensor:
        return self.sde.sigma(t)

    def d_alpha(self, t: TimeLike) -> Tensor:
        return self.sde.drift_coef(t) * self.sde.alpha(t)

    def d_sigma(self, t: TimeLike) -> Tensor:
        s = self.sde.sigma(t)
        return (self.sde.diffusion_sq(t) + 2.0 * self.sde.drift_coef(t) * s ** 2) / (2.0 * s)

    def __repr__(self) -> str:
        return f"SDEPath({self.sde!r})"
