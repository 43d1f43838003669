"""`Collocation`: fully implicit Runge–Kutta methods (Radau IIA, Gauss–Legendre) as a
`Solver`.

All s stages are one system ``Z_i = h Σ_j a_ij f(t0 + c_j h, y0 + Z_j)`` of size ``s n``
per row, solved by simplified Newton with ``I - h A ⊗ J`` (dense LU of the ``(s n)²``
matrix per row, J cached across steps). ``y1 = y0 + Σ_i d_i Z_i`` with ``dᵀ = bᵀA⁻¹``
(Hairer & Wanner II, IV.8; for the stiffly accurate Radau IIA ``y1 = y0 + Z_s`` and the
last stage derivative hands on as ``f(t1, y1)``). Predictor: ``Z_i = c_i h f0``.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch

from ..engine.controller import _bcast
from .base import ImplicitSolver, _safe
from .ift import implicit_stage
from .jacobian import LU, row_view
from .newton import newton

Tensor = torch.Tensor

__all__ = ["Collocation"]


class Collocation(ImplicitSolver):
    """An `ImplicitTableau` of kind ``'firk'`` (``spec.tableau``)."""

    def __init__(self, spec: Any, opts: Any, dtype: torch.dtype, device: torch.device) -> None:
        self.tab = tab = spec.tableau
        self.stiffly_accurate = tab.stiffly_accurate
        super().__init__(spec, opts, dtype, device)
        A = np.asarray(tab.a, dtype=np.float64)
        Ainv = np.linalg.inv(A)
        self.A = torch.tensor(A, dtype=dtype, device=device)
        self.Ainv = torch.tensor(Ainv, dtype=dtype, device=device)
        self.d = torch.tensor(np.asarray(tab.b) @ Ainv, dtype=dtype, device=device)
        self.evals_per_step = len(tab.b)

    def _kron(self, Js: Tensor, h: Tensor) -> Tensor:
        """``I - h [a_ij J_j]`` for Jacobians ``Js`` of shape ``(R, n, n)`` (one for every
        stage) or ``(R, s, n, n)`` (one per stage), ``(R, s n, s n)``."""
        R, n = Js.shape[0], Js.shape[-1]
        s = self.A.shape[0]
        if Js.dim() == 3:
            K = torch.einsum("ij,rab->riajb", self.A, Js)
        else:
            K = torch.einsum("ij,rjab->riajb", self.A, Js)
        hr = h.detach().reshape(-1, 1, 1) if h.dim() == 1 else h.detach()
        eye = torch.eye(s * n, dtype=Js.dtype, device=Js.device)
        return eye - hr * K.reshape(R, s * n, s * n)

    def _stage_values(self, terms: Any, t0: Tensor, h: Tensor, y0: Tensor, Z: Tensor
                      ) -> Tensor:
        """``f(t0 + c_i h, y0 + Z_i)`` for the ``(R, s, n)`` stage increments Z."""
        per, shape = self.opts.per_sample, y0.shape
        F = [row_view(terms(t0 + c * h, y0 + Z[:, i].reshape(shape)), per)
             for i, c in enumerate(self.tab.c)]
        return torch.stack(F, dim=1)

    def _core(self, terms: Any, t0: Tensor, h: Tensor, y0: Tensor, f0: Tensor, J: Tensor
              ) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor], Tensor]:
        per, shape = self.opts.per_sample, y0.shape
        R = row_view(y0, per).shape[0]
        hr = h.reshape(-1, 1, 1) if h.dim() == 1 else h
        self.n_lu += 1
        lu = LU(self._kron(J, h))
        sn = lu.lu.shape[-1]

        def G(Z: Tensor, y: Tensor = y0) -> Tensor:
            return Z - hr * torch.einsum("ij,rjn->rin", self.A, self._stage_values(
                terms, t0, h, y, Z))

        c = torch.tensor(self.tab.c, dtype=y0.dtype, device=y0.device)
        pred = (c.reshape(1, -1, 1) * hr) * row_view(f0, per).unsqueeze(1)
        scale = self._scale(y0).unsqueeze(1)
        with torch.no_grad():
            y0d = y0.detach()
            res = newton(lambda Z: G(Z, y0d), lambda v: lu.solve(v.reshape(R, sn)).reshape(
                v.shape), pred.detach(), scale, self.spec.kappa, self.spec.max_iter)
        self._count(res.iters * (h.detach() != 0).reshape(-1), y0)
        self.jac.mark(res.slow)
        Z_star = res.z

        def make_solve_t():
            Js = torch.stack([self.jac.evaluate(terms, (t0 + ci * h).detach(), (
                y0d + Z_star[:, i].reshape(shape))) for i, ci in enumerate(self.tab.c)], 1)
            lux = LU(self._kron(Js, h))
            return lambda g: lux.solve(g.reshape(R, sn), transpose=True).reshape(g.shape)

        Z = implicit_stage(Z_star, G, make_solve_t)
        inc = torch.einsum("i,rin->rn", self.d, Z).reshape(shape)
        f1 = None
        if self.stiffly_accurate:
            K = torch.einsum("ij,rjn->rin", self.Ainv, Z) / _bcast(_safe(h), Z)
            f1 = K[:, -1].reshape(shape)
        return y0 + inc, None, f1, res.failed
