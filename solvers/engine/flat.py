"""Tuple states as one flat tensor, and the counted, validated user vector field.

Tuple states are concatenated along the last axis: ``(N,)`` in joint mode, ``(B, N)`` per
sample. `CountedFunc` presents the user's ``f(t, y)`` on the flat state, counts batched
calls (a plain int: no sync) and checks the first output's structure, shape and dtype.
"""
from __future__ import annotations

from typing import Callable, Tuple, Union

import numpy as np
import torch

from ..errors import FunctionOutputError, InvalidInputError, describe

Tensor = torch.Tensor
State = Union[Tensor, Tuple[Tensor, ...]]

__all__ = ["FlatState", "CountedFunc", "check_state", "State"]


class FlatState:
    """Flattens tuple states into one tensor (joint: ``(N,)``, per sample: ``(B, N)``)."""

    def __init__(self, y0: State, per_sample: bool) -> None:
        self.is_tuple = isinstance(y0, (tuple, list))
        parts = tuple(y0) if self.is_tuple else (y0,)
        self.shapes = [p.shape for p in parts]
        lead = (parts[0].shape[0],) if per_sample else ()
        self.sizes = [int(np.prod(s[len(lead):], dtype=np.int64)) for s in self.shapes]
        self.lead = lead

    def flatten(self, y: State) -> Tensor:
        if not self.is_tuple:
            return y
        return torch.cat([p.reshape(*self.lead, n) for p, n in zip(y, self.sizes)], dim=-1)

    def unflatten(self, y: Tensor, extra_lead: Tuple[int, ...] = ()) -> State:
        if not self.is_tuple:
            return y
        parts = torch.split(y, self.sizes, dim=-1)
        return tuple(p.reshape((*extra_lead, *s[len(self.lead):]))
                     for p, s in zip(parts, self.shapes))


def check_state(y0: State, per_sample: bool) -> None:
    parts = tuple(y0) if isinstance(y0, (tuple, list)) else (y0,)
    if len(parts) == 0:
        raise InvalidInputError("`y0` must be a tensor or a non-empty tuple of tensors; got ()")
    for p in parts:
        if not isinstance(p, torch.Tensor):
            raise InvalidInputError(
                f"`y0` must be a floating-point tensor or a tuple of them; got {describe(p)}")
        if not p.is_floating_point():
            raise InvalidInputError(
                f"`y0` must have a floating-point dtype; got {describe(p)}")
    dtypes = {p.dtype for p in parts}
    devices = {p.device for p in parts}
    if len(dtypes) > 1 or len(devices) > 1:
        raise InvalidInputError(
            f"all tensors of a tuple `y0` must share dtype and device; got {dtypes}, {devices}")
    if per_sample:
        if any(p.dim() == 0 for p in parts) or len({p.shape[0] for p in parts}) > 1:
            raise InvalidInputError(
                "`per_sample=True` needs `y0` of shape (B, *event) (every tuple part with the "
                f"same B); got shapes {[tuple(p.shape) for p in parts]}")


class CountedFunc:
    """Wraps the user's f: unflattens tuple states, counts batched calls, and validates
    the first output."""

    def __init__(self, func: Callable, flat: FlatState) -> None:
        if not callable(func):
            raise InvalidInputError(f"`func` must be callable f(t, y); got {describe(func)}")
        self.func = func
        self.flat = flat
        self.calls = 0

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        if not self.flat.is_tuple:
            return self.func(t, y)
        return self.flat.flatten(self.func(t, self.flat.unflatten(y, self.flat.lead)))

    def first_call(self, t: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        yy = self.flat.unflatten(y, self.flat.lead) if self.flat.is_tuple else y
        out = self.func(t, yy)
        expected = tuple(yy) if self.flat.is_tuple else (yy,)
        got = tuple(out) if self.flat.is_tuple and isinstance(out, (tuple, list)) else (out,)
        if len(got) != len(expected):
            raise FunctionOutputError(
                f"`func` must return the same structure as y ({len(expected)} tensors); got "
                f"{describe(out)}")
        for g, e in zip(got, expected):
            if not isinstance(g, torch.Tensor):
                raise FunctionOutputError(
                    f"`func` must return a tensor shaped like y {tuple(e.shape)}; "
                    f"got {describe(g)}")
            if g.shape != e.shape:
                raise FunctionOutputError(
                    f"`func` returned shape {tuple(g.shape)} but the state has shape "
                    f"{tuple(e.shape)}; f(t, y) must return dy/dt with y's shape")
            if g.dtype != e.dtype:
                raise FunctionOutputError(
                    f"`func` returned dtype {g.dtype} but the state has dtype {e.dtype}")
        return self.flat.flatten(out) if self.flat.is_tuple else out
