"""The solver interface every method implements, ODE or SDE.

A solver is a small strategy object the integration loops drive:

* ``init(terms, t0, y0) -> state``: what the method carries between steps (an FSAL first
  stage, reversible Heun's ``(z, f, g)``, an implicit method's factorisation ...);
* ``step(terms, t0, h, y0, state, control, t1) -> StepResult``: one step of size ``h`` from
  ``(t0, y0)``; ``control`` is the step's driving increment (``None`` for ODEs, the
  Brownian increment ``(dW, H)`` for SDE methods); ``t1`` the step's end when the loop
  knows it exactly (``t0 + h`` up to rounding; the stop time of a shortened step);
* optionally dense output: ``densify`` completes a step's ``dense_info`` (extra stages)
  and ``interpolate`` evaluates it at fractions θ of the step (``interpolant``: the
  same with the step's data bound, for repeated evaluation).

``terms`` is what the method evaluates: the counted vector field of an ODE, or the
`SDETerms` of an SDE. The loops (`engine.fixed`, `engine.adaptive`) know nothing else of
a method; a new explicit Runge–Kutta method is a `ButcherTableau`, a new SDE method one
``step`` function.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch

Tensor = torch.Tensor

__all__ = ["StepResult", "Solver"]


class StepResult(NamedTuple):
    """One step's outcome: the new state, the unscaled local error estimate (None when the
    method has none; a pair ``(err, err_low)`` for DOP853's combined estimate), what dense
    output needs, and the state carried to the next step."""

    y1: Tensor
    error: Any
    dense_info: Any
    state: Any


class Solver:
    """Base of the solver strategies (`RungeKutta`, `SDEStepper`, `StepDoubling`).

    Attributes:
        order: the method's order (strong order for SDE methods).
        error_order: the order of its local error estimate (None: no estimate, so only
            fixed step-size controllers apply).
        interpolates: whether `interpolate` gives output between step ends.
        evals_per_step, dense_evals: evaluations of the terms per attempted step, and the
            extra ones `densify` makes (the adaptive loop's per-row ``nfe``).
    """

    name: str = "solver"
    order: float = 1.0
    error_order: Optional[float] = None
    interpolates: bool = False
    evals_per_step: int = 1
    dense_evals: int = 0

    def init(self, terms: Any, t0: Tensor, y0: Tensor) -> Any:
        """The state carried into the first step (default: nothing)."""
        return None

    def grid_control(self, times: Sequence[Tensor], hs: Sequence[Tensor]
                     ) -> Optional[Callable[[int], Any]]:
        """On a grid known up front (`engine.fixed`): what the solver forms for all steps at
        once, given to step n as its ``control`` (default None: nothing)."""
        return None

    def step(self, terms: Any, t0: Tensor, h: Any, y0: Tensor, state: Any,
             control: Any = None, t1: Optional[Tensor] = None) -> StepResult:
        raise NotImplementedError

    def densify(self, terms: Any, t0: Tensor, h: Tensor, y0: Tensor,
                res: StepResult) -> StepResult:
        """``res`` with everything `interpolate` needs (default: unchanged)."""
        return res

    def interpolate(self, y0: Tensor, h: Tensor, dense_info: Any, theta: Tensor,
                    per_sample: bool) -> Tensor:
        raise NotImplementedError(f"solver {self.name!r} has no dense output")

    def interpolant(self, y0: Tensor, h: Tensor, dense_info: Any,
                    per_sample: bool) -> Callable[[Tensor], Tensor]:
        """``theta -> interpolate(y0, h, dense_info, theta, per_sample)`` (solvers may form
        the step's polynomial once)."""
        return lambda theta: self.interpolate(y0, h, dense_info, theta, per_sample)
