"""Reverse-time SDE and probability-flow ODE of a linear SDE, given a score function.

Both are expressed in the forward clock t and integrated backwards (T -> t_min) with a
decreasing time grid: a negative step dt uses Brownian increments of variance |dt|
(../shared/DESIGN.md), so the reverse SDE is simply ``dx = [f - g^2 score] dt + g dw``.
Both are ``nn.Module`` s holding ``score_fn`` (when it is a module), so adjoint solvers see its
parameters.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Tuple

import torch
from torch import nn

from solvers.errors import describe

from .deprecation import renamed_attribute
from .errors import InputError
from .broadcast import ScoreFn, TimeLike, as_time_tensor, call_score, expand_coef

if TYPE_CHECKING:  # pragma: no cover  (base builds these processes: a runtime import would cycle)
    from .base import LinearSDE

Tensor = torch.Tensor

__all__ = ["ReverseSDE", "ProbabilityFlowODE", "check_sde_and_score"]

# what the reverse processes use of the forward SDE
_SDE_INTERFACE = ("f", "g", "diffusion_sq", "discretize", "T", "t_min")


def check_sde_and_score(sde: object, score_fn: object) -> None:
    """`InputError` unless ``sde`` has what the reverse processes use of a `LinearSDE` and
    ``score_fn`` is callable ``score_fn(x, t)`` (the samplers' and likelihood's models)."""
    missing = [name for name in _SDE_INTERFACE if not hasattr(sde, name)]
    if missing:
        raise InputError(f"`sde` must be a dynamics.LinearSDE (lacks "
                         f"{', '.join(missing)}); got {describe(sde)}")
    if not callable(score_fn):
        raise InputError(
            f"`score_fn` must be a callable score_fn(x, t); got {describe(score_fn)}")


class _ScoreDriven(nn.Module):
    """Shared by the reverse SDE and the probability flow: the forward SDE, the score,
    and the drift ``f(t) x - c g(t)^2 score(x, t)`` (c = 1 reverse SDE, 1/2 flow)."""

    def __init__(self, sde: LinearSDE, score_fn: ScoreFn) -> None:
        super().__init__()
        check_sde_and_score(sde, score_fn)
        self.sde = sde
        self.score_fn = score_fn
        self.T, self.t_min = sde.T, sde.t_min

    eps = renamed_attribute("eps", "t_min")

    def _drift(self, t: TimeLike, x: Tensor, c: float) -> Tensor:
        t = as_time_tensor(t, x)
        cg2 = expand_coef(c * self.sde.diffusion_sq(t), x)
        return self.sde.f(t, x) - cg2 * call_score(self.score_fn, x, t)


class ReverseSDE(_ScoreDriven):
    """Reverse-time SDE ``dx = [f(t) x - g(t)^2 score(x, t)] dt + g(t) dw``, ts decreasing.

    Implements the torchsde protocol (``f``, ``g``, ``noise_type='diagonal'``,
    ``sde_type='ito'``) for ``solvers.sdeint(rsde, x_T, ts)`` with ``ts`` from ``T`` down to
    ``t_min``, and ``discretize`` for reverse-diffusion samplers.
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def f(self, t: TimeLike, x: Tensor) -> Tensor:
        return self._drift(t, x, 1.0)

    def g(self, t: TimeLike, x: Tensor) -> Tensor:
        return self.sde.g(t, x)

    def discretize(self, x: Tensor, t: TimeLike, dt: TimeLike) -> Tuple[Tensor, Tensor]:
        """Reverse-diffusion step from t to t - dt: ``x_prev = x - rev_f + rev_g z`` with
        ``(rev_f, rev_g) = (f_n - g_n^2 score(x, t), g_n)`` from the forward `discretize`."""
        f_n, g_n = self.sde.discretize(x, t, dt)
        return f_n - g_n ** 2 * call_score(self.score_fn, x, t), g_n

    def extra_repr(self) -> str:
        return f"sde={self.sde!r}"


class ProbabilityFlowODE(_ScoreDriven):
    """Probability-flow ODE ``dx/dt = f(t) x - g(t)^2 score(x, t) / 2`` as ``func(t, x)``.

    ``t`` is a 0-dim tensor (``solvers.odeint``), a ``(B,)`` tensor (per-sample mode) or a
    number. Its marginals equal the SDE's marginals ``p_t`` when ``score_fn`` is exact.
    """

    def forward(self, t: TimeLike, x: Tensor) -> Tensor:
        return self._drift(t, x, 0.5)

    def extra_repr(self) -> str:
        return f"sde={self.sde!r}"
