"""Counter-based seeds: every Brownian draw is seeded by a hash of the run's entropy and
integer counters (tree node, grid chunk), so any piece of a path is regenerated alone."""
from __future__ import annotations

from typing import Tuple

import torch

Tensor = torch.Tensor

__all__ = ["seed_for", "randn_seeded", "fresh_entropy"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def seed_for(entropy: int, *counters: int) -> int:
    """A 63-bit seed hashed from ``entropy`` and integer counters (splitmix64 chain)."""
    x = _splitmix64(entropy & _MASK64)
    for c in counters:
        x = _splitmix64(x ^ (c & _MASK64))
    return x & ((1 << 63) - 1)


def randn_seeded(gen: torch.Generator, seed: int, shape: Tuple[int, ...], dtype: torch.dtype,
                 device: torch.device) -> Tensor:
    gen.manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=dtype, device=device)


def fresh_entropy() -> int:
    # Drawn from torch's global CPU generator so `torch.manual_seed` makes runs reproducible.
    return int(torch.randint(0, 2 ** 62, (), dtype=torch.int64).item())
