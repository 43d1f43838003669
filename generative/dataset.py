"""`Dataset` (a train / test pair of batch-first tensors), the quantisation of discrete data
and the deterministic random split; the loaders are in `generative.data` and
`generative.colour_data`.

Quantised data convention (digits: 17 grey levels k = 0..16; ``uint8`` images: 256):
level k maps to ``x = 2 k / (L - 1) - 1`` in [-1, 1], so the bins have width
``Δ = 2 / (L - 1)`` and are centred on the levels. Uniform dequantisation adds
``U(-Δ/2, Δ/2)`` (support ``[-1 - Δ/2, 1 + Δ/2]``) and `quantize` rounds back to the
nearest level, so ``quantize(dequantize(x)) == x``. A density p(x) on the dequantised
data bounds the discrete likelihood with ``bits/dim = -log2 p(x) / D - log2 Δ``
(`Dataset.bits_per_dim`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import numpy as np
import torch

from .errors import InputError
from .likelihood import to_bits_per_dim
from .randomness import Random, rand

Tensor = torch.Tensor

__all__ = ["Dataset", "dequantize", "quantize", "dequantize_transform", "split_indices"]


@dataclass(frozen=True)
class Dataset:
    """A train / test pair of batch-first tensors.

    Attributes:
        name: data set name (or the file path for user arrays).
        train, test: ``(N, *event_shape)`` float tensors.
        train_labels, test_labels: ``(N,)`` int64 class labels, or ``None``.
        num_classes: number of classes when labelled, else ``None``.
        levels: number of discrete levels per value when the data is quantised
            (17 for digits), else ``None`` (continuous data).
    """

    name: str
    train: Tensor
    test: Tensor
    train_labels: Optional[Tensor] = None
    test_labels: Optional[Tensor] = None
    num_classes: Optional[int] = None
    levels: Optional[int] = None

    @property
    def event_shape(self) -> Tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def dim(self) -> int:
        """Number of scalar dimensions D of one sample."""
        return int(math.prod(self.event_shape))

    @property
    def bin_width(self) -> Optional[float]:
        """Width Δ of one quantisation bin in data space, or ``None`` if continuous."""
        return None if self.levels is None else 2.0 / (self.levels - 1)

    def dequantize(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Uniform dequantisation within each level's bin (identity for continuous data)."""
        return x if self.levels is None else dequantize(x, self.levels, generator)

    def quantize(self, x: Tensor) -> Tensor:
        """Round to the nearest level (identity for continuous data)."""
        return x if self.levels is None else quantize(x, self.levels)

    def bits_per_dim(self, log_p: Tensor) -> Tensor:
        """Per-example bits/dim of log-densities ``log_p`` (nats, ``(B,)``) of (dequantised)
        examples of this data (`generative.likelihood.to_bits_per_dim` with this data's
        dimension and bin width)."""
        return to_bits_per_dim(log_p, self.dim, self.bin_width)


# --------------------------------------------------------------------------- quantisation

def dequantize(x: Tensor, levels: int, generator: Random = None) -> Tensor:
    """Add ``U(-Δ/2, Δ/2)`` noise, ``Δ = 2 / (levels - 1)``, to data on the level grid."""
    u = rand(x.shape, generator, device=x.device, dtype=x.dtype)
    return x + (u - 0.5) * (2.0 / (levels - 1))


def quantize(x: Tensor, levels: int) -> Tensor:
    """Map ``x`` to the nearest of ``levels`` equally spaced values in [-1, 1]."""
    k = torch.round((x + 1) * (levels - 1) / 2).clamp_(0, levels - 1)
    return k * (2.0 / (levels - 1)) - 1


def dequantize_transform(levels: Optional[int]) -> Callable[..., Any]:
    """A ``transform(batch, rng)`` for `generative.train.train` that dequantises the
    first tensor of a batch (``x`` or ``(x, labels, ...)``); identity when ``levels`` is None."""
    def transform(batch: Any, generator: Random = None) -> Any:
        if levels is None:
            return batch
        if isinstance(batch, (tuple, list)):
            return (dequantize(batch[0], levels, generator), *batch[1:])
        return dequantize(batch, levels, generator)
    return transform


def split_indices(n: int, test_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """A deterministic random split of ``range(n)`` into sorted (train, test) indices."""
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])
