"""`Solution` and `Stats`: what every solve returns, ODE or SDE."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Union

import torch

from ..errors import InvalidInputError
from ..ode.interpolation import DenseInterpolant
from .flat import FlatState, State

Tensor = torch.Tensor

__all__ = ["Solution", "ODESolution", "SDESolution", "Stats", "constant_solution"]


class Stats(dict):
    """Statistics of a solve: a dict with the same keys for ODEs and SDEs, counts as integer
    tensors (0-dim, or ``(B,)`` per row in per-sample mode) except ``n_f_calls``.

    Keys: ``nfe`` (evaluations of f, the drift of an SDE; per row in per-sample mode,
    counting only while the row was active), ``n_steps`` (attempted), ``n_accepted``,
    ``n_rejected``, ``n_f_calls`` (batched calls of f, an int); SDEs add ``nfe_f`` (= nfe)
    and ``nfe_g`` (diffusion evaluations); the backsolve adjoint adds ``nfe_backward``.
    """

    @classmethod
    def of_sde(cls, counts: Dict[str, int], device: torch.device) -> "Stats":
        """From an SDE solve's integer counts (``nfe_f``, ``nfe_g``, steps)."""
        out = cls({k: torch.as_tensor(v, dtype=torch.long, device=device)
                   for k, v in counts.items()})
        out["nfe"] = out["nfe_f"]
        out["n_f_calls"] = int(counts["nfe_f"])
        return out


@dataclass
class Solution:
    """Result of a solve (`solve`, `solve_ode`, `solve_sde`).

    Attributes:
        ys: states at the output times, shape ``(len(ts), *y0.shape)`` (a tuple for tuple y0).
        ts: the output times.
        stats: a `Stats`.
        dense: the piecewise-polynomial solution when a dense ODE solve kept it.
        result: ``'success'``, or the name of the `SolverError` that stopped a solve run with
            ``solve(..., throw=False)`` (``ys`` then holds NaN where not reached).
        step_ts, step_ys: the end time and state of every accepted step
            (``SaveAt(steps=True)``), else None.
    """

    ys: State
    ts: Tensor
    stats: Dict[str, Any]
    dense: Optional[DenseInterpolant] = field(default=None, repr=False)
    result: str = "success"
    step_ts: Optional[Tensor] = field(default=None, repr=False)
    step_ys: Optional[State] = field(default=None, repr=False)

    def evaluate(self, t: Union[Tensor, float, Sequence[float]]) -> State:
        """Dense output at times ``t`` (needs a dense ODE solve, ``dense=True``)."""
        if self.dense is None:
            raise InvalidInputError(
                "Solution.evaluate needs a solve with `dense=True` (ODEs); got a solution "
                "computed without dense output")
        return self.dense.evaluate(t)


ODESolution = Solution
SDESolution = Solution


def constant_solution(y: Tensor, t: Tensor, flat: FlatState, per_sample: bool) -> Solution:
    """The solution when nothing is integrated (one output time, or an empty state)."""
    n = t.shape[0]
    ys = y.unsqueeze(0).expand(n, *y.shape)
    ys = ys if n == 1 else ys.clone()
    zero = torch.zeros((y.shape[0],) if per_sample else (), dtype=torch.long, device=y.device)
    stats = Stats(nfe=zero, n_steps=zero, n_accepted=zero, n_rejected=zero, n_f_calls=0)
    return Solution(flat.unflatten(ys, (n, *flat.lead)), t, stats)
