"""Samplers for score-based models on one front end (`frontend.sample`): it draws the prior,
builds the time grid, turns an NFE budget into steps, sets up the noise sampler, runs the
sampler, denoises and polls for non-finite states. Each sampler module is the numerical update
only, ``run(model, x, grid, callback, noise, **options) -> x``; `SAMPLERS` names them all.

- ``em``, ``reverse_diffusion``, ``ancestral``, ``pc`` (Song et al. 2021) and ``ode``
  (probability flow with any `solvers` method, fixed or adaptive, per-sample).
- ``ddim`` (eta), ``ddpm`` (respaced, fixed_small / fixed_large), ``dpmpp_2m``, ``dpmpp_2s``,
  ``dpmpp_3m``, ``dpmpp_2m_sde``, ``dpmpp_3m_sde``, ``dpmpp_2s_ancestral``, ``dpmpp_sde``,
  ``dpm_solver_3`` (singlestep DPM-Solver 1-3), ``dpm_adaptive`` (DPM-Solver-12/23),
  ``dpm_2``, ``dpm_2_ancestral``, ``lms``, ``deis``, ``unipc`` (bh1 / bh2), ``edm_heun``
  (Karras Heun, churn) and ``restart`` (Xu et al. 2023): the fast samplers, on any
  `grid.SCHEDULES` / `grid.SPACINGS` grid or a given one (``times=`` / ``sigmas=``).

Noise: ``noise=None`` (the generator), ``'indexed'`` (per sample index: batch-independent) or
``'brownian'`` (one Brownian path per sample), see `noise`. ``clip_x0`` / ``threshold`` limit
the denoiser (`x0_limits`). `ZeroTerminalSNR` rescales a VP schedule to (near-)zero terminal
SNR (Lin et al.). Guidance needs no sampler support: it is a score transform.
"""
from __future__ import annotations

from functools import partial

from .base import Callback, Sampler, StepCost
from .frontend import SamplerResult, sample, tweedie_denoise
from .grid import SCHEDULES, SPACINGS
from .noise import NOISES, BrownianNoise, GeneratorNoise, IndexedNoise, NoiseSampler
from .pc import PREDICTORS
from .registry import SAMPLERS
from .zero_snr import ZeroTerminalSNR

__all__ = ["sample", "SAMPLERS", "PREDICTORS", "SCHEDULES", "SPACINGS", "NOISES", "Sampler",
           "StepCost", "Callback", "SamplerResult", "NoiseSampler", "GeneratorNoise",
           "IndexedNoise", "BrownianNoise", "ZeroTerminalSNR", "tweedie_denoise", "em_sampler",
           "reverse_diffusion_sampler", "ancestral_sampler", "pc_sampler", "ode_sampler",
           "ddim_sampler", "dpmpp_2m_sampler", "dpmpp_2s_sampler", "edm_heun_sampler"]

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
