"""Concrete linear SDEs: VE, VP, sub-VP (Song et al. 2021), cosine VP (Nichol & Dhariwal 2021)
and EDM (Karras et al. 2022).

Each schedule is a handful of pure tensor functions below; the classes only bind parameters.
For VE/VP/sub-VP, ``T`` rescales time: the process at time t is the ``T = 1`` process of Song
et al. at time ``t / T`` (so ``beta(t) = beta_bar(t/T) / T`` with
``beta_bar(u) = beta_min + u (beta_max - beta_min)``).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import torch


from .errors import InputError
from .base import LinearSDE
from .broadcast import TimeLike, as_time_tensor, expand_coef
from .checks import check_positive, check_step
from .deprecation import UNSET, renamed_argument

Tensor = torch.Tensor

__all__ = ["VESDE", "VPSDE", "SubVPSDE", "CosineVPSDE", "EDMSDE",
           "vp_beta", "vp_log_alpha", "ve_log_sigma", "cosine_log_alpha"]


# --------------------------------------------------------------------------- schedules

def vp_beta(u: Tensor, beta_min: float, beta_max: float) -> Tensor:
    """beta_bar(u) = beta_min + u (beta_max - beta_min), u = t / T."""
    return beta_min + u * (beta_max - beta_min)


def vp_log_alpha(u: Tensor, beta_min: float, beta_max: float) -> Tensor:
    """log alpha = -1/2 int_0^u beta_bar = -(beta_min u + (beta_max - beta_min) u^2 / 2) / 2."""
    return -0.5 * (beta_min * u + 0.5 * (beta_max - beta_min) * u * u)


def vp_u_from_log_alpha2(c: Tensor, beta_min: float, beta_max: float) -> Tensor:
    """Solve ``beta_min u + (beta_max - beta_min) u^2 / 2 = c`` (c = -log alpha^2 >= 0) for u."""
    d = beta_max - beta_min
    return 2.0 * c / (beta_min + torch.sqrt(beta_min ** 2 + 2.0 * d * c))


def ve_log_sigma(u: Tensor, sigma_min: float, sigma_max: float) -> Tensor:
    """log(sigma_min (sigma_max / sigma_min)^u), u = t / T."""
    return math.log(sigma_min) + u * math.log(sigma_max / sigma_min)


def cosine_phi(t: Tensor, s: float) -> Tensor:
    """Angle ((t + s) / (1 + s)) pi / 2 of the cosine schedule."""
    return (t + s) / (1.0 + s) * (math.pi / 2)


def cosine_log_alpha(t: Tensor, s: float) -> Tensor:
    """log alpha(t) = log cos(phi(t)) - log cos(phi(0)), i.e. alpha^2 = alpha_bar(t)."""
    log_a = torch.log(torch.cos(cosine_phi(t, s))) - math.log(math.cos(s / (1.0 + s) * math.pi / 2))
    return log_a.clamp(max=0.0)  # exactly 0 at t = 0 despite rounding


def _log_one_minus_exp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x <= 0, accurate near 0."""
    return torch.log(-torch.expm1(x))


def _check_sigma_range(sigma_min: float, sigma_max: float) -> tuple:
    """Validate ``0 < sigma_min < sigma_max``; return them as floats."""
    lo, hi = check_positive("sigma_min", sigma_min), check_positive("sigma_max", sigma_max)
    if lo >= hi:
        raise InputError(f"`sigma_min` must be < `sigma_max`; got sigma_min={sigma_min!r}, "
                         f"sigma_max={sigma_max!r}")
    return lo, hi


# --------------------------------------------------------------------------- VE

class VESDE(LinearSDE):
    """Variance exploding SDE ``dx = sqrt(d sigma^2/dt) dw`` (SMLD / NCSN).

    Kernel std (Song et al. 2021): ``sigma(t) = sigma_min (sigma_max / sigma_min)^(t/T)``, so
    ``marginal`` returns ``(x0, sigma(t))`` and ``sigma(0) = sigma_min > 0``: the clean data point
    ``x(0)`` is taken to already carry ``sigma_min`` noise. Simulating the SDE from a fixed
    ``x(0)`` therefore gives variance ``sigma(t)^2 - sigma(0)^2``. Prior ``N(0, sigma_max^2 I)``.
    ``discretize`` is SMLD's step between geometric levels ``sigma_i``.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, T: float = 1.0,
                 t_min: float = 1e-5, *, eps: Any = UNSET) -> None:
        t_min = renamed_argument("eps", eps, "t_min", t_min, "VESDE", default=1e-5)
        self.sigma_min, self.sigma_max = _check_sigma_range(sigma_min, sigma_max)
        super().__init__(T, t_min)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def _log_alpha(self, t: Tensor) -> Tensor:
        return 0.0 * t  # (keeps autograd graphs through t)

    def _log_sigma(self, t: Tensor) -> Tensor:
        return ve_log_sigma(t / self.T, self.sigma_min, self.sigma_max)

    def _d_log_alpha(self, t: Tensor) -> Tensor:
        return 0.0 * t

    def _d_sigma_sq(self, t: Tensor) -> Tensor:
        return torch.exp(2.0 * self._log_sigma(t)) * (2.0 * self._log_ratio / self.T)

    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        return self.T * (-0.5 * log_snr - math.log(self.sigma_min)) / self._log_ratio

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def discretize(self, x: Tensor, t: TimeLike, dt: TimeLike) -> Tuple[Tensor, Tensor]:
        """SMLD: ``f_n = 0``, ``g_n = sqrt(sigma(t)^2 - sigma(t - dt)^2)``.

        At the first level (``t - dt < -dt/2``, e.g. ``t = 0``) the previous level is taken as
        0, so ``g_n = sigma(t)``, as in Song et al. On the grid ``t_i = i T / (N-1)`` with
        ``dt = T / (N-1)`` the levels are SMLD's geometric ``sigma_i``.
        """
        check_step(t, dt, self.T)
        t = self._time(t, x)
        dt = as_time_tensor(dt, x)
        prev = t - dt
        first = prev < -0.5 * dt
        var_prev = torch.where(first, torch.zeros_like(prev),
                               torch.exp(2.0 * self._log_sigma(prev.clamp(min=0.0))))
        var = torch.exp(2.0 * self._log_sigma(t))
        g = torch.sqrt((var - var_prev).clamp(min=0.0))
        return torch.zeros_like(x), torch.zeros_like(x) + expand_coef(g, x)

    def _params(self) -> dict:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "T": self.T,
                "t_min": self.t_min}


# --------------------------------------------------------------------------- VP / sub-VP

class _BetaSchedule(LinearSDE):
    """Shared linear-beta parameters of VP and sub-VP."""

    def __init__(self, beta_min: float, beta_max: float, T: float, t_min: float) -> None:
        self.beta_min = check_positive("beta_min", beta_min)
        self.beta_max = check_positive("beta_max", beta_max)
        if self.beta_max < self.beta_min:
            raise InputError(
                f"`beta_max` must be >= `beta_min`; got beta_min={beta_min!r}, "
                f"beta_max={beta_max!r}")
        super().__init__(T, t_min)

    def beta(self, t: TimeLike) -> Tensor:
        """beta(t) = beta_bar(t / T) / T."""
        return vp_beta(self._time(t) / self.T, self.beta_min, self.beta_max) / self.T

    def _beta(self, t: Tensor) -> Tensor:
        return vp_beta(t / self.T, self.beta_min, self.beta_max) / self.T

    def _log_alpha(self, t: Tensor) -> Tensor:
        return vp_log_alpha(t / self.T, self.beta_min, self.beta_max)

    def _d_log_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * self._beta(t)

    @property
    def prior_std(self) -> float:
        return 1.0

    def _params(self) -> dict:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "T": self.T,
                "t_min": self.t_min}


class VPSDE(_BetaSchedule):
    """Variance preserving SDE ``dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw`` (DDPM).

    ``alpha(t) = exp(-int_0^t beta / 2)``, ``sigma(t) = sqrt(1 - alpha^2)``, prior ``N(0, I)``.
    ``discretize`` is DDPM's step with ``beta_n = beta(t) dt``: on the grid
    ``t_i = i T / (N-1)`` with ``dt = T / N`` it gives DDPM's
    ``beta_i = beta_min/N + i/(N-1) (beta_max - beta_min)/N`` (1e-4 ... 0.02 for the defaults and
    N = 1000), whose cumulative product of ``1 - beta_i`` is DDPM's alpha-bar.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0,
                 t_min: float = 1e-3, *, eps: Any = UNSET) -> None:
        t_min = renamed_argument("eps", eps, "t_min", t_min, type(self).__name__, default=1e-3)
        super().__init__(beta_min, beta_max, T, t_min)

    def _log_sigma(self, t: Tensor) -> Tensor:
        return 0.5 * _log_one_minus_exp(2.0 * self._log_alpha(t))

    def _d_sigma_sq(self, t: Tensor) -> Tensor:
        return self._beta(t) * torch.exp(2.0 * self._log_alpha(t))       # -d alpha^2 / dt

    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        c = torch.nn.functional.softplus(-log_snr)          # -log alpha^2
        return self.T * vp_u_from_log_alpha2(c, self.beta_min, self.beta_max)

    def discretize(self, x: Tensor, t: TimeLike, dt: TimeLike) -> Tuple[Tensor, Tensor]:
        """DDPM: ``beta_n = beta(t) dt``, ``f_n = (sqrt(1 - beta_n) - 1) x``,
        ``g_n = sqrt(beta_n)``; needs ``beta_n < 1`` (checked for numbers t, dt)."""
        check_step(t, dt, self.T)
        if not isinstance(t, Tensor) and not isinstance(dt, Tensor):
            b = float(self.beta(t)) * float(dt)
            if b >= 1.0:
                raise InputError(
                    f"`dt` = {dt!r} is too large for VPSDE.discretize at t = {t!r}: "
                    f"beta_n = beta(t) dt = {b:.4g}, but DDPM's step needs beta_n < 1")
        t = self._time(t, x)
        beta_n = self._beta(t) * as_time_tensor(dt, x)
        f = expand_coef(torch.sqrt(1.0 - beta_n) - 1.0, x) * x
        return f, torch.zeros_like(x) + expand_coef(torch.sqrt(beta_n), x)


class SubVPSDE(_BetaSchedule):
    """Sub-VP SDE ``dx = -beta x / 2 dt + sqrt(beta (1 - exp(-2 int_0^t beta))) dw``.

    Same mean coefficient as VP, std ``sigma(t) = 1 - alpha(t)^2`` (not its square root),
    prior ``N(0, I)``; ``discretize`` is Euler-Maruyama (as in Song et al.).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0,
                 t_min: float = 1e-3, *, eps: Any = UNSET) -> None:
        t_min = renamed_argument("eps", eps, "t_min", t_min, type(self).__name__, default=1e-3)
        super().__init__(beta_min, beta_max, T, t_min)

    def _log_sigma(self, t: Tensor) -> Tensor:
        return _log_one_minus_exp(2.0 * self._log_alpha(t))

    def _d_sigma_sq(self, t: Tensor) -> Tensor:
        # sigma = 1 - alpha^2, d sigma / dt = beta alpha^2
        a2 = torch.exp(2.0 * self._log_alpha(t))
        return 2.0 * torch.exp(self._log_sigma(t)) * self._beta(t) * a2

    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        # alpha^2 / (1 - alpha^2)^2 = e^l  =>  -log alpha^2 = 2 asinh(e^(-l/2) / 2)
        c = 2.0 * torch.asinh(0.5 * torch.exp(-0.5 * log_snr))
        return self.T * vp_u_from_log_alpha2(c, self.beta_min, self.beta_max)


# --------------------------------------------------------------------------- cosine VP

class CosineVPSDE(LinearSDE):
    """VP SDE with Nichol & Dhariwal's cosine schedule
    ``alpha(t)^2 = cos^2(phi(t)) / cos^2(phi(0))``,
    ``phi(t) = (t + s) / (1 + s) pi / 2``.

    ``beta(t) = pi / (1 + s) tan(phi(t))`` diverges at t = 1. Clipping choice: instead of
    clipping beta (which would change the kernel), we end the process early at
    ``T = t_max(beta_max)``, the time where ``beta(t) = beta_max``; the default
    ``beta_max = 999`` is the continuous analogue of the paper's clip ``beta_i <= 0.999`` at
    N = 1000 steps (beta_i ~= beta(t) / N), giving T ~= 0.9980 and alpha(T) ~= 0.0031. A
    user-given ``T`` must lie in (0, 1). The kernel and f, g stay exact on [0, T].
    Prior ``N(0, I)``; ``discretize`` is DDPM-style with ``beta_n = min(beta(t) dt, 0.999)``.
    """

    def __init__(self, s: float = 0.008, beta_max: float = 999.0, T: Optional[float] = None,
                 t_min: float = 1e-3, *, eps: Any = UNSET) -> None:
        t_min = renamed_argument("eps", eps, "t_min", t_min, "CosineVPSDE", default=1e-3)
        self.s = check_positive("s", s)
        self.beta_max = check_positive("beta_max", beta_max)
        if T is None:
            T = self.t_max(self.s, self.beta_max)
        T = check_positive("T", T)
        if T >= 1.0:
            raise InputError(
                f"`T` must be < 1 for the cosine schedule (beta(t) diverges at t = 1); got {T!r}")
        super().__init__(T, t_min)

    @staticmethod
    def t_max(s: float, beta_max: float) -> float:
        """The time at which beta(t) = pi / (1 + s) tan(phi(t)) reaches ``beta_max``."""
        phi = math.atan(beta_max * (1.0 + s) / math.pi)
        return phi * 2.0 * (1.0 + s) / math.pi - s

    def beta(self, t: TimeLike) -> Tensor:
        """beta(t) = pi / (1 + s) tan(phi(t))."""
        return self._beta(self._time(t))

    def _beta(self, t: Tensor) -> Tensor:
        return math.pi / (1.0 + self.s) * torch.tan(cosine_phi(t, self.s))

    def _log_alpha(self, t: Tensor) -> Tensor:
        return cosine_log_alpha(t, self.s)

    def _log_sigma(self, t: Tensor) -> Tensor:
        return 0.5 * _log_one_minus_exp(2.0 * self._log_alpha(t))

    def _d_log_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * self._beta(t)

    def _d_sigma_sq(self, t: Tensor) -> Tensor:
        return self._beta(t) * torch.exp(2.0 * self._log_alpha(t))       # -d alpha^2 / dt

    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        log_alpha = -0.5 * torch.nn.functional.softplus(-log_snr)
        log_cos0 = math.log(math.cos(self.s / (1.0 + self.s) * math.pi / 2))
        phi = torch.acos(torch.exp(log_alpha + log_cos0))
        return phi * (2.0 * (1.0 + self.s) / math.pi) - self.s

    @property
    def prior_std(self) -> float:
        return 1.0

    def discretize(self, x: Tensor, t: TimeLike, dt: TimeLike) -> Tuple[Tensor, Tensor]:
        """DDPM-style step with ``beta_n = min(beta(t) dt, 0.999)`` (the paper's clip)."""
        check_step(t, dt, self.T)
        t = self._time(t, x)
        beta_n = (self._beta(t) * as_time_tensor(dt, x)).clamp(max=0.999)
        f = expand_coef(torch.sqrt(1.0 - beta_n) - 1.0, x) * x
        return f, torch.zeros_like(x) + expand_coef(torch.sqrt(beta_n), x)

    def _params(self) -> dict:
        return {"s": self.s, "beta_max": self.beta_max, "T": self.T, "t_min": self.t_min}


# --------------------------------------------------------------------------- EDM

class EDMSDE(LinearSDE):
    """Karras et al. (2022) SDE with ``sigma(t) = t``, ``alpha = 1``: ``dx = sqrt(2 t) dw``.

    Time is the noise level: ``T = sigma_max`` and ``t_min = sigma_min``; ``sigma(0) = 0``.
    Prior ``N(0, sigma_max^2 I)``. The probability-flow ODE is ``dx/dt = -t score``.
    """

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0) -> None:
        self.sigma_min, self.sigma_max = _check_sigma_range(sigma_min, sigma_max)
        super().__init__(self.sigma_max, self.sigma_min)

    def _log_alpha(self, t: Tensor) -> Tensor:
        return 0.0 * t  # (keeps autograd graphs through t)

    def _log_sigma(self, t: Tensor) -> Tensor:
        return torch.log(t)

    def _d_log_alpha(self, t: Tensor) -> Tensor:
        return 0.0 * t

    def _d_sigma_sq(self, t: Tensor) -> Tensor:
        return 2.0 * t

    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        return torch.exp(-0.5 * log_snr)

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def _params(self) -> dict:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}
