"""Round-off bounds for comparing two computations of one Fréchet distance (a test helper,
not a test module).

Two sources separate FIDs that are mathematically equal:

* float64 statistics (np.cov vs merged `FeatureMoments`): the covariances differ by
  round-off, ~u = 2.2e-16 relative. With N generated rows and F > N - 1 features Σ_gen has
  rank <= N - 1, so Σ_gen Σ_ref has ``n_null = F - (N - 1)`` zero eigenvalues. The backward
  error of the Schur-based sqrtm, ~F·u·|Σ_gen||Σ_ref| (spectral norms), moves each of them
  by up to that much, and the square root turns that into sqrt(F·u·|Σ_gen||Σ_ref|) per
  eigenvalue; d = ... - 2 tr sqrtm(Σ_gen Σ_ref) gives ``2 n_null sqrt(...)``.
* float32 features computed with a different batch split (another kernel or summation order
  per row): each feature moves by at most ``feature_err`` (absolute). The distance is the
  squared 2-Wasserstein distance of the Gaussian fits, sqrt(d) is a metric, and the Gaussian
  fits of row-paired feature sets are within sqrt(N / (N - 1)) * (RMS row displacement) <=
  sqrt(N / (N - 1)) sqrt(F) feature_err of each other in W2 (Gelbrich bound), so
  |Δ sqrt(d)| <= that and |Δd| <= 2 sqrt(d) |Δ sqrt(d)| + |Δ sqrt(d)|².
"""
from __future__ import annotations

import math

import numpy as np

from generative.metrics import feature_stats

U64 = float(np.finfo(np.float64).eps)
U32 = float(np.finfo(np.float32).eps) / 2  # unit round-off of one float32 operation

# The digits classifier's feature of one image is a chain of reductions: conv 3x3x1 (9 terms),
# conv 3x3x32 (288), conv 3x3x32 (288), linear 2*32*4 (256). Reordering a length-K float32
# sum changes it by ~sqrt(K)·u relative to the magnitude summed (the usual random-walk
# estimate; the worst case K·u is not reached by round-off of random sign); the chain adds
# these: sqrt(9 + 288 + 288 + 256) = 29.
DIGITS_FEATURE_REL_ERR = math.sqrt(9 + 288 + 288 + 256) * U32


def frechet_roundoff_bound(f_gen, f_ref, d: float, feature_err: float = 0.0) -> float:
    """Absolute bound on |d - d'| for two computations of the distance ``d`` between the
    ``(N, F)`` features ``f_gen`` and ``f_ref`` (float64 tensors or arrays): float64
    statistics round-off amplified by sqrtm, plus ``feature_err`` (absolute, per generated
    feature; the reference features are the same in both computations)."""
    f_gen = np.asarray(f_gen, dtype=np.float64)
    n, f = f_gen.shape
    (_, s_gen), (_, s_ref) = feature_stats(f_gen), feature_stats(f_ref)
    n_null = max(f - (n - 1), 1)
    sqrtm_term = 2 * n_null * math.sqrt(f * U64 * np.linalg.norm(s_gen, 2)
                                        * np.linalg.norm(s_ref, 2))
    w2 = math.sqrt(n / (n - 1)) * math.sqrt(f) * feature_err
    return sqrtm_term + 2 * math.sqrt(max(d, 0.0)) * w2 + w2 ** 2
