"""Fréchet distance between Gaussian fits of two feature sets (the "FID" formula).

``d² = |μ1 - μ2|² + tr(Σ1 + Σ2 - 2 (Σ1 Σ2)^{1/2})`` with scipy's matrix square root,
stabilised as in Heusel et al.'s reference code: if the product is singular a small
multiple of the identity is added to both covariances, and a negligible imaginary part
from round-off is dropped.

Statistics of features computed in shards (several processes, or batches) merge exactly
through `FeatureMoments` (count, mean, centred scatter matrix).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple, Union

import numpy as np
import torch

from dynamics.deprecation import UNSET, renamed_argument

from ..errors import InputError

ArrayLike = Union[np.ndarray, torch.Tensor]

__all__ = ["feature_stats", "FeatureMoments", "frechet_distance", "frechet_distance_features",
           "bootstrap_frechet", "FrechetResult"]


def _as_f64(a: ArrayLike) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


@dataclass(frozen=True)
class FeatureMoments:
    """Count, mean ``(F,)`` and centred scatter matrix ``(F, F)`` of a set of features.

    Moments of disjoint parts merge exactly (Chan et al.'s pairwise update), so statistics of
    features computed in shards (processes, batches) equal those of the whole set up to
    float64 round-off.
    """

    n: int
    mean: np.ndarray
    scatter: np.ndarray

    @classmethod
    def of(cls, features: ArrayLike) -> "FeatureMoments":
        """Moments of ``(N, F)`` features (N may be 0 or 1 for a shard)."""
        f = _as_f64(features)
        if f.ndim != 2:
            raise InputError(f"features must have shape (N, F); got {f.shape}")
        if f.shape[0] == 0:
            return cls(0, np.zeros(f.shape[1]), np.zeros((f.shape[1], f.shape[1])))
        mean = f.mean(axis=0)
        c = f - mean
        return cls(int(f.shape[0]), mean, c.T @ c)

    def merge(self, other: "FeatureMoments") -> "FeatureMoments":
        """Moments of the union of the two feature sets."""
        if self.mean.shape != other.mean.shape:
            raise InputError(f"cannot merge moments of {self.mean.shape[0]} and "
                             f"{other.mean.shape[0]} features")
        n = self.n + other.n
        if self.n == 0 or other.n == 0:
            return other if self.n == 0 else self
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        scatter = self.scatter + other.scatter + np.outer(delta, delta) * (self.n * other.n / n)
        return FeatureMoments(n, mean, scatter)

    def stats(self) -> Tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased covariance (as `feature_stats`); needs n >= 2."""
        if self.n < 2:
            raise InputError(f"features must have shape (N, F) with N >= 2; got N = {self.n}")
        return self.mean, self.scatter / (self.n - 1)


def feature_stats(features: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    """Mean ``(F,)`` and unbiased covariance ``(F, F)`` of ``(N, F)`` features (float64)."""
    f = _as_f64(features)
    if f.ndim != 2 or f.shape[0] < 2:
        raise InputError(f"features must have shape (N, F) with N >= 2; got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike,
                     *, offset: float = 1e-6, imag_tol: float = 1e-3,
                     eps: Any = UNSET) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2). Where the matrix
    square root of ``sigma1 sigma2`` is not finite, ``offset * I`` is added to both
    covariances first (``eps`` is the deprecated name of ``offset``)."""
    offset = renamed_argument("eps", eps, "offset", offset, "frechet_distance", default=1e-6)
    mu1, mu2 = np.atleast_1d(_as_f64(mu1)), np.atleast_1d(_as_f64(mu2))
    s1, s2 = np.atleast_2d(_as_f64(sigma1)), np.atleast_2d(_as_f64(sigma2))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise InputError(f"expected means of shape ({d},) and covariances ({d}, {d}); got "
                         f"{mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")
    import scipy.linalg  # lazily: `import generative` must not load scipy

    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        jitter = np.eye(d) * offset
        covmean = scipy.linalg.sqrtm((s1 + jitter) @ (s2 + jitter))
    if np.iscomplexobj(covmean):
        if np.abs(covmean.imag).max() > imag_tol * max(1.0, np.abs(covmean.real).max()):
            raise InputError("matrix square root has a large imaginary component "
                             f"({np.abs(covmean.imag).max():.3g}); covariances are not PSD?")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def frechet_distance_features(f1: ArrayLike, f2: ArrayLike) -> float:
    """Fréchet distance between the Gaussian fits of two ``(N, F)`` feature sets."""
    return frechet_distance(*feature_stats(f1), *feature_stats(f2))


@dataclass(frozen=True)
class FrechetResult:
    """A Fréchet distance with a bootstrap confidence interval.

    ``bias`` is the bootstrap estimate of the plug-in estimator's bias (mean of the bootstrap
    replicates minus ``value``); ``method`` names the interval (see `bootstrap_frechet`).
    """

    value: float
    ci_low: float
    ci_high: float
    confidence: float
    n_boot: int
    bias: float = 0.0
    method: str = "basic"

    def as_dict(self) -> dict:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "confidence": self.confidence, "n_boot": self.n_boot, "bias": self.bias,
                "method": self.method}


CI_METHODS = ("basic", "percentile")


def bootstrap_frechet(f_gen: ArrayLike, f_ref: ArrayLike, *, n_boot: int = 200,
                      confidence: float = 0.95, seed: int = 0, resample_ref: bool = False,
                      method: str = "basic") -> FrechetResult:
    """Fréchet distance of two feature sets and a bootstrap confidence interval.

    The generated rows are resampled with replacement; the reference set is held fixed
    (``resample_ref=False``, default), so the interval is for the distance to *this*
    reference set, the one every sampler is compared against, and it reflects the
    generated-sample variability only.

    The plug-in distance is biased upward (sampling noise in the covariances adds to it), and
    every bootstrap replicate adds that bias again, so the replicates sit above ``value``.
    ``method='basic'`` (default; the pivotal bootstrap) corrects for this: with q_lo, q_hi the
    replicates' (1 ∓ confidence)/2 quantiles the interval is ``[2 value - q_hi, 2 value -
    q_lo]``, clipped at 0 (a distance is >= 0; near 0, where the bias exceeds the spread, the
    interval degenerates towards ``[0, small]``). ``method='percentile'`` returns ``[q_lo, q_hi]``
    (biased upward: it often lies above ``value``; kept for comparison).
    """
    if method not in CI_METHODS:
        raise InputError(f"method must be one of {CI_METHODS}; got {method!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 2:
        raise InputError(f"n_boot must be an integer >= 2; got {n_boot!r}")
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be in (0, 1); got {confidence!r}")
    g, r = _as_f64(f_gen), _as_f64(f_ref)
    value = frechet_distance_features(g, r)
    rng = np.random.default_rng(seed)
    ref_stats = feature_stats(r)
    boots = np.empty(n_boot)
    for i in range(n_boot):
        gs = feature_stats(g[rng.integers(0, len(g), len(g))])
        rs = feature_stats(r[rng.integers(0, len(r), len(r))]) if resample_ref else ref_stats
        boots[i] = frechet_distance(*gs, *rs)
    alpha = (1 - confidence) / 2
    lo, hi = (float(q) for q in np.quantile(boots, [alpha, 1 - alpha]))
    if method == "basic":
        lo, hi = max(0.0, 2 * value - hi), max(0.0, 2 * value - lo)
    return FrechetResult(value, lo, hi, confidence, n_boot, float(boots.mean() - value), method)
