"""Stochastic Runge–Kutta tableaus (Rößler 2010) as data.

Rößler, A. "Runge–Kutta methods for the strong approximation of solutions of stochastic
differential equations", SIAM J. Numer. Anal. 48(3), 2010. SRA1 (additive noise) and
SRI2 (diagonal/scalar noise, the coefficients torchsde ships as ``srid2``), both of
strong order 1.5. A stage s has drift point ``H0_s`` at time ``t + c0_s h`` and diffusion
point ``H1_s`` at ``t + c1_s h``:

    H0_s = y + Σ_j a0[s][j] f_j h + b0[s][j] g_j I10/h
    H1_s = y + Σ_j a1[s][j] f_j h + b1[s][j] g_j √h          (y itself when `additive`)
    y1   = y + Σ_s alpha_s f_s h + Σ_s g_s (Σ_k beta[k][s] J_k)

with the noise basis J = (I1, I11/√h, I10/h, I111/h): I1 = ΔW, I10 = ∫(W_s - W_t) ds,
I11 = (ΔW² - h)/2, I111 = (ΔW³ - 3hΔW)/6.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

__all__ = ["SRKTableau", "SRA1", "SRI2"]

Row = Tuple[float, ...]


@dataclass(frozen=True)
class SRKTableau:
    name: str
    c0: Row
    c1: Row
    a0: Tuple[Row, ...]
    b0: Tuple[Row, ...]
    a1: Tuple[Row, ...]
    b1: Tuple[Row, ...]
    alpha: Row
    beta: Tuple[Row, Row, Row, Row]  # weights of I1, I11/√h, I10/h, I111/h per stage
    additive: bool                   # diffusion evaluated at y (state independent)

    @property
    def n_stages(self) -> int:
        return len(self.c0)


_Z2 = ((), (0.0,))

SRA1 = SRKTableau(
    name="SRA1",
    c0=(0.0, 3 / 4), c1=(1.0, 0.0),
    a0=((), (3 / 4,)), b0=((), (3 / 2,)),
    a1=_Z2, b1=_Z2,
    alpha=(1 / 3, 2 / 3),
    beta=((1.0, 0.0), (0.0, 0.0), (-1.0, 1.0), (0.0, 0.0)),
    additive=True,
)

SRI2 = SRKTableau(
    name="SRI2",
    c0=(0.0, 1.0, 1 / 2, 0.0), c1=(0.0, 1 / 4, 1.0, 1 / 4),
    a0=((), (1.0,), (1 / 4, 1 / 4), (0.0, 0.0, 0.0)),
    b0=((), (0.0,), (1.0, 1 / 2), (0.0, 0.0, 0.0)),
    a1=((), (1 / 4,), (1.0, 0.0), (0.0, 0.0, 1 / 4)),
    b1=((), (-1 / 2,), (1.0, 0.0), (2.0, -1.0, 1 / 2)),
    alpha=(1 / 6, 1 / 6, 2 / 3, 0.0),
    beta=((-1.0, 4 / 3, 2 / 3, 0.0), (1.0, -4 / 3, 1 / 3, 0.0), (2.0, -4 / 3, -2 / 3, 0.0),
          (-2.0, 5 / 3, -2 / 3, 1.0)),
    additive=False,
)
