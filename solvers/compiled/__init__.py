"""The compiled path: ODE and SDE steps under ``torch.compile`` (docs/compile.md)."""
from .options import CompileOptions
from .program import clear_cache
from .sde import sdeint, solve_sde

__all__ = ["CompileOptions", "clear_cache", "sdeint", "solve_sde"]
