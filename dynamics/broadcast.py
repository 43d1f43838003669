"""Time broadcasting: a time given as a number, a 0-dim or a ``(B,)`` tensor, against a state
``(B, *event)``, and the score call with ``t`` always a ``(B,)`` tensor (DESIGN's convention).
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from solvers.errors import FunctionOutputError, describe

from .errors import InputError

Tensor = torch.Tensor
TimeLike = Union[float, int, Tensor]
ScoreFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["TimeLike", "ScoreFn", "as_time_tensor", "broadcast_time", "expand_coef",
           "call_score"]


def as_time_tensor(t: TimeLike, like: Optional[Tensor] = None) -> Tensor:
    """``t`` as a tensor of ``like``'s dtype and device (the default dtype without ``like``)."""
    if isinstance(t, Tensor):
        if like is not None and (t.dtype != like.dtype or t.device != like.device):
            return t.to(dtype=like.dtype, device=like.device)
        return t
    dtype = like.dtype if like is not None else torch.get_default_dtype()
    device = like.device if like is not None else None
    return torch.as_tensor(float(t), dtype=dtype, device=device)


def broadcast_time(t: TimeLike, x: Tensor) -> Tensor:
    """``t`` as a ``(B,)`` tensor of x's dtype/device (scalars and 0-dim tensors broadcast)."""
    t = as_time_tensor(t, x)
    B = x.shape[0]
    if t.dim() == 0:
        return t.expand(B)
    if t.shape != (B,):
        raise InputError(
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
