"""Explicit Runge–Kutta methods as data: Butcher tableaus with embedded error weights
and dense-output (continuous extension) coefficients.

Adding a method means adding a `ButcherTableau` to `TABLEAUS`; the generic engine in
`ode.rk` steps any of them.

Conventions. A step from (t, y) with step h evaluates stages
``k_i = f(t + c_i h, y + h Σ_j a_ij k_j)`` and returns ``y1 = y + h Σ_i b_i k_i``.
``b_err`` holds the weights of the local error estimate ``h Σ_i e_i k_i`` (``b - b̂``).
Dense output: ``y(t + θh) = y + h Σ_i k_i Σ_m P[i, m] θ^(m+1)`` with ``P = dense``;
rows of ``P`` may extend past the step's stages to extra stages (``dense_extra``)
that are evaluated only when an output falls inside a step.
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import numpy as np
from numpy.polynomial import polynomial as npoly

from ..errors import InvalidInputError

__all__ = ["ButcherTableau", "TABLEAUS", "FIXED_METHODS", "ADAPTIVE_METHODS", "get_tableau"]

Row = Tuple[float, ...]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method.

    Attributes:
        name: method name used by ``odeint(method=...)``.
        c: stage times, length S (``c[0] == 0``).
        a: strictly lower-triangular rows; ``a[i]`` has ``i`` entries.
        b: solution weights, length S.
        order: order of the propagated solution.
        b_err: local error weights ``b - b̂`` (None for fixed-step methods).
        error_order: order of the embedded solution (sets the controller exponent).
        b_err_low: a second, low-order error estimator (DOP853 combines both).
        fsal: the last stage is ``f(t + h, y1)`` and is reused as the next step's first.
        dense: dense-output matrix P, shape (S + len(dense_extra), degree).
        dense_extra: extra stages ``(c, a-row over all earlier stages)`` that dense output needs.
        interpolant: short description of the continuous extension.
    """

    name: str
    c: Row
    a: Tuple[Row, ...]
    b: Row
    order: int
    b_err: Optional[Row] = None
    error_order: Optional[int] = None
    b_err_low: Optional[Row] = None
    fsal: bool = False
    dense: Optional[Tuple[Row, ...]] = None
    dense_extra: Tuple[Tuple[float, Row], ...] = field(default_factory=tuple)
    interpolant: str = ""

    @property
    def n_stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_err is not None

    def __post_init__(self) -> None:
        _check_tableau(self)


_ROW_TOL = 1e-9  # row-sum conditions hold to rounding in every published tableau


def _real_row(name: str, row: object, length: Optional[int], where: str) -> Row:
    """``row`` as a tuple of finite floats of the given length (None: any length >= 1)."""
    try:
        vals = tuple(row)  # type: ignore[arg-type]
    except TypeError:
        vals = None
    if vals is None or isinstance(row, (str, bytes)) or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
            for v in vals):
        raise InvalidInputError(
            f"{where}: `{name}` must be a sequence of finite numbers; got {row!r}")
    if (length is not None and len(vals) != length) or (length is None and not vals):
        want = f"{length} entries" if length is not None else "at least one entry"
        raise InvalidInputError(
            f"{where}: `{name}` must have {want}; got {len(vals)} ({row!r})")
    return tuple(float(v) for v in vals)


def _check_tableau(tab: "ButcherTableau") -> None:
    """Validate a tableau's shapes and consistency conditions; normalise rows to float
    tuples (so lists are accepted and the tableau stays hashable)."""
    if not isinstance(tab.name, str) or not tab.name:
        raise InvalidInputError(f"ButcherTableau: `name` must be a non-empty string; got "
                                f"{tab.name!r}")
    where = f"ButcherTableau {tab.name!r}"
    c = _real_row("c", tab.c, None, where)
    S = len(c)
    if not isinstance(tab.a, (tuple, list)) or len(tab.a) != S:
        raise InvalidInputError(f"{where}: `a` must hold {S} rows (one per stage, row i with "
                                f"i entries); got {tab.a!r}")
    a = tuple(_real_row(f"a[{i}]", row, i, where) for i, row in enumerate(tab.a))
    b = _real_row("b", tab.b, S, where)
    set_ = functools.partial(object.__setattr__, tab)
    set_("c", c), set_("a", a), set_("b", b)
    for name in ("b_err", "b_err_low"):
        if getattr(tab, name) is not None:
            set_(name, _real_row(name, getattr(tab, name), S, where))
    for name, low in (("order", 1), ("error_order", 1)):
        v = getattr(tab, name)
        if (v is not None or (name == "error_order" and tab.b_err is not None)) and not (
                isinstance(v, int) and not isinstance(v, bool) and v >= low):
            raise InvalidInputError(f"{where}: `{name}` must be an integer >= {low}"
                                    f"{' (b_err is given)' if name == 'error_order' else ''}; "
                                    f"got {v!r}")
    if tab.b_err_low is not None and tab.b_err is None:
        raise InvalidInputError(f"{where}: `b_err_low` needs `b_err`; got b_err=None")
    if c[0] != 0.0:
        raise InvalidInputError(f"{where}: `c[0]` must be 0 (explicit methods start at t); "
                                f"got {c[0]!r}")
    for i in range(1, S):
        if abs(sum(a[i]) - c[i]) > _ROW_TOL * max(1.0, abs(c[i])):
            raise InvalidInputError(f"{where}: row a[{i}] must sum to c[{i}] = {c[i]!r}; got "
                                    f"sum {sum(a[i])!r}")
    if abs(sum(b) - 1.0) > _ROW_TOL:
        raise InvalidInputError(f"{where}: `b` must sum to 1 (consistency); got sum "
                                f"{sum(b)!r}")
    if not isinstance(tab.fsal, bool):
        raise InvalidInputError(f"{where}: `fsal` must be True or False; got {tab.fsal!r}")
    if tab.fsal and not (S >= 2 and c[-1] == 1.0 and b[-1] == 0.0 and all(
            abs(x - y) <= _ROW_TOL for x, y in zip(a[-1], b))):
        raise InvalidInputError(f"{where}: `fsal=True` needs the last stage to be f(t + h, y1):"
                                " c[-1] == 1, a[-1] == b[:-1] and b[-1] == 0; got "
                                f"c[-1]={c[-1]!r}, a[-1]={a[-1]!r}, b={b!r}")
    _check_dense(tab, where, S, set_)


def _check_dense(tab: "ButcherTableau", where: str, S: int, set_: Callable) -> None:
    extra = []
    for j, item in enumerate(tab.dense_extra):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise InvalidInputError(f"{where}: `dense_extra[{j}]` must be a pair (c, a-row); "
                                    f"got {item!r}")
        cj = _real_row(f"dense_extra[{j}] c", (item[0],), 1, where)[0]
        extra.append((cj, _real_row(f"dense_extra[{j}] row", item[1], S + j, where)))
    set_("dense_extra", tuple(extra))
    if tab.dense is None:
        return
    n = S + len(extra)
    if not isinstance(tab.dense, (tuple, list)) or len(tab.dense) != n:
        raise InvalidInputError(f"{where}: `dense` must hold {n} rows (stages + dense_extra); "
                                f"got {tab.dense!r}")
    degree = len(tab.dense[0]) if isinstance(tab.dense[0], (tuple, list)) else None
    set_("dense", tuple(_real_row(f"dense[{i}]", row, degree, where)
                        for i, row in enumerate(tab.dense)))


def _rows(a) -> Tuple[Row, ...]:
    return tuple(tuple(float(x) for x in row) for row in a)


def _vec(v) -> Row:
    return tuple(float(x) for x in v)


def _matrix_from_polys(polys) -> Tuple[Row, ...]:
    """Dense matrix from per-stage polynomials in θ (numpy coefficient arrays, p(0) = 0)."""
    degree = max(len(p) for p in polys) - 1
    out = []
    for p in polys:
        p = np.concatenate([np.asarray(p, dtype=np.float64), np.zeros(degree + 1 - len(p))])
        assert abs(p[0]) < 1e-14, "dense-output polynomials must vanish at θ = 0"
        out.append(tuple(float(x) for x in p[1:]))
    return tuple(out)


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
        extra = ((1.0, _vec(b)),)
    return _matrix_from_polys(polys), extra


def _fixed(name: str, c, a, b, order: int) -> ButcherTableau:
    dense, extra = _hermite_dense(_vec(b), fsal=False)
    return ButcherTableau(name=name, c=_vec(c), a=_rows(a), b=_vec(b), order=order,
                          dense=dense, dense_extra=extra, interpolant="cubic Hermite")


EULER = _fixed("euler", [0], [[]], [1], 1)
MIDPOINT = _fixed("midpoint", [0, 0.5], [[], [0.5]], [0, 1], 2)
HEUN = _fixed("heun", [0, 1], [[], [1]], [0.5, 0.5], 2)
RK4 = _fixed("rk4", [0, 0.5, 0.5, 1], [[], [0.5], [0, 0.5], [0, 0, 1]],
             [1 / 6, 1 / 3, 1 / 3, 1 / 6], 4)


# Bogacki–Shampine 3(2), FSAL; the natural cubic Hermite continuous extension.
_BOSH3_B = _vec([2 / 9, 1 / 3, 4 / 9, 0])
BOSH3 = ButcherTableau(
    name="bosh3",
    c=_vec([0, 1 / 2, 3 / 4, 1]),
    a=_rows([[], [1 / 2], [0, 3 / 4], [2 / 9, 1 / 3, 4 / 9]]),
    b=_BOSH3_B,
    order=3,
    b_err=_vec(np.array(_BOSH3_B) - np.array([7 / 24, 1 / 4, 1 / 3, 1 / 8])),
    error_order=2,
    fsal=True,
    dense=_hermite_dense(_BOSH3_B, fsal=True)[0],
    interpolant="cubic Hermite",
)


# Dormand–Prince 5(4), FSAL; Shampine's (1986) 4th-order continuous extension.
_DOPRI5_B = _vec([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0])
DOPRI5 = ButcherTableau(
    name="dopri5",
    c=_vec([0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1]),
    a=_rows([
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
    b_err=_vec([71 / 57600, 0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40]),
    error_order=4,
    fsal=True,
    dense=_rows([
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
_TSIT5_B = _vec([
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
    return _matrix_from_polys(polys)


TSIT5 = ButcherTableau(
    name="tsit5",
    c=_vec([0, 0.161, 0.327, 0.9, 0.9800255409045097, 1, 1]),
    a=_rows([
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
    b_err=_vec(np.array(_TSIT5_B) - _TSIT5_BHAT),
    error_order=4,
    fsal=True,
    dense=_tsit5_dense(),
    interpolant="Tsitouras 4th order",
)


def _dop853() -> ButcherTableau:
    """Hairer's DOP853: 12 stages + FSAL stage, 5th/3rd-order error estimators combined
    as in Hairer, Nørsett & Wanner, and the 7th-order dense output (3 extra stages)."""
    n = 16
    C = np.array([
        0.0, 0.526001519587677318785587544488e-01, 0.789002279381515978178381316732e-01,
        0.118350341907227396726757197510, 0.281649658092772603273242802490,
        0.333333333333333333333333333333, 0.25, 0.307692307692307692307692307692,
        0.651282051282051282051282051282, 0.6, 0.857142857142857142857142857142,
        1.0, 1.0, 0.1, 0.2, 0.777777777777777777777777777778,
    ])
    A = np.zeros((n, n))
    entries = {
        (1, 0): 5.26001519587677318785587544488e-2,
        (2, 0): 1.97250569845378994544595329183e-2, (2, 1): 5.91751709536136983633785987549e-2,
        (3, 0): 2.95875854768068491816892993775e-2, (3, 2): 8.87627564304205475450678981324e-2,
        (4, 0): 2.41365134159266685502369798665e-1, (4, 2): -8.84549479328286085344864962717e-1,
        (4, 3): 9.24834003261792003115737966543e-1,
        (5, 0): 3.7037037037037037037037037037e-2, (5, 3): 1.70828608729473871279604482173e-1,
        (5, 4): 1.25467687566822425016691814123e-1,
        (6, 0): 3.7109375e-2, (6, 3): 1.70252211019544039314978060272e-1,
        (6, 4): 6.02165389804559606850219397283e-2, (6, 5): -1.7578125e-2,
        (7, 0): 3.70920001185047927108779319836e-2, (7, 3): 1.70383925712239993810214054705e-1,
        (7, 4): 1.07262030446373284651809199168e-1, (7, 5): -1.53194377486244017527936158236e-2,
        (7, 6): 8.27378916381402288758473766002e-3,
        (8, 0): 6.24110958716075717114429577812e-1, (8, 3): -3.36089262944694129406857109825,
        (8, 4): -8.68219346841726006818189891453e-1, (8, 5): 2.75920996994467083049415600797e1,
        (8, 6): 2.01540675504778934086186788979e1, (8, 7): -4.34898841810699588477366255144e1,
        (9, 0): 4.77662536438264365890433908527e-1, (9, 3): -2.48811461997166764192642586468,
        (9, 4): -5.90290826836842996371446475743e-1, (9, 5): 2.12300514481811942347288949897e1,
        (9, 6): 1.52792336328824235832596922938e1, (9, 7): -3.32882109689848629194453265587e1,
        (9, 8): -2.03312017085086261358222928593e-2,
        (10, 0): -9.3714243008598732571704021658e-1, (10, 3): 5.18637242884406370830023853209,
        (10, 4): 1.09143734899672957818500254654, (10, 5): -8.14978701074692612513997267357,
        (10, 6): -1.85200656599969598641566180701e1, (10, 7): 2.27394870993505042818970056734e1,
        (10, 8): 2.49360555267965238987089396762, (10, 9): -3.0467644718982195003823669022,
        (11, 0): 2.27331014751653820792359768449, (11, 3): -1.05344954667372501984066689879e1,
        (11, 4): -2.00087205822486249909675718444, (11, 5): -1.79589318631187989172765950534e1,
        (11, 6): 2.79488845294199600508499808837e1, (11, 7): -2.85899827713502369474065508674,
        (11, 8): -8.87285693353062954433549289258, (11, 9): 1.23605671757943030647266201528e1,
        (11, 10): 6.43392746015763530355970484046e-1,
        (12, 0): 5.42937341165687622380535766363e-2, (12, 5): 4.45031289275240888144113950566,
        (12, 6): 1.89151789931450038304281599044, (12, 7): -5.8012039600105847814672114227,
        (12, 8): 3.1116436695781989440891606237e-1, (12, 9): -1.52160949662516078556178806805e-1,
        (12, 10): 2.01365400804030348374776537501e-1,
        (12, 11): 4.47106157277725905176885569043e-2,
        (13, 0): 5.61675022830479523392909219681e-2, (13, 6): 2.53500210216624811088794765333e-1,
        (13, 7): -2.46239037470802489917441475441e-1,
        (13, 8): -1.24191423263816360469010140626e-1, (13, 9): 1.5329179827876569731206322685e-1,
        (13, 10): 8.20105229563468988491666602057e-3,
        (13, 11): 7.56789766054569976138603589584e-3, (13, 12): -8.298e-3,
        (14, 0): 3.18346481635021405060768473261e-2, (14, 5): 2.83009096723667755288322961402e-2,
        (14, 6): 5.35419883074385676223797384372e-2, (14, 7): -5.49237485713909884646569340306e-2,
        (14, 10): -1.08347328697249322858509316994e-4,
        (14, 11): 3.82571090835658412954920192323e-4,
        (14, 12): -3.40465008687404560802977114492e-4,
        (14, 13): 1.41312443674632500278074618366e-1,
        (15, 0): -4.28896301583791923408573538692e-1, (15, 5): -4.69762141536116384314449447206,
        (15, 6): 7.68342119606259904184240953878, (15, 7): 4.06898981839711007970213554331,
        (15, 8): 3.56727187455281109270669543021e-1,
        (15, 12): -1.39902416515901462129418009734e-3, (15, 13): 2.9475147891527723389556272149,
        (15, 14): -9.15095847217987001081870187138,
    }
    for (i, j), v in entries.items():
        A[i, j] = v
    s = 13  # 12 stages + the FSAL stage f(t + h, y1), whose row is b
    b = A[12, :s].copy()
    e3 = b.copy()
    e3[0] -= 0.244094488188976377952755905512
    e3[8] -= 0.733846688281611857341361741547
    e3[11] -= 0.220588235294117647058823529412e-1
    e5 = np.zeros(s)
    for j, v in {0: 0.1312004499419488073250102996e-1, 5: -0.1225156446376204440720569753e1,
                 6: -0.4957589496572501915214079952, 7: 0.1664377182454986536961530415e1,
                 8: -0.3503288487499736816886487290, 9: 0.3341791187130174790297318841,
                 10: 0.8192320648511571246570742613e-1,
                 11: -0.2235530786388629525884427845e-1}.items():
        e5[j] = v
    D = np.zeros((4, n))
    d_entries = {
        0: {0: -0.84289382761090128651353491142e1, 5: 0.56671495351937776962531783590,
            6: -0.30689499459498916912797304727e1, 7: 0.23846676565120698287728149680e1,
            8: 0.21170345824450282767155149946e1, 9: -0.87139158377797299206789907490,
            10: 0.22404374302607882758541771650e1, 11: 0.63157877876946881815570249290,
            12: -0.88990336451333310820698117400e-1, 13: 0.18148505520854727256656404962e2,
            14: -0.91946323924783554000451984436e1, 15: -0.44360363875948939664310572000e1},
        1: {0: 0.10427508642579134603413151009e2, 5: 0.24228349177525818288430175319e3,
            6: 0.16520045171727028198505394887e3, 7: -0.37454675472269020279518312152e3,
            8: -0.22113666853125306036270938578e2, 9: 0.77334326684722638389603898808e1,
            10: -0.30674084731089398182061213626e2, 11: -0.93321305264302278729567221706e1,
            12: 0.15697238121770843886131091075e2, 13: -0.31139403219565177677282850411e2,
            14: -0.93529243588444783865713862664e1, 15: 0.35816841486394083752465898540e2},
        2: {0: 0.19985053242002433820987653617e2, 5: -0.38703730874935176555105901742e3,
            6: -0.18917813819516756882830838328e3, 7: 0.52780815920542364900561016686e3,
            8: -0.11573902539959630126141871134e2, 9: 0.68812326946963000169666922661e1,
            10: -0.10006050966910838403183860980e1, 11: 0.77771377980534432092869265740,
            12: -0.27782057523535084065932004339e1, 13: -0.60196695231264120758267380846e2,
            14: 0.84320405506677161018159903784e2, 15: 0.11992291136182789328035130030e2},
        3: {0: -0.25693933462703749003312586129e2, 5: -0.15418974869023643374053993627e3,
            6: -0.23152937917604549567536039109e3, 7: 0.35763911791061412378285349910e3,
            8: 0.93405324183624310003907691704e2, 9: -0.37458323136451633156875139351e2,
            10: 0.10409964950896230045147246184e3, 11: 0.29840293426660503123344363579e2,
            12: -0.43533456590011143754432175058e2, 13: 0.96324553959188282948394950600e2,
            14: -0.39177261675615439165231486172e2, 15: -0.14972683625798562581422125276e3},
    }
    for m, row in d_entries.items():
        for j, v in row.items():
            D[m, j] = v
    # Hairer's nested form y - y0 = θ(F0 + (1-θ)(F1 + θ(F2 + (1-θ)(F3 + ...)))) with
    # F0 = Δy, F1 = h f0 - Δy, F2 = 2Δy - h(f0 + f1), F3.. = h D k; every F is linear in
    # the stages, so it re-expands into per-stage polynomials in θ.
    bb = np.concatenate([b, np.zeros(n - s)])
    e0, e12 = np.eye(n)[0], np.eye(n)[12]
    G = np.stack([bb, e0 - bb, 2 * bb - e0 - e12, *D])
    theta, one_minus = np.array([0.0, 1.0]), np.array([1.0, -1.0])
    basis, q = [], np.array([1.0])
    for m in range(7):
        q = npoly.polymul(q, theta if m % 2 == 0 else one_minus)
        basis.append(q)
    polys = [sum(G[m, j] * np.pad(basis[m], (0, 8 - len(basis[m]))) for m in range(7))
             for j in range(n)]
    return ButcherTableau(
        name="dopri8",
        c=_vec(C[:s]),
        a=tuple(_vec(A[i, :i]) for i in range(s)),
        b=_vec(b),
        order=8,
        b_err=_vec(e5),
        error_order=7,
        b_err_low=_vec(e3),
        fsal=True,
        dense=_matrix_from_polys(polys),
        dense_extra=tuple((float(C[i]), _vec(A[i, :i])) for i in range(s, n)),
        interpolant="DOP853 7th order",
    )


DOPRI8 = _dop853()

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
