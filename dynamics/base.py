"""Linear SDEs ``dx = f(t) x dt + g(t) dw`` with analytic Gaussian perturbation kernels.

For such an SDE the transition from ``x(0)`` is Gaussian,
``x(t) | x(0) ~ N(alpha(t) x(0), (sigma(t)^2 - alpha(t)^2 sigma(0)^2) I)``, with
``f = d log alpha / dt`` and ``g^2 = d sigma^2/dt - 2 f sigma^2``. Every concrete SDE is fixed by
its schedule ``(alpha(t), sigma(t))``; ``marginal`` returns ``(alpha x0, sigma)`` as Song et
al. (2021) do, so for VE (``sigma(0) = sigma_min > 0``) the data point ``x(0)`` is understood
to already carry ``sigma(0)`` noise (see `dynamics.sdes.VESDE`).

Conventions (../shared/DESIGN.md): states are ``(B, *event)``; ``f``/``g`` take ``t`` as a
0-dim tensor (what ``solvers.sdeint`` passes), a ``(B,)`` tensor (per-sample ODE mode) or a
Python number; ``score_fn(x, t)`` always receives ``t`` as a ``(B,)`` tensor.

Validation: parameters are checked by constructors; time values are checked (``0 <= t <= T``)
by the user-facing entry points ``marginal``, ``perturb``, ``kernel_score`` and the mixture
oracle. The coefficient accessors (``f``, ``g``, ``alpha``, ``sigma``, ``log_snr``,
``discretize``) run inside solver and sampler loops, so they check Python numbers only:
checking a tensor's values would force a device-host sync on every step.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Optional, Sequence, Tuple, Union

import torch

from solvers.errors import InvalidInputError, describe

from .broadcast import ScoreFn, TimeLike, as_time_tensor, broadcast_time, expand_coef
from .checks import check_draw, check_positive, check_step, check_time
from .reverse import ProbabilityFlowODE, ReverseSDE

Tensor = torch.Tensor

__all__ = ["LinearSDE"]


# --------------------------------------------------------------------------- base class

class LinearSDE(ABC):
    """Base class of ``dx = f(t) x dt + g(t) dw`` (Ito, diagonal noise, scalar-in-x coefficients).

    Subclasses define the schedule as small tensor functions of ``t`` (all differentiable):
    ``_log_alpha``, ``_log_sigma``, ``_drift_coef`` (``f``), ``_diffusion_sq`` (``g^2``) and
    ``_t_from_log_snr``, plus ``prior_std``. Everything else is generic.

    Usable directly by ``solvers.sdeint`` (``f``, ``g``, ``noise_type``, ``sde_type``).
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, T: float, eps: float) -> None:
        self.T = check_positive("T", T)
        try:
            eps = float(eps)
        except (TypeError, ValueError):
            raise InvalidInputError(f"`eps` must be a number with 0 <= eps < T = {self.T:g}; "
                                    f"got {describe(eps)}") from None
        if not (0.0 <= eps < self.T):
            raise InvalidInputError(f"`eps` must satisfy 0 <= eps < T = {self.T:g}; got {eps!r}")
        self.eps = eps

    # ---- schedule, defined by subclasses (tensor in, tensor out, no validation)
    @abstractmethod
    def _log_alpha(self, t: Tensor) -> Tensor:
        """log of the mean coefficient alpha(t)."""

    @abstractmethod
    def _log_sigma(self, t: Tensor) -> Tensor:
        """log of the kernel std sigma(t) (-inf where sigma = 0)."""

    @abstractmethod
    def _drift_coef(self, t: Tensor) -> Tensor:
        """f(t) = d log alpha / dt."""

    @abstractmethod
    def _diffusion_sq(self, t: Tensor) -> Tensor:
        """g(t)^2 = d sigma^2/dt - 2 f sigma^2."""

    @abstractmethod
    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """Inverse of log_snr(t)."""

    @property
    @abstractmethod
    def prior_std(self) -> float:
        """Std of the prior N(0, prior_std^2 I) that approximates p_T."""

    # ---- schedule accessors (fast path: Python numbers are checked, tensors are not)
    def _time(self, t: TimeLike, like: Optional[Tensor] = None) -> Tensor:
        if not isinstance(t, Tensor):
            check_time(t, self.T)
        return as_time_tensor(t, like)

    def alpha(self, t: TimeLike) -> Tensor:
        """Mean coefficient alpha(t) of the kernel."""
        return torch.exp(self._log_alpha(self._time(t)))

    def sigma(self, t: TimeLike) -> Tensor:
        """Kernel std sigma(t) (including sigma(0) for VE)."""
        return torch.exp(self._log_sigma(self._time(t)))

    def log_snr(self, t: TimeLike) -> Tensor:
        """log(alpha^2 / sigma^2), decreasing in t."""
        t = self._time(t)
        return 2.0 * (self._log_alpha(t) - self._log_sigma(t))

    def t_from_log_snr(self, log_snr: TimeLike) -> Tensor:
        """The time t with ``log_snr(t) == log_snr`` (inverse of `log_snr`)."""
        return self._t_from_log_snr(as_time_tensor(log_snr))

    def drift_coef(self, t: TimeLike) -> Tensor:
        """f(t), the scalar drift coefficient (drift is f(t) x)."""
        return self._drift_coef(self._time(t))

    def diffusion_sq(self, t: TimeLike) -> Tensor:
        """g(t)^2."""
        return self._diffusion_sq(self._time(t))

    # ---- torchsde protocol
    def f(self, t: TimeLike, x: Tensor) -> Tensor:
        """Drift f(t) x; t a number, a 0-dim tensor or a (B,) tensor."""
        return expand_coef(self._drift_coef(self._time(t, x)), x) * x

    def g(self, t: TimeLike, x: Tensor) -> Tensor:
        """Diffusion g(t) broadcast to x's shape (diagonal noise)."""
        g = torch.sqrt(self._diffusion_sq(self._time(t, x)))
        return torch.zeros_like(x) + expand_coef(g, x)

    # ---- perturbation kernel
    def marginal(self, x0: Tensor, t: TimeLike) -> Tuple[Tensor, Tensor]:
        """Kernel ``p_t(x | x0) = N(mean, std^2 I)``: returns ``(alpha(t) x0, sigma(t))``.

        ``mean`` has x0's shape, ``std`` has shape ``(B, 1, ..., 1)``. ``t``: number or (B,).
        """
        self._check_state("x0", x0)
        check_time(t, self.T)
        tb = broadcast_time(t, x0)
        a = expand_coef(torch.exp(self._log_alpha(tb)), x0)
        s = expand_coef(torch.exp(self._log_sigma(tb)), x0)
        return a * x0, s

    def perturb(self, x0: Tensor, t: TimeLike, noise: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """Sample ``x_t = alpha(t) x0 + sigma(t) z`` from the kernel; returns ``(x_t, z)``."""
        mean, std = self.marginal(x0, t)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        elif noise.shape != x0.shape:
            raise InvalidInputError(
                f"`noise` must have x0's shape {tuple(x0.shape)}; got {describe(noise)}")
        return mean + std * noise, noise

    def kernel_score(self, x_t: Tensor, x0: Tensor, t: TimeLike) -> Tensor:
        """Score of the kernel, ``-(x_t - alpha x0) / sigma^2`` (the DSM regression target)."""
        mean, std = self.marginal(x0, t)
        return -(x_t - mean) / std ** 2

    # ---- prior
    def prior_sample(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                     dtype: Optional[torch.dtype] = None,
                     device: Optional[Union[str, torch.device]] = None) -> Tensor:
        """Samples of the prior ``N(0, prior_std^2 I)`` with the given shape ``(B, *event)``
        (positive ints). ``device`` defaults to the generator's; arguments are checked by
        `check_draw`."""
        shape, device = check_draw(shape, generator, dtype, device)
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return z * self.prior_std

    def prior_logp(self, z: Tensor) -> Tensor:
        """Per-sample log-density of the prior, shape ``(B,)``."""
        self._check_state("z", z)
        s = self.prior_std
        d = z[0].numel()
        sq = (z.reshape(z.shape[0], -1) / s).square().sum(-1)
        return -0.5 * sq - d * (0.5 * math.log(2 * math.pi) + math.log(s))

    # ---- discretisation
    def discretize(self, x: Tensor, t: TimeLike, dt: TimeLike) -> Tuple[Tensor, Tensor]:
        """Discrete forward step that ends at time t: ``x(t) ~= x(t-dt) + f_n + g_n z``.

        Returns ``(f_n, g_n)`` evaluated at ``x`` (= x(t)), with g_n of x's shape; reverse
        diffusion / ancestral samplers invert it from t to t - dt. The default is the
        Euler-Maruyama form ``(f(t) x dt, g(t) sqrt(dt))``; VP and VE override it with the
        DDPM and SMLD steps. ``t`` a number, 0-dim or (B,); ``0 < dt <= T`` (numbers are
        checked by `check_step`: a negative dt has no forward step to invert).
        """
        check_step(t, dt, self.T)
        tt = self._time(t, x)
        dt = as_time_tensor(dt, x)
        f = expand_coef(self._drift_coef(tt) * dt, x) * x
        g = torch.sqrt(self._diffusion_sq(tt) * dt)
        return f, torch.zeros_like(x) + expand_coef(g, x)

    # ---- derived processes
    def reverse(self, score_fn: ScoreFn) -> "ReverseSDE":
        """Reverse-time SDE, drift ``f - g^2 score``; integrate with decreasing ts (T -> eps)."""
        return ReverseSDE(self, score_fn)

    def probability_flow(self, score_fn: ScoreFn) -> "ProbabilityFlowODE":
        """Probability-flow ODE vector field ``f - g^2 score / 2`` as ``func(t, x)`` for odeint."""
        return ProbabilityFlowODE(self, score_fn)

    # ---- misc
    @staticmethod
    def _check_state(name: str, x: Tensor) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1:
            raise InvalidInputError(
                f"`{name}` must be a floating-point tensor of shape (B, *event); "
                f"got {describe(x)}")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"

    def _params(self) -> dict:
        return {"T": self.T, "eps": self.eps}
