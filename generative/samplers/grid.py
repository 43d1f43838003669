"""Time grids of the samplers, decreasing from ``T`` to the end time ``eps``.

A `Grid` holds the times and the schedule on them (``alpha``, ``sigma``, ``log_snr``), 1-D
tensors of the state's dtype and device. The SDE samplers (em, reverse_diffusion, ancestral,
pc) and ``ode`` step uniformly in t (`uniform_grid`); the fast samplers (ddim, dpm-solver,
edm) take a named ``schedule`` of `schedule_grid`, which needs a finite log-SNR everywhere.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from dynamics import GaussianPath
from dynamics.checks import check_choice

from ..errors import InputError

Tensor = torch.Tensor

__all__ = ["Grid", "SCHEDULES", "end_time", "uniform_grid", "schedule_grid"]

#: uniform in t, uniform in log-SNR, uniform in sqrt(t) (DPM-Solver's "time_quadratic") and
#: Karras et al.'s rho-schedule of sigma/alpha
SCHEDULES = ("time", "logsnr", "time_quadratic", "karras")


class Grid(NamedTuple):
    """Decreasing times ``ts`` (``n_steps + 1``) and ``alpha, sigma, log_snr`` on them."""
    ts: Tensor
    alpha: Tensor
    sigma: Tensor
    log_snr: Tensor


def end_time(sde: GaussianPath, eps: Optional[float]) -> float:
    """The grid's end: ``eps`` (default ``sde.eps``), checked ``0 <= eps < T``."""
    end = sde.eps if eps is None else float(eps)
    if not (0.0 <= end < sde.T):
        raise InputError(f"`eps` must satisfy 0 <= eps < T = {sde.T:g}; got {eps!r}")
    return end


def _on(sde: GaussianPath, ts: Tensor, lam: Tensor, x: Tensor) -> Grid:
    to = dict(dtype=x.dtype, device=x.device)
    return Grid(ts.to(**to), sde.alpha(ts).to(**to), sde.sigma(ts).to(**to), lam.to(**to))


def uniform_grid(sde: GaussianPath, n_steps: int, x: Tensor, eps: Optional[float] = None) -> Grid:
    """``n_steps + 1`` equally spaced times from ``sde.T`` down to ``eps``, in x's dtype."""
    ts = torch.linspace(sde.T, end_time(sde, eps), n_steps + 1, dtype=x.dtype, device=x.device)
    return _on(sde, ts, sde.log_snr(ts), x)


def schedule_grid(sde: GaussianPath, n_steps: int, x: Tensor, eps: Optional[float] = None,
                  schedule: str = "time", rho: float = 7.0) -> Grid:
    """The ``schedule`` grid (computed in float64): ``'time'`` (uniform t), ``'logsnr'``
    (uniform log-SNR), ``'time_quadratic'`` (uniform sqrt(t)) or ``'karras'`` (``sigma/alpha``
    on Karras' grid with exponent ``rho``). One host sync checks that ``sigma > 0`` and that
    log-SNR increases strictly along the grid.
    """
    check_choice("schedule", schedule, SCHEDULES)
    end = end_time(sde, eps)
    if not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho > 0):
        raise InputError(f"`rho` must be a finite number > 0; got {rho!r}")
    f64 = dict(dtype=torch.float64, device=x.device)
    T, u = torch.tensor(sde.T, **f64), torch.linspace(0.0, 1.0, n_steps + 1, **f64)
    lam_T, lam_0 = sde.log_snr(T), sde.log_snr(torch.tensor(end, **f64))
    if not bool(torch.isfinite(lam_0)):
        raise InputError(
            f"the fast samplers need sigma(eps) > 0 (finite log-SNR) at the end time eps = "
            f"{end:g}; {type(sde).__name__} has sigma({end:g}) = {float(sde.sigma(end)):g}. "
            f"Give eps > 0")
    if schedule == "time":
        ts = sde.T + u * (end - sde.T)
    elif schedule == "time_quadratic":
        ts = (math.sqrt(sde.T) + u * (math.sqrt(end) - math.sqrt(sde.T))) ** 2
    else:
        if schedule == "logsnr":
            lam = lam_T + u * (lam_0 - lam_T)
        else:   # Karras: sigma/alpha = exp(-lam/2) uniform in its 1/rho power
            hi, lo = torch.exp(-lam_T / (2 * rho)), torch.exp(-lam_0 / (2 * rho))
            lam = -2.0 * rho * torch.log(hi + u * (lo - hi))
        ts = sde.t_from_log_snr(lam)
    ts = ts.clone()
    ts[0], ts[-1] = sde.T, end                      # exact end points
    lam = sde.log_snr(ts)
    if not bool(torch.isfinite(lam).all() & (lam[1:] > lam[:-1]).all()):
        raise InputError(
            f"the {schedule!r} grid of n_steps = {n_steps} from T = {sde.T:g} to eps = {end:g} "
            f"does not have strictly increasing finite log-SNR for {type(sde).__name__}")
    return _on(sde, ts, lam, x)
