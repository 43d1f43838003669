"""The samplers by name: each one's update, grid, default steps and cost."""
from __future__ import annotations

from typing import Dict

from . import ancestral, ddim, dpm_solver, edm, em, ode, pc, reverse_diffusion
from .base import Sampler, per_step

__all__ = ["SAMPLERS"]

SAMPLERS: Dict[str, Sampler] = {
    "em": Sampler(em.em, n_steps=500, cost=em.cost),
    "reverse_diffusion": Sampler(reverse_diffusion.reverse_diffusion, n_steps=500),
    "ancestral": Sampler(ancestral.ancestral, n_steps=500),
    "pc": Sampler(pc.pc, n_steps=500, cost=pc.cost),
    "ode": Sampler(ode.ode, n_steps=None, cost=ode.cost),
    "ddim": Sampler(ddim.ddim, n_steps=50, grid="schedule", schedule="time"),
    "dpmpp_2m": Sampler(dpm_solver.dpmpp_2m, n_steps=20, grid="schedule", schedule="logsnr"),
    "dpmpp_2s": Sampler(dpm_solver.dpmpp_2s, n_steps=10, grid="schedule", schedule="logsnr",
                        cost=per_step(2)),
    "edm_heun": Sampler(edm.edm_heun, n_steps=18, grid="schedule", schedule="karras",
                        cost=per_step(2)),
}
