"""Continuous-time processes for generative modelling: forward SDEs, reverse SDEs, probability
flows.

One `GaussianPath` protocol (alpha, sigma, their derivatives, log-SNR) implemented by the linear
SDEs with analytic kernels (`VESDE`, `VPSDE`, `SubVPSDE`, `CosineVPSDE`, `EDMSDE`), their
reverse-time SDEs and probability-flow ODEs, score parameterisations, Langevin dynamics, guidance,
flow-matching paths and the `GaussianMixture` oracle. Depends on `solvers`, never on `generative`.
Every error it raises on purpose is a `DynamicsError` (bad arguments: `InputError`, also a
`solvers.InvalidInputError` and a ``ValueError``).
"""
from .base import LinearSDE, PathSDE
from .gaussian_path import GaussianPath
from .broadcast import broadcast_time, call_score
from .guidance import (ClassifierFreeGuidance, ClassifierGuidance, cfg_combine, classifier_grad,
                       inpaint_project, reconstruction_log_prob_fn)
from .langevin import annealed_langevin, langevin_corrector, langevin_step, snr_step_size
from .mixture import GaussianMixture
from .errors import DynamicsError, InputError
from .parameterization import (PREDICTIONS, ScoreAdapter, check_prediction, convert, from_score,
                               to_score, tweedie)
from .paths import AlphaSigmaPath, CosinePath, LinearPath
from .reverse import ProbabilityFlowODE, ReverseSDE
from .sdes import EDMSDE, VESDE, VPSDE, CosineVPSDE, SubVPSDE

__all__ = [
    # Gaussian paths and SDEs
    "GaussianPath", "LinearSDE", "PathSDE", "VESDE", "VPSDE", "SubVPSDE", "CosineVPSDE", "EDMSDE",
    "ReverseSDE", "ProbabilityFlowODE", "broadcast_time", "call_score",
    # errors
    "DynamicsError", "InputError",
    # parameterisations
    "PREDICTIONS", "check_prediction", "ScoreAdapter", "convert", "to_score", "from_score",
    "tweedie",
    # Langevin
    "langevin_step", "snr_step_size", "langevin_corrector", "annealed_langevin",
    # guidance
    "ClassifierGuidance", "ClassifierFreeGuidance", "cfg_combine", "classifier_grad",
    "inpaint_project", "reconstruction_log_prob_fn",
    # paths
    "LinearPath", "CosinePath", "AlphaSigmaPath",
    # oracle
    "GaussianMixture",
]
