"""Limits on the denoiser's x0 estimate, for data known to lie in a box (images in [-1, 1]):

- static clipping (``clip_x0=c``): ``x0_hat`` clamped to ``[-c, c]``;
- dynamic thresholding (``threshold=p``, Saharia et al. 2022, "Photorealistic Text-to-Image
  Diffusion Models", Section 2.3): per sample, ``s = clamp(quantile_p(|x0_hat|), 1, s_max)``
  over its event entries, then ``x0_hat`` clamped to ``[-s, s]`` and divided by ``s`` (diffusers'
  ``thresholding`` with ``dynamic_thresholding_ratio = p`` and ``sample_max_value = s_max``).

Applied to every score evaluation of a run (`base.Model`): the score becomes the one whose
Tweedie estimate is the limited ``x0_hat``, ``(alpha x0_lim - x) / sigma^2``, so every sampler
(SDE, ODE and the x0-based fast ones) sees the same limited denoiser.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from ..errors import InputError

Tensor = torch.Tensor

__all__ = ["x0_limit", "dynamic_threshold"]


def dynamic_threshold(x0: Tensor, ratio: float, s_max: float = math.inf) -> Tensor:
    """Saharia et al.'s dynamic thresholding of a batch ``(B, *event)``."""
    flat = x0.reshape(len(x0), -1).abs()
    s = torch.quantile(flat, ratio, dim=1).clamp(min=1.0, max=s_max)
    s = s.reshape(-1, *([1] * (x0.dim() - 1)))
    return torch.clamp(x0, -s, s) / s


def _positive(name: str, v: Any, hi: float = math.inf) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= hi):
        raise InputError(f"`{name}` must be a number in (0, {hi:g}]; got {v!r}")
    return float(v)


def x0_limit(clip_x0: Optional[float] = None, threshold: Optional[float] = None,
             threshold_max: float = math.inf) -> Optional[Callable[[Tensor], Tensor]]:
    """The x0 limit of `sample`'s options (None: no limit)."""
    if clip_x0 is not None and threshold is not None:
        raise InputError("give `clip_x0` (static clipping) or `threshold` (dynamic "
                         "thresholding), not both")
    if clip_x0 is not None:
        c = _positive("clip_x0", clip_x0)
        return lambda x0: torch.clamp(x0, -c, c)
    if threshold is not None:
        p = _positive("threshold", threshold, 1.0)
        s_max = _positive("threshold_max", threshold_max) if threshold_max != math.inf \
            else math.inf
        if s_max < 1:
            raise InputError(f"`threshold_max` must be >= 1; got {threshold_max!r}")
        return lambda x0: dynamic_threshold(x0, p, s_max)
    return None
