"""Lévy area approximations from the increment ``W`` and space-time Lévy area ``H`` of a
Brownian motion over an interval of length ``h`` (Davie 2014; Foster 2020).

The Lévy area ``A_ij = ½ ∫ (W_i dW_j - W_j dW_i)`` of a multidimensional Brownian motion is
not a function of ``(W, H)``; both approximations take its conditional mean given them,
``H ⊗ W - W ⊗ H``, plus an independent skew-symmetric Gaussian ``s (N - Nᵀ)`` (N standard
normal) with scale ``s² = h²/12`` (Davie) or ``s²_ij = (h/10)(h/10 + H_i² + H_j²)`` (Foster).
The last dimension of the shape is the Brownian dimension; a 0- or 1-dimensional shape is a
(batch of) scalar Brownian motion(s), whose Lévy area is zero.
"""
from __future__ import annotations

import math
import struct

import torch

from .seeds import randn_seeded, seed_for

Tensor = torch.Tensor

__all__ = ["AREA_APPROXIMATIONS", "levy_area", "area_seed"]

AREA_APPROXIMATIONS = ("davie", "foster")
_AREA_TAG = 0xA7EA


def _bits(t: float) -> int:
    return int.from_bytes(struct.pack("<d", float(t)), "little")


def area_seed(entropy: int, ta: float, tb: float) -> int:
    """The seed of the area noise over ``[ta, tb]``: one per interval, so a query repeated
    gives the same area in any order."""
    return seed_for(entropy, _AREA_TAG, _bits(ta), _bits(tb))


def levy_area(w: Tensor, h_st: Tensor, h: float, kind: str, gen: torch.Generator,
              seed: int) -> Tensor:
    """The ``kind`` ('davie' or 'foster') approximation of the Lévy area over an interval of
    length ``h > 0`` with increment ``w`` and space-time Lévy area ``h_st``; shape
    ``(*w.shape, m)`` (zeros of ``w``'s shape for a scalar Brownian motion)."""
    if w.dim() in (0, 1):
        return torch.zeros_like(w)
    mean = h_st.unsqueeze(-1) * w.unsqueeze(-2) - w.unsqueeze(-1) * h_st.unsqueeze(-2)
    z = randn_seeded(gen, seed, (*w.shape, w.shape[-1]), w.dtype, w.device)
    z = z - z.transpose(-1, -2)            # skew-symmetric, variance 2 off the diagonal
    if kind == "foster":
        tenth = 0.1 * h
        h2 = h_st * h_st
        std = (tenth * (tenth + h2.unsqueeze(-1) + h2.unsqueeze(-2))).sqrt()
    else:
        std = math.sqrt(h * h / 12.0)
    a = mean + std * z
    return 0.5 * (a - a.transpose(-1, -2))   # skew-symmetric to the last bit
