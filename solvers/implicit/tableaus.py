"""Implicit methods as data: implicit Runge–Kutta tableaus (full matrix ``a``) and
Rosenbrock coefficients.

Coefficients from the papers: Kværnø (2004, BIT 44) for the ESDIRK pairs ``kvaerno3/4/5``
(stiffly accurate, L-stable, the embedded method is the penultimate stage, both ending at
c = 1); Hairer & Wanner, *Solving ODEs II* (IV.5, IV.7) for Radau IIA and RODAS4
(their ``rodas.f`` coefficient set, METH = 1); Butcher (1964) for Gauss–Legendre;
Alexander (1977) for the 2-stage L-stable SDIRK; Bank et al. (1985) / Hosea & Shampine
(1996) for TR-BDF2 as an ESDIRK.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..errors import InvalidInputError

__all__ = ["ImplicitTableau", "RosenbrockTableau", "IMPLICIT_TABLEAUS", "RODAS4"]

Row = Tuple[float, ...]


@dataclass(frozen=True)
class ImplicitTableau:
    """An implicit Runge–Kutta method ``Y_i = y0 + h Σ_j a_ij f(t0 + c_i h, Y_j)``,
    ``y1 = y0 + h Σ_i b_i f(Y_i)``; ``b_err = b - b̂`` for an embedded estimate.

    ``kind`` is ``'dirk'`` (lower-triangular ``a`` with one diagonal value γ on the implicit
    stages, solved stage by stage with ``I - hγJ``) or ``'firk'`` (solved as one coupled
    system of all stages). A stiffly accurate method (``b`` = last row of ``a``) takes the
    last stage as ``y1`` and its stage derivative as ``f(t1, y1)`` (the next first stage)."""

    name: str
    c: Row
    a: Tuple[Row, ...]
    b: Row
    order: int
    kind: str
    b_err: Optional[Row] = None
    error_order: Optional[int] = None

    def __post_init__(self) -> None:
        s = len(self.b)
        A = np.asarray(self.a, dtype=np.float64)
        if A.shape != (s, s) or len(self.c) != s:
            raise InvalidInputError(f"ImplicitTableau {self.name!r}: `a` must be {s}x{s} and "
                                    f"`c` of length {s}; got {A.shape}, {len(self.c)}")
        if not np.allclose(A.sum(1), self.c, atol=1e-12):
            raise InvalidInputError(f"ImplicitTableau {self.name!r}: the rows of `a` must sum "
                                    "to `c`")
        if self.kind not in ("dirk", "firk"):
            raise InvalidInputError(f"ImplicitTableau: `kind` must be 'dirk' or 'firk'; got "
                                    f"{self.kind!r}")
        if self.kind == "dirk":
            diag = {d for d in np.diag(A) if d != 0.0}
            if np.triu(A, 1).any() or len(diag) != 1 or (np.diag(A)[1:] == 0).any():
                raise InvalidInputError(f"ImplicitTableau {self.name!r}: a 'dirk' tableau needs "
                                        "a lower-triangular `a` with one diagonal value")

    @property
    def gamma(self) -> float:
        """The diagonal value of a DIRK method."""
        return float(max(abs(v) for v in np.diag(np.asarray(self.a))))

    @property
    def explicit_first(self) -> bool:
        return self.kind == "dirk" and self.a[0][0] == 0.0

    @property
    def stiffly_accurate(self) -> bool:
        return bool(np.allclose(self.a[-1], self.b, atol=1e-15, rtol=0)) and \
            abs(self.c[-1] - 1.0) < 1e-12

    @property
    def adaptive(self) -> bool:
        return self.b_err is not None


@dataclass(frozen=True)
class RosenbrockTableau:
    """A Rosenbrock method in Hairer–Wanner's transformed variables: each stage solves
    ``(I/(hγ) - J) u_i = f(t0 + c_i h, y0 + Σ_j a_ij u_j) + Σ_j (C_ij / h) u_j + h d_i f_t``;
    ``y1 = y0 + Σ_i m_i u_i`` and the error estimate is ``Σ_i e_i u_i``."""

    name: str
    gamma: float
    c: Row
    a: Tuple[Row, ...]
    C: Tuple[Row, ...]
    d: Row
    m: Row
    e: Row
    order: int
    error_order: int

    @property
    def adaptive(self) -> bool:
        return True


def _rows(a) -> Tuple[Row, ...]:
    return tuple(tuple(float(x) for x in r) for r in a)


def _row(b) -> Row:
    return tuple(float(x) for x in b)


def _dirk(name: str, a, order: int, b_hat=None, error_order: Optional[int] = None
          ) -> ImplicitTableau:
    """A stiffly accurate DIRK (``b`` = last row of ``a``) with an optional embedded ``b̂``."""
    A = np.asarray(a, dtype=np.float64)
    b = A[-1]
    err = None if b_hat is None else _row(b - np.asarray(b_hat, dtype=np.float64))
    return ImplicitTableau(name, _row(A.sum(1)), _rows(A), _row(b), order, "dirk", err,
                           error_order)


def _kvaerno3() -> ImplicitTableau:
    g = 0.43586652150
    a31 = (-4 * g * g + 6 * g - 1) / (4 * g)
    a32 = (-2 * g + 1) / (4 * g)
    a41 = (6 * g - 1) / (12 * g)
    a42 = -1 / ((24 * g - 12) * g)
    a43 = (-6 * g * g + 6 * g - 1) / (6 * g - 3)
    a = [[0, 0, 0, 0], [g, g, 0, 0], [a31, a32, g, 0], [a41, a42, a43, g]]
    return _dirk("kvaerno3", a, 3, a[2], 2)


def _kvaerno4() -> ImplicitTableau:
    g = 0.5728160625

    def p(*cs: float) -> float:
        return float(np.polyval(cs, g))
    q = p(12, -6, 1)
    a31 = p(144, -180, 81, -15, 1) * g / q ** 2
    a32 = p(-36, 39, -15, 2) * g / q ** 2
    a41 = p(-144, 396, -330, 117, -18, 1) / (12 * g * g * p(12, -9, 2))
    a42 = p(72, -126, 69, -15, 1) / (12 * g * g * p(3, -1))
    a43 = p(-6, 6, -1) * q ** 2 / (12 * g * g * p(12, -9, 2) * p(3, -1))
    a51 = p(288, -312, 120, -18, 1) / (48 * g * g * p(12, -9, 2))
    a52 = p(24, -12, 1) / (48 * g * g * p(3, -1))
    a53 = -q ** 3 / (48 * g * g * p(3, -1) * p(12, -9, 2) * p(6, -6, 1))
    a54 = p(-24, 36, -12, 1) / p(24, -24, 4)
    a = [[0] * 5, [g, g, 0, 0, 0], [a31, a32, g, 0, 0], [a41, a42, a43, g, 0],
         [a51, a52, a53, a54, g]]
    return _dirk("kvaerno4", a, 4, a[3], 3)


def _kvaerno5() -> ImplicitTableau:
    g = 0.26
    a = [[0] * 7,
         [g, g, 0, 0, 0, 0, 0],
         [0.13, 0.84033320996790809, g, 0, 0, 0, 0],
         [0.22371961478320505, 0.47675532319799699, -0.06470895363112615, g, 0, 0, 0],
         [0.16648564323248321, 0.10450018841591720, 0.03631482272098715,
          -0.13090704451073998, g, 0, 0],
         [0.13855640231268224, 0, -0.04245337201752043, 0.02446657898003141,
          0.61943039072480676, g, 0],
         [0.13659751177640291, 0, -0.05496908796538376, -0.04118626728321046,
          0.62993304899016403, 0.06962479448202728, g]]
    tab = _dirk("kvaerno5", a, 5, a[5], 4)
    # the published rows sum to c_i = 1 to ~1e-14 only: pin the last two stages to c = 1
    return ImplicitTableau(tab.name, tab.c[:5] + (1.0, 1.0), tab.a, tab.b, 5, "dirk",
                           tab.b_err, 4)


def _fixed_dirks() -> Tuple[ImplicitTableau, ...]:
    r2 = math.sqrt(2.0)
    g = 1 - r2 / 2  # Alexander's L-stable SDIRK2; TR-BDF2's trapezoid fraction is 2g
    w = r2 / 4
    return (
        _dirk("implicit_euler", [[1.0]], 1),
        ImplicitTableau("implicit_midpoint", (0.5,), ((0.5,),), (1.0,), 2, "dirk"),
        _dirk("trapezoid", [[0, 0], [0.5, 0.5]], 2),
        _dirk("sdirk2", [[g, 0], [1 - g, g]], 2),
        _dirk("trbdf2", [[0, 0, 0], [g, g, 0], [w, w, g]], 2),
    )


def _collocation() -> Tuple[ImplicitTableau, ...]:
    r3, r6, r15 = math.sqrt(3.0), math.sqrt(6.0), math.sqrt(15.0)
    radau5 = [[11 / 45 - 7 * r6 / 360, 37 / 225 - 169 * r6 / 1800, -2 / 225 + r6 / 75],
              [37 / 225 + 169 * r6 / 1800, 11 / 45 + 7 * r6 / 360, -2 / 225 - r6 / 75],
              [4 / 9 - r6 / 36, 4 / 9 + r6 / 36, 1 / 9]]
    gl6 = [[5 / 36, 2 / 9 - r15 / 15, 5 / 36 - r15 / 30],
           [5 / 36 + r15 / 24, 2 / 9, 5 / 36 - r15 / 24],
           [5 / 36 + r15 / 30, 2 / 9 + r15 / 15, 5 / 36]]
    gl4 = [[1 / 4, 1 / 4 - r3 / 6], [1 / 4 + r3 / 6, 1 / 4]]

    def firk(name: str, a, b, order: int) -> ImplicitTableau:
        A = np.asarray(a, dtype=np.float64)
        return ImplicitTableau(name, _row(A.sum(1)), _rows(A), _row(b), order, "firk")
    return (
        firk("radauIIA3", [[5 / 12, -1 / 12], [3 / 4, 1 / 4]], [3 / 4, 1 / 4], 3),
        firk("radauIIA5", radau5, radau5[2], 5),
        firk("gl4", gl4, [0.5, 0.5], 4),
        firk("gl6", gl6, [5 / 18, 4 / 9, 5 / 18], 6),
    )


def _rodas4() -> RosenbrockTableau:
    a5 = (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950)
    a = ((), (1.544,), (0.9466785280815826, 0.2557011698983284),
         (3.314825187068521, 2.896124015972201, 0.9986419139977817), a5, a5 + (1.0,))
    C = ((), (-5.6688,), (-2.430093356833875, -0.2063599157091915),
         (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
         (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160),
         (8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
          -6.058818238834054))
    return RosenbrockTableau(
        name="rodas4", gamma=0.25, c=(0.0, 0.386, 0.21, 0.63, 1.0, 1.0), a=a, C=C,
        d=(0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0), m=a5 + (1.0, 1.0),
        e=(0.0, 0.0, 0.0, 0.0, 0.0, 1.0), order=4, error_order=3)


RODAS4 = _rodas4()
IMPLICIT_TABLEAUS = {tab.name: tab for tab in (
    *_fixed_dirks(), *_collocation(), _kvaerno3(), _kvaerno4(), _kvaerno5())}
