"""The compiled path: ODE and SDE steps under ``torch.compile`` (docs/compile.md).

``solve_ode(..., compile=True | CompileOptions(...))`` and ``odeint(..., options={'compile':
...})`` compile ODE solves; `solve_sde` / `sdeint` here are the compiled SDE entry points
(fixed grid); `clear_cache` forgets the compiled programs.
"""
from .options import CompileOptions
from .program import clear_cache
from .sde import sdeint, solve_sde

__all__ = ["CompileOptions", "clear_cache", "sdeint", "solve_sde"]
