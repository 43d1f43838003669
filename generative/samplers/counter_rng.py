"""Counter-based standard normals: element j of row b is a function of (key_b, counter, j)
only (a splitmix64 hash chain in int64 tensor arithmetic, then Box-Muller), computed for all
rows at once. The noise samplers use it so that a sample's draws do not depend on the batch
it is in, without a generator (or a Python loop) per row.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from solvers.brownian.seeds import seed_for

Tensor = torch.Tensor

__all__ = ["row_keys", "normals"]


def _signed(c: int) -> int:
    """A 64-bit constant as the int64 with the same bits."""
    return c - (1 << 64) if c >= 1 << 63 else c


_C1, _C2, _C3 = (_signed(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9,
                                      0x94D049BB133111EB))


def _lsr(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 bits."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z: Tensor) -> Tensor:
    """splitmix64's finaliser on int64 tensors (wrapping arithmetic)."""
    z = z + _C1
    z = (z ^ _lsr(z, 30)) * _C2
    z = (z ^ _lsr(z, 27)) * _C3
    return z ^ _lsr(z, 31)


def row_keys(seed: int, indices: Sequence[int], device: torch.device) -> Tensor:
    """The int64 key of each sample index (``seed_for(seed, index)``)."""
    return torch.tensor([seed_for(seed, int(i)) for i in indices], dtype=torch.int64,
                        device=device)


def _uniform(h: Tensor) -> Tensor:
    """The top 53 bits of a hash as a float64 in (0, 1)."""
    return ((_lsr(h, 11)).double() + 0.5) * 2.0 ** -53


def normals(keys: Tensor, counter: int, n: int, dtype: torch.dtype) -> Tensor:
    """``(len(keys), n)`` standard normals; entry (b, j) depends on (keys[b], counter, j)."""
    j = torch.arange(2 * n, dtype=torch.int64, device=keys.device)
    h = _mix(_mix(keys[:, None] ^ counter) ^ j)
    u1, u2 = _uniform(h[:, :n]), _uniform(h[:, n:])
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)).to(dtype)
