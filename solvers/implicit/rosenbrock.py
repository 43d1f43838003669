"""`Rosenbrock`: linearly implicit methods (RODAS4) as a `Solver`.

Each stage is one linear solve with ``I - hγJ`` (no Newton iteration, which suits batched
accelerator work): in Hairer–Wanner's variables
``(I - hγJ) u_i = hγ [f(t0 + c_i h, y0 + Σ a_ij u_j) + Σ (C_ij/h) u_j + h d_i ∂f/∂t]``,
``y1 = y0 + Σ m_i u_i``, error ``Σ e_i u_i``. J must be the Jacobian at ``(t0, y0)`` (the
order conditions use it): it is re-evaluated whenever a row has moved (a rejected step
retries with the same one). ``∂f/∂t`` is a forward difference (one call of f) unless the
method is told the field is autonomous. With gradients on, J is evaluated inside the
graph (torch.func Jacobians are differentiable), so backpropagation differentiates the
method's map exactly.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch

from ..engine.controller import _bcast
from .base import ImplicitSolver, _safe, combine
from .jacobian import LU, row_view

Tensor = torch.Tensor

__all__ = ["Rosenbrock"]


class Rosenbrock(ImplicitSolver):
    """A `RosenbrockTableau` (``spec.tableau``)."""

    def __init__(self, spec: Any, *args: Any) -> None:
        self.tab = spec.tableau
        super().__init__(spec, *args)
        self.evals_per_step = len(self.tab.c) - 1 + (0 if spec.autonomous else 1)

    def _jacobian(self, terms: Any, t0: Tensor, y0: Tensor, f0: Tensor) -> Tensor:
        if torch.is_grad_enabled() and (y0.requires_grad or f0.requires_grad):
            return self.jac.evaluate(terms, t0, y0, f0)
        return self.jac.current(terms, t0, y0, f0, at_y=True)

    def _time_derivative(self, terms: Any, t0: Tensor, y0: Tensor, f0: Tensor, h: Tensor
                         ) -> Optional[Tensor]:
        if self.spec.autonomous:
            return None
        eps = torch.finfo(y0.dtype).eps ** 0.5
        dt = eps * t0.detach().abs().clamp_min(1.0)
        self._count((h != 0).long(), y0)
        return (terms(t0 + dt, y0) - f0) / _bcast(dt, y0)

    def _core(self, terms: Any, t0: Tensor, h: Tensor, y0: Tensor, f0: Tensor, J: Tensor
              ) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor], Tensor]:
        tab, per = self.tab, self.opts.per_sample
        shape = y0.shape
        hb, hs = _bcast(h, y0), _bcast(_safe(h), y0)
        hg = h * tab.gamma
        self.n_lu += 1
        lu = LU.of(J, hg)
        ft = self._time_derivative(terms, t0, y0, f0, h)
        moving = (h.detach() != 0).long()
        us: List[Tensor] = []
        for i, ci in enumerate(tab.c):
            inc = combine(list(tab.a[i]), us)
            if i == 0:
                F = f0
            else:
                self._count(moving, y0)
                F = terms(t0 + ci * h, y0 if inc is None else y0 + inc)
            cu = combine(list(tab.C[i]), us)
            rhs = F if cu is None else F + cu / hs
            if ft is not None and tab.d[i] != 0.0:
                rhs = rhs + (tab.d[i] * hb) * ft
            u = lu.solve(row_view(_bcast(hg, y0) * rhs, per)).reshape(shape)
            us.append(u)
        y1 = y0 + combine(list(tab.m), us)
        err = combine(list(tab.e), us) if self.error_order is not None else None
        failed = ~torch.isfinite(row_view(y1.detach(), per)).all(-1)
        return y1, err, None, failed
