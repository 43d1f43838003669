"""Samplers for score-based models on one front end (`frontend.sample`): it draws the prior,
builds the time grid, turns an NFE budget into steps, runs the sampler, denoises and polls for
non-finite states. Each sampler module is the numerical update only,
``run(model, x, grid, callback, generator, **options) -> x``.

- ``em``: Euler-Maruyama on the reverse SDE (`solvers.solve_sde`, decreasing times).
- ``reverse_diffusion``: the reverse-diffusion predictor from ``sde.discretize``.
- ``ancestral``: DDPM (VP) / SMLD (VE) ancestral sampling.
- ``pc``: predictor + Langevin corrector (``snr``, ``n_corrector``), Song et al. 2021.
- ``ode``: probability-flow ODE with any `solvers` method, fixed or adaptive, per-sample.
- ``ddim`` (eta >= 0), ``edm_heun`` (Karras Heun, rho = 7, optional churn), ``dpmpp_2m`` and
  ``dpmpp_2s`` (DPM-Solver++ second order): the fast samplers, schedule accessors only.

Guidance needs no sampler support: it is a score transform.
"""
from __future__ import annotations

from functools import partial

from .base import Callback, Sampler, StepCost
from .frontend import sample, tweedie_denoise
from .grid import SCHEDULES
from .pc import PREDICTORS
from .registry import SAMPLERS

__all__ = ["sample", "SAMPLERS", "PREDICTORS", "SCHEDULES", "Sampler", "StepCost", "Callback",
           "tweedie_denoise", "em_sampler", "reverse_diffusion_sampler", "ancestral_sampler",
           "pc_sampler", "ode_sampler", "ddim_sampler", "dpmpp_2m_sampler", "dpmpp_2s_sampler",
           "edm_heun_sampler"]

# `sample` with the sampler bound, as ``generative`` exports them
em_sampler = partial(sample, "em")
reverse_diffusion_sampler = partial(sample, "reverse_diffusion")
ancestral_sampler = partial(sample, "ancestral")
pc_sampler = partial(sample, "pc")
ode_sampler = partial(sample, "ode")
ddim_sampler = partial(sample, "ddim")
dpmpp_2m_sampler = partial(sample, "dpmpp_2m")
dpmpp_2s_sampler = partial(sample, "dpmpp_2s")
edm_heun_sampler = partial(sample, "edm_heun")
