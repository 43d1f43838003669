"""Stochastic Runge–Kutta (Rößler 2010): one engine over `SRKTableau` data.

Besides f and g at its stages, a step needs its noise terms: ``I10/h = ΔW/2 + H`` (the
drift stage points' weight) and each stage's output weight ``w_s = Σ_k β_ks J_k`` over the
basis ``J = (ΔW, I11/√h, I10/h, I111/h)`` (see `sde.tableaus`). They depend on the
Brownian increments only, so `block_noise` forms them for a block of fixed-grid steps at
once (`GridIncrements.prepared`), and the step itself does no noise arithmetic;
`step_noise` forms them for one step (a user's Brownian motion, adaptive steps). Equal
weight columns are formed once; a column that is one basis term with weight 1 is that
term. With additive noise whose g is one tensor at every stage time (time-independent
noise: g(t + h) and g(t) return the same data), the output's noise terms share one product
with the sum of the columns (SRA1: ``g ΔW``, exactly; eager steps only: a compiled step
cannot compare data pointers, and keeps one product per stage).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from ..ode.rk import Terms, nonzero_terms
from .tableaus import SRKTableau

Tensor = torch.Tensor
Coef = Union[float, Tensor]

__all__ = ["SRKNoise", "CompiledSRK", "compile_srk", "step_noise", "block_noise", "srk_step"]


class SRKNoise(NamedTuple):
    """One step's noise terms: ``I10/h``, the output weight of each stage (None where the
    stage has none) and their sum (None when no stage has one)."""

    i10h: Tensor
    w: Tuple[Optional[Tensor], ...]
    total: Optional[Tensor]


@dataclass(frozen=True)
class CompiledSRK:
    """A tableau's nonzero coefficients as Python floats, the stages that need f and g, the
    distinct output weight columns (``combos``, over basis indices), which each stage uses
    (``weight_of``) and which is their sum (``total``), and the basis terms the columns
    use."""

    tab: SRKTableau
    a0: Tuple[Terms, ...]
    b0: Tuple[Terms, ...]
    a1: Tuple[Terms, ...]
    b1: Tuple[Terms, ...]
    alpha: Terms
    need_f: Tuple[bool, ...]
    need_g: Tuple[bool, ...]
    combos: Tuple[Terms, ...]
    weight_of: Tuple[Optional[int], ...]
    total: Optional[int]
    basis: Tuple[bool, bool, bool, bool]


@functools.lru_cache(maxsize=None)
def compile_srk(tab: SRKTableau) -> CompiledSRK:
    S = tab.n_stages
    rows = [nonzero_terms(r) for r in (*tab.a0, *tab.b0, *tab.a1, *tab.b1)]
    a0, b0, a1, b1 = (tuple(rows[i * S:(i + 1) * S]) for i in range(4))
    columns = [tuple((k, float(tab.beta[k][s])) for k in range(4) if tab.beta[k][s] != 0.0)
               for s in range(S)]
    summed = tuple((k, b) for k, b in ((k, math.fsum(tab.beta[k])) for k in range(4))
                   if b != 0.0) if tab.additive else ()   # one g for all stages: additive only
    combos = tuple(dict.fromkeys([c for c in columns if c] + ([summed] if summed else [])))
    weight_of = tuple(combos.index(c) if c else None for c in columns)
    total = combos.index(summed) if summed else None
    need_f = tuple(tab.alpha[s] != 0.0 or any(tab.a0[i][s] != 0.0 or tab.a1[i][s] != 0.0
                                              for i in range(s + 1, S)) for s in range(S))
    need_g = tuple(bool(columns[s]) or any(tab.b0[i][s] != 0.0 or tab.b1[i][s] != 0.0
                                           for i in range(s + 1, S)) for s in range(S))
    basis = tuple(any(k == j for c in combos for j, _ in c) for k in range(4))
    return CompiledSRK(tab, a0, b0, a1, b1, nonzero_terms(tab.alpha), need_f, need_g, combos,
                       weight_of, total, basis)


def _noise_terms(ct: CompiledSRK, dw: Tensor, lev: Tensor, c: Sequence[Coef]
                 ) -> Tuple[Tensor, List[Tensor]]:
    """``I10/h`` and the distinct weight columns, with ``c = (|h|, 3|h|, 1/(2√|h|),
    1/(6|h|))`` floats (one step) or tensors broadcasting over a block of steps."""
    ah, ah3, c1, c3 = c
    J: List[Optional[Tensor]] = [dw, None, torch.add(lev, dw, alpha=0.5), None]
    if ct.basis[1] or ct.basis[3]:
        dw2 = dw * dw
        if ct.basis[1]:
            J[1] = (dw2 - ah) * c1                           # I11/√h = (ΔW² - h)/(2√h)
        if ct.basis[3]:
            J[3] = (dw2 - ah3) * dw * c3                     # I111/h = (ΔW³ - 3hΔW)/(6h)
    cols = []
    for combo in ct.combos:
        unit = next((i for i, (_, c) in enumerate(combo) if c == 1.0), None)
        first = combo[0 if unit is None else unit]
        w = J[first[0]] if unit is not None else J[first[0]] * first[1]
        for k, c in combo:
            if (k, c) != first:
                w = torch.add(w, J[k], alpha=c)
        cols.append(w)
    return J[2], cols


def _coefficients(h: float) -> Tuple[float, float, float, float]:
    ah = abs(h)
    return ah, 3 * ah, 0.5 / math.sqrt(ah), 1.0 / (6 * ah)


def step_noise(ct: CompiledSRK, dw: Tensor, lev: Tensor, h: float) -> SRKNoise:
    """One step's terms from its increment ``dw`` and space-time Lévy area ``lev``."""
    i10h, cols = _noise_terms(ct, dw, lev, _coefficients(h))
    return SRKNoise(i10h, tuple(None if i is None else cols[i] for i in ct.weight_of),
                    None if ct.total is None else cols[ct.total])


def block_noise(ct: CompiledSRK, dw: Tensor, lev: Tensor, hs: Sequence[float]) -> List[SRKNoise]:
    """The terms of a block of steps, ``dw`` and ``lev`` of shape ``(K, *noise)`` for the
    signed step sizes ``hs``: the ops of `step_noise` once over the block."""
    shape = (len(hs),) + (1,) * (dw.dim() - 1)
    per_step = torch.tensor([_coefficients(h) for h in hs], dtype=dw.dtype, device=dw.device)
    i10h, cols = _noise_terms(ct, dw, lev, [c.reshape(shape) for c in per_step.unbind(1)])
    i10h_k, cols_k = i10h.unbind(0), [c.unbind(0) for c in cols]
    return [SRKNoise(i10h_k[j], tuple(None if i is None else cols_k[i][j] for i in ct.weight_of),
                     None if ct.total is None else cols_k[ct.total][j])
            for j in range(len(hs))]


def _stage_point(terms: Any, y: Tensor, f_terms: Terms, fs: List, h: float, g_terms: Terms,
                 gs: List, v: Optional[Tensor], sq: float) -> Tensor:
    """``y + Σ a_j f_j h + Σ b_j g_j v`` (drift points, ``v = I10/h``) or ``+ Σ b_j g_j √h``
    (diffusion points, ``v`` None: diagonal and scalar noise)."""
    x = y
    for j, c in f_terms:
        x = torch.add(x, fs[j], alpha=c * h)
    for j, c in g_terms:
        x = terms.add_prod(x, gs[j], v, c, fused=True) if v is not None else \
            torch.add(x, terms.gvec(gs[j]), alpha=c * sq)
    return x


def srk_step(terms: Any, t: Tensor, h: float, y: Tensor, noise: Any, extra: Tuple, *,
             ct: CompiledSRK) -> Tuple[Tensor, Tuple]:
    """Strong order 1.5 stochastic Runge–Kutta (Rößler 2010) for additive, scalar or
    diagonal noise; the tableau (``ct = compile_srk(tableau)``) decides which (see
    `sde.tableaus`). ``noise`` is the step's `SRKNoise`, or its ``(ΔW, H)``."""
    tab = ct.tab
    nz = noise if isinstance(noise, SRKNoise) else step_noise(ct, noise[0], noise[1], h)
    sq = math.sqrt(abs(h))
    S = tab.n_stages
    fs: List[Optional[Tensor]] = [None] * S
    gs: List[Optional[Tensor]] = [None] * S
    at: Dict[float, Tensor] = {0.0: t}                  # stage times t + c h, formed once
    g_at: Dict[float, Tensor] = {}                      # additive noise: g by stage time
    for s in range(S):
        if ct.need_g[s]:
            c1 = tab.c1[s]
            ts = at[c1] if c1 in at else at.setdefault(c1, t + c1 * h)
            if tab.additive:
                gs[s] = g_at[c1] if c1 in g_at else g_at.setdefault(c1, terms.g(ts, y))
            else:
                gs[s] = terms.g(ts, _stage_point(terms, y, ct.a1[s], fs, h, ct.b1[s], gs, None,
                                                 sq))
        if ct.need_f[s]:
            c0 = tab.c0[s]
            ts = at[c0] if c0 in at else at.setdefault(c0, t + c0 * h)
            fs[s] = terms.f(ts, _stage_point(terms, y, ct.a0[s], fs, h, ct.b0[s], gs, nz.i10h,
                                             sq))
    y1 = y
    for s, c in ct.alpha:
        y1 = torch.add(y1, fs[s], alpha=c * h)
    noise = [(gs[s], w) for s, w in enumerate(nz.w) if w is not None]
    if tab.additive and len(noise) > 1 and not torch.compiler.is_compiling() and \
            all(_same(g, noise[0][0]) for g, _ in noise[1:]):       # (data pointers: eager)
        return terms.add_prod(y1, noise[0][0], nz.total, fused=True), extra
    for g, w in noise:
        y1 = terms.add_prod(y1, g, w, fused=True)
    return y1, extra


def _same(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors view the same data the same way (so they are equal)."""
    return a is b or (a.data_ptr() == b.data_ptr() and a.shape == b.shape
                      and a.stride() == b.stride() and a.dtype == b.dtype)
