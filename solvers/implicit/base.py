"""`ImplicitSolver`: what the implicit methods share as `Solver` strategies.

The carried state is ``f(t, y)`` at the step's start (the first stage of the next step:
a stiffly accurate method hands on its last stage derivative, others let the next step
evaluate it), exactly what the adaptive loop's first-step heuristic reads. The Jacobian
and its counters live in the solver's `Jacobian` (rows by position; compaction is not
offered with implicit methods). Dense output is the cubic Hermite interpolant between
``(y0, f0)`` and ``(y1, f1)``. A Newton iteration that fails rejects the row's step
(error ∞, the controller shrinks h); at the smallest step (``dt_min``, time resolution,
or any fixed step) it raises `NewtonFailureError` naming the time and the row.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import torch
import torch.utils.checkpoint

from ..engine.controller import _bcast
from ..engine.solver import Solver, StepResult
from ..ode.butcher import matrix_from_polys
from ..ode.interpolation import interpolate_stages, stage_interpolant
from ..ode.rk import nested_coefficients
from .jacobian import LU, Jacobian, row_view
from .newton import NewtonFailureError

Tensor = torch.Tensor

__all__ = ["ImplicitSolver", "HermiteDense", "Settings"]


class HermiteDense:
    """Cubic Hermite dense output on the pseudo-stages ``[f0, f1, (y1 - y0)/h]`` in the
    nested basis of `ode.interpolation` (the ``dense`` matrix its functions read)."""

    def __init__(self, dtype: torch.dtype, device: torch.device) -> None:
        polys = [[0.0, 1.0, -2.0, 1.0], [0.0, 0.0, -1.0, 1.0], [0.0, 0.0, 3.0, -2.0]]
        self.dense = torch.tensor(nested_coefficients(matrix_from_polys(polys)), dtype=dtype,
                                  device=device)


class Settings:
    """A solve's options for an implicit method: tolerances (they scale Newton's norm),
    per-sample rows, whether step sizes adapt (and the smallest step), checkpointing."""

    def __init__(self, rtol: float, atol: float, per_sample: bool, adaptive: bool,
                 dt_min: float = 0.0, checkpoint: bool = False) -> None:
        self.rtol, self.atol, self.per_sample = rtol, atol, per_sample
        self.adaptive, self.dt_min, self.checkpoint = adaptive, dt_min, checkpoint


class ImplicitSolver(Solver):
    """Base of `DIRK`, `Collocation` and `Rosenbrock`; subclasses implement ``_core(terms,
    t0, h, y0, f0, J) -> (y1, error, f1 or None, failed rows)``."""

    stiffly_accurate = False

    def __init__(self, spec: Any, opts: Settings, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.spec, self.opts, self.name = spec, opts, spec.name
        self.order = spec.order
        self.error_order = spec.error_order if opts.adaptive else None
        self.interpolates = True
        self.ct = HermiteDense(dtype, device)
        self.jac = Jacobian(spec.jac, opts.per_sample)
        self.n_lu = 0
        self.nfe: Optional[Tensor] = None
        self.dense_evals = 0 if self.stiffly_accurate else 1

    def init(self, terms: Any, t0: Tensor, y0: Tensor) -> Tensor:
        """``f(t0, y0)`` (the first, validated, call of f)."""
        self._count(torch.ones((), dtype=torch.long, device=y0.device), y0)
        return terms.first_call(t0, y0)

    def step(self, terms: Any, t0: Tensor, h: Any, y0: Tensor, state: Any,
             control: Any = None, t1: Optional[Tensor] = None) -> StepResult:
        h = torch.as_tensor(h, dtype=y0.dtype, device=y0.device)
        moving = (h != 0).long()
        f0 = state
        if f0 is None:
            self._count(moving, y0)
            f0 = terms(t0, y0)
        y1, err, f1, failed = self._run(terms, t0, h, y0, f0)
        if bool(failed.any()) and not bool(self.jac.fresh(y0)[failed].all()):
            # retry once with the Jacobian at y0 before giving up on the rows
            self.jac.mark(failed)
            y1, err, f1, failed = self._run(terms, t0, h, y0, f0)
        self._check_failure(t0, h, failed)
        if bool(failed.any()):
            self.jac.mark(failed)
            fb = _bcast(failed if self.opts.per_sample else failed[0], y0)
            y1 = torch.where(fb, y0, y1)
            err = None if err is None else \
                torch.where(fb, torch.full_like(y0, float("inf")), err)
            f1 = None if f1 is None else torch.where(fb, f0, f1)
        return StepResult(y1, err, [f0, f1], f1)

    def _run(self, terms: Any, t0: Tensor, h: Tensor, y0: Tensor, f0: Tensor) -> tuple:
        """One attempt; the Jacobian is evaluated outside a checkpointed region (its
        evaluation depends on the cache, which a recomputation must not see)."""
        J = self._jacobian(terms, t0, y0, f0)
        if self.opts.checkpoint and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._core, terms, t0, h, y0, f0, J,
                                                     use_reentrant=False)
        return self._core(terms, t0, h, y0, f0, J)

    def _jacobian(self, terms: Any, t0: Tensor, y0: Tensor, f0: Tensor) -> Tensor:
        """The step's Jacobian (default: cached, refreshed after slow convergence)."""
        return self.jac.current(terms, t0, y0, f0)

    def densify(self, terms: Any, t0: Tensor, h: Tensor, y0: Tensor,
                res: StepResult) -> StepResult:
        """Complete the Hermite pseudo-stages (one call of f when f1 is not known)."""
        f0, f1 = res.dense_info[0], res.dense_info[1]
        if f1 is None:
            h = torch.as_tensor(h, dtype=y0.dtype, device=y0.device)
            self._count((h != 0).long(), y0)
            f1 = terms(t0 + h, res.y1)
        delta = (res.y1 - y0) / _bcast(_safe(h), y0)
        return res._replace(dense_info=[f0, f1, delta], state=f1)

    def interpolate(self, y0: Tensor, h: Tensor, dense_info: Any, theta: Tensor,
                    per_sample: bool) -> Tensor:
        return interpolate_stages(self.ct, y0, h, dense_info, theta, per_sample)

    def interpolant(self, y0: Tensor, h: Tensor, dense_info: Any,
                    per_sample: bool) -> Callable[[Tensor], Tensor]:
        return stage_interpolant(self.ct, y0, h, dense_info, per_sample)

    # ---------------------------------------------------------------- shared helpers

    def _count(self, n: Tensor, y0: Tensor) -> None:
        """Add per-row evaluations of f (``n``: 0-dim, or ``(R,)``)."""
        R = y0.shape[0] if self.opts.per_sample else 1
        if self.nfe is None or self.nfe.shape[0] != R:
            self.nfe = torch.zeros(R, dtype=torch.long, device=y0.device)
        self.nfe = self.nfe + n.reshape(-1)

    def _factor(self, J: Tensor, hg: Tensor) -> LU:
        self.n_lu += 1
        return LU.of(J, hg.detach())

    def _scale(self, y0: Tensor) -> Tensor:
        """Newton's norm scale per row, ``(R, n)``: ``atol + rtol |y0|``, floored where
        κ times it would fall to rounding level (``100 eps / κ`` relative to the row's
        largest component), so that tight tolerances still converge."""
        ya = row_view(y0.detach(), self.opts.per_sample).abs()
        floor = 100 * torch.finfo(ya.dtype).eps / self.spec.kappa
        scale = ya * max(self.opts.rtol, floor) + self.opts.atol
        return torch.maximum(scale, floor * ya.amax(-1, keepdim=True))

    def _check_failure(self, t0: Tensor, h: Tensor, failed: Tensor) -> None:
        """Raise when a row failed at the smallest step (every fixed step is that)."""
        if not bool(failed.any()):
            return
        hr = h.detach().abs().reshape(-1).expand(failed.shape[0])
        tr = t0.detach().reshape(-1).expand(failed.shape[0])
        if self.opts.adaptive:
            eps = torch.finfo(hr.dtype).eps
            floor = torch.clamp_min(16 * eps * tr.abs().clamp_min(1.0), self.opts.dt_min)
            hit = failed & (hr <= floor)
        else:
            hit = failed
        if not bool(hit.any()):
            return
        r = int(hit.nonzero()[0, 0])
        which = f"row {r} of {failed.shape[0]}" if self.opts.per_sample else "the joint system"
        hint = ("the step size cannot shrink further (dt_min or time resolution); check f "
                "there (non-finite values, a singularity)" if self.opts.adaptive else
                "reduce `step_size`, or use an adaptive implicit method (kvaerno5, rodas4)")
        raise NewtonFailureError(
            f"method {self.name!r}: the stage equations were not solved (Newton did not "
            f"converge, or f or the linear solve gave non-finite values) at "
            f"t={float(tr[r]):.6g} in {which} ({int(hit.sum())} rows failed) with step size "
            f"{float(hr[r]):.3g}; {hint}", t=t0.detach())

    def counters(self, row_shape: Tuple[int, ...], device: torch.device) -> dict:
        """``nfe`` per row, ``n_jac`` and ``n_lu`` (batched: every row takes part)."""
        nfe = self.nfe.reshape(row_shape) if self.nfe is not None else \
            torch.zeros(row_shape, dtype=torch.long, device=device)
        full = torch.ones(row_shape, dtype=torch.long, device=device)
        return dict(nfe=nfe, n_jac=full * self.jac.n_jac, n_lu=full * self.n_lu)


def _safe(h: Tensor) -> Tensor:
    """``h`` with zeros (finished rows' zero-length steps) replaced by 1."""
    return torch.where(h == 0, torch.ones_like(h), h)


def combine(coefs: List[float], vs: List[Tensor]) -> Optional[Tensor]:
    """Σ_j c_j v_j over the nonzero coefficients (None when all are zero)."""
    acc = None
    for c, v in zip(coefs, vs):
        if c != 0.0:
            acc = v * c if acc is None else torch.add(acc, v, alpha=c)
    return acc
