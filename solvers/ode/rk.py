"""One generic explicit Runge–Kutta step for any `ButcherTableau`.

Stage combinations use the tableau's nonzero coefficients as Python floats folded into
``torch.add(..., alpha=)`` / ``torch.addcmul(..., value=)``, so each stage costs one or a
few fused tensor ops and no host sync. ``h`` and ``t`` are tensors: 0-dim in joint mode,
``(B,)`` per row in per-sample mode (``hb`` is ``h`` reshaped to broadcast against y).
"""
from __future__ import annotations

import functools
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import numpy.polynomial.polynomial as npoly
import torch
import torch.utils.checkpoint

from .butcher import ButcherTableau

Tensor = torch.Tensor
Terms = Tuple[Tuple[int, float], ...]

__all__ = ["CompiledTableau", "compile_tableau", "nonzero_terms", "nested_basis",
           "nested_coefficients", "rk_step", "checkpointed_rk_step", "extra_stages", "combine"]


class CompiledTableau:
    """A tableau prepared for stepping: nonzero terms as Python floats, the dense matrix as
    a tensor of the solve's dtype and device."""

    def __init__(self, tab: ButcherTableau, dtype: torch.dtype, device: torch.device) -> None:
        self.tab = tab
        self.stage_terms: List[Terms] = [nonzero_terms(row) for row in tab.a]
        self.b_terms = nonzero_terms(tab.b)
        self.err_terms = nonzero_terms(tab.b_err) if tab.b_err is not None else None
        self.err_low_terms = nonzero_terms(tab.b_err_low) if tab.b_err_low is not None else None
        self.c = tab.c
        self.extra = [(c, nonzero_terms(row)) for c, row in tab.dense_extra]
        self.dense = (None if tab.dense is None else                 # (S_ext, degree)
                      torch.tensor(nested_coefficients(tab.dense), dtype=dtype,
                                   device=device))
        # Stage evaluations per step: FSAL methods reuse the last stage as the next first.
        self.evals_per_step = tab.n_stages - 1 if tab.fsal else tab.n_stages


def nested_basis(degree: int) -> np.ndarray:
    """Monomial coefficients of Hairer's nested basis θ, θ(1-θ), θ²(1-θ), θ²(1-θ)², ...:
    row m holds the coefficients of θ^1 .. θ^degree of the m-th basis polynomial."""
    basis, q = np.zeros((degree, degree)), np.array([1.0])
    for m in range(degree):
        q = npoly.polymul(q, [0.0, 1.0] if m % 2 == 0 else [1.0, -1.0])
        basis[m, :m + 1] = q[1:]
    return basis


def nested_coefficients(dense: Sequence[Sequence[float]]) -> np.ndarray:
    """A tableau's dense matrix (coefficients of θ^1 .. θ^d) in the nested basis, computed
    in float64. Evaluated by `interpolation.nested_horner`, the continuous extension of a
    high-order method keeps float32 accuracy where the monomial form cancels (DOP853's
    monomial coefficients reach ~545)."""
    P = np.asarray(dense, dtype=np.float64)
    return np.linalg.solve(nested_basis(P.shape[1]).T, P.T).T


@functools.lru_cache(maxsize=64)
def compile_tableau(tab: ButcherTableau, dtype: torch.dtype,
                    device: torch.device) -> CompiledTableau:
    return CompiledTableau(tab, dtype, device)


def nonzero_terms(row: Sequence[float]) -> Terms:
    """The nonzero coefficients of a tableau row as ``((index, value), ...)``."""
    return tuple((j, float(v)) for j, v in enumerate(row) if v != 0.0)


def combine(terms: Terms, ks: Sequence[Tensor]) -> Tensor:
    """Σ_j a_j k_j over the nonzero terms."""
    (j0, a0), rest = terms[0], terms[1:]
    acc = ks[j0] * a0 if a0 != 1.0 else ks[j0]
    for j, a in rest:
        acc = torch.add(acc, ks[j], alpha=a)
    return acc


def _increment(y: Tensor, hb: Tensor, terms: Terms, ks: Sequence[Tensor]) -> Tensor:
    """y + h Σ_j a_j k_j in as few ops as possible."""
    if len(terms) == 1:
        j, a = terms[0]
        return torch.addcmul(y, hb, ks[j], value=a)
    return torch.addcmul(y, hb, combine(terms, ks))


def rk_step(func: Callable[[Tensor, Tensor], Tensor], ct: CompiledTableau, t: Tensor,
            y: Tensor, h: Tensor, hb: Tensor, k0: Optional[Tensor], with_error: bool = True,
            stage_t: Optional[Sequence[Tensor]] = None
            ) -> Tuple[Tensor, List[Tensor], Optional[Tensor], Optional[Tensor]]:
    """One step from (t, y) with step h and first stage k0 = f(t, y) (evaluated here when
    None, e.g. inside a checkpointed step so that its graph is not stored); ``stage_t``: the
    times ``t + c_i h`` of stages 1.. when the loop formed them already (a fixed grid).

    Returns ``(y1, ks, err, err_low)``: the new state, all stages (for FSAL methods the
    last is f(t + h, y1)), and the unscaled local error estimates (None when not asked
    for or not defined by the tableau).
    """
    ks = [func(t, y) if k0 is None else k0]
    y1 = None
    last = len(ct.stage_terms) - 1
    for i in range(1, len(ct.stage_terms)):
        yi = _increment(y, hb, ct.stage_terms[i], ks)
        if ct.tab.fsal and i == last:
            y1 = yi
        ti = torch.add(t, h, alpha=ct.c[i]) if stage_t is None else stage_t[i - 1]
        ks.append(func(ti, yi))
    if y1 is None:
        y1 = _increment(y, hb, ct.b_terms, ks)
    err = err_low = None
    if with_error and ct.err_terms is not None:
        err = hb * combine(ct.err_terms, ks)
        if ct.err_low_terms is not None:
            err_low = hb * combine(ct.err_low_terms, ks)
    return y1, ks, err, err_low


def checkpointed_rk_step(func: Callable[[Tensor, Tensor], Tensor], ct: CompiledTableau,
                         t: Tensor, y: Tensor, h: Tensor, hb: Tensor, k0: Tensor,
                         with_error: bool = True, stage_t: Optional[Sequence[Tensor]] = None):
    """`rk_step` whose graph is not stored: autograd keeps only the step's inputs and
    recomputes the stages during the backward pass (gradient checkpointing)."""
    return torch.utils.checkpoint.checkpoint(rk_step, func, ct, t, y, h, hb, k0, with_error,
                                             stage_t, use_reentrant=False)


def extra_stages(func: Callable[[Tensor, Tensor], Tensor], ct: CompiledTableau, t: Tensor,
                 y: Tensor, h: Tensor, hb: Tensor, ks: List[Tensor]) -> List[Tensor]:
    """Evaluate the extra stages that dense output needs (appends to a copy of ``ks``)."""
    ks = list(ks)
    for c, terms in ct.extra:
        ks.append(func(torch.add(t, h, alpha=c), _increment(y, hb, terms, ks)))
    return ks
