"""`ODESolution`: what an ODE solve returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Union

import torch

from ..errors import InvalidInputError
from ..ode.interpolation import DenseInterpolant
from .flat import FlatState, State

Tensor = torch.Tensor

__all__ = ["ODESolution", "constant_solution"]


@dataclass
class ODESolution:
    """Result of `solve_ode`.

    Attributes:
        ys: states at the output times, shape ``(len(ts), *y0.shape)`` (a tuple for tuple y0).
        ts: the output times.
        stats: ``nfe`` (evaluations of f; per row in per-sample mode, counting only while
            the row was active), ``n_steps`` (attempted), ``n_accepted``, ``n_rejected``
            (tensors: 0-dim, or ``(B,)`` per sample) and ``n_f_calls`` (batched calls of f).
    """

    ys: State
    ts: Tensor
    stats: Dict[str, Any]
    dense: Optional[DenseInterpolant] = field(default=None, repr=False)

    def evaluate(self, t: Union[Tensor, float, Sequence[float]]) -> State:
        """Dense output at times ``t`` (needs ``solve_ode(..., dense=True)``)."""
        if self.dense is None:
            raise InvalidInputError(
                "ODESolution.evaluate needs a solve with `dense=True`; got a solution "
                "computed with dense=False")
        return self.dense.evaluate(t)


def constant_solution(y: Tensor, t: Tensor, flat: FlatState, per_sample: bool) -> ODESolution:
    """The solution when nothing is integrated (one output time, or an empty state)."""
    n = t.shape[0]
    ys = y.unsqueeze(0).expand(n, *y.shape)
    ys = ys if n == 1 else ys.clone()
    zero = torch.zeros((y.shape[0],) if per_sample else (), dtype=torch.long, device=y.device)
    stats = {"nfe": zero, "n_steps": zero, "n_accepted": zero, "n_rejected": zero,
             "n_f_calls": 0}
    return ODESolution(flat.unflatten(ys, (n, *flat.lead)), t, stats)
