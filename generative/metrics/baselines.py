"""Reference samplers that every model is compared against."""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import InputError

Tensor = torch.Tensor

__all__ = ["gaussian_fit_sample"]


def gaussian_fit_sample(x: Tensor, n: int, generator: Optional[torch.Generator] = None,
                        jitter: float = 1e-6) -> Tensor:
    """``n`` samples of the Gaussian with the mean and covariance of ``x`` ``(N, *event)``.

    The "Gaussian fit" baseline: a generative model that does not beat it has learnt no
    more than second-order statistics. Computed in float64; returns x's dtype and shape.
    """
    if x.dim() < 2 or x.shape[0] < 2:
        raise InputError(f"x must have shape (N, *event) with N >= 2; got {tuple(x.shape)}")
    flat = x.detach().reshape(x.shape[0], -1).to(torch.float64)
    d = flat.shape[1]
    eye = torch.eye(d, dtype=torch.float64, device=x.device)
    cov = torch.cov(flat.T).reshape(d, d) + jitter * eye
    chol = torch.linalg.cholesky(cov)
    z = torch.randn(n, d, generator=generator, dtype=torch.float64, device=x.device)
    return (flat.mean(0) + z @ chol.T).to(x.dtype).reshape(n, *x.shape[1:])
