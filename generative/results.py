"""Result dataclasses of `generative`'s sampling and likelihood calls.

Each unpacks like the tuple it replaces (``x, nfe = models.sample(...)``,
``logp, nfe = models.log_prob(...)``, ``logp, nfe = likelihood.log_likelihood(...)``), so code
written against the tuples keeps working. ``nfe`` is always the mean number of network
evaluations per sample (per example); ``stats`` holds the solver statistics of the solve
behind it, where there is one (`solvers.solve_ode`'s ``nfe``, ``n_steps``, ...).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch

Tensor = torch.Tensor

__all__ = ["SampleResult", "LogProbResult", "CNFDensity", "DensityIntegral", "mean_nfe",
           "merge_samples", "with_stats"]


def mean_nfe(nfe: Any) -> float:
    """An NFE count (a number, or a per-sample tensor of a per-sample solve) as its mean."""
    return float(torch.as_tensor(nfe, dtype=torch.float64).mean())


@dataclass(frozen=True)
class SampleResult:
    """``x`` ``(n, *event)`` samples and ``nfe``, the mean number of network evaluations per
    sample; unpacks as ``x, nfe``. For score models ``score_calls`` is the sampler's count of
    (possibly guided) score calls per sample: classifier-free guidance evaluates the network
    twice per call, so there ``nfe = 2 score_calls``. ``stats``: the solver statistics of an
    ODE solve (flows), else empty."""

    x: Tensor
    nfe: float
    score_calls: Optional[float] = None
    stats: Mapping[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.x, self.nfe))


def merge_samples(parts: Sequence[SampleResult]) -> SampleResult:
    """Several draws (chunks, processes' shares; at least one) as one result: the samples
    concatenated in order, ``nfe`` and ``score_calls`` averaged per sample (``score_calls``
    None unless every non-empty part has it); solver stats are per solve and are dropped."""
    rows = sum(len(p.x) for p in parts)

    def mean(values: List[Optional[float]]) -> Optional[float]:
        if any(v is None for p, v in zip(parts, values) if len(p.x)):
            return None
        if all(v is None for v in values):
            return None
        return sum(len(p.x) * v for p, v in zip(parts, values) if len(p.x)) / max(rows, 1)

    return SampleResult(torch.cat([p.x for p in parts]), mean([p.nfe for p in parts]) or 0.0,
                        mean([p.score_calls for p in parts]))


@dataclass(frozen=True)
class LogProbResult:
    """``logp`` ``(B,)`` in nats and ``nfe``, the mean number of network evaluations per
    example of the solve; unpacks as ``logp, nfe``. ``stats``: the solver statistics of the
    solve (`solvers.solve_ode`'s), where there is one."""

    logp: Tensor
    nfe: float
    stats: Mapping[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.logp, self.nfe))


@dataclass(frozen=True)
class DensityIntegral:
    """One change-of-variables solve (`generative.likelihood.integrate_log_density`): the
    state ``x`` at the end time, ``delta`` ``(B,)`` the divergence integral, the RNODE
    integrals ``regs`` that were asked for and the solver ``stats``; unpacks as
    ``x, delta, regs, stats``."""

    x: Tensor
    delta: Tensor
    regs: Dict[str, Tensor]
    stats: Mapping[str, Any]

    def __iter__(self) -> Iterator[Any]:
        return iter((self.x, self.delta, self.regs, self.stats))


@dataclass(frozen=True)
class CNFDensity:
    """One FFJORD solve: ``logp`` ``(B,)`` in nats, the RNODE integrals ``regs`` (``kinetic``
    and ``jacobian``, ``(B,)`` each, when their weights are > 0) and the solve's ``nfe``."""

    logp: Tensor
    nfe: int
    regs: Dict[str, Tensor] = field(default_factory=dict)


def with_stats(result: Union[SampleResult, LogProbResult], return_stats: bool, caller: str
               ) -> Union[SampleResult, LogProbResult, Tuple[Tensor, Dict[str, Any]]]:
    """``result``, or with the deprecated ``return_stats=True`` the old ``(tensor, stats
    dict)`` tuple of ``caller`` (and a `DeprecationWarning`)."""
    if not return_stats:
        return result
    warnings.warn(f"{caller}(return_stats=True) is deprecated: {caller} returns a "
                  f"{type(result).__name__} whose .stats holds the solver statistics",
                  DeprecationWarning, stacklevel=3)
    value = result.x if isinstance(result, SampleResult) else result.logp
    return value, dict(result.stats)
