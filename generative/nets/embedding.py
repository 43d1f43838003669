"""Time embeddings shared by the networks."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..errors import InputError

Tensor = torch.Tensor

__all__ = ["GaussianFourierFeatures", "LabelEmbedding"]


class GaussianFourierFeatures(nn.Module):
    """Random Fourier features of a scalar time: ``[sin(2π w t), cos(2π w t)]``.

    ``w ~ N(0, scale²)`` is fixed at construction (a buffer, saved with the model).
    Output shape ``(B, dim)``; ``dim`` must be even.
    """

    def __init__(self, dim: int = 64, scale: float = 16.0) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise InputError(f"dim must be an even int >= 2; got {dim!r}")
        self.register_buffer("w", torch.randn(dim // 2) * scale)

    def forward(self, t: Tensor) -> Tensor:
        proj = 2 * math.pi * t[:, None].to(self.w.dtype) * self.w
        return torch.cat([proj.sin(), proj.cos()], dim=-1)


class LabelEmbedding(nn.Embedding):
    """Class-label embedding with one extra "null" label ``num_classes`` meaning "no class"
    (the unconditional model of classifier-free guidance).

    ``forward(y, x)`` embeds ``y`` (``(B,)`` int64, or ``None`` for the null label) for the
    batch of ``x``; output ``(B, dim)``.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise InputError(f"num_classes must be an int >= 1; got {num_classes!r}")
        super().__init__(num_classes + 1, dim)
        self.num_classes = num_classes

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, y: Optional[Tensor], x: Tensor) -> Tensor:  # type: ignore[override]
        if y is None:
            y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
        if y.shape != (x.shape[0],):
            raise InputError(f"y must have shape ({x.shape[0]},); got {tuple(y.shape)}")
        return super().forward(y)
