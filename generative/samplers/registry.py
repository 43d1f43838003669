"""The samplers by name: each one's update, grid, default steps and cost."""
from __future__ import annotations

from typing import Dict

from . import (ancestral, ddim, ddpm, deis, dpm2, dpm_adaptive, dpm_solver, dpm_solver_single,
               dpmpp_multistep, dpmpp_sde, edm, em, lms, ode, pc, restart, reverse_diffusion, unipc)
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
    "dpmpp_3m": Sampler(dpmpp_multistep.dpmpp_3m, n_steps=20, grid="schedule",
                        schedule="logsnr"),
    "dpmpp_2m_sde": Sampler(dpmpp_multistep.dpmpp_2m_sde, n_steps=20, grid="schedule",
                            schedule="karras"),
    "dpmpp_3m_sde": Sampler(dpmpp_multistep.dpmpp_3m_sde, n_steps=20, grid="schedule",
                            schedule="karras"),
    "dpmpp_2s_ancestral": Sampler(dpmpp_sde.dpmpp_2s_ancestral, n_steps=10, grid="schedule",
                                  schedule="karras", cost=per_step(2)),
    "dpmpp_sde": Sampler(dpmpp_sde.dpmpp_sde, n_steps=10, grid="schedule", schedule="karras",
                         cost=per_step(2), noise="brownian"),
    "dpm_2": Sampler(dpm2.dpm_2, n_steps=10, grid="schedule", schedule="karras",
                     cost=per_step(2)),
    "dpm_2_ancestral": Sampler(dpm2.dpm_2_ancestral, n_steps=10, grid="schedule",
                               schedule="karras", cost=per_step(2)),
    "lms": Sampler(lms.lms, n_steps=20, grid="schedule", schedule="karras"),
    "dpm_solver_3": Sampler(dpm_solver_single.dpm_solver_3, n_steps=7, grid="schedule",
                            schedule="logsnr", cost=dpm_solver_single.cost),
    "dpm_adaptive": Sampler(dpm_adaptive.dpm_adaptive, n_steps=None, grid="schedule",
                            schedule="logsnr", cost=dpm_adaptive.cost),
    "unipc": Sampler(unipc.unipc, n_steps=10, grid="schedule", schedule="logsnr"),
    "deis": Sampler(deis.deis, n_steps=10, grid="schedule", schedule="logsnr"),
    "ddpm": Sampler(ddpm.ddpm, n_steps=100, grid="schedule", schedule="time"),
    "restart": Sampler(restart.restart, n_steps=18, grid="schedule", schedule="karras",
                       cost=restart.cost),
}
