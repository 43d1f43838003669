"""Step-size controllers: `ConstantStepSize`, `StepTo` (a given grid) and the adaptive
`PIDController`, with the error norm and the initial step of adaptive methods.

The fixed controllers produce the step grid up front (`grid`). Adaptive control works on
tensors without host syncs and is never differentiated (the solvers pass detached
quantities). Shapes: in joint mode norms and step sizes are
0-dim tensors; in per-sample mode they have shape ``(B,)``, one per batch row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import torch

from ..errors import InvalidInputError, describe
from ..validation import check_bool, check_positive, check_times, check_tolerances, is_real

Tensor = torch.Tensor

__all__ = ["PIDController", "ConstantStepSize", "StepTo", "ErrorNorm", "initial_step_size",
           "StepSizeController"]


class ErrorNorm:
    """Root-mean-square norm of a (scaled) state.

    Joint mode reduces over the whole tensor (as torchdiffeq does); per-sample mode
    reduces over each row's event dimensions, giving shape ``(B,)``. When the state is
    the concatenation of several tensors (tuple states), ``segments`` lists the flat
    sizes of the parts and the norm is the maximum of the parts' RMS norms
    (torchdiffeq's mixed norm).
    """

    def __init__(self, per_sample: bool, segments: Optional[Sequence[int]] = None) -> None:
        self.per_sample = check_bool("per_sample", per_sample, "ErrorNorm: ")
        self.segments = list(segments) if segments is not None and len(segments) > 1 else None
        # empty parts (a tuple state with a 0-size tensor) have no RMS: leave them out
        self.used = None if self.segments is None or all(self.segments) else \
            [i for i, n in enumerate(self.segments) if n > 0]

    def __call__(self, x: Tensor) -> Tensor:
        if self.per_sample and x.dim() == 0:
            raise InvalidInputError(
                f"ErrorNorm: per-sample mode needs a state of shape (B, ...); got {describe(x)}")
        x = x.reshape(x.shape[0], -1) if self.per_sample else x.reshape(-1)
        if self.segments is None:
            return _rms(x)
        parts = torch.split(x, self.segments, dim=-1)
        if self.used is not None:
            parts = [parts[i] for i in self.used]
        return torch.stack([_rms(p) for p in parts], dim=-1).amax(dim=-1)


def _rms(x: Tensor) -> Tensor:
    return x.square().mean(dim=-1).sqrt()


@dataclass(frozen=True)
class PIDController:
    """PID step-size controller (Söderlind 2003; the parametrisation diffrax uses).

    With error ratios r_n (<= 1 means accept) and k = error order + 1, the step factor is
    ``safety * r_n^(-(p+i+d)/k) * r_{n-1}^((p+2d)/k) * r_{n-2}^(-d/k)`` clipped to
    ``[factor_min, factor_max]``; after a rejection the factor is at most ``safety``. The default
    ``pcoeff=0, icoeff=1, dcoeff=0`` is the classic integral controller of torchdiffeq.
    Step sizes are clipped to ``[dt_min, dt_max]`` in magnitude; ``force_dt_min`` accepts a
    step at ``dt_min`` whatever its error (the SDE default, as diffrax's option) instead of
    failing there. ``rtol``, ``atol`` and the error ``norm``, when given, replace the solve's
    ``rtol``, ``atol`` and ``error_norm`` arguments (`solve` reads them only from here).
    """

    pcoeff: float = 0.0
    icoeff: float = 1.0
    dcoeff: float = 0.0
    safety: float = 0.9
    factor_min: float = 0.2
    factor_max: float = 10.0
    dt_min: float = 0.0
    dt_max: float = math.inf
    force_dt_min: bool = False
    rtol: Optional[float] = None
    atol: Optional[float] = None
    norm: Optional[Callable[[Tensor], Tensor]] = None

    def __post_init__(self) -> None:
        if (self.rtol is None) != (self.atol is None):
            raise InvalidInputError("PIDController: give both `rtol` and `atol` or neither; got "
                                    f"rtol={self.rtol!r}, atol={self.atol!r}")
        if self.rtol is not None:
            r, a = check_tolerances(self.rtol, self.atol)
            object.__setattr__(self, "rtol", r)
            object.__setattr__(self, "atol", a)
        if self.norm is not None and not callable(self.norm):
            raise InvalidInputError(f"PIDController: `norm` must be callable; got "
                                    f"{describe(self.norm)}")
        for name in ("pcoeff", "icoeff", "dcoeff", "safety", "factor_min", "factor_max",
                     "dt_min", "dt_max"):
            v = getattr(self, name)
            if not is_real(v) or math.isnan(v):
                raise InvalidInputError(
                    f"PIDController: `{name}` must be a real number; got {describe(v)}")
        for name in ("pcoeff", "icoeff", "dcoeff", "safety", "factor_min", "dt_min"):
            if not math.isfinite(getattr(self, name)):
                raise InvalidInputError(
                    f"PIDController: `{name}` must be finite; got {getattr(self, name)!r}")
        checks = [
            ("safety", 0 < self.safety <= 1, "a number in (0, 1]"),
            ("factor_min", 0 < self.factor_min <= 1, "a number in (0, 1]"),
            ("factor_max", self.factor_max >= 1, "a number >= 1"),
            ("dt_min", self.dt_min >= 0, "a number >= 0"),
            ("dt_max", self.dt_max > self.dt_min, "a number > dt_min"),
            ("icoeff", self.pcoeff + self.icoeff + self.dcoeff > 0,
             "coefficients with pcoeff + icoeff + dcoeff > 0"),
        ]
        check_bool("force_dt_min", self.force_dt_min, "PIDController: ")
        for name, ok, expected in checks:
            if not ok:
                raise InvalidInputError(
                    f"PIDController: `{name}` must be {expected}; got {getattr(self, name)!r}")

    @property
    def uses_history(self) -> bool:
        return self.pcoeff != 0.0 or self.dcoeff != 0.0

    def init_history(self, like: Tensor) -> Tuple[Tensor, Tensor]:
        """Previous two error ratios, initialised to 1 (neutral)."""
        one = torch.ones_like(like)
        return one, one

    def propose(self, h: Tensor, ratio: Tensor, history: Tuple[Tensor, Tensor],
                error_order: int) -> Tuple[Tensor, Tensor, Tuple[Tensor, Tensor]]:
        """Decide acceptance and the next step size.

        Args:
            h: the step just attempted (signed), detached.
            ratio: its error ratio (non-finite means reject), detached.
            history: previous two accepted ratios (from `init_history`).
            error_order: order of the embedded error estimate.
        Returns:
            ``(accept, h_next, new_history)``.
        """
        # NaN means a failed step: treat it as an infinite error (reject, shrink maximally).
        r = torch.nan_to_num(ratio, nan=math.inf).clamp_min(1e-10)
        accept = r <= 1.0
        if self.force_dt_min:
            accept = accept | (h.abs() <= self.dt_min * (1 + 1e-9))
        k = float(error_order + 1)
        beta1 = (self.pcoeff + self.icoeff + self.dcoeff) / k
        factor = r.pow(-beta1).mul_(self.safety)
        if self.uses_history:
            r1, r2 = history
            beta2 = -(self.pcoeff + 2 * self.dcoeff) / k
            beta3 = self.dcoeff / k
            factor = factor * r1.pow(-beta2) * r2.pow(-beta3)
            history = (torch.where(accept, r, r1), torch.where(accept, r1, r2))
            factor = factor.clamp(self.factor_min, self.factor_max)
            # after a rejection shrink by at least `safety` (as diffrax): the history is not
            # updated on rejection, so a factor of 1 would retry the same step forever
            factor = torch.where(accept, factor, factor.clamp_max(self.safety))
        else:
            # integral control: a rejected step (r > 1) already has factor < safety <= 1
            factor = factor.clamp(self.factor_min, self.factor_max)
        h_next = h * factor
        if self.dt_max < math.inf or self.dt_min > 0:
            h_next = torch.sign(h) * h_next.abs().clamp(self.dt_min, self.dt_max)
        return accept, h_next, history


@dataclass(frozen=True)
class ConstantStepSize:
    """Steps of size ``dt`` from the first output time; the last step is shortened to end
    on the final one. Outputs between steps come from the method's dense output."""

    dt: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "dt", check_positive("dt", self.dt, "ConstantStepSize: "))

    def grid(self, t: Tensor, direction: float) -> Tensor:
        """The step times from ``t[0]`` to ``t[-1]`` (differentiable in both ends)."""
        t0, t1 = t[0], t[-1]
        span = float((t1 - t0).abs().detach())
        ratio = span / self.dt
        # a span that is a whole number of steps up to the times' rounding takes that many
        # (float32 times: 0.1 is 0.10000000149, one step of 0.1 and not two)
        slack = max(1e-9, 8 * torch.finfo(t.dtype).eps * ratio)
        n = max(1, int(math.ceil(ratio - slack)))
        k = torch.arange(n + 1, dtype=t.dtype, device=t.device)
        grid = t0 + direction * self.dt * k
        return torch.cat([grid[:-1], t1.reshape(1)])


class StepTo:
    """Steps exactly on the given times ``ts``, which run from the first output time to the
    last (outputs between them come from the dense output)."""

    def __init__(self, ts: Any) -> None:
        self.ts = ts

    def grid(self, t: Tensor, direction: float) -> Tensor:
        if self.ts is t:
            return t
        ts, _, d = check_times(self.ts, t.dtype, t.device, "StepTo.ts")
        if ts.shape[0] < 2 or d != direction or not bool(
                (ts[0] == t[0]) & (ts[-1] == t[-1])):
            raise InvalidInputError(
                f"`StepTo.ts` must run from t[0]={float(t[0]):.6g} to t[-1]={float(t[-1]):.6g} "
                f"in the direction of t; got {describe(self.ts)}")
        return ts

    def __repr__(self) -> str:
        return f"StepTo({describe(self.ts)})"


StepSizeController = Union[PIDController, ConstantStepSize, StepTo]


def initial_step_size(func: Callable[[Tensor, Tensor], Tensor], t0: Tensor, y0: Tensor,
                      f0: Tensor, direction: float, order: int, rtol: float, atol: float,
                      norm: ErrorNorm) -> Tensor:
    """Hairer, Nørsett & Wanner's starting step (Solving ODEs I, II.4), sync-free.

    Uses the book's exponent 1/(p+1) with p the method order (the solvers pass
    ``tab.order``); torchdiffeq and scipy pass the embedded order instead, which gives a
    larger first step. Costs one evaluation of ``func``. Returns |h0| (0-dim, or ``(B,)``
    per sample).
    """
    scale = atol + rtol * y0.abs()
    d0 = norm(y0 / scale)
    d1 = norm(f0 / scale)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = torch.where(small, torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp_min(1e-30))
    h0b = _bcast(h0, y0)
    y1 = y0 + direction * h0b * f0
    f1 = func(t0 + direction * h0, y1)
    d2 = norm((f1 - f0) / scale) / h0
    dmax = torch.maximum(d1, d2)
    h1 = torch.where(dmax <= 1e-15, torch.clamp_min(h0 * 1e-3, 1e-6),
                     (0.01 / dmax.clamp_min(1e-30)).pow(1.0 / (order + 1)))
    return torch.minimum(100 * h0, h1)


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-row ``(B,)`` tensor to broadcast against ``like`` (0-dim unchanged)."""
    if v.dim() == 0:
        return v
    return v.reshape(v.shape[0], *([1] * (like.dim() - 1)))
