"""Sample-based distances for low-dimensional data: MMD (RBF kernels) and sliced
Wasserstein distance, in bounded memory.

Memory: `mmd_rbf` sums its kernel matrices over row blocks, so it never holds an N x M
matrix (peak about ``max_bytes``, default 64 MiB, whatever N and M); the sums are the full
computation's up to summation order. `median_bandwidth` takes the median over at most
``max_points`` pooled points (default 4096; an evenly spaced subset of the pooled samples
beyond that, the count is `bandwidth_points`). `sliced_wasserstein` projects in groups of
directions so that one group of sorted projections fits in ``max_bytes``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..errors import InputError

Tensor = torch.Tensor

__all__ = ["mmd_rbf", "median_bandwidth", "bandwidth_points", "sliced_wasserstein",
           "MEDIAN_MAX_POINTS", "METRIC_MAX_BYTES"]

MEDIAN_MAX_POINTS = 4096
METRIC_MAX_BYTES = 64 * 2 ** 20


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1] or len(x) < 2 or len(y) < 2:
        raise InputError("x and y must have shapes (N, d) and (M, d) with N, M >= 2; "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")


def _cdist(a: Tensor, b: Tensor) -> Tensor:
    # direct differences (no |a|²+|b|²-2ab matmul): every entry is computed the same way in
    # any row block, and d(a, a) is exactly 0
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def bandwidth_points(n: int, max_points: int = MEDIAN_MAX_POINTS) -> int:
    """How many of ``n`` pooled points `median_bandwidth` uses."""
    return min(n, max_points)


def median_bandwidth(x: Tensor, y: Tensor, max_points: int = MEDIAN_MAX_POINTS) -> float:
    """Median pairwise distance of the pooled samples (the usual RBF bandwidth heuristic).

    With more than ``max_points`` pooled points it is the median over an evenly spaced subset
    of ``max_points`` of them (x's and y's in proportion), so memory stays bounded."""
    z = torch.cat([x, y]).detach().double()
    k = bandwidth_points(len(z), max_points)
    if k < len(z):
        z = z[torch.linspace(0, len(z) - 1, k).round().long()]
    d = _cdist(z, z)
    return float(d[torch.triu_indices(len(z), len(z), 1).unbind()].median())


def _rows_per_block(m: int, n_kernels: int, max_bytes: int) -> int:
    # a block of r rows holds r x m distances plus the running kernel sum and one term
    return max(1, max_bytes // (8 * m * (n_kernels + 2)))


def _kernel_sum(a: Tensor, b: Tensor, bandwidths: Sequence[float], rows: int) -> Tensor:
    """``sum_ij sum_h exp(-|a_i - b_j|² / (2 h²))`` over row blocks of ``a`` (0-dim float64)."""
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for start in range(0, len(a), rows):
        d2 = _cdist(a[start:start + rows], b).square_()
        block = torch.zeros_like(d2)
        for h in bandwidths:
            block += torch.exp(d2 * (-1.0 / (2 * h * h)))
        total += block.sum()
    return total


def mmd_rbf(x: Tensor, y: Tensor, bandwidths: Optional[Sequence[float]] = None, *,
            max_bytes: int = METRIC_MAX_BYTES) -> float:
    """Unbiased squared MMD with a sum of RBF kernels ``exp(-|a-b|² / (2 h²))``.

    Default bandwidths: the median heuristic h (`median_bandwidth`) times (0.5, 1, 2). Can be
    slightly negative when the two samples come from the same distribution. The kernel sums
    run over row blocks of at most ``max_bytes`` each (the value does not depend on it beyond
    float64 summation order).
    """
    _check_pair(x, y)
    if not isinstance(max_bytes, int) or max_bytes < 1:
        raise InputError(f"max_bytes must be a positive int; got {max_bytes!r}")
    x, y = x.detach().double(), y.detach().double()
    if bandwidths is None:
        h = median_bandwidth(x, y)
        bandwidths = (0.5 * h, h, 2 * h)
    bandwidths = tuple(float(h) for h in bandwidths)
    n, m = len(x), len(y)
    rows = _rows_per_block(max(n, m), len(bandwidths), max_bytes)
    # the diagonal of k(x, x) is exactly len(bandwidths): d(a, a) = 0 (see _cdist)
    sxx = (_kernel_sum(x, x, bandwidths, rows) - n * len(bandwidths)) / (n * (n - 1))
    syy = (_kernel_sum(y, y, bandwidths, rows) - m * len(bandwidths)) / (m * (m - 1))
    sxy = _kernel_sum(x, y, bandwidths, rows) / (n * m)
    return float(sxx + syy - 2 * sxy)


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 256, p: int = 2,
                       generator: Optional[torch.Generator] = None, *,
                       max_bytes: int = METRIC_MAX_BYTES) -> float:
    """Sliced p-Wasserstein distance, ``(E_θ W_p^p(θ·x, θ·y))^{1/p}`` over random unit θ.

    1-D distances compare quantiles (sorted projections; for N != M both are evaluated
    at the midpoints of max(N, M) quantile levels). Directions are processed in groups whose
    projections fit in about ``max_bytes``.
    """
    _check_pair(x, y)
    x, y = x.detach().double(), y.detach().double()
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    theta = torch.randn(x.shape[1], n_projections, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    big = max(len(x), len(y))
    # a group holds the projections of x and y and (N != M) their quantiles: ~4 x big each;
    # torch.quantile also refuses inputs of more than 2**24 elements
    group = max(1, min(max_bytes // (8 * 4 * big), 2 ** 24 // big))
    q = None
    if len(x) != len(y):
        q = (torch.arange(big, dtype=torch.float64) + 0.5) / big
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, n_projections, group):
        t = theta[:, start:start + group]
        px, py = (x @ t).sort(dim=0).values, (y @ t).sort(dim=0).values
        if q is not None:
            px, py = (torch.quantile(a, q, dim=0) for a in (px, py))
        total += (px - py).abs().pow(p).sum()
    return float((total / (big * n_projections)).pow(1.0 / p))
