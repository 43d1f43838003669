"""The Gaussian path protocol: ``x_t = alpha(t) x0 + sigma(t) z``, ``z ~ N(0, I)``.

Every process of this package is one: the linear SDEs (`dynamics.base.LinearSDE`, whose drift
and diffusion follow from the path) and the flow-matching paths (`dynamics.paths`). Clock:
t = 0 is data, t = T is noise. A path defines ``alpha``, ``sigma`` and their time derivatives;
the log-SNR, its inverse, the perturbation ``perturb``, the linear SDE with this kernel
(``f = alpha'/alpha``, ``g^2 = 2 sigma sigma' - 2 f sigma^2``, Kingma et al. 2021) and the
flow-matching targets follow. Conversions between score, noise, x0, v and velocity predictions
live in `dynamics.parameterization`.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Optional, Sequence, Tuple, Union

import torch

from solvers.errors import describe

from .errors import InputError
from .broadcast import TimeLike, as_time_tensor, broadcast_time, expand_coef
from .checks import check_draw, check_time
from .deprecation import renamed_attribute

Tensor = torch.Tensor

__all__ = ["GaussianPath", "check_path"]


class GaussianPath(ABC):
    """``x_t = alpha(t) x0 + sigma(t) z`` on ``[0, T]``; ``t_min`` is the default end time of
    sampling (and start of likelihood solves, smallest training time; ``eps`` is its deprecated
    name). Subclasses define `alpha`, `sigma`, `d_alpha`,
    `d_sigma` (tensor functions of a number, 0-dim or (B,) time; no value checks)."""

    T: float = 1.0
    t_min: float = 0.0
    eps = renamed_attribute("eps", "t_min")

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

    # ---- signal-to-noise ratio
    def log_snr(self, t: TimeLike) -> Tensor:
        """log(alpha^2 / sigma^2), decreasing in t."""
        return 2.0 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    def t_from_log_snr(self, log_snr: TimeLike) -> Tensor:
        """The time with ``log_snr(t) == log_snr`` (bisection on [0, T] in float64; paths with
        a closed form override it)."""
        lam = as_time_tensor(log_snr).double()
        lo, hi = torch.zeros_like(lam), torch.full_like(lam, self.T)
        for _ in range(60):
            mid = (lo + hi) / 2
            above = self.log_snr(mid).double() > lam      # log-SNR decreases: root is later
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return ((lo + hi) / 2).to(as_time_tensor(log_snr).dtype)

    # ---- the linear SDE with this kernel
    def drift_coef(self, t: TimeLike) -> Tensor:
        """f(t) = alpha'(t) / alpha(t)."""
        return self.d_alpha(t) / self.alpha(t)

    def diffusion_sq(self, t: TimeLike) -> Tensor:
        """g(t)^2 = d sigma^2/dt - 2 f sigma^2."""
        s = self.sigma(t)
        return 2.0 * s * self.d_sigma(t) - 2.0 * self.drift_coef(t) * s ** 2

    # ---- coefficients against a state
    def coefs(self, x: Tensor, t: TimeLike) -> Tuple[Tensor, Tensor]:
        """``(alpha(t), sigma(t))`` shaped ``(B, 1, ..., 1)`` against ``x`` ``(B, *event)``;
        ``t`` a number, 0-dim or (B,)."""
        tb = broadcast_time(t, x)
        return expand_coef(self.alpha(tb), x), expand_coef(self.sigma(tb), x)

    def d_coefs(self, x: Tensor, t: TimeLike) -> Tuple[Tensor, Tensor]:
        """``(alpha'(t), sigma'(t))`` shaped like `coefs`."""
        tb = broadcast_time(t, x)
        return expand_coef(self.d_alpha(tb), x), expand_coef(self.d_sigma(tb), x)

    # ---- perturbation kernel
    def marginal(self, x0: Tensor, t: TimeLike) -> Tuple[Tensor, Tensor]:
        """Kernel ``p_t(x | x0) = N(mean, std^2 I)``: returns ``(alpha(t) x0, sigma(t))``;
        ``mean`` has x0's shape, ``std`` ``(B, 1, ..., 1)``. ``t`` (in [0, T]): number or (B,).
        """
        _check_state("x0", x0)
        check_time(t, self.T)
        a, s = self.coefs(x0, t)
        return a * x0, s

    def perturb(self, x0: Tensor, t: TimeLike, noise: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """Sample ``x_t = alpha(t) x0 + sigma(t) z`` from the kernel; returns ``(x_t, z)``."""
        mean, std = self.marginal(x0, t)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        elif noise.shape != x0.shape:
            raise InputError(
                f"`noise` must have x0's shape {tuple(x0.shape)}; got {describe(noise)}")
        return mean + std * noise, noise

    def kernel_score(self, x_t: Tensor, x0: Tensor, t: TimeLike) -> Tensor:
        """Score of the kernel, ``-(x_t - alpha x0) / sigma^2`` (the DSM regression target)."""
        mean, std = self.marginal(x0, t)
        return -(x_t - mean) / std ** 2

    # ---- flow-matching targets
    def target_velocity(self, x0: Tensor, noise: Tensor, t: TimeLike) -> Tensor:
        """Conditional velocity ``alpha' x0 + sigma' z`` (the flow-matching regression target)."""
        da, ds = self.d_coefs(x0, t)
        return da * x0 + ds * noise

    def conditional_vector_field(self, x: Tensor, x0: Tensor, t: TimeLike) -> Tensor:
        """``u_t(x | x0) = alpha' x0 + sigma' (x - alpha x0) / sigma`` (needs sigma(t) > 0)."""
        a, s = self.coefs(x, t)
        da, ds = self.d_coefs(x, t)
        return da * x0 + ds * (x - a * x0) / s

    # ---- prior N(0, prior_std^2 I), which approximates p_T
    @property
    def prior_std(self) -> float:
        """Std of the prior (default sigma(T))."""
        return float(self.sigma(self.T))

    def prior_sample(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                     dtype: Optional[torch.dtype] = None,
                     device: Optional[Union[str, torch.device]] = None) -> Tensor:
        """Samples of the prior with the given shape ``(B, *event)`` (positive ints).
        ``device`` defaults to the generator's; arguments are checked by `check_draw`."""
        shape, device = check_draw(shape, generator, dtype, device)
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return z * self.prior_std

    def prior_logp(self, z: Tensor) -> Tensor:
        """Per-sample log-density of the prior, shape ``(B,)``."""
        _check_state("z", z)
        s = self.prior_std
        d = z[0].numel()
        sq = (z.reshape(z.shape[0], -1) / s).square().sum(-1)
        return -0.5 * sq - d * (0.5 * math.log(2 * math.pi) + math.log(s))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _check_state(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1:
        raise InputError(
            f"`{name}` must be a floating-point tensor of shape (B, *event); got {describe(x)}")


def check_path(path: object, name: str = "path") -> GaussianPath:
    """``path`` if it is a `GaussianPath` (an SDE or a flow-matching path), else `InputError`."""
    if not isinstance(path, GaussianPath):
        raise InputError(f"`{name}` must be a dynamics.GaussianPath (an SDE or a "
                         f"flow-matching path); got {describe(path)}")
    return path
