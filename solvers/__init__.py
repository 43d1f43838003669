"""sdeflow.solvers: fast, differentiable ODE/SDE solvers for PyTorch.

Numerical integration only: knows nothing about diffusion models.
"""
from .controller import ErrorNorm, PIDController
from .divergence import DIVERGENCE_METHODS, PROBE_TYPES, divergence, sample_probes
from .errors import (FunctionOutputError, InvalidInputError, MaxStepsExceededError,
                     NonFiniteError, SolverError, StepSizeUnderflowError)
from .adjoint import odeint_adjoint
from .brownian import BrownianInterval, GridIncrements
from .ode import ODESolution, odeint, solve_ode
from .sde import SDESolution, sdeint, solve_sde
from .sde_adjoint import sdeint_adjoint
from .sde_steps import METHODS as SDE_METHODS
from .tableaus import ADAPTIVE_METHODS, FIXED_METHODS, TABLEAUS, ButcherTableau

__all__ = [
    "odeint", "odeint_adjoint", "solve_ode", "ODESolution",
    "sdeint", "sdeint_adjoint", "solve_sde", "SDESolution", "SDE_METHODS",
    "BrownianInterval", "GridIncrements",
    "PIDController", "ErrorNorm",
    "divergence", "sample_probes", "DIVERGENCE_METHODS", "PROBE_TYPES",
    "ButcherTableau", "TABLEAUS", "FIXED_METHODS", "ADAPTIVE_METHODS",
    "SolverError", "InvalidInputError", "FunctionOutputError", "NonFiniteError",
    "StepSizeUnderflowError", "MaxStepsExceededError",
]
