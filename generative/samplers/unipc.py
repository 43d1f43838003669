"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
of Diffusion Models"), data-prediction form as diffusers' ``UniPCMultistepScheduler``: a
multistep predictor UniP-p and the corrector UniC-p, which reuses the next step's score
evaluation (one NFE a step, order p + 1 after correction), with ``B(h) = h`` (``'bh1'``) or
``e^h - 1`` (``'bh2'``). Written with the schedule accessors (``lambda`` = half the log-SNR).

At grid point i, with denoisers ``m`` and ``r_k = (lambda_{i-k} - lambda_i) / h``, the
coefficients solve ``R rho = b`` with ``R_{jk} = r_k^(j-1)`` and ``b_j = (j-1)! phi_{j}(hh) /
B(h)`` (``hh = -h``; ``rho = 1/2`` for UniP-2 and UniC-1, as the reference). The callback sees
the predicted state at each grid point; the corrector then refines what it returned. The last
state is the predictor's (no evaluation is left to correct it). With ``lower_order_final``
(default) the order of step i is at most ``n_steps - i``.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from dynamics.checks import check_choice

from .base import Hook, Model
from .dpm_solver_single import check_order
from .grid import Grid
from .noise import NoiseSampler

Tensor = torch.Tensor

__all__ = ["unipc", "unipc_coefficients"]


def unipc_coefficients(rks: List[Tensor], h: Tensor, variant: str
                       ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(h phi_1, B(h), R, b)`` for the ratios ``rks`` (ending in 1) of a step of size h."""
    hh = -h
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    big_b = hh if variant == "bh1" else torch.expm1(hh)
    r = torch.stack(rks)
    rows, b, fact = [], [], 1
    for k in range(1, len(rks) + 1):
        rows.append(r ** (k - 1))
        b.append(h_phi_k * fact / big_b)
        fact *= k + 1
        h_phi_k = h_phi_k / hh - 1 / fact
    return h_phi_1, big_b, torch.stack(rows), torch.stack(b)


def _update(x: Tensor, ms: List[Tensor], lam: Tensor, a: Tensor, s: Tensor, i: int, j: int,
            p: int, variant: str, m_new: Optional[Tensor]) -> Tensor:
    """UniP-p from grid point i to j = i + 1 (``m_new`` None), or UniC-p of that step with the
    denoiser ``m_new`` at j. ``ms[k]`` is the denoiser at grid point i - k."""
    h = lam[j] - lam[i]
    rks = [(lam[i - k] - lam[i]) / h for k in range(1, p)] + [torch.ones_like(h)]
    d1s = [(ms[k] - ms[0]) / rks[k - 1] for k in range(1, p)]
    h_phi_1, big_b, R, b = unipc_coefficients(rks, h, variant)
    x_new = s[j] / s[i] * x - a[j] * h_phi_1 * ms[0]
    if m_new is None:
        if p == 1:
            return x_new
        rho = torch.full((1,), 0.5).to(h) if p == 2 else torch.linalg.solve(R[:-1, :-1], b[:-1])
        return x_new - a[j] * big_b * sum(rk * d for rk, d in zip(rho, d1s))
    rho = torch.full((1,), 0.5).to(h) if p == 1 else torch.linalg.solve(R, b)
    corr = sum(rk * d for rk, d in zip(rho[:-1], d1s)) + rho[-1] * (m_new - ms[0])
    return x_new - a[j] * big_b * corr


def unipc(model: Model, x: Tensor, grid: Grid, callback: Hook, noise: NoiseSampler, *,
          order: int = 3, variant: str = "bh2", lower_order_final: bool = True,
          corrector: bool = True) -> Tensor:
    """UniPC steps of ``order`` 1 to 3 (``variant`` 'bh1' or 'bh2'; ``corrector=False``:
    UniP only). One NFE each."""
    order = check_order(order)
    check_choice("variant", variant, ("bh1", "bh2"))
    ts, a, s, lam = grid
    lam = lam / 2
    n = len(ts) - 1
    ms: List[Tensor] = []
    x_last, p_last = x, 0
    for i in range(n):
        m = model.denoised(x, ts[i], a[i], s[i])
        if corrector and i > 0:
            x = _update(x_last, ms, lam, a, s, i - 1, i, p_last, variant, m)
        ms = [m] + ms[:order - 1]
        p = min(order, i + 1, n - i if lower_order_final else order)
        x_last, p_last = x, p
        x = _update(x, ms, lam, a, s, i, i + 1, p, variant, None)
        x = callback(i + 1, ts[i + 1], x, m)
    return x
