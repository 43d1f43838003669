"""Continuous-time processes for generative modelling: forward SDEs, reverse SDEs, probability
flows.

Linear SDEs with analytic kernels (`VESDE`, `VPSDE`, `SubVPSDE`, `CosineVPSDE`, `EDMSDE`), their
reverse-time SDEs and probability-flow ODEs, score parameterisations, Langevin dynamics, guidance,
flow-matching paths and the `GaussianMixture` oracle. Depends on `solvers`, never on `generative`.
"""
from .base import LinearSDE
from .broadcast import broadcast_time, call_score
from .guidance import (ClassifierFreeGuidance, ClassifierGuidance, cfg_combine, classifier_grad,
                       inpaint_project, reconstruction_log_prob_fn)
from .langevin import annealed_langevin, langevin_corrector, langevin_step, snr_step_size
from .mixture import GaussianMixture
from .parameterization import (PREDICTIONS, ScoreAdapter, eps_from_score, from_score,
                               score_from_eps, score_from_v, score_from_x0, to_score,
                               v_from_score, x0_from_score)
from .paths import AlphaSigmaPath, CosinePath, InterpolationPath, LinearPath, SDEPath
from .reverse import ProbabilityFlowODE, ReverseSDE
from .sdes import EDMSDE, VESDE, VPSDE, CosineVPSDE, SubVPSDE

__all__ = [
    # SDEs
    "LinearSDE", "VESDE", "VPSDE", "SubVPSDE", "CosineVPSDE", "EDMSDE",
    "ReverseSDE", "ProbabilityFlowODE", "broadcast_time", "call_score",
    # parameterisations
    "PREDICTIONS", "ScoreAdapter", "to_score", "from_score", "score_from_eps", "score_from_x0",
    "score_from_v", "eps_from_score", "x0_from_score", "v_from_score",
    # Langevin
    "langevin_step", "snr_step_size", "langevin_corrector", "annealed_langevin",
    # guidance
    "ClassifierGuidance", "ClassifierFreeGuidance", "cfg_combine", "classifier_grad",
    "inpaint_project", "reconstruction_log_prob_fn",
    # paths
    "InterpolationPath", "LinearPath", "CosinePath", "AlphaSigmaPath", "SDEPath",
    # oracle
    "GaussianMixture",
]
