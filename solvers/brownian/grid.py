"""`GridIncrements`: the fast path for a fixed step grid, Brownian increments drawn in bulk
chunk by chunk from counter-based seeds (the adjoint regenerates any chunk); a method's
noise terms formed from them a block of steps at a time (`prepared`)."""
from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch

from ..errors import InvalidInputError
from ..validation import (check_bool, check_float_dtype, check_int, check_seed, check_size,
                          short_list)
from .seeds import randn_seeded, seed_for

Tensor = torch.Tensor

__all__ = ["GridIncrements"]

_GI = "GridIncrements: "


class GridIncrements:
    """Brownian increments (and optionally H) for a fixed step grid, drawn chunk by chunk.

    Step ``k`` has signed size ``steps[k]``; chunk ``c`` covers steps ``[c K, (c+1) K)`` and
    is drawn by one ``randn`` call seeded by ``seed_for(entropy, c)``. ``get(k)`` returns
    ``(dW_k, H_k)`` (``H_k`` None without Lévy area), with ``Var dW_k = |steps[k]|``.
    Only the current chunk is held in memory.

    ``prepare(dW, H, steps)`` (a method's `block_noise`) maps a block of steps' increments,
    shaped ``(K, *size)``, to their K per-step noise terms, which ``prepared(k)`` returns;
    blocks hold about ``block_numel`` numbers per tensor (so they stay in cache) and lie
    inside one chunk.
    """

    def __init__(self, steps: Sequence[float], size: Sequence[int], dtype: torch.dtype,
                 device: torch.device, entropy: int, levy: bool, chunk_size: int,
                 prepare: Optional[Callable[[Tensor, Optional[Tensor], Sequence[float]],
                                            List[Any]]] = None,
                 block_numel: int = 1 << 16) -> None:
        try:
            finite = all(map(math.isfinite, steps))
        except TypeError:
            finite = False
        if not finite:
            raise InvalidInputError(
                f"{_GI}`steps` must be a sequence of finite numbers; got {short_list(steps)}")
        self.n = len(steps)
        self.size = check_size("size", size, _GI)
        self.dtype, self.device = check_float_dtype("dtype", dtype, _GI), device
        self.entropy = check_seed("entropy", entropy, _GI)
        self.levy = check_bool("levy", levy, _GI)
        self.chunk_size = check_int("chunk_size", chunk_size, 1, _GI)
        self._gen = torch.Generator(device=device)
        self._sqrt = torch.tensor([math.sqrt(abs(h)) for h in steps], dtype=dtype, device=device)
        self._sqrt = self._sqrt.reshape(-1, *([1] * len(self.size)))
        self._chunk = -1
        self._dw: Any = None
        self._h: Any = None
        self.steps, self.prepare = steps, prepare
        self._block = min(self.chunk_size, max(1, block_numel // max(1, math.prod(self.size))))
        self._at: Tuple[int, int] = (-1, -1)
        self._terms: List[Any] = []

    def _load(self, c: int) -> None:
        k0 = c * self.chunk_size
        if not 0 <= k0 < self.n:
            raise InvalidInputError(
                f"{_GI}step index must lie in [0, {self.n}); got one in chunk {c} (steps "
                f"[{k0}, {k0 + self.chunk_size}))")
        k1 = min(self.n, k0 + self.chunk_size)
        n = 2 if self.levy else 1
        z = randn_seeded(self._gen, seed_for(self.entropy, c), (n, k1 - k0, *self.size),
                         self.dtype, self.device)
        s = self._sqrt[k0:k1]
        self._dw = z[0].mul_(s)                       # in place: one pass over the chunk
        self._h = z[1].mul_(s * (1.0 / math.sqrt(12.0))) if self.levy else None
        self._chunk = c

    def get(self, k: int) -> Tuple[Tensor, Optional[Tensor]]:
        c, j = divmod(k, self.chunk_size)
        if c != self._chunk:
            self._load(c)
        return self._dw[j], (self._h[j] if self.levy else None)

    def prepared(self, k: int) -> Any:
        """Step k's noise terms from ``prepare`` (formed with its block's)."""
        c, j = divmod(k, self.chunk_size)
        b, i = divmod(j, self._block)
        if (c, b) != self._at:
            if c != self._chunk:
                self._load(c)
            lo = b * self._block
            hi = min(lo + self._block, self._dw.shape[0])
            k0 = c * self.chunk_size
            self._terms = self.prepare(self._dw[lo:hi], self._h[lo:hi] if self.levy else None,
                                       self.steps[k0 + lo:k0 + hi])
            self._at = (c, b)
        return self._terms[i]
