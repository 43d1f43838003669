"""`ScoreNet`: a time-conditioned net behind input preconditioning and log-σ conditioning.

A `ScoreNet` predicts the noise ε from ``x / sqrt(α² σ_data² + σ²)`` and the normalised
log-noise level ``c(t) = (log σ(t) - log σ(t_min)) / (log σ(T) - log σ(t_min))`` (or ``t``
itself with ``cond='t'``); its score is ``-ε / σ(t)``. Around a vector-output net (``out_features``
logits) the same preconditioning makes the noise-conditional classifier.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from dynamics import LinearSDE, ScoreAdapter, broadcast_time

from ..errors import ModelError

Tensor = torch.Tensor

__all__ = ["ScoreNet", "NOISE_CONDITIONS"]

NOISE_CONDITIONS = ("logsigma", "t")


class ScoreNet(nn.Module):
    """ε-prediction network with input preconditioning and log-σ conditioning.

    ``forward(x, t)`` returns the predicted noise ε̂(x, t) (x's shape); `score_fn` wraps it as
    ``score(x, t)`` for the samplers and the likelihood.
    """

    def __init__(self, net: nn.Module, sde: LinearSDE, data_std: float = 1.0,
                 cond: str = "logsigma") -> None:
        super().__init__()
        if cond not in NOISE_CONDITIONS:
            raise ModelError(f"cond must be 'logsigma' or 't'; got {cond!r}")
        self.net, self.sde, self.cond = net, sde, cond
        self.data_std = float(data_std)
        cpu = dict(dtype=torch.float64, device="cpu")  # also when built on the meta device
        lo = math.log(float(sde.sigma(torch.tensor(float(sde.t_min), **cpu))))
        hi = math.log(float(sde.sigma(torch.tensor(float(sde.T), **cpu))))
        self._log_sigma_range = (lo, hi)

    def noise_condition(self, t: Tensor) -> Tensor:
        if self.cond == "t":
            return t
        lo, hi = self._log_sigma_range
        return (torch.log(self.sde.sigma(t)) - lo) / (hi - lo)

    def forward(self, x: Tensor, t: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """ε̂(x, t), or ε̂(x, t | y) for a class-conditional net (``y`` ``(B,)`` labels)."""
        t = broadcast_time(t, x)
        a, s = self.sde.coefs(x, t)
        c_in = torch.rsqrt(a.square() * self.data_std ** 2 + s.square())
        if y is None:
            return self.net(x * c_in, self.noise_condition(t))
        return self.net(x * c_in, self.noise_condition(t), y)

    def score_fn(self) -> ScoreAdapter:
        """``score(x, t) = -ε̂(x, t) / σ(t)``."""
        return ScoreAdapter(self, self.sde, "noise")
