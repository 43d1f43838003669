"""torchdiffeq's explicit Runge–Kutta methods that `solvers.TABLEAUS` does not name, as
`ButcherTableau` data (coefficients from the methods' published tableaus).

* ``heun3``: Heun's third-order method; ``rk4_38``: Kutta's 3/8 rule (torchdiffeq's
  ``rk4``); both fixed-step with cubic Hermite dense output.
* ``adaptive_heun``: Heun 2 with the Euler solution as embedded estimate;
  ``fehlberg2``: Runge–Kutta–Fehlberg 1(2). Both propagate the second-order solution.
"""
from __future__ import annotations

from typing import Dict

from ..ode.butcher import ButcherTableau, as_row, as_rows
from ..ode.tableaus import _hermite_dense, _fixed

__all__ = ["COMPAT_TABLEAUS", "HEUN3", "RK4_38", "ADAPTIVE_HEUN", "FEHLBERG2"]

HEUN3 = _fixed("heun3", [0, 1 / 3, 2 / 3], [[], [1 / 3], [0, 2 / 3]], [1 / 4, 0, 3 / 4], 3)
RK4_38 = _fixed("rk4_38", [0, 1 / 3, 2 / 3, 1], [[], [1 / 3], [-1 / 3, 1], [1, -1, 1]],
                [1 / 8, 3 / 8, 3 / 8, 1 / 8], 4)


def _adaptive(name: str, c, a, b, b_low, order: int, error_order: int) -> ButcherTableau:
    dense, extra = _hermite_dense(as_row(b), fsal=False)
    return ButcherTableau(name=name, c=as_row(c), a=as_rows(a), b=as_row(b), order=order,
                          b_err=as_row([x - y for x, y in zip(b, b_low)]),
                          error_order=error_order, dense=dense, dense_extra=extra,
                          interpolant="cubic Hermite")


ADAPTIVE_HEUN = _adaptive("adaptive_heun", [0, 1], [[], [1]], [1 / 2, 1 / 2], [1, 0], 2, 1)
FEHLBERG2 = _adaptive("fehlberg2", [0, 1 / 2, 1], [[], [1 / 2], [1 / 256, 255 / 256]],
                      [1 / 512, 255 / 256, 1 / 512], [1 / 256, 255 / 256, 0], 2, 1)

COMPAT_TABLEAUS: Dict[str, ButcherTableau] = {
    tab.name: tab for tab in (HEUN3, RK4_38, ADAPTIVE_HEUN, FEHLBERG2)}
