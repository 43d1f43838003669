"""Result dataclasses of `generative`'s model-level calls.

Each unpacks like the tuple it replaces (``x, nfe = models.sample(...)``,
``logp, nfe = models.log_prob(...)``), so code written against the tuples keeps working.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator

import torch

Tensor = torch.Tensor

__all__ = ["SampleResult", "LogProbResult", "CNFDensity"]


@dataclass(frozen=True)
class SampleResult:
    """``x`` ``(n, *event)`` samples and ``nfe``, the mean number of network evaluations per
    sample; unpacks as ``x, nfe``."""

    x: Tensor
    nfe: float

    def __iter__(self) -> Iterator[Any]:
        return iter((self.x, self.nfe))


@dataclass(frozen=True)
class LogProbResult:
    """``logp`` ``(B,)`` in nats and ``nfe``, the mean number of network evaluations per
    example of the solve; unpacks as ``logp, nfe``."""

    logp: Tensor
    nfe: float

    def __iter__(self) -> Iterator[Any]:
        return iter((self.logp, self.nfe))


@dataclass(frozen=True)
class CNFDensity:
    """One FFJORD solve: ``logp`` ``(B,)`` in nats, the RNODE integrals ``regs`` (``kinetic``
    and ``jacobian``, ``(B,)`` each, when their weights are > 0) and the solve's ``nfe``."""

    logp: Tensor
    nfe: int
    regs: Dict[str, Tensor] = field(default_factory=dict)
