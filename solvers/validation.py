"""Argument validation shared by every solver entry point (ODE, SDE, Brownian motion).

Each check runs once, before any stepping, and raises `InvalidInputError` whose message
names the argument, the expected form and what was received (``owner`` prefixes the
message with the class or function it belongs to, e.g. ``"BrownianInterval: "``).
Nothing here runs inside a step loop.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, List, Mapping, Sequence, Tuple

import torch

from .errors import FunctionOutputError, InvalidInputError, describe

Tensor = torch.Tensor

__all__ = ["is_real", "check_nonnegative", "check_tolerances", "check_positive", "check_int",
           "check_seed", "check_bool", "check_mapping", "check_times", "check_float_dtype",
           "check_size", "check_adaptive_dtype", "check_error_norm", "short_list"]

LOW_PRECISION = (torch.float16, torch.bfloat16)


def is_real(v: Any) -> bool:
    """A real Python/NumPy number (bools excluded)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _scalar(v: Any) -> Any:
    """A one-element real tensor as a Python number; anything else unchanged."""
    if isinstance(v, torch.Tensor) and v.numel() == 1 and v.dtype != torch.bool \
            and not v.is_complex():
        return v.item()
    return v


def check_nonnegative(name: str, v: Any, owner: str = "") -> float:
    """A finite number >= 0 (tolerances)."""
    v = _scalar(v)
    if not is_real(v) or not math.isfinite(v) or v < 0:
        raise InvalidInputError(f"{owner}`{name}` must be a finite number >= 0; got {v!r}")
    return float(v)


def check_tolerances(rtol: Any, atol: Any) -> Tuple[float, float]:
    """``rtol`` and ``atol`` finite and >= 0, not both 0 (error control would never accept)."""
    r, a = check_nonnegative("rtol", rtol), check_nonnegative("atol", atol)
    if r == 0 and a == 0:
        raise InvalidInputError("`rtol` and `atol` cannot both be 0")
    return r, a


def check_positive(name: str, v: Any, owner: str = "") -> float:
    """A finite number > 0 (step sizes, time tolerances)."""
    v = _scalar(v)
    if not is_real(v) or not math.isfinite(v) or v <= 0:
        raise InvalidInputError(f"{owner}`{name}` must be a finite number > 0; got {v!r}")
    return float(v)


def check_int(name: str, v: Any, minimum: int = 1, owner: str = "") -> int:
    """An integer >= ``minimum`` (an integral float such as ``1e4`` is accepted)."""
    ok = (isinstance(v, numbers.Integral) and not isinstance(v, bool)) or (
        isinstance(v, float) and v.is_integer())
    if not ok or v < minimum:
        raise InvalidInputError(f"{owner}`{name}` must be an integer >= {minimum}; got {v!r}")
    return int(v)


def check_seed(name: str, v: Any, owner: str = "") -> int:
    """An integer seed (any sign; hashed, never used modulo a range)."""
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_floating_point() \
            and not v.is_complex() and v.dtype != torch.bool:
        v = int(v)
    if not isinstance(v, numbers.Integral) or isinstance(v, bool):
        raise InvalidInputError(f"{owner}`{name}` must be an integer seed; got {describe(v)}")
    return int(v)


def check_bool(name: str, v: Any, owner: str = "") -> bool:
    """A bool (``True``/``False``; 0/1 and strings are rejected)."""
    if not isinstance(v, bool):
        raise InvalidInputError(f"{owner}`{name}` must be True or False; got {describe(v)}")
    return v


def check_mapping(name: str, v: Any) -> dict:
    """``None`` or a dict of options; returns a copy."""
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise InvalidInputError(f"`{name}` must be a dict or None; got {describe(v)}")
    return dict(v)


def short_list(vals: Sequence[float]) -> str:
    vals = list(vals)
    return str(vals) if len(vals) <= 8 else f"{vals[:4]} ... {vals[-2:]} (len {len(vals)})"


def _as_times(t: Any, name: str, expected: str) -> Tensor:
    """``t`` as a tensor (float64 when it is not one already)."""
    if isinstance(t, torch.Tensor):
        return t
    try:
        return torch.as_tensor(t, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise InvalidInputError(f"`{name}` must be {expected}; got {describe(t)}") from None


def _check_real_times(t: Tensor, name: str) -> None:
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise InvalidInputError(f"`{name}` must hold real numbers; got {describe(t)}")


def check_times(t: Any, dtype: torch.dtype, device: torch.device, name: str = "t"
                ) -> Tuple[Tensor, List[float], float]:
    """Output times: a non-empty, finite, strictly monotone 1-D grid of real numbers.

    Returns ``(times, values, direction)``: the times as a tensor of the state's dtype and
    device (keeping any autograd graph), their values as Python floats at the input's own
    precision, and +1/-1 (+1 for a single time). Monotonicity is checked after the cast,
    so times that collide in the state's dtype are rejected.
    """
    t = _as_times(t, name, "a 1-D tensor of times")
    if t.dim() != 1 or t.numel() < 1:
        raise InvalidInputError(f"`{name}` must be a non-empty 1-D tensor; got {describe(t)}")
    _check_real_times(t, name)
    values = [float(v) for v in t.detach().cpu().tolist()]
    t = t.to(device=device, dtype=dtype)
    tc = t.detach().cpu().double()
    if not torch.isfinite(tc).all():
        raise InvalidInputError(f"`{name}` must be finite; got {short_list(tc.tolist())}")
    if t.numel() == 1:
        return t, values, 1.0
    diffs = tc[1:] - tc[:-1]
    if not ((diffs > 0).all() or (diffs < 0).all()):
        raise InvalidInputError(
            f"`{name}` must be strictly increasing or strictly decreasing; got "
            f"{short_list(tc.tolist())}")
    return t, values, float(torch.sign(diffs[0]))


def check_row_times(t: Any, B: int, dtype: torch.dtype, device: torch.device,
                    name: str = "t") -> Tuple[Tensor, float]:
    """Per-sample output times ``(T, B)``: column r is row r's own grid, each finite and
    strictly monotone, all in one direction. Returns the times (keeping any autograd graph,
    cast to the state's dtype and device) and the direction."""
    t = _as_times(t, name, "a (T, B) tensor of per-row times")
    if t.dim() != 2 or t.shape[0] < 1 or t.shape[1] != B:
        raise InvalidInputError(
            f"`{name}` with per-row times must have shape (T, B) with B={B} (y0's batch); "
            f"got {describe(t)}")
    _check_real_times(t, name)
    t = t.to(device=device, dtype=dtype)
    tc = t.detach().cpu().double()
    if not torch.isfinite(tc).all():
        raise InvalidInputError(f"`{name}` must be finite; got non-finite per-row times")
    if t.shape[0] == 1:
        return t, 1.0
    diffs = tc[1:] - tc[:-1]
    inc, dec = (diffs > 0).all(0), (diffs < 0).all(0)
    if not (bool(inc.all()) or bool(dec.all())):
        neither = (~(inc | dec)).nonzero()
        what = (f"column {int(neither[0, 0])} is {short_list(tc[:, int(neither[0, 0])].tolist())}"
                if neither.numel() else "the columns go in different directions")
        raise InvalidInputError(
            f"`{name}` must be strictly increasing in every column, or strictly decreasing in "
            f"every column (one direction for all rows); {what}")
    return t, float(torch.sign(diffs[0, 0]))


def check_float_dtype(name: str, dtype: Any, owner: str = "") -> torch.dtype:
    """A floating-point ``torch.dtype``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InvalidInputError(
            f"{owner}`{name}` must be a floating-point torch.dtype (e.g. torch.float32); "
            f"got {dtype!r}")
    return dtype


def check_size(name: str, size: Any, owner: str = "") -> Tuple[int, ...]:
    """A shape: an int or a sequence of ints, each >= 0."""
    dims = (size,) if isinstance(size, numbers.Integral) else size
    try:
        dims = tuple(dims)
    except TypeError:
        dims = None
    if dims is None or isinstance(size, (str, bytes, bool)) or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise InvalidInputError(
            f"{owner}`{name}` must be a shape (an int or a sequence of ints >= 0); got {size!r}")
    return tuple(int(d) for d in dims)


def check_adaptive_dtype(dtype: torch.dtype, what: str) -> None:
    """Adaptive step-size control needs float32 or float64 (times and error ratios in
    float16/bfloat16 resolve only ~3 digits, so the controller cannot work)."""
    if dtype in LOW_PRECISION:
        raise InvalidInputError(
            f"{what} needs `y0` in float32 or float64 (times and error ratios in {dtype} "
            f"resolve only ~3 significant digits); got a state of dtype {dtype}. Cast y0 to "
            "float32, or use a fixed step")


def check_error_norm(norm: Any, sample: Tensor, row_shape: Tuple[int, ...]) -> None:
    """A callable mapping the flat state to a floating tensor of shape ``row_shape``
    (``()`` in joint mode, ``(B,)`` per sample); called once on ``sample``."""
    if not callable(norm):
        raise InvalidInputError(f"`error_norm` must be callable; got {describe(norm)}")
    with torch.no_grad():
        out = norm(sample.detach())
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(row_shape) \
            or not out.is_floating_point():
        raise FunctionOutputError(
            f"`error_norm` must map the flattened state {tuple(sample.shape)} to a "
            f"floating-point tensor of shape {tuple(row_shape)}; got {describe(out)}")
