"""Samplers for score-based models: one short module per sampler, each a function
``sampler(sde, score_fn, shape, ...) -> (samples, nfe)`` over a `dynamics` SDE and a score
``score_fn(x, t)`` (t a ``(B,)`` tensor). `sample` dispatches by name and converts an NFE
budget (score evaluations) into steps.

- ``em``: Euler-Maruyama on the reverse SDE (`solvers.solve_sde`, decreasing times).
- ``reverse_diffusion``: the reverse-diffusion predictor from ``sde.discretize``.
- ``ancestral``: DDPM (VP) / SMLD (VE) ancestral sampling.
- ``pc``: predictor + Langevin corrector (``snr``, ``n_corrector``), Song et al. 2021.
- ``ode``: probability-flow ODE with any `solvers` method, fixed or adaptive, per-sample.
- ``ddim`` (eta >= 0), ``edm_heun`` (Karras Heun, rho = 7, optional churn), ``dpmpp_2m`` and
  ``dpmpp_2s`` (DPM-Solver++ second order): the fast samplers, schedule accessors only.

``denoise=True`` ends every sampler with one Tweedie step at eps (one extra NFE, no noise).
Every sampler but ``ode`` takes ``project(x, t)``, applied after each step (`_common`; used by
inpainting by replacement). Guidance needs no sampler support: it is a score transform.
"""
from __future__ import annotations

from typing import Optional, Sequence

from solvers.errors import InvalidInputError

from ._common import tweedie_denoise
from .ancestral import ancestral_sampler
from .ddim import NFE_PER_STEP, ddim_sampler
from .dpm_solver import dpmpp_2m_sampler, dpmpp_2s_sampler
from .edm import edm_heun_sampler
from .em import em_sampler
from .ode import ode_sampler, ode_stages
from .pc import PREDICTORS, pc_sampler
from .reverse_diffusion import reverse_diffusion_sampler

__all__ = ["sample", "SAMPLERS", "PREDICTORS", "em_sampler", "reverse_diffusion_sampler",
           "ancestral_sampler", "pc_sampler", "ode_sampler", "tweedie_denoise",
           "ddim_sampler", "dpmpp_2m_sampler", "dpmpp_2s_sampler", "edm_heun_sampler"]

SAMPLERS = {
    "em": em_sampler,
    "reverse_diffusion": reverse_diffusion_sampler,
    "ancestral": ancestral_sampler,
    "pc": pc_sampler,
    "ode": ode_sampler,
    "ddim": ddim_sampler,
    "dpmpp_2m": dpmpp_2m_sampler,
    "dpmpp_2s": dpmpp_2s_sampler,
    "edm_heun": edm_heun_sampler,
}


def _steps_from_nfe(name: str, nfe: int, kwargs: dict) -> int:
    """Largest number of steps whose score evaluations fit in the budget ``nfe``."""
    budget = nfe - (1 if kwargs.get("denoise", False) else 0) - (1 if name == "em" else 0)
    if name == "pc":
        predictor = kwargs.get("predictor", "reverse_diffusion")
        per = int(kwargs.get("n_corrector", 1)) + (predictor != "none")
    elif name == "ode":
        per = ode_stages(kwargs.get("method", "dopri5"))
    else:                  # em: the solver spends one extra call checking f's output shape
        per = NFE_PER_STEP.get(name, 1)
    if budget < per:
        raise InvalidInputError(
            f"`nfe` = {nfe} is too small for sampler {name!r}: one step needs {per} score "
            f"evaluation(s){' plus 1 for denoise' if kwargs.get('denoise') else ''}")
    return budget // per


def sample(name: str, sde, score_fn, shape: Optional[Sequence[int]] = None, *,
           nfe: Optional[int] = None, **kwargs):
    """Run sampler ``name`` (one of `SAMPLERS`); returns ``(samples, nfe_used)``.

    ``nfe`` (optional) is a budget of score evaluations turned into ``n_steps`` (for ``ode``
    it makes the solve fixed-step); otherwise pass ``n_steps`` or the sampler's own options
    (see each sampler). Unknown names or ``nfe < 1`` raise `InvalidInputError`.
    """
    if name not in SAMPLERS:
        raise InvalidInputError(f"unknown sampler {name!r}; valid samplers: "
                                f"{', '.join(sorted(SAMPLERS))}")
    if nfe is not None:
        if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
            raise InvalidInputError(f"`nfe` must be an integer >= 1 (score evaluations); "
                                    f"got {nfe!r}")
        if "n_steps" in kwargs:
            raise InvalidInputError("give either `nfe` or `n_steps`, not both")
        kwargs["n_steps"] = _steps_from_nfe(name, nfe, kwargs)
    return SAMPLERS[name](sde, score_fn, shape, **kwargs)
