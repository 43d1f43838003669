"""Time grids of the samplers, decreasing from ``T`` to the end time ``t_min``.

A `Grid` holds the times and the schedule on them (``alpha``, ``sigma``, ``log_snr``), 1-D
tensors of the state's dtype and device. The SDE samplers (em, reverse_diffusion, ancestral,
pc) and ``ode`` step uniformly in t (`uniform_grid`); the fast samplers (ddim, dpm-solver,
edm, ...) take a named ``schedule`` of `schedule_grid`, which needs a finite log-SNR everywhere.
Any sampler also takes a user-given grid (`given_grid`: decreasing ``times``, or decreasing
noise levels ``sigmas`` = sigma/alpha, k-diffusion's convention, optionally ending in 0 for a
final denoising step) and diffusers' discrete timestep spacings (`spacing_grid`).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Tuple

import torch

from dynamics import GaussianPath
from dynamics.checks import check_choice
from solvers.errors import describe

from ..errors import InputError

Tensor = torch.Tensor

__all__ = ["Grid", "SCHEDULES", "SPACINGS", "end_time", "uniform_grid", "schedule_grid",
           "given_grid", "spacing_grid", "check_log_snr"]

#: uniform in t, uniform in log-SNR, uniform in sqrt(t) (DPM-Solver's "time_quadratic") and
#: Karras et al.'s rho-schedule of sigma/alpha
SCHEDULES = ("time", "logsnr", "time_quadratic", "karras")
#: diffusers' ``timestep_spacing`` over ``num_train_timesteps`` discrete steps (`spacing_grid`)
SPACINGS = ("leading", "trailing", "linspace")


class Grid(NamedTuple):
    """Decreasing times ``ts`` (``n_steps + 1``) and ``alpha, sigma, log_snr`` on them."""
    ts: Tensor
    alpha: Tensor
    sigma: Tensor
    log_snr: Tensor


def end_time(sde: GaussianPath, t_min: Optional[float]) -> float:
    """The grid's end: ``t_min`` (default ``sde.t_min``), checked ``0 <= t_min < T``."""
    end = sde.t_min if t_min is None else float(t_min)
    if not (0.0 <= end < sde.T):
        raise InputError(f"`t_min` must satisfy 0 <= t_min < T = {sde.T:g}; got {t_min!r}")
    return end


def _on(sde: GaussianPath, ts: Tensor, lam: Tensor, x: Tensor) -> Grid:
    to = dict(dtype=x.dtype, device=x.device)
    return Grid(ts.to(**to), sde.alpha(ts).to(**to), sde.sigma(ts).to(**to), lam.to(**to))


def uniform_grid(sde: GaussianPath, n_steps: int, x: Tensor,
                 t_min: Optional[float] = None) -> Grid:
    """``n_steps + 1`` equally spaced times from ``sde.T`` down to ``t_min``, in x's dtype."""
    ts = torch.linspace(sde.T, end_time(sde, t_min), n_steps + 1, dtype=x.dtype,
                        device=x.device)
    return _on(sde, ts, sde.log_snr(ts), x)


def schedule_grid(sde: GaussianPath, n_steps: int, x: Tensor, t_min: Optional[float] = None,
                  schedule: str = "time", rho: float = 7.0) -> Grid:
    """The ``schedule`` grid (computed in float64): ``'time'`` (uniform t), ``'logsnr'``
    (uniform log-SNR), ``'time_quadratic'`` (uniform sqrt(t)) or ``'karras'`` (``sigma/alpha``
    on Karras' grid with exponent ``rho``). One host sync checks that ``sigma > 0`` and that
    log-SNR increases strictly along the grid.
    """
    check_choice("schedule", schedule, SCHEDULES)
    end = end_time(sde, t_min)
    if not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho > 0):
        raise InputError(f"`rho` must be a finite number > 0; got {rho!r}")
    f64 = dict(dtype=torch.float64, device=x.device)
    T, u = torch.tensor(sde.T, **f64), torch.linspace(0.0, 1.0, n_steps + 1, **f64)
    lam_T, lam_0 = sde.log_snr(T), sde.log_snr(torch.tensor(end, **f64))
    if not bool(torch.isfinite(lam_0)):
        raise InputError(
            f"the fast samplers need sigma(t_min) > 0 (finite log-SNR) at the end time "
            f"t_min = {end:g}; {type(sde).__name__} has sigma({end:g}) = "
            f"{float(sde.sigma(end)):g}. Give t_min > 0")
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
    return _on(sde, ts, check_log_snr(sde, ts, f"the {schedule!r} grid of n_steps = {n_steps}"),
               x)


def check_log_snr(sde: GaussianPath, ts: Tensor, what: str) -> Tensor:
    """``sde.log_snr(ts)``, checked finite and strictly increasing (one host sync)."""
    lam = sde.log_snr(ts)
    if not bool(torch.isfinite(lam).all() & (lam[1:] > lam[:-1]).all()):
        raise InputError(
            f"{what} from t = {float(ts[0]):g} to {float(ts[-1]):g} does not have strictly "
            f"increasing finite log-SNR for {type(sde).__name__} (the fast samplers need "
            f"sigma > 0 and alpha > 0 at every grid time)")
    return lam


def _as_1d(name: str, v: Any) -> Tensor:
    try:
        out = torch.as_tensor(v, dtype=torch.float64).cpu()
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"`{name}` must be a 1-D sequence of numbers; got {describe(v)}") \
            from None
    if out.dim() != 1 or len(out) < 2 or not bool(torch.isfinite(out).all()):
        raise InputError(f"`{name}` must be a 1-D sequence of at least 2 finite numbers; got "
                         f"{describe(v)}")
    return out


def given_grid(sde: GaussianPath, x: Tensor, times: Any = None, sigmas: Any = None,
               need_log_snr: bool = True) -> Tuple[Grid, bool]:
    """The grid of user-given strictly decreasing ``times`` in ``[0, T]``, or noise levels
    ``sigmas`` (``sigma/alpha``, mapped to times by ``t_from_log_snr``); a final 0 in
    ``sigmas`` means a final denoising step to sigma = 0 (returned as the flag). Computed in
    float64; ``need_log_snr``: check finite increasing log-SNR (the fast samplers)."""
    if (times is None) == (sigmas is None):
        raise InputError("give one of `times` or `sigmas`, not both")
    name = "times" if sigmas is None else "sigmas"
    v = _as_1d(name, times if sigmas is None else sigmas)
    final_zero = sigmas is not None and float(v[-1]) == 0.0
    if final_zero:
        v = v[:-1]
        if len(v) < 2:
            raise InputError("`sigmas` needs at least 2 noise levels > 0 before a final 0")
    if not bool((v[1:] < v[:-1]).all()) or float(v[-1]) < 0:
        raise InputError(f"`{name}` must be strictly decreasing and >= 0"
                         + (" (only the last may be 0)" if sigmas is not None else "")
                         + f"; got {describe(times if sigmas is None else sigmas)}")
    ts = v.to(x.device) if sigmas is None else \
        sde.t_from_log_snr(-2.0 * torch.log(v.to(x.device)))
    if float(ts[0]) > sde.T * (1 + 1e-9) or (sigmas is not None and float(v[-1]) == 0):
        raise InputError(f"`{name}` must lie in the SDE's range: t <= T = {sde.T:g}"
                         + (f", sigma/alpha <= {float(sde.sigma(sde.T) / sde.alpha(sde.T)):g}"
                            f" and > 0 before the final 0" if sigmas is not None else "")
                         + f"; got {describe(times if sigmas is None else sigmas)}")
    lam = check_log_snr(sde, ts, f"the `{name}` grid") if need_log_snr else sde.log_snr(ts)
    return _on(sde, ts, lam, x), final_zero


def spacing_grid(sde: GaussianPath, n_steps: int, x: Tensor, spacing: str,
                 num_train_timesteps: int = 1000, steps_offset: int = 0) -> Grid:
    """diffusers' ``timestep_spacing`` (``'leading'``, ``'trailing'``, ``'linspace'``): the
    ``n_steps + 1`` discrete timesteps ``k`` of a ``num_train_timesteps``-step model that
    diffusers' schedulers visit with ``num_inference_steps = n_steps + 1``, at the times
    ``t_k = (k + 1) T / num_train_timesteps`` (the VP SDE's discretisation of DDPM; k = 0 is
    t = t_min = 1e-3 for the defaults). ``leading``
    starts below T (its known flaw, Lin et al. 2023). With ``denoise=True`` (diffusers' last
    step, to alpha-bar = 1) the NFE is diffusers' ``num_inference_steps``."""
    check_choice("spacing", spacing, SPACINGS)
    N, m = num_train_timesteps, n_steps + 1         # diffusers' num_inference_steps
    if not (isinstance(N, int) and m <= N):
        raise InputError(f"`n_steps` + 1 must be <= num_train_timesteps = {N!r} for the "
                         f"{spacing!r} spacing; got n_steps = {n_steps}")
    if spacing == "linspace":
        k = torch.linspace(0, N - 1, m, dtype=torch.float64).round().flip(0)
    elif spacing == "leading":
        k = (torch.arange(m, dtype=torch.float64) * (N // m)).round().flip(0) + steps_offset
    else:
        k = torch.round(torch.arange(float(N), 0.0, -N / m, dtype=torch.float64)) - 1
    ts = ((k + 1) * (sde.T / N)).to(x.device)
    return _on(sde, ts, check_log_snr(sde, ts, f"the {spacing!r} spacing"), x)
