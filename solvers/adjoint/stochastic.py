"""Stochastic adjoint (Li et al. 2020) for SDEs, replaying the forward Brownian path.

The forward solve runs without a graph and keeps only the outputs, the step grid and its
noise source (the chunked sampler regenerates its increments; a Brownian tree is simply
re-queried). The backward pass integrates the augmented Stratonovich SDE for
``(y, a = ∂L/∂y, a_θ)`` from the last output time to the first over the *same* grid with
the same increments (negated for the reversed direction):

    dy   =  f_s dt + g ∘ dW,    da = -a ∂(f_s dt + g ∘ dW)/∂y,    da_θ = -a ∂(f_s dt + g ∘ dW)/∂θ

where ``f_s`` is the Stratonovich drift (``f - ½ Σ_j (∂g_j/∂y) g_j`` for Itô SDEs). Each
stage costs one ``f``/``g`` evaluation and one vector-Jacobian product. Methods for the
backward solve: ``midpoint`` or ``heun`` (any noise), ``euler`` (additive noise only,
where Itô and Stratonovich agree). With ``method='reversible_heun'`` the default backward
pass inverts the reversible Heun steps algebraically and back-propagates through each
step locally, which gives the gradient of the discretised forward pass exactly (up to
rounding).
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import torch

from ..errors import InvalidInputError
from ..sde.methods import euler_step, heun_step, midpoint_step, reversible_heun_inverse, \
    reversible_heun_step
from ..sde.solver import SDEPath, SDESolver
from ..sde.terms import SDETerms, ito_correction

Tensor = torch.Tensor

__all__ = ["stochastic_adjoint", "ADJOINT_METHODS"]

ADJOINT_METHODS = ("midpoint", "heun", "euler", "reversible_heun")
_STEPS = {"midpoint": midpoint_step, "heun": heun_step, "euler": euler_step}


class AdjointTerms:
    """The augmented SDE on a flat state ``[y, a, a_θ]``, exposing ``incr``/``advance`` like
    `SDETerms` so the generic Stratonovich steps integrate it."""

    def __init__(self, terms: SDETerms, y_shape: torch.Size, params: Sequence[Tensor]) -> None:
        self.terms = terms
        self.y_shape = y_shape
        self.ny = math.prod(y_shape)
        self.params = tuple(params)
        self.correct = terms.sde_type == "ito" and terms.noise_type != "additive"

    def incr(self, t: Tensor, z: Tensor, h: float, v: Tensor) -> Tensor:
        ny, terms = self.ny, self.terms
        y = z[:ny].view(self.y_shape)
        a = z[ny:2 * ny].view(self.y_shape)
        with torch.enable_grad():
            y_ = y.detach().requires_grad_(True)
            if self.correct:
                f, g = terms.f_and_g(t, y_)
                f = f - 0.5 * ito_correction(g, y_, terms.noise_type, create_graph=True)
                out = terms.add_prod(f * h, g, v)
            else:
                out = terms.incr(t, y_, h, v)
            grads = _vjp((out,), (y_,) + self.params, (a,))
        parts = [out.detach().reshape(-1)]
        for g_, ref in zip(grads, (y_,) + self.params):
            parts.append(torch.zeros(ref.numel(), dtype=z.dtype, device=z.device) if g_ is None
                         else -g_.reshape(-1))
        return torch.cat(parts)

    def advance(self, base: Tensor, t: Tensor, z: Tensor, h: float, v: Tensor,
                scale: float = 1.0) -> Tensor:
        return torch.add(base, self.incr(t, z, h, v), alpha=scale)


def _vjp(outputs: Sequence[Tensor], inputs: Sequence[Tensor],
         cotangents: Sequence[Tensor]) -> Tuple[Optional[Tensor], ...]:
    """``Σ cotangentᵀ ∂output/∂input`` for each input, None where an input is unused.
    Outputs without a graph (f or g constant in y and the parameters) contribute nothing."""
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if o.requires_grad]
    if not pairs:
        return (None,) * len(inputs)
    return torch.autograd.grad([o for o, _ in pairs], inputs, [c for _, c in pairs],
                               allow_unused=True)


def _flat(xs: Sequence[Tensor]) -> Tensor:
    return torch.cat([x.reshape(-1) for x in xs])


def _backward_generic(solver: SDESolver, path: SDEPath, step, params: Tuple[Tensor, ...],
                      ys: Tensor, grad_ys: Tensor) -> Tuple[Tensor, List[Tensor]]:
    aterms = AdjointTerms(solver.terms, ys.shape[1:], params)
    ny = aterms.ny
    times, save, noise, tgrid = path.times, path.save, path.noise, path.tgrid
    out_i = len(solver.ts_list) - 1
    z = _flat([ys[-1], torch.zeros_like(ys[-1])] + [torch.zeros_like(p) for p in params])
    for k in reversed(range(len(times) - 1)):
        if save[k]:
            z[:ny] = ys[out_i].reshape(-1)
            z[ny:2 * ny] += grad_ys[out_i].reshape(-1)
            out_i -= 1
        dw, lev = noise.get(k)
        z, _ = step(aterms, tgrid[k + 1], times[k] - times[k + 1], z, (-dw, lev), ())
    grad_y0 = (z[ny:2 * ny] + grad_ys[0].reshape(-1)).view(ys.shape[1:])
    grads, off = [], 2 * ny
    for p in params:
        grads.append(z[off:off + p.numel()].view_as(p))
        off += p.numel()
    return grad_y0, grads


def _backward_reversible_heun(solver: SDESolver, path: SDEPath, params: Tuple[Tensor, ...],
                              y0: Tensor, ys: Tensor, grad_ys: Tensor
                              ) -> Tuple[Tensor, List[Tensor]]:
    terms = solver.terms
    times, save, noise, tgrid = path.times, path.save, path.noise, path.tgrid
    out_i = len(solver.ts_list) - 1
    y, extra = ys[-1], path.final_extra
    adj = [torch.zeros_like(y)] + [torch.zeros_like(e) for e in extra]   # (a_y, a_z, a_f, a_g)
    a_params = [torch.zeros_like(p) for p in params]

    def accumulate(grads: Sequence[Optional[Tensor]], n_state: int) -> None:
        for i, g_ in enumerate(grads[n_state:]):
            if g_ is not None:
                a_params[i] = a_params[i] + g_

    for k in reversed(range(len(times) - 1)):
        if save[k]:
            adj[0] = adj[0] + grad_ys[out_i]
            out_i -= 1
        nz = noise.get(k)
        t, h = tgrid[k], times[k + 1] - times[k]
        y_prev, extra_prev = reversible_heun_inverse(terms, t, h, y, nz, extra)
        with torch.enable_grad():
            leaves = [x.detach().requires_grad_(True) for x in (y_prev, *extra_prev)]
            y1, extra1 = reversible_heun_step(terms, t, h, leaves[0], nz, tuple(leaves[1:]))
            grads = _vjp((y1, *extra1), tuple(leaves) + params, adj)
        adj = [torch.zeros_like(leaves[i]) if grads[i] is None else grads[i] for i in range(4)]
        accumulate(grads, 4)
        y, extra = y_prev, extra_prev
    a_y, a_z, a_f, a_g = adj
    with torch.enable_grad():
        y_ = y0.detach().requires_grad_(True)
        f0, g0 = terms.f_and_g(solver.t0, y_)
        grads = _vjp((f0, g0), (y_,) + params, (a_f, a_g))
    accumulate(grads, 1)
    grad_y0 = a_y + grad_ys[0] + a_z + (0 if grads[0] is None else grads[0])
    return grad_y0, a_params


class _SDEAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, solver: SDESolver, adjoint_method: str, y0: Tensor, *params: Tensor) -> Tensor:
        y0 = y0.detach()
        with torch.no_grad():
            ys, path = solver.run(y0)
        ctx.solver, ctx.path, ctx.adjoint_method, ctx.n_params = (solver, path, adjoint_method,
                                                                  len(params))
        ctx.save_for_backward(y0, ys, *params)
        return ys

    @staticmethod
    def backward(ctx, grad_ys: Tensor):
        y0, ys, *params = ctx.saved_tensors
        solver, path, params = ctx.solver, ctx.path, tuple(params)
        with torch.no_grad():
            if path is None:  # nothing was integrated: ys is y0 at every output time
                grad_y0, grads = grad_ys.sum(0), [torch.zeros_like(p) for p in params]
            elif ctx.adjoint_method == "reversible_heun":
                grad_y0, grads = _backward_reversible_heun(solver, path, params, y0, ys,
                                                           grad_ys)
            else:
                grad_y0, grads = _backward_generic(solver, path, _STEPS[ctx.adjoint_method],
                                                   params, ys, grad_ys)
        return (None, None, grad_y0, *grads)


def _default_adjoint_method(method: str, noise_type: str) -> str:
    if method == "reversible_heun":
        return "reversible_heun"
    return "euler" if noise_type == "additive" else "midpoint"


def stochastic_adjoint(solver: SDESolver, sde: Any, y0: Tensor, method: Optional[str],
                       adjoint_params: Optional[Sequence[Tensor]]) -> Tensor:
    """The outputs of ``solver`` from ``y0``, differentiated by the stochastic adjoint.

    ``method`` (None: ``reversible_heun`` after ``reversible_heun``, ``euler`` for additive
    noise, ``midpoint`` otherwise) integrates the backward pass over the forward grid with
    the same Brownian increments. Gradients flow to ``y0`` and ``adjoint_params`` (default:
    the parameters of ``sde`` when it is an ``nn.Module``)."""
    nt = solver.terms.noise_type
    adj = method or _default_adjoint_method(solver.method.name, nt)
    valid = ["midpoint", "heun"] + (["euler"] if nt == "additive" else []) + (
        ["reversible_heun"] if solver.method.name == "reversible_heun" else [])
    if adj not in valid:
        raise InvalidInputError(
            f"`adjoint_method` for method={solver.method.name!r} and noise_type={nt!r} must be "
            f"one of {valid}; got {adj!r}")
    if adjoint_params is None:
        params = tuple(p for p in sde.parameters() if p.requires_grad) \
            if isinstance(sde, torch.nn.Module) else ()
    else:
        params = tuple(adjoint_params)
        if not all(isinstance(p, torch.Tensor) for p in params):
            raise InvalidInputError(
                f"`adjoint_params` must be a sequence of tensors; got "
                f"{[type(p).__name__ for p in params]}")
    return _SDEAdjoint.apply(solver, adj, y0, *params)
