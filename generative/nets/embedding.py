"""Time embeddings shared by the networks."""
from __future__ import annotations

import math

import torch
from torch import nn

Tensor = torch.Tensor

__all__ = ["GaussianFourierFeatures", "as_batch_time"]


class GaussianFourierFeatures(nn.Module):
    """Random Fourier features of a scalar time: ``[sin(2π w t), cos(2π w t)]``.

    ``w ~ N(0, scale²)`` is fixed at construction (a buffer, saved with the model).
    Output shape ``(B, dim)``; ``dim`` must be even.
    """

    def __init__(self, dim: int = 64, scale: float = 16.0) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even int >= 2; got {dim!r}")
        self.register_buffer("w", torch.randn(dim // 2) * scale)

    def forward(self, t: Tensor) -> Tensor:
        proj = 2 * math.pi * t[:, None].to(self.w.dtype) * self.w
        return torch.cat([proj.sin(), proj.cos()], dim=-1)


def as_batch_time(t: Tensor | float, x: Tensor) -> Tensor:
    """``t`` as a ``(B,)`` tensor of x's dtype/device (0-dim and Python scalars broadcast)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        return t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a 0-dim or ({x.shape[0]},) tensor matching the batch of x; "
                         f"got shape {tuple(t.shape)}")
    return t
