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

from abc import abstractmethod
from typing import Any, Optional, Tuple

import torch


from .errors import InputError
from .broadcast import ScoreFn, TimeLike, as_time_tensor, expand_coef
from .checks import check_positive, check_step, check_t_min, check_time
from .deprecation import UNSET, renamed_argument
from .gaussian_path import GaussianPath, check_path
from .reverse import ProbabilityFlowODE, ReverseSDE

Tensor = torch.Tensor

__all__ = ["LinearSDE", "PathSDE"]


# --------------------------------------------------------------------------- base class

class LinearSDE(GaussianPath):
    """Base class of ``dx = f(t) x dt + g(t) dw`` (Ito, diagonal noise, scalar-in-x coefficients),
    the SDE of a `GaussianPath`: ``f = d log alpha / dt``, ``g^2 = d sigma^2/dt - 2 f sigma^2``.

    Subclasses define the path as small tensor functions of ``t`` (all differentiable):
    ``_log_alpha``, ``_log_sigma``, their derivatives ``_d_log_alpha`` and ``_d_sigma_sq``
    (``d sigma^2 / dt``), and ``_t_from_log_snr``, plus ``prior_std``. Everything else is
    generic. Usable directly by ``solvers.sdeint`` (``f``, ``g``, ``noise_type``, ``sde_type``).
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, T: float, t_min: float) -> None:
        self.T = check_positive("T", T)
        self.t_min = check_t_min(t_min, self.T)

    # ---- the path, defined by subclasses (tensor in, tensor out, no validation)
    @abstractmethod
    def _log_alpha(self, t: Tensor) -> Tensor:
        """log of the mean coefficient alpha(t)."""

    @abstractmethod
    def _log_sigma(self, t: Tensor) -> Tensor:
        """log of the kernel std sigma(t) (-inf where sigma = 0)."""

    @abstractmethod
    def _d_log_alpha(self, t: Tensor) -> Tensor:
        """d log alpha / dt (the drift coefficient f)."""

    @abstractmethod
    def _d_sigma_sq(self, t: Tensor) -> Tensor:
        """d sigma^2 / dt."""

    @abstractmethod
    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """Inverse of log_snr(t)."""

    @property
    @abstractmethod
    def prior_std(self) -> float:
        """Std of the prior N(0, prior_std^2 I) that approximates p_T."""

    def _diffusion_sq(self, t: Tensor) -> Tensor:
        """g(t)^2 = d sigma^2/dt - 2 f sigma^2."""
        sigma_sq = torch.exp(2.0 * self._log_sigma(t))
        return self._d_sigma_sq(t) - 2.0 * self._d_log_alpha(t) * sigma_sq

    # ---- path accessors (fast path: Python numbers are checked, tensors are not)
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

    def d_alpha(self, t: TimeLike) -> Tensor:
        """d alpha / dt = f alpha."""
        t = self._time(t)
        return self._d_log_alpha(t) * torch.exp(self._log_alpha(t))

    def d_sigma(self, t: TimeLike) -> Tensor:
        """d sigma / dt = (d sigma^2 / dt) / (2 sigma)."""
        t = self._time(t)
        return self._d_sigma_sq(t) / (2.0 * torch.exp(self._log_sigma(t)))

    def log_snr(self, t: TimeLike) -> Tensor:
        """log(alpha^2 / sigma^2), decreasing in t."""
        t = self._time(t)
        return 2.0 * (self._log_alpha(t) - self._log_sigma(t))

    def t_from_log_snr(self, log_snr: TimeLike) -> Tensor:
        """The time t with ``log_snr(t) == log_snr`` (inverse of `log_snr`)."""
        return self._t_from_log_snr(as_time_tensor(log_snr))

    def drift_coef(self, t: TimeLike) -> Tensor:
        """f(t), the scalar drift coefficient (drift is f(t) x)."""
        return self._d_log_alpha(self._time(t))

    def diffusion_sq(self, t: TimeLike) -> Tensor:
        """g(t)^2."""
        return self._diffusion_sq(self._time(t))

    # ---- torchsde protocol
    def f(self, t: TimeLike, x: Tensor) -> Tensor:
        """Drift f(t) x; t a number, a 0-dim tensor or a (B,) tensor."""
        return expand_coef(self._d_log_alpha(self._time(t, x)), x) * x

    def g(self, t: TimeLike, x: Tensor) -> Tensor:
        """Diffusion g(t) broadcast to x's shape (diagonal noise)."""
        g = torch.sqrt(self._diffusion_sq(self._time(t, x)))
        return torch.zeros_like(x) + expand_coef(g, x)

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
        f = expand_coef(self._d_log_alpha(tt) * dt, x) * x
        g = torch.sqrt(self._diffusion_sq(tt) * dt)
        return f, torch.zeros_like(x) + expand_coef(g, x)

    # ---- derived processes
    def reverse(self, score_fn: ScoreFn) -> "ReverseSDE":
        """Reverse-time SDE, drift ``f - g^2 score``; integrate with decreasing ts (T -> t_min)."""
        return ReverseSDE(self, score_fn)

    def probability_flow(self, score_fn: ScoreFn) -> "ProbabilityFlowODE":
        """Probability-flow ODE vector field ``f - g^2 score / 2`` as ``func(t, x)`` for odeint."""
        return ProbabilityFlowODE(self, score_fn)

    # ---- misc
    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"

    def _params(self) -> dict:
        return {"T": self.T, "t_min": self.t_min}


class PathSDE(LinearSDE):
    """The linear SDE whose kernel is a `GaussianPath` ``path`` (e.g. a flow-matching path):
    ``f = alpha'/alpha``, ``g^2 = 2 sigma sigma' - 2 f sigma^2``, so every score-based tool
    (samplers, likelihood) runs on it, with a flow-matching model through
    ``ScoreAdapter(net, path, 'velocity')``.

    ``T`` (default ``path.T``) must have ``alpha(T) > 0`` where f is used (the linear path
    has ``alpha(1) = 0``: take e.g. ``T = 0.999``); ``t_min`` defaults to ``path.t_min``. Prior
    ``N(0, sigma(T)^2 I)``.
    """

    def __init__(self, path: GaussianPath, T: Optional[float] = None,
                 t_min: Optional[float] = None, *, eps: Any = UNSET) -> None:
        t_min = renamed_argument("eps", eps, "t_min", t_min, "PathSDE")
        self.path = check_path(path)
        T = path.T if T is None else check_positive("T", T)
        if T > path.T:
            raise InputError(f"`T` must be <= the path's T = {path.T:g}; got {T!r}")
        super().__init__(T, path.t_min if t_min is None else t_min)

    def _log_alpha(self, t: Tensor) -> Tensor:
        return torch.log(self.path.alpha(t))

    def _log_sigma(self, t: Tensor) -> Tensor:
        return torch.log(self.path.sigma(t))

    def _d_log_alpha(self, t: Tensor) -> Tensor:
        return self.path.d_alpha(t) / self.path.alpha(t)

    def _d_sigma_sq(self, t: Tensor) -> Tensor:
        return 2.0 * self.path.sigma(t) * self.path.d_sigma(t)

    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        return self.path.t_from_log_snr(log_snr)

    @property
    def prior_std(self) -> float:
        return float(self.path.sigma(self.T))

    def _params(self) -> dict:
        return {"path": self.path, "T": self.T, "t_min": self.t_min}
