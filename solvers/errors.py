"""The `SolverError` family.

Invalid input raises an error whose message names the argument, the expected form and
what was received. Numerical failure raises an error that carries the time reached
(`t`, per row in per-sample mode), the partial solution (`ys`, outputs not reached are
NaN) and the solver statistics (`stats`), so no work is lost and nothing hangs.
"""
from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "SolverError",
    "InvalidInputError",
    "FunctionOutputError",
    "NonFiniteError",
    "StepSizeUnderflowError",
    "MaxStepsExceededError",
]


class SolverError(RuntimeError):
    """Base class of every error raised by `solvers`.

    Attributes:
        t: time reached when the solve failed (tensor; shape ``(B,)`` in per-sample mode),
           or ``None`` for input errors.
        ys: partial solution at the requested output times (NaN where not reached), or ``None``.
        stats: solver statistics up to the failure, or ``None``.
    """

    def __init__(self, message: str, *, t: Any = None, ys: Any = None,
                 stats: Optional[dict] = None) -> None:
        super().__init__(message)
        self.t = t
        self.ys = ys
        self.stats = stats


class InvalidInputError(SolverError, ValueError):
    """An argument has the wrong type, shape or value (also a `ValueError`)."""


class FunctionOutputError(SolverError, TypeError):
    """The user's vector field returned something of the wrong type, shape or dtype."""


class NonFiniteError(SolverError):
    """The state or the vector field became NaN or infinite."""


class StepSizeUnderflowError(SolverError):
    """The adaptive step size fell below ``dt_min`` (or below time resolution)."""


class MaxStepsExceededError(SolverError):
    """More than ``max_steps`` steps were attempted."""


def describe(x: Any) -> str:
    """A short description of a value for error messages."""
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(x).__name__} of shape {tuple(shape)} and dtype {dtype}"
    if isinstance(x, (tuple, list)):
        return f"{type(x).__name__} of length {len(x)}"
    return f"{type(x).__name__} {x!r}"
