"""The registry of implicit methods: `ImplicitMethod` specs by name, and `resolve_method`,
which maps a ``method=`` argument to an explicit `ButcherTableau` or an `ImplicitMethod`.

An `ImplicitMethod` is data (its tableau and Newton / Jacobian options) plus a factory,
`build`, that makes the `Solver` for a solve's dtype, device and options. Pass a name
(``method='kvaerno5'``) or a spec with options
(``method=implicit_method('kvaerno5', jac=my_jac)``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Optional, Union

import torch

from ..errors import InvalidInputError, describe
from ..ode.butcher import ButcherTableau
from ..ode.tableaus import TABLEAUS, get_tableau
from ..validation import check_int, check_positive
from .base import ImplicitSolver, Settings
from .tableaus import IMPLICIT_TABLEAUS, RODAS4, ImplicitTableau, RosenbrockTableau

__all__ = ["ImplicitMethod", "IMPLICIT_METHODS", "implicit_method", "resolve_method",
           "STIFF_ADAPTIVE_METHODS"]


@dataclass(frozen=True)
class ImplicitMethod:
    """An implicit method and its options.

    Attributes:
        name: the method name (``method=`` in `solve_ode`, `odeint`).
        tableau: an `ImplicitTableau` (DIRK or collocation) or a `RosenbrockTableau`.
        jac: optional ``jac(t, y)``: the Jacobian of f on the flat state, ``(B, n, n)`` per
            sample or ``(N, N)`` joint (default: automatic, see `implicit.jacobian`).
        max_iter: Newton iterations before a row's step is rejected.
        kappa: Newton's stopping threshold on the (tolerance-scaled) remaining error.
        autonomous: f does not depend on t (a Rosenbrock method skips ∂f/∂t).
    """

    name: str
    tableau: Union[ImplicitTableau, RosenbrockTableau]
    jac: Optional[Callable] = None
    max_iter: int = 10
    kappa: float = 1e-2
    autonomous: bool = False

    def __post_init__(self) -> None:
        if self.jac is not None and not callable(self.jac):
            raise InvalidInputError(f"`jac` must be callable jac(t, y); got {describe(self.jac)}")
        object.__setattr__(self, "max_iter", check_int("max_iter", self.max_iter))
        object.__setattr__(self, "kappa", check_positive("kappa", self.kappa))

    @property
    def order(self) -> int:
        return self.tableau.order

    @property
    def error_order(self) -> Optional[int]:
        return self.tableau.error_order

    @property
    def adaptive(self) -> bool:
        """Whether the method has an embedded error estimate."""
        return self.tableau.adaptive

    @property
    def dense(self) -> str:
        """The continuous extension (every implicit method has one)."""
        return "cubic Hermite"

    def build(self, opts: Settings, dtype: torch.dtype, device: torch.device
              ) -> ImplicitSolver:
        """The `Solver` for a solve."""
        from .collocation import Collocation
        from .dirk import DIRK
        from .rosenbrock import Rosenbrock
        tab = self.tableau
        if isinstance(tab, RosenbrockTableau):
            return Rosenbrock(self, opts, dtype, device)
        cls = DIRK if tab.kind == "dirk" else Collocation
        return cls(self, opts, dtype, device)


IMPLICIT_METHODS: Dict[str, ImplicitMethod] = {
    name: ImplicitMethod(name, tab)
    for name, tab in {**IMPLICIT_TABLEAUS, "rodas4": RODAS4}.items()}
STIFF_ADAPTIVE_METHODS = tuple(n for n, m in IMPLICIT_METHODS.items() if m.adaptive)


def implicit_method(name: str, **options: Any) -> ImplicitMethod:
    """The implicit method ``name`` with options (``jac``, ``max_iter``, ``kappa``,
    ``autonomous``)."""
    if name not in IMPLICIT_METHODS:
        raise InvalidInputError(f"`name` must be one of {sorted(IMPLICIT_METHODS)}; got "
                                f"{name!r}")
    unknown = sorted(set(options) - {"jac", "max_iter", "kappa", "autonomous"})
    if unknown:
        raise InvalidInputError(f"unknown implicit-method options {unknown}; valid: "
                                "['autonomous', 'jac', 'kappa', 'max_iter']")
    return replace(IMPLICIT_METHODS[name], **options)


def resolve_method(method: Any, name: str = "method") -> Union[ButcherTableau, ImplicitMethod]:
    """A method name, `ButcherTableau` or `ImplicitMethod` as the method object; unknown
    names raise listing every valid one, naming the argument ``name``."""
    if isinstance(method, ImplicitMethod):
        return method
    if isinstance(method, str) and method in IMPLICIT_METHODS:
        return IMPLICIT_METHODS[method]
    if isinstance(method, ButcherTableau) or (isinstance(method, str) and method in TABLEAUS):
        return get_tableau(method, name)
    raise InvalidInputError(
        f"`{name}` must be one of {sorted(TABLEAUS) + sorted(IMPLICIT_METHODS)} or a "
        f"ButcherTableau; got {method!r} (an implicit_method(...) is also accepted)")
