"""A small U-Net for square images: residual blocks, group norm, time and class embedding."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from dynamics import broadcast_time

from ..errors import InputError
from .embedding import GaussianFourierFeatures, LabelEmbedding

Tensor = torch.Tensor

__all__ = ["UNet"]


def _groups(channels: int, max_groups: int = 8) -> int:
    g = min(max_groups, channels)
    while channels % g:
        g -= 1
    return g


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, time (and class) embedding added in between."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class UNet(nn.Module):
    """``net(x, t, y=None)`` for images ``(B, C, H, H)``; output has x's shape.

    ``len(channel_mult) - 1`` halvings, so the default ``(1, 2, 2)`` needs H divisible by 4.
    With ``num_classes`` set, ``y`` (``(B,)`` int64) selects a class embedding; label
    ``num_classes`` (`null_label`) and ``y=None`` mean "no class" (for classifier-free
    guidance).
    """

    def __init__(self, in_channels: int = 1, image_size: int = 8, base_channels: int = 32,
                 channel_mult: Sequence[int] = (1, 2, 2), num_res_blocks: int = 2,
                 time_dim: int = 64, fourier_scale: float = 16.0,
                 num_classes: Optional[int] = None, dropout: float = 0.0) -> None:
        super().__init__()
        factor = 2 ** (len(channel_mult) - 1)
        if image_size < factor or image_size % factor:
            raise InputError(f"image_size must be a positive multiple of {factor} for "
                             f"channel_mult={tuple(channel_mult)}; got {image_size!r}")
        self.in_channels, self.image_size = in_channels, image_size
        self.num_classes = num_classes
        emb_dim = 4 * base_channels
        self.time = nn.Sequential(GaussianFourierFeatures(time_dim, fourier_scale),
                                  nn.Linear(time_dim, emb_dim), nn.SiLU(),
                                  nn.Linear(emb_dim, emb_dim))
        self.label = LabelEmbedding(num_classes, emb_dim) if num_classes else None

        chans = [base_channels * m for m in channel_mult]
        self.conv_in = nn.Conv2d(in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips, c = [chans[0]], chans[0]
        for level, c_out in enumerate(chans):
            for _ in range(num_res_blocks):
                self.down.append(_ResBlock(c, c_out, emb_dim, dropout))
                c = c_out
                skips.append(c)
            if level < len(chans) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid = nn.ModuleList([_ResBlock(c, c, emb_dim, dropout),
                                  _ResBlock(c, c, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for level, c_out in reversed(list(enumerate(chans))):
            for _ in range(num_res_blocks + 1):
                self.up.append(_ResBlock(c + skips.pop(), c_out, emb_dim, dropout))
                c = c_out
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(c, c, 3, padding=1)))
        self.out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(),
                                 nn.Conv2d(c, in_channels, 3, padding=1))

    @property
    def null_label(self) -> Optional[int]:
        """The label index meaning "unconditional" (``None`` for an unconditional net)."""
        return self.num_classes

    def _embed(self, x: Tensor, t: Tensor, y: Optional[Tensor]) -> Tensor:
        emb = self.time(broadcast_time(t, x))
        if self.label is None:
            if y is not None:
                raise InputError("y was given but this UNet has num_classes=None")
            return emb
        return emb + self.label(y, x)

    def forward(self, x: Tensor, t: Tensor, y: Optional[Tensor] = None) -> Tensor:
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise InputError(f"x must have shape (B, {expected[0]}, {expected[1]}, "
                             f"{expected[2]}); got {tuple(x.shape)}")
        emb = self._embed(x, t, y)
        h = self.conv_in(x)
        hs: List[Tensor] = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, _ResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, _ResBlock):
                h = layer(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.out(h)
