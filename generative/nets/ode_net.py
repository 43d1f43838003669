"""FFJORD's dynamics networks ``net(x, t)``: smooth, as a continuous normalizing flow needs.

`ODENet` (concat-squash MLP, tanh) for vectors, `ConvODENet` (convolutions with the time as a
channel, softplus) for images; `make_ffjord_net` picks one from the event shape.
"""
from __future__ import annotations

import math
from typing import Any, Sequence, Union

import torch
from torch import nn

from dynamics import broadcast_time

from ..errors import InputError

Tensor = torch.Tensor

__all__ = ["ODENet", "ConvODENet", "make_ffjord_net"]


class _ConcatSquash(nn.Module):
    """``Linear(x) * sigmoid(W_g t + b_g) + W_b t`` (FFJORD's ConcatSquashLinear)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)
        self.gate = nn.Linear(1, d_out)
        self.bias = nn.Linear(1, d_out, bias=False)

    def forward(self, h: Tensor, t: Tensor) -> Tensor:
        tt = t.reshape(-1, 1).to(h.dtype)
        return self.lin(h) * torch.sigmoid(self.gate(tt)) + self.bias(tt)


class ODENet(nn.Module):
    """FFJORD's dynamics MLP for vectors: concat-squash layers with smooth (tanh) activations,
    ``net(x, t)`` with ``x`` of shape ``(B, *event)`` and ``t`` 0-dim or ``(B,)``."""

    def __init__(self, event_shape: Union[int, Sequence[int]], hidden: Sequence[int] = (64, 64, 64),
                 activation: str = "tanh") -> None:
        super().__init__()
        self.event_shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        acts = {"tanh": nn.Tanh, "softplus": nn.Softplus}
        if activation not in acts:
            raise InputError(f"activation: expected one of {list(acts)}, got {activation!r}")
        dim = math.prod(self.event_shape)
        sizes = [dim, *hidden, dim]
        self.layers = nn.ModuleList(_ConcatSquash(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = acts[activation]()

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise InputError(f"x: expected shape (B, *{self.event_shape}), got {tuple(x.shape)}")
        t = broadcast_time(t, x)
        h = x.flatten(1)
        for i, layer in enumerate(self.layers):
            h = layer(h, t)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return h.view_as(x)


class ConvODENet(nn.Module):
    """Small convolutional dynamics net for images ``(B, C, H, W)``: 3x3 convolutions with the
    time appended as a constant channel, softplus activations (FFJORD's ConcatConv2d)."""

    def __init__(self, in_channels: int = 1, hidden: Sequence[int] = (32, 32, 32)) -> None:
        super().__init__()
        self.in_channels = in_channels
        sizes = [in_channels, *hidden, in_channels]
        self.convs = nn.ModuleList(nn.Conv2d(a + 1, b, 3, padding=1)
                                   for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = nn.Softplus()

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise InputError(f"x: expected shape (B, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        t = broadcast_time(t, x)
        h = x
        for i, conv in enumerate(self.convs):
            tc = t.view(-1, 1, 1, 1).expand(h.shape[0], 1, *h.shape[2:])
            h = conv(torch.cat([h, tc], 1))
            if i < len(self.convs) - 1:
                h = self.act(h)
        return h


def make_ffjord_net(event_shape: Union[int, Sequence[int]], **kwargs: Any) -> nn.Module:
    """`ODENet` for vector events ``(d,)``, `ConvODENet` for image events ``(C, H, W)``."""
    shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
    if len(shape) == 3:
        return ConvODENet(shape[0], **kwargs)
    return ODENet(shape, **kwargs)
