"""`SaveAt`: what a solve returns besides the final state."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .validation import check_bool

__all__ = ["SaveAt"]


@dataclass(frozen=True)
class SaveAt:
    """Output times ``ts`` (1-D, strictly monotone; the solve runs from ``ts[0]`` to
    ``ts[-1]``), ``dense=True`` to keep the continuous solution (`Solution.evaluate`, ODEs),
    ``steps=True`` to keep the state at every accepted step end (`Solution.step_ts`,
    `Solution.step_ys`; joint-mode ODE solves and fixed-grid SDE solves)."""

    ts: Any
    dense: bool = False
    steps: bool = False

    def __post_init__(self) -> None:
        check_bool("dense", self.dense, "SaveAt: ")
        check_bool("steps", self.steps, "SaveAt: ")
