"""`DIRK`: singly diagonally implicit Runge–Kutta methods (SDIRK, ESDIRK) as a `Solver`.

Stage i solves ``z = hγ f(t0 + c_i h, base_i + z)`` with ``base_i = y0 + h Σ_{j<i} a_ij k_j``
by simplified Newton with the one iteration matrix ``I - hγJ`` (J cached across steps,
refreshed after slow or failed convergence; one LU per step, shared by the stages). The
stage derivative is ``k_i = z / (hγ)`` (no extra evaluation, and no amplification of the
Newton error by a stiff J); a stiffly accurate method returns the last stage as ``y1``
and its ``k`` as the next step's first stage. The predictor of stage i is ``hγ k_{i-1}``.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch

from ..engine.controller import _bcast
from .base import ImplicitSolver, _safe, combine
from .ift import implicit_stage
from .jacobian import LU, row_view
from .newton import newton

Tensor = torch.Tensor

__all__ = ["DIRK"]


class DIRK(ImplicitSolver):
    """An `ImplicitTableau` of kind ``'dirk'`` (``spec.tableau``)."""

    def __init__(self, spec: Any, *args: Any) -> None:
        self.tab = spec.tableau
        self.stiffly_accurate = self.tab.stiffly_accurate
        super().__init__(spec, *args)
        s = len(self.tab.b)
        self.evals_per_step = s - 1 if self.tab.explicit_first else s

    def _core(self, terms: Any, t0: Tensor, h: Tensor, y0: Tensor, f0: Tensor, J: Tensor
              ) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor], Tensor]:
        tab = self.tab
        hb = _bcast(h, y0)
        hg = h * tab.gamma
        hgb = _bcast(hg, y0)
        lu = self._factor(J, hg)
        scale = self._scale(y0)
        ks: List[Tensor] = []
        failed = torch.zeros(scale.shape[0], dtype=torch.bool, device=y0.device)
        slow = failed.clone()
        Y = y0
        for i in range(len(tab.b)):
            if i == 0 and tab.explicit_first:
                ks.append(f0)
                continue
            inc = combine(list(tab.a[i][:i]), ks)
            base = y0 if inc is None else y0 + hb * inc
            ti = t0 + tab.c[i] * h
            z, bad, sl = self._stage(terms, ti, base, hgb, hg, lu, scale,
                                     hgb * (ks[-1] if ks else f0), h)
            failed, slow = failed | bad, slow | sl
            ks.append(z / _bcast(_safe(hg), y0))
            Y = base + z
        self.jac.mark(slow)
        if self.stiffly_accurate:
            y1, f1 = Y, ks[-1]
        else:
            y1, f1 = y0 + hb * combine(list(tab.b), ks), None
        err = None
        if self.error_order is not None:
            err = hb * combine(list(tab.b_err), ks)
        return y1, err, f1, failed

    def _stage(self, terms: Any, ti: Tensor, base: Tensor, hgb: Tensor, hg: Tensor, lu: LU,
               scale: Tensor, pred: Tensor, h: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """One implicit stage: Newton without a graph, then the implicit-function link to
        the stage's inputs. Returns ``(z, failed rows, slow rows)``."""
        per, shape = self.opts.per_sample, base.shape

        def G(z: Tensor, b: Tensor = base) -> Tensor:
            return z - hgb * terms(ti, b + z)

        with torch.no_grad():
            bd = base.detach()
            res = newton(lambda zr: row_view(G(zr.reshape(shape), bd), per), lu.solve,
                         row_view(pred.detach(), per), scale, self.spec.kappa,
                         self.spec.max_iter)
        self._count(res.iters * (h.detach() != 0).reshape(-1), base)
        z_star = res.z.reshape(shape)

        def make_solve_t():
            Jx = self.jac.evaluate(terms, ti.detach(), (bd + z_star).detach())
            lux = LU.of(Jx, hg.detach())
            return lambda g: lux.solve(row_view(g, per), transpose=True).reshape(shape)

        return implicit_stage(z_star, G, make_solve_t), res.failed, res.slow
