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
import operator
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Tuple, Union

import torch

from solvers.errors import FunctionOutputError, InvalidInputError, describe

if TYPE_CHECKING:  # pragma: no cover
    from .reverse import ProbabilityFlowODE, ReverseSDE

Tensor = torch.Tensor
TimeLike = Union[float, int, Tensor]
ScoreFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["LinearSDE", "broadcast_time", "expand_coef", "call_score", "check_positive",
           "check_time", "check_shape", "check_dtype", "check_device", "check_generator",
           "check_draw", "check_step"]


# --------------------------------------------------------------------------- helpers

def check_positive(name: str, value: float) -> float:
    """Return ``float(value)``; raise if it is not a finite number > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be a positive number; got {describe(value)}") \
            from None
    if not math.isfinite(v) or v <= 0:
        raise InvalidInputError(f"`{name}` must be a finite number > 0; got {value!r}")
    return v


def check_time(t: TimeLike, T: float, name: str = "t") -> None:
    """Raise `InvalidInputError` unless every value of ``t`` lies in ``[0, T]`` (one host sync)."""
    rel = 1e-12
    if isinstance(t, Tensor):
        if t.numel() == 0:
            return
        td = t.detach()
        lo, hi = float(td.min()), float(td.max())
        if td.is_floating_point():  # a float32 copy of T may round above T
            rel = max(rel, 4 * torch.finfo(td.dtype).eps)
    else:
        try:
            lo = hi = float(t)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"`{name}` must be a number or a tensor of times; got {describe(t)}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InvalidInputError(f"`{name}` must be finite; got values in [{lo}, {hi}]")
    tol = rel * max(1.0, T)
    if lo < -tol or hi > T + tol:
        raise InvalidInputError(
            f"`{name}` must lie in [0, T] = [0, {T:g}]; got values in [{lo:g}, {hi:g}]")


def check_shape(shape: Sequence[int], name: str = "shape") -> Tuple[int, ...]:
    """``shape`` as a tuple of ints >= 1 of length >= 1 (``(B, *event)``), or a clear error."""
    form = f"`{name}` must be a sequence of positive ints (B, *event)"
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise InvalidInputError(f"{form}; got {describe(shape)}")
    try:
        out = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise InvalidInputError(f"{form}; got {tuple(shape)!r} (entries must be ints)") from None
    if len(out) == 0 or min(out) < 1:
        raise InvalidInputError(f"{form}; got {out}")
    return out


def check_dtype(dtype: Optional[torch.dtype], name: str = "dtype") -> Optional[torch.dtype]:
    """``dtype`` if it is None or a floating-point ``torch.dtype``, else a clear error."""
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        return dtype
    raise InvalidInputError(f"`{name}` must be None or a floating-point torch.dtype "
                            f"(torch.float32, torch.float64, ...); got {dtype!r}")


def check_device(device: Optional[Union[str, torch.device]],
                 name: str = "device") -> Optional[torch.device]:
    """``device`` as a ``torch.device`` that exists on this machine (None stays None)."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be None, a torch.device or a device string such "
                                f"as 'cpu' or 'cuda:0'; got {describe(device)}") from None
    if dev.type in ("cpu", "meta"):
        return dev
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index is not None and dev.index >= n):
            raise InvalidInputError(f"`{name}` = {str(dev)!r} is not available on this machine "
                                    f"({n} CUDA device(s) visible); use 'cpu'"
                                    + (f" or 'cuda:0' ... 'cuda:{n - 1}'" if n else ""))
        return dev
    try:  # other backends (mps, xpu, ...): an allocation tells whether the device exists
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InvalidInputError(f"`{name}` = {str(dev)!r} is not available on this machine "
                                f"({reason}); use 'cpu'") from None
    return dev


def check_generator(generator: Optional[torch.Generator],
                    device: Optional[torch.device] = None, name: str = "generator") -> None:
    """Raise unless ``generator`` is None or a ``torch.Generator`` on ``device``'s type."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise InvalidInputError(f"`{name}` must be None or a torch.Generator (e.g. "
                                f"torch.Generator().manual_seed(0)); got {describe(generator)}")
    if device is not None and device.type not in ("meta", generator.device.type):
        raise InvalidInputError(f"`{name}` lives on {str(generator.device)!r} but the samples "
                                f"are drawn on {str(device)!r}; create the generator there, "
                                f"e.g. torch.Generator(device={device.type!r})")


def check_draw(shape: Sequence[int], generator: Optional[torch.Generator],
               dtype: Optional[torch.dtype], device: Optional[Union[str, torch.device]]
               ) -> Tuple[Tuple[int, ...], Optional[torch.device]]:
    """Validate the arguments of a random draw (``prior_sample`` and the samplers' initial
    state) in one place: returns ``(shape, device)``, the device defaulting to the generator's.
    """
    shape = check_shape(shape)
    check_dtype(dtype)
    dev = check_device(device)
    check_generator(generator, dev)
    if dev is None and generator is not None:
        dev = generator.device
    return shape, dev


def check_step(t: TimeLike, dt: TimeLike, T: float) -> None:
    """``discretize``'s step (Python numbers only; tensors are not checked, no host sync):
    ``dt`` must be a finite number with ``0 < dt <= T``. A step ends at t and starts at
    ``t - dt``; the first step of a grid may start below 0 (DDPM/SMLD's first level)."""
    if isinstance(dt, Tensor):
        return
    try:
        h = float(dt)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`dt` must be a number or a tensor; got {describe(dt)}") \
            from None
    if not (math.isfinite(h) and 0.0 < h <= T):
        raise InvalidInputError(
            f"`dt` must be a finite step with 0 < dt <= T = {T:g} (discretize is the forward "
            f"step that ends at t and starts at t - dt; reverse samplers step from t down to "
            f"t - dt with dt > 0); got dt = {dt!r} at t = {t!r}")


def _as_tensor(t: TimeLike, like: Optional[Tensor] = None) -> Tensor:
    if isinstance(t, Tensor):
        if like is not None and (t.dtype != like.dtype or t.device != like.device):
            return t.to(dtype=like.dtype, device=like.device)
        return t
    dtype = like.dtype if like is not None else torch.get_default_dtype()
    device = like.device if like is not None else None
    return torch.as_tensor(float(t), dtype=dtype, device=device)


def broadcast_time(t: TimeLike, x: Tensor) -> Tensor:
    """``t`` as a ``(B,)`` tensor of x's dtype/device (scalars and 0-dim tensors broadcast)."""
    t = _as_tensor(t, x)
    B = x.shape[0]
    if t.dim() == 0:
        return t.expand(B)
    if t.shape != (B,):
        raise InvalidInputError(
            f"`t` must be a scalar, a 0-dim tensor or a (B,) = ({B},) tensor for x of shape "
            f"{tuple(x.shape)}; got {describe(t)}")
    return t


def expand_coef(c: Tensor, x: Tensor) -> Tensor:
    """Reshape a time coefficient (0-dim or ``(B,)``) to broadcast against ``x`` ``(B, *event)``."""
    if c.dim() == 0:
        return c
    return c.reshape(c.shape[0], *([1] * (x.dim() - 1)))


def call_score(score_fn: ScoreFn, x: Tensor, t: TimeLike, name: str = "score_fn") -> Tensor:
    """Call ``score_fn(x, t)`` with ``t`` broadcast to ``(B,)``; check the output shape."""
    s = score_fn(x, broadcast_time(t, x))
    if not isinstance(s, Tensor) or s.shape != x.shape:
        raise FunctionOutputError(
            f"`{name}(x, t)` must return a tensor of x's shape {tuple(x.shape)}; "
            f"got {describe(s)}")
    return s


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
        return _as_tensor(t, like)

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
        return self._t_from_log_snr(_as_tensor(log_snr))

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
        dt = _as_tensor(dt, x)
        f = expand_coef(self._drift_coef(tt) * dt, x) * x
        g = torch.sqrt(self._diffusion_sq(tt) * dt)
        return f, torch.zeros_like(x) + expand_coef(g, x)

    # ---- derived processes
    def reverse(self, score_fn: ScoreFn) -> "ReverseSDE":
        """Reverse-time SDE, drift ``f - g^2 score``; integrate with decreasing ts (T -> eps)."""
        from .reverse import ReverseSDE
        return ReverseSDE(self, score_fn)

    def probability_flow(self, score_fn: ScoreFn) -> "ProbabilityFlowODE":
        """Probability-flow ODE vector field ``f - g^2 score / 2`` as ``func(t, x)`` for odeint."""
        from .reverse import ProbabilityFlowODE
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
