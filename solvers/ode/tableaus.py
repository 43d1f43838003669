"""Explicit Runge–Kutta methods as data: Butcher tableaus with embedded error weights
and dense-output (continuous extension) coefficients.

Adding a method means adding a `ButcherTableau` (`ode.butcher`) to `TABLEAUS`; the generic
engine in `ode.rk` steps any of them. DOP853's long coefficient lists live in `ode.dop853`;
the conventions (stages, error weights, dense-output matrix) are `ode.butcher`'s.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from numpy.polynomial import polynomial as npoly

from ..errors import InvalidInputError
from .butcher import ButcherTableau, Row, as_row, as_rows, matrix_from_polys
from .dop853 import DOPRI8

__all__ = ["ButcherTableau", "TABLEAUS", "FIXED_METHODS", "ADAPTIVE_METHODS", "get_tableau"]


def _hermite_dense(b: Row, fsal: bool) -> Tuple[Tuple[Row, ...], Tuple[Tuple[float, Row], ...]]:
    """Cubic Hermite interpolation between (y0, f0) and (y1, f1).

    ``y(θ) - y0 = h[(θ - 2θ² + θ³) f0 + (θ³ - θ²) f1] + (3θ² - 2θ³)(y1 - y0)`` and
    ``y1 - y0 = h Σ b_i k_i``. f1 is the FSAL stage, or an extra stage ``f(t + h, y1)``.
    """
    s = len(b)
    h00 = np.array([0.0, 0.0, 3.0, -2.0])
    h10 = np.array([0.0, 1.0, -2.0, 1.0])
    h11 = np.array([0.0, 0.0, -1.0, 1.0])
    polys = [bi * h00 for bi in b]
    polys[0] = polys[0] + h10
    if fsal:
        polys[s - 1] = polys[s - 1] + h11
        extra: Tuple[Tuple[float, Row], ...] = ()
    else:
        polys.append(h11)
        extra = ((1.0, as_row(b)),)
    return matrix_from_polys(polys), extra


def _fixed(name: str, c, a, b, order: int) -> ButcherTableau:
    dense, extra = _hermite_dense(as_row(b), fsal=False)
    return ButcherTableau(name=name, c=as_row(c), a=as_rows(a), b=as_row(b), order=order,
                          dense=dense, dense_extra=extra, interpolant="cubic Hermite")


EULER = _fixed("euler", [0], [[]], [1], 1)
MIDPOINT = _fixed("midpoint", [0, 0.5], [[], [0.5]], [0, 1], 2)
HEUN = _fixed("heun", [0, 1], [[], [1]], [0.5, 0.5], 2)
RK4 = _fixed("rk4", [0, 0.5, 0.5, 1], [[], [0.5], [0, 0.5], [0, 0, 1]],
             [1 / 6, 1 / 3, 1 / 3, 1 / 6], 4)


# Bogacki–Shampine 3(2), FSAL; the natural cubic Hermite continuous extension.
_BOSH3_B = as_row([2 / 9, 1 / 3, 4 / 9, 0])
BOSH3 = ButcherTableau(
    name="bosh3",
    c=as_row([0, 1 / 2, 3 / 4, 1]),
    a=as_rows([[], [1 / 2], [0, 3 / 4], [2 / 9, 1 / 3, 4 / 9]]),
    b=_BOSH3_B,
    order=3,
    b_err=as_row(np.array(_BOSH3_B) - np.array([7 / 24, 1 / 4, 1 / 3, 1 / 8])),
    error_order=2,
    fsal=True,
    dense=_hermite_dense(_BOSH3_B, fsal=True)[0],
    interpolant="cubic Hermite",
)


# Dormand–Prince 5(4), FSAL; Shampine's (1986) 4th-order continuous extension.
_DOPRI5_B = as_row([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0])
DOPRI5 = ButcherTableau(
    name="dopri5",
    c=as_row([0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1]),
    a=as_rows([
        [],
        [1 / 5],
        [3 / 40, 9 / 40],
        [44 / 45, -56 / 15, 32 / 9],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
        list(_DOPRI5_B[:6]),
    ]),
    b=_DOPRI5_B,
    order=5,
    b_err=as_row([71 / 57600, 0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40]),
    error_order=4,
    fsal=True,
    dense=as_rows([
        [1, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432],
        [0, 0, 0, 0],
        [0, 131558114200 / 32700410799, -68118460800 / 10900136933,
         87487479700 / 32700410799],
        [0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072],
        [0, 127303824393 / 49829197408, -318862633887 / 49829197408,
         701980252875 / 199316789632],
        [0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844],
        [0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423],
    ]),
    interpolant="Shampine 4th order",
)


# Tsitouras 5(4) (2011), FSAL, with Tsitouras' 4th-order free interpolant.
_TSIT5_B = as_row([
    0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742,
    -3.290069515436081, 2.324710524099774, 0.0,
])
_TSIT5_BHAT = np.array([
    0.09468075576583945, 0.009183565540343254, 0.4877705284247616, 1.234297566930479,
    -2.7077123499835256, 1.866628418170587, 1 / 66,
])


def _tsit5_dense() -> Tuple[Row, ...]:
    roots = npoly.polyfromroots
    mul = npoly.polymul
    t2 = np.array([0.0, 0.0, 1.0])  # θ²
    polys = [
        -1.0530884977290216 * mul(roots([0.0, 1.3299890189751412]),
                                  [0.7139816917074209, -1.4364028541716351, 1.0]),
        0.1017 * mul(t2, [1.2949852507374631, -2.1966568338249754, 1.0]),
        2.490627285651252793 * mul(t2, [1.57803468208092486, -2.38535645472061657, 1.0]),
        -16.54810288924490272 * mul(t2, roots([1.21712927295533244, 0.61620406037800089])),
        47.37952196281928122 * mul(t2, roots([1.203071208372362603, 0.658047292653547382])),
        -34.87065786149660974 * mul(t2, roots([1.2, 2 / 3])),
        2.5 * mul(t2, roots([1.0, 0.6])),
    ]
    return matrix_from_polys(polys)


TSIT5 = ButcherTableau(
    name="tsit5",
    c=as_row([0, 0.161, 0.327, 0.9, 0.9800255409045097, 1, 1]),
    a=as_rows([
        [],
        [0.161],
        [-0.008480655492356989, 0.335480655492357],
        [2.8971530571054935, -6.359448489975075, 4.3622954328695815],
        [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525],
        [5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
         -0.028269050394068383],
        list(_TSIT5_B[:6]),
    ]),
    b=_TSIT5_B,
    order=5,
    b_err=as_row(np.array(_TSIT5_B) - _TSIT5_BHAT),
    error_order=4,
    fsal=True,
    dense=_tsit5_dense(),
    interpolant="Tsitouras 4th order",
)


TABLEAUS: Dict[str, ButcherTableau] = {
    tab.name: tab for tab in (EULER, MIDPOINT, HEUN, RK4, BOSH3, DOPRI5, TSIT5, DOPRI8)
}
FIXED_METHODS = tuple(name for name, tab in TABLEAUS.items() if not tab.adaptive)
ADAPTIVE_METHODS = tuple(name for name, tab in TABLEAUS.items() if tab.adaptive)


def get_tableau(method: str, name: str = "method") -> ButcherTableau:
    """Look up a method by name (or pass a `ButcherTableau` through); unknown names raise
    listing the valid ones, naming the argument ``name``."""
    if isinstance(method, ButcherTableau):
        return method
    try:
        return TABLEAUS[method]
    except (KeyError, TypeError):
        raise InvalidInputError(
            f"`{name}` must be one of {sorted(TABLEAUS)} or a ButcherTableau; got "
            f"{method!r}") from None
