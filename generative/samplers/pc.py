"""Predictor-corrector sampling (Song et al. 2021, Alg. 2/3): at every time on the grid from T
down to t_min, ``n_corrector`` Langevin corrector steps with the signal-to-noise step rule
(`dynamics.langevin_corrector`), then one predictor step (``reverse_diffusion``, ``ancestral``,
``em`` or ``none``)."""
from __future__ import annotations

from typing import Any, Dict

import torch

from dynamics import VPSDE, CosineVPSDE, langevin_step, snr_step_size
from dynamics.checks import check_choice

from ..errors import InputError
from .ancestral import ancestral_step, check_ancestral
from .base import Hook, Model, StepCost, check_steps
from .em import em_step
from .grid import Grid
from .noise import NoiseSampler
from .reverse_diffusion import check_discretization, reverse_diffusion_step

Tensor = torch.Tensor

__all__ = ["pc", "PREDICTORS", "cost"]

PREDICTORS = {"reverse_diffusion": reverse_diffusion_step, "ancestral": ancestral_step,
              "em": em_step, "none": None}


def cost(options: Dict[str, Any]) -> StepCost:
    """``n_corrector`` Langevin steps plus one predictor step (none for ``'none'``)."""
    predictor = options.get("predictor", "reverse_diffusion")
    return StepCost(int(options.get("n_corrector", 1)) + (predictor != "none"))


def pc(model: Model, x: Tensor, grid: Grid, callback: Hook,
       noise: NoiseSampler, *, predictor: str = "reverse_diffusion",
       n_corrector: int = 1, snr: float = 0.16) -> Tensor:
    """PC steps on the uniform grid. The corrector at time t uses ``alpha = 1 - beta_n`` for
    VP SDEs (as the reference code) and 1 otherwise."""
    sde = model.sde
    check_choice("predictor", predictor, sorted(PREDICTORS))
    if predictor == "ancestral":
        check_ancestral(sde)
    n_corrector = check_steps("n_corrector", n_corrector, minimum=0)
    step = PREDICTORS[predictor]
    if step is None and n_corrector == 0:
        raise InputError("`pc` with predictor='none' needs `n_corrector` >= 1")
    ts = grid.ts
    check_discretization(sde, x, ts)
    vp = isinstance(sde, (VPSDE, CosineVPSDE))
    for i in range(len(ts) - 1):
        t, dt = ts[i], ts[i] - ts[i + 1]
        alpha = 1.0 - sde.discretize(x[:1], t, dt)[1].flatten()[0] ** 2 if vp else 1.0
        for _ in range(n_corrector):       # dynamics.langevin_corrector's steps, our noise
            s, z = model.score(x, t), noise(x, t, t)
            x = langevin_step(x, s, snr_step_size(s, z, snr, alpha), noise=z)
        if step is not None:
            x, _ = step(model, x, t, dt, noise)
        x = callback(i + 1, ts[i + 1], x)
    return x
