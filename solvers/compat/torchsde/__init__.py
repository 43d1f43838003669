"""torchsde's public API on `solvers`: ``import solvers.compat.torchsde as torchsde``.

`sdeint` / `sdeint_adjoint` (torchsde's arguments, ``names``, ``logqp``, ``extra``,
``extra_solver_state``, method names including ``euler_heun``, ``log_ode`` and
``adjoint_reversible_heun``), the SDE base classes, the Brownian family and the
``settings`` / ``types`` submodules. Remaining differences: docs/torchsde_compat.md.
"""
from __future__ import annotations

from . import settings, types  # noqa: F401
from .base_sde import BaseSDE, SDEIto, SDEStratonovich
from .brownian import (BaseBrownian, BrownianInterval, BrownianPath, BrownianTree,
                       ReverseBrownian, brownian_interval_like)
from .sdeint import sdeint, sdeint_adjoint

__all__ = ["sdeint", "sdeint_adjoint", "BaseSDE", "SDEIto", "SDEStratonovich", "BaseBrownian",
           "BrownianInterval", "BrownianPath", "BrownianTree", "ReverseBrownian",
           "brownian_interval_like"]
__version__ = "0.2.6"  # the torchsde release whose API this follows
