"""Time-conditioned residual MLP for vector data (any event shape is flattened), optionally
class-conditional and optionally with a vector output (e.g. classifier logits)."""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import nn

from dynamics import broadcast_time

from ..errors import InputError
from .embedding import GaussianFourierFeatures, LabelEmbedding

Tensor = torch.Tensor

__all__ = ["MLP"]


class _ResBlock(nn.Module):
    def __init__(self, width: int, temb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.temb = nn.Linear(temb_dim, width)
        self.fc2 = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:
        z = self.fc1(nn.functional.silu(self.norm(h))) + self.temb(temb)
        return h + self.fc2(self.drop(nn.functional.silu(z)))


class MLP(nn.Module):
    """``net(x, t, y=None)`` for ``x`` of shape ``(B, *event_shape)`` and ``t`` of shape ``(B,)``.

    Gaussian Fourier features of t (plus a class embedding when ``num_classes`` is set) feed
    every residual block. The output has x's shape, or ``(B, out_features)`` when
    ``out_features`` is given.

    Args:
        event_shape: shape of one sample (an int d means ``(d,)``).
        width: hidden width; depth: number of residual blocks.
        time_dim: size of the Fourier time features; fourier_scale: std of their frequencies.
        num_classes: with a value, ``y`` (``(B,)`` int64) selects a class embedding; label
            ``num_classes`` (`null_label`) and ``y=None`` mean "no class" (classifier-free
            guidance).
        out_features: output size of a vector-valued net (default: x's shape).
    """

    def __init__(self, event_shape: Union[int, Sequence[int]], width: int = 256,
                 depth: int = 3, time_dim: int = 64, fourier_scale: float = 16.0,
                 dropout: float = 0.0, num_classes: Optional[int] = None,
                 out_features: Optional[int] = None) -> None:
        super().__init__()
        self.event_shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        dim = math.prod(self.event_shape)
        if out_features is not None and (isinstance(out_features, bool)
                                         or not isinstance(out_features, int)
                                         or out_features < 1):
            raise InputError(f"out_features must be an int >= 1 or None; got {out_features!r}")
        self.num_classes, self.out_features = num_classes, out_features
        self.time = nn.Sequential(GaussianFourierFeatures(time_dim, fourier_scale),
                                  nn.Linear(time_dim, width), nn.SiLU())
        self.label = LabelEmbedding(num_classes, width) if num_classes is not None else None
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(_ResBlock(width, width, dropout) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(),
                                 nn.Linear(width, out_features or dim))

    @property
    def null_label(self) -> Optional[int]:
        """The label index meaning "unconditional" (``None`` for an unconditional net)."""
        return self.num_classes

    def forward(self, x: Tensor, t: Tensor, y: Optional[Tensor] = None) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise InputError(f"x must have shape (B, *{self.event_shape}); "
                             f"got {tuple(x.shape)}")
        temb = self.time(broadcast_time(t, x))
        if self.label is not None:
            temb = temb + self.label(y, x)
        elif y is not None:
            raise InputError("y was given but this MLP has num_classes=None")
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = block(h, temb)
        out = self.out(h)
        return out if self.out_features else out.view_as(x)
