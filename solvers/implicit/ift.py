"""Gradients of converged stage equations by the implicit function theorem.

A stage solves ``G(z; θ) = 0`` (θ: the step's inputs — the state, earlier stages, h, t and
whatever parameters f closes over). Newton runs without a graph; the returned stage is

    z = z* + L(-G(z*; θ)),    z* detached,

where ``L`` is an autograd function whose value is zero (so ``z`` equals the converged
``z*``) and whose backward pass is one linear solve with the transposed Jacobian
``(∂G/∂z)ᵀ`` at ``z*``. Autograd then carries ``-(∂G/∂z)⁻ᵀ g`` through the single graph of
``G(z*; θ)`` to every input: ``dz/dθ = -(∂G/∂z)⁻¹ ∂G/∂θ``, and no Newton iteration is ever
differentiated.
"""
from __future__ import annotations

from typing import Callable

import torch

Tensor = torch.Tensor

__all__ = ["implicit_stage"]


class _TransposedSolve(torch.autograd.Function):
    """Value 0; backward: ``(∂G/∂z)⁻ᵀ g`` with ``solve_t`` built lazily (the exact Jacobian
    at the converged stage is only evaluated when a gradient is asked for)."""

    @staticmethod
    def forward(ctx, r: Tensor, make_solve_t: Callable[[], Callable[[Tensor], Tensor]]
                ) -> Tensor:
        ctx.make_solve_t = make_solve_t
        return torch.zeros_like(r)

    @staticmethod
    def backward(ctx, g: Tensor):
        with torch.no_grad():
            return ctx.make_solve_t()(g), None


def implicit_stage(z_star: Tensor, residual: Callable[[Tensor], Tensor],
                   make_solve_t: Callable[[], Callable[[Tensor], Tensor]]) -> Tensor:
    """The converged stage ``z_star`` with implicit-function gradients: ``residual(z)`` is
    ``G(z; θ)`` built with the graph of θ, ``make_solve_t()`` returns ``v -> (∂G/∂z)⁻ᵀ v``
    at ``z_star``. Without grad mode (or inputs needing grad) ``z_star`` is returned."""
    z0 = z_star.detach()
    if not torch.is_grad_enabled():
        return z0
    r = residual(z0)
    if not r.requires_grad:
        return z0
    return z0 + _TransposedSolve.apply(-r, make_solve_t)
