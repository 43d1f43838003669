"""Argument checks shared by the dynamics constructors, entry points and samplers' draws.

Each raises `dynamics.errors.InputError` (also a `solvers.InvalidInputError`) naming the
argument, the expected form and what was received. Tensor values are checked only by the
user-facing entry points (one host sync); the coefficient accessors inside solver loops check
Python numbers only. `check_positive` is `solvers.validation.check_positive` (one
implementation) with this layer's error.
"""
from __future__ import annotations

import math
import operator
from typing import Optional, Sequence, Tuple, Union

import torch

from solvers.errors import describe
from solvers.validation import check_positive as _solvers_check_positive

from .errors import InputError, as_input_error
from .broadcast import TimeLike

Tensor = torch.Tensor

__all__ = ["check_batch", "check_choice", "check_positive", "check_t_min", "check_time",
           "check_shape",
           "check_dtype", "check_device", "check_generator", "check_draw", "check_step"]


def check_batch(name: str, x: object) -> Tensor:
    """``x`` if it is a floating-point ``(B, *event)`` tensor with values (not on the 'meta'
    device) and positive sizes, else a clear error."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2 \
            or x.device.type == "meta" or x.numel() == 0:
        meta = isinstance(x, Tensor) and x.device.type == "meta"
        raise InputError(f"`{name}` must be a floating-point tensor (B, *event) with "
                         f"values and positive sizes; got {describe(x)}"
                         + (" on the meta device" if meta else ""))
    return x


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value``; raise unless it is one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"`{name}` must be one of {', '.join(map(repr, choices))}; "
                         f"got {value!r}")
    return value


def check_positive(name: str, value: object) -> float:
    """``float(value)`` of a finite real number > 0 (a Python/NumPy number or a one-element
    tensor; bools and strings are refused): `solvers.validation.check_positive`, raising
    `InputError`."""
    with as_input_error():
        return _solvers_check_positive(name, value)


def check_t_min(t_min: object, T: float, name: str = "t_min") -> float:
    """``float(t_min)`` of a number with ``0 <= t_min < T`` (the smallest time a process is
    used at: the end of sampling, the start of a likelihood solve), else `InputError`."""
    try:
        v = float(t_min)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"`{name}` must be a number with 0 <= {name} < T = {T:g}; "
                         f"got {describe(t_min)}") from None
    if not (0.0 <= v < T):
        raise InputError(f"`{name}` must satisfy 0 <= {name} < T = {T:g}; got {t_min!r}")
    return v


def check_time(t: TimeLike, T: float, name: str = "t") -> None:
    """Raise `InputError` unless every value of ``t`` lies in ``[0, T]`` (one host sync)."""
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
            raise InputError(
                f"`{name}` must be a number or a tensor of times; got {describe(t)}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"`{name}` must be finite; got values in [{lo}, {hi}]")
    tol = rel * max(1.0, T)
    if lo < -tol or hi > T + tol:
        raise InputError(
            f"`{name}` must lie in [0, T] = [0, {T:g}]; got values in [{lo:g}, {hi:g}]")


def check_shape(shape: Sequence[int], name: str = "shape") -> Tuple[int, ...]:
    """``shape`` as a tuple of ints >= 1 of length >= 1 (``(B, *event)``), or a clear error."""
    form = f"`{name}` must be a sequence of positive ints (B, *event)"
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise InputError(f"{form}; got {describe(shape)}")
    try:
        out = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise InputError(f"{form}; got {tuple(shape)!r} (entries must be ints)") from None
    if len(out) == 0 or min(out) < 1:
        raise InputError(f"{form}; got {out}")
    return out


def check_dtype(dtype: Optional[torch.dtype], name: str = "dtype") -> Optional[torch.dtype]:
    """``dtype`` if it is None or a floating-point ``torch.dtype``, else a clear error."""
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        return dtype
    raise InputError(f"`{name}` must be None or a floating-point torch.dtype "
                     f"(torch.float32, torch.float64, ...); got {dtype!r}")


def check_device(device: Optional[Union[str, torch.device]],
                 name: str = "device") -> Optional[torch.device]:
    """``device`` as a ``torch.device`` that exists on this machine (None stays None)."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"`{name}` must be None, a torch.device or a device string such "
                         f"as 'cpu' or 'cuda:0'; got {describe(device)}") from None
    if dev.type in ("cpu", "meta"):
        return dev
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index is not None and dev.index >= n):
            raise InputError(f"`{name}` = {str(dev)!r} is not available on this machine "
                             f"({n} CUDA device(s) visible); use 'cpu'"
                             + (f" or 'cuda:0' ... 'cuda:{n - 1}'" if n else ""))
        return dev
    try:  # other backends (mps, xpu, ...): an allocation tells whether the device exists
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"`{name}` = {str(dev)!r} is not available on this machine "
                         f"({reason}); use 'cpu'") from None
    return dev


def check_generator(generator: Optional[torch.Generator],
                    device: Optional[torch.device] = None, name: str = "generator") -> None:
    """Raise unless ``generator`` is None or a ``torch.Generator`` on ``device``'s type."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise InputError(f"`{name}` must be None or a torch.Generator (e.g. "
                         f"torch.Generator().manual_seed(0)); got {describe(generator)}")
    if device is not None and device.type not in ("meta", generator.device.type):
        raise InputError(f"`{name}` lives on {str(generator.device)!r} but the samples "
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
        raise InputError(f"`dt` must be a number or a tensor; got {describe(dt)}") \
            from None
    if not (math.isfinite(h) and 0.0 < h <= T):
        raise InputError(
            f"`dt` must be a finite step with 0 < dt <= T = {T:g} (discretize is the forward "
            f"step that ends at t and starts at t - dt; reverse samplers step from t down to "
            f"t - dt with dt > 0); got dt = {dt!r} at t = {t!r}")
