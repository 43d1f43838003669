"""Euler-Maruyama on the reverse-time SDE ``dx = [f - g^2 score] dt + g dw`` from T down to t_min,
solved by `solvers.solve_sde` with a decreasing time grid (negative steps, |dt| variance). With
a callback (or noise other than the generator's) the same steps run in a Python loop of
`em_step`, since `solvers.solve_sde` has no per-step hook."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch

from solvers import solve_sde
from solvers.errors import NonFiniteError

from .base import Hook, Model, StepCost, run_predictor
from .noise import GeneratorNoise, NoiseSampler
from .grid import Grid

Tensor = torch.Tensor

__all__ = ["em", "em_step", "cost"]


def cost(options: Dict[str, Any]) -> StepCost:
    """One score evaluation per step, plus one: solvers checks the drift's output shape once
    before stepping."""
    return StepCost(1, setup=1)


def em_step(model: Model, x: Tensor, t: Tensor, dt: Tensor,
            noise: NoiseSampler) -> Tuple[Tensor, Tensor]:
    """One reverse EM step from t to t - dt: returns ``(x, x_mean)``."""
    x_mean = x - model.reverse.f(t, x) * dt
    return x_mean + model.sde.g(t, x) * dt ** 0.5 * noise(x, t, t - dt), x_mean


def em(model: Model, x: Tensor, grid: Grid, callback: Hook,
       noise: NoiseSampler) -> Tensor:
    """``n_steps`` Euler-Maruyama steps of the reverse SDE on the uniform grid."""
    ts = grid.ts
    n_steps = len(ts) - 1
    if not callback.passive or not isinstance(noise, GeneratorNoise):
        return run_predictor(em_step, model, x, ts, callback, noise)
    generator = noise.generator
    seed = int(torch.randint(0, 2 ** 62, (), generator=generator, device=(
        generator.device if generator is not None else "cpu")))
    h = (float(ts[0]) - float(ts[-1])) / n_steps     # in double: exactly n_steps steps
    try:
        sol = solve_sde(model.reverse, x, ts[[0, -1]], method="euler", dt=h,
                        options={"seed": seed, "poll_every": callback.poll.every})
    except NonFiniteError as err:
        raise callback.poll.wrap(err) from err
    return sol.ys[-1]
