"""`ButcherTableau`: an explicit Runge–Kutta method as data, with embedded error weights
and dense-output (continuous extension) coefficients, validated on construction.

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
from typing import Callable, Optional, Tuple

import numpy as np

from ..errors import InvalidInputError

__all__ = ["ButcherTableau", "Row", "as_row", "as_rows", "matrix_from_polys"]

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


def as_rows(a) -> Tuple[Row, ...]:
    return tuple(tuple(float(x) for x in row) for row in a)


def as_row(v) -> Row:
    return tuple(float(x) for x in v)


def matrix_from_polys(polys) -> Tuple[Row, ...]:
    """Dense matrix from per-stage polynomials in θ (numpy coefficient arrays, p(0) = 0)."""
    degree = max(len(p) for p in polys) - 1
    out = []
    for p in polys:
        p = np.concatenate([np.asarray(p, dtype=np.float64), np.zeros(degree + 1 - len(p))])
        assert abs(p[0]) < 1e-14, "dense-output polynomials must vanish at θ = 0"
        out.append(tuple(float(x) for x in p[1:]))
    return tuple(out)
