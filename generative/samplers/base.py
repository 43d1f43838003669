"""The sampler contract: what every sampler module sees and declares.

A sampler is ``run(model, x, grid, callback, noise, **options) -> x``, the numerical update
only: `Model` gives it the counted score (and the reverse SDE and probability flow, built once
per run), ``callback`` is the front end's `Hook` (call it on the state at every grid point), and
``noise(x, t, s)`` its standard normal draws (`noise.NoiseSampler`), and
its `Sampler` entry declares its grid, default steps and `StepCost` (`generative.samplers.
frontend` does the rest).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import torch

from dynamics import LinearSDE, call_score, tweedie
from solvers.errors import describe

from ..errors import InputError
from .noise import NoiseSampler
from .poll import FinitePoll

Tensor = torch.Tensor
#: ``callback(i, t, x, denoised) -> x or None`` on the state at grid point i
Callback = Callable[[int, Tensor, Tensor, Optional[Tensor]], Optional[Tensor]]

__all__ = ["StepCost", "per_step", "Sampler", "Model", "Hook", "Callback", "Step",
           "run_predictor", "check_steps"]


class StepCost(NamedTuple):
    """Score evaluations of one step, and those spent once before the first step."""
    per_step: int
    setup: int = 0

    def steps(self, nfe: int, denoise: bool, name: str) -> int:
        """The largest number of steps whose evaluations fit in the budget ``nfe``."""
        budget = nfe - self.setup - int(denoise)
        if budget < self.per_step:
            raise InputError(
                f"`nfe` = {nfe} is too small for sampler {name!r}: one step needs "
                f"{self.per_step} score evaluation(s)"
                + (f" plus {self.setup} before the first" if self.setup else "")
                + (" plus 1 for denoise" if denoise else ""))
        return budget // self.per_step


def per_step(n: int) -> Callable[[Dict[str, Any]], StepCost]:
    """The cost of a sampler that spends ``n`` score evaluations per step whatever its options."""
    return lambda options: StepCost(n)


@dataclass(frozen=True)
class Sampler:
    """A sampler's entry in `SAMPLERS`: its update ``run``, its default number of steps
    (``None``: adaptive), its grid (``'uniform'`` in t, or ``'schedule'``: a named
    `grid.SCHEDULES` entry, default ``schedule``), its ``cost(options)`` and its default
    ``noise`` (None: the generator's draws; ``'brownian'`` where its draws must be increments
    of one path)."""
    run: Callable[..., Tensor]
    n_steps: Optional[int]
    grid: str = "uniform"
    schedule: Optional[str] = None
    cost: Callable[[Dict[str, Any]], StepCost] = per_step(1)
    noise: Optional[str] = None


class Model:
    """What a sampler sees of the model: the forward SDE and the score, counted (and, with
    ``x0_limit``, the score of the limited denoiser: `x0_limits`); the reverse SDE and
    probability flow are built once per sampling run."""

    def __init__(self, sde: LinearSDE, score_fn: Callable[[Tensor, Tensor], Tensor],
                 x0_limit: Optional[Callable[[Tensor], Tensor]] = None) -> None:
        self.sde, self.score_fn, self.nfe, self.x0_limit = sde, score_fn, 0, x0_limit
        self.reverse = sde.reverse(self.score)
        self.flow = sde.probability_flow(self.score)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        s = call_score(self.score_fn, x, t)
        if self.x0_limit is None:
            return s
        a, sig = self.sde.coefs(x, t)
        return (a * self.x0_limit(tweedie(x, s, a, sig)) - x) / sig ** 2

    def denoised(self, x: Tensor, t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """Tweedie's ``x0_hat`` at ``(x, t)``."""
        return tweedie(x, self.score(x, t), alpha, sigma)


class Hook:
    """The callback a sampler calls at every grid point: the user's ``callback`` (when given)
    and the finiteness poll. ``passive``: no user callback, the state is never replaced (so
    em and ode may run inside `solvers`, which poll themselves)."""

    def __init__(self, callback: Optional[Callback], poll: FinitePoll, model: Model) -> None:
        self.callback, self.poll, self.model = callback, poll, model
        self.passive = callback is None

    def __call__(self, i: int, t: Tensor, x: Tensor, denoised: Optional[Tensor] = None) -> Tensor:
        if self.callback is not None:
            out = self.callback(i, t, x, denoised)
            if out is not None:
                if not isinstance(out, Tensor) or out.shape != x.shape:
                    raise InputError(f"`callback(i, t, x, denoised)` must return None "
                                     f"or a tensor of x's shape {tuple(x.shape)}; got "
                                     f"{describe(out)}")
                x = out
        if i > 0:
            self.poll(i - 1, x, self.model.nfe)
        return x


Step = Callable[[Model, Tensor, Tensor, Tensor, NoiseSampler], Tuple[Tensor, Tensor]]


def run_predictor(step: Step, model: Model, x: Tensor, ts: Tensor, callback: Hook,
                  noise: NoiseSampler) -> Tensor:
    """The loop of a one-step predictor ``step(model, x, t, dt, noise) -> (x, x_mean)`` over
    the grid times ``ts``."""
    for i in range(len(ts) - 1):
        x, _ = step(model, x, ts[i], ts[i] - ts[i + 1], noise)
        x = callback(i + 1, ts[i + 1], x)
    return x


def check_steps(name: str, n: Any, minimum: int = 1) -> int:
    """``n`` as an int >= minimum, or a clear error naming the argument."""
    if isinstance(n, bool) or not isinstance(n, (int, float)) or int(n) != n or n < minimum:
        raise InputError(f"`{name}` must be an integer >= {minimum}; got {n!r}")
    return int(n)
