"""``generate``: many samples of a loaded model, drawn in seeded chunks (optionally sharded
across torchrun processes), so the samples depend on ``(seed, n, batch_size)`` only."""
from __future__ import annotations

import math
from typing import Any, List, Optional

import torch
from torch import nn

from solvers.brownian.seeds import seed_for

from .distributed import SINGLE_PROCESS, DistContext
from .models import SpecLike, as_spec
from .models import sample as sample_model
from .results import SampleResult, merge_samples

Tensor = torch.Tensor

__all__ = ["generate"]


def generate(model: nn.Module, spec: SpecLike, n: int, *, batch_size: int = 1000,
             seed: int = 0, distributed: Optional[DistContext] = None,
             **options: Any) -> SampleResult:
    """``n`` samples of a loaded model (any kind; ``spec`` its `ModelSpec` or meta dict;
    ``options`` its sampling options, see `generative.models.sample`) in chunks of
    ``batch_size``: a `SampleResult` (unpacks as ``samples, mean NFE per sample``; its
    ``score_calls`` the mean score calls per sample, for score models).

    Chunk ``c`` is drawn with a generator (on the model's device) seeded by ``(seed, c)``, so
    the samples depend on ``(seed, n, batch_size)`` only. With ``distributed`` this process
    draws its contiguous share of the chunks and returns those rows (the single-process
    result's rows at their positions) and their mean NFE; ``distributed.gather_rows``
    collects all ``n`` on rank 0.
    """
    spec = as_spec(spec)
    ctx = distributed if distributed is not None else SINGLE_PROCESS
    device = next(model.parameters()).device
    parts: List[SampleResult] = []
    with torch.no_grad():
        for c in ctx.shard(math.ceil(n / batch_size)):
            b = min(batch_size, n - c * batch_size)
            g = torch.Generator(device=device).manual_seed(seed_for(seed, c))
            parts.append(sample_model(model, spec, b, generator=g, **options))
    if not parts:  # this process's share is empty
        return SampleResult(torch.empty((0, *spec.event_shape), device=device), 0.0)
    return merge_samples(parts)
