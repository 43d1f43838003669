"""``generate``: many samples of a loaded model, drawn in seeded chunks (optionally sharded
across torchrun processes), so the samples depend on ``(seed, n, batch_size)`` only."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from solvers.brownian.seeds import seed_for

from .distributed import SINGLE_PROCESS, DistContext
from .models import sample as sample_model

Tensor = torch.Tensor

__all__ = ["generate"]


def generate(model: nn.Module, meta: Dict[str, Any], n: int, *, batch_size: int = 1000,
             seed: int = 0, distributed: Optional[DistContext] = None,
             **options: Any) -> Tuple[Tensor, float]:
    """``n`` samples of a loaded model (any kind; ``options`` are its sampling options, see
    `generative.models.sample`) in chunks of ``batch_size``; returns
    ``(samples, mean NFE per sample)``.

    Chunk ``c`` is drawn with a generator (on the model's device) seeded by ``(seed, c)``, so
    the samples depend on ``(seed, n, batch_size)`` only. With ``distributed`` this process
    draws its contiguous share of the chunks and returns those rows (the single-process
    result's rows at their positions) and their mean NFE; ``distributed.gather_rows``
    collects all ``n`` on rank 0.
    """
    ctx = distributed if distributed is not None else SINGLE_PROCESS
    device = next(model.parameters()).device
    xs: List[Tensor] = []
    nfes: List[float] = []
    with torch.no_grad():
        for c in ctx.shard(math.ceil(n / batch_size)):
            b = min(batch_size, n - c * batch_size)
            g = torch.Generator(device=device).manual_seed(seed_for(seed, c))
            x, used = sample_model(model, meta, b, generator=g, **options)
            xs.append(x)
            nfes.append(used * b)
    x = torch.cat(xs) if xs else torch.empty((0, *meta["event_shape"]), device=device)
    return x, sum(nfes) / max(len(x), 1)
