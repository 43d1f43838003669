"""Time-conditioned residual MLP for vector data (any event shape is flattened)."""
from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import nn

from .embedding import GaussianFourierFeatures, as_batch_time

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
    """``net(x, t)`` for ``x`` of shape ``(B, *event_shape)`` and ``t`` of shape ``(B,)``.

    Gaussian Fourier features of t feed every residual block; the output has x's shape.

    Args:
        event_shape: shape of one sample (an int d means ``(d,)``).
        width: hidden width; depth: number of residual blocks.
        time_dim: size of the Fourier time features; fourier_scale: std of their frequencies.
    """

    def __init__(self, event_shape: Union[int, Sequence[int]], width: int = 256,
                 depth: int = 3, time_dim: int = 64, fourier_scale: float = 16.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.event_shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        dim = math.prod(self.event_shape)
        self.time = nn.Sequential(GaussianFourierFeatures(time_dim, fourier_scale),
                                  nn.Linear(time_dim, width), nn.SiLU())
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(_ResBlock(width, width, dropout) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape (B, *{self.event_shape}); "
                             f"got {tuple(x.shape)}")
        temb = self.time(as_batch_time(t, x))
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = block(h, temb)
        return self.out(h).view_as(x)
