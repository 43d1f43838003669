"""sdeflow.solvers: fast, differentiable ODE/SDE solvers for PyTorch.

Numerical integration only: knows nothing about diffusion models.
"""
from .adjoint.modes import BacksolveAdjoint, CheckpointAdjoint, DirectAdjoint
from .brownian.grid import GridIncrements
from .brownian.tree import BrownianInterval
from .compiled import CompileOptions
from .divergence import DIVERGENCE_METHODS, PROBE_TYPES, divergence, sample_probes
from .engine.controller import ConstantStepSize, ErrorNorm, PIDController, StepTo
from .engine.solution import ODESolution, SDESolution, Solution, Stats
from .events.solve import Event, EventHit, EventSolution, solve_events
from .errors import (FunctionOutputError, InvalidInputError, MaxStepsExceededError,
                     NonFiniteError, SolverError, StepSizeUnderflowError)
from .ode.odeint import odeint, odeint_adjoint
from .saveat import SaveAt
from .solve import solve
from .terms import ODETerm, SDETerm
from .ode.solve import solve_ode
from .ode.butcher import ButcherTableau
from .ode.tableaus import ADAPTIVE_METHODS, FIXED_METHODS, TABLEAUS
from .implicit.methods import IMPLICIT_METHODS, ImplicitMethod, implicit_method
from .implicit.newton import NewtonFailureError
from .sde.methods import METHODS as SDE_METHODS
from .sde.solve import sdeint, sdeint_adjoint, solve_sde

__all__ = [
    "solve", "ODETerm", "SDETerm", "SaveAt",
    "odeint", "odeint_adjoint", "solve_ode", "ODESolution", "Solution", "Stats",
    "solve_events", "Event", "EventHit", "EventSolution",
    "DirectAdjoint", "CheckpointAdjoint", "BacksolveAdjoint",
    "sdeint", "sdeint_adjoint", "solve_sde", "SDESolution", "SDE_METHODS",
    "BrownianInterval", "GridIncrements",
    "PIDController", "ConstantStepSize", "StepTo", "ErrorNorm",
    "divergence", "sample_probes", "DIVERGENCE_METHODS", "PROBE_TYPES",
    "ButcherTableau", "TABLEAUS", "FIXED_METHODS", "ADAPTIVE_METHODS",
    "IMPLICIT_METHODS", "ImplicitMethod", "implicit_method",
    "CompileOptions",
    "SolverError", "InvalidInputError", "FunctionOutputError", "NonFiniteError",
    "StepSizeUnderflowError", "MaxStepsExceededError", "NewtonFailureError",
]
