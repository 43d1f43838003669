"""Sample-based distances for low-dimensional data: MMD (RBF kernels) and sliced
Wasserstein distance."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

Tensor = torch.Tensor

__all__ = ["mmd_rbf", "median_bandwidth", "sliced_wasserstein"]


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1] or len(x) < 2 or len(y) < 2:
        raise ValueError("x and y must have shapes (N, d) and (M, d) with N, M >= 2; "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")


def median_bandwidth(x: Tensor, y: Tensor) -> float:
    """Median pairwise distance of the pooled samples (the usual RBF bandwidth heuristic)."""
    z = torch.cat([x, y]).double()
    d = torch.cdist(z, z)
    return float(d[torch.triu_indices(len(z), len(z), 1).unbind()].median())


def mmd_rbf(x: Tensor, y: Tensor, bandwidths: Optional[Sequence[float]] = None) -> float:
    """Unbiased squared MMD with a sum of RBF kernels ``exp(-|a-b|² / (2 h²))``.

    Default bandwidths: the median heuristic h times (0.5, 1, 2). Can be slightly negative
    when the two samples come from the same distribution.
    """
    _check_pair(x, y)
    x, y = x.detach().double(), y.detach().double()
    if bandwidths is None:
        h = median_bandwidth(x, y)
        bandwidths = (0.5 * h, h, 2 * h)

    def k(a: Tensor, b: Tensor) -> Tensor:
        d2 = torch.cdist(a, b).square()
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)

    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 256, p: int = 2,
                       generator: Optional[torch.Generator] = None) -> float:
    """Sliced p-Wasserstein distance, ``(E_θ W_p^p(θ·x, θ·y))^{1/p}`` over random unit θ.

    1-D distances compare quantiles (sorted projections; for N != M both are evaluated
    at the midpoints of max(N, M) quantile levels).
    """
    _check_pair(x, y)
    x, y = x.detach().double(), y.detach().double()
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    theta = torch.randn(x.shape[1], n_projections, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, py = (x @ theta).sort(dim=0).values, (y @ theta).sort(dim=0).values
    if len(px) != len(py):
        q = (torch.arange(max(len(px), len(py)), dtype=torch.float64) + 0.5)
        q = q / max(len(px), len(py))
        px, py = (torch.quantile(a, q, dim=0) for a in (px, py))
    return float((px - py).abs().pow(p).mean().pow(1.0 / p))
