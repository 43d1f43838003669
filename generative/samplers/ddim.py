"""DDIM (Song, Meng & Ermon 2021) for any `dynamics` SDE, written with the schedule accessors
only (``alpha``, ``sigma``, ``log_snr``, ``t_from_log_snr``), plus the pieces the other fast
samplers (`edm`, `dpm_solver`) share: the data prediction and the time discretisations.

Every linear SDE has a Gaussian kernel ``x_t = alpha(t) x0 + sigma(t) z``, so the score gives
the data prediction ``x0_hat = (x + sigma^2 score) / alpha`` and the noise prediction
``eps_hat = (x - alpha x0_hat) / sigma``. One DDIM step from t to s < t is

    x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
    c   = eta * sigma_s * sqrt(1 - exp(log_snr(t) - log_snr(s)))

(``c`` is eta times the std of the posterior ``q(x_s | x_t, x0)``): ``eta = 0`` is the
deterministic DDIM step, i.e. the exact exponential integrator of the probability-flow ODE with
x0_hat frozen over the step (first order, = DPM-Solver++(1)); ``eta = 1`` is DDPM's ancestral
step. The samplers need ``sigma > 0`` on the whole grid (``eps > 0`` for VP, sub-VP, cosine and
EDM, where ``sigma(0) = 0``); otherwise they raise `InvalidInputError`.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

from dynamics import call_score
from solvers.errors import InvalidInputError

from ._common import (FinitePoll, Project, Result, apply_project, check_project, check_sde,
                      check_steps, initial_state, noise, tweedie_denoise)

__all__ = ["ddim_sampler", "fast_grid", "data_prediction", "SCHEDULES", "NFE_PER_STEP"]

#: score evaluations per step of each fast sampler (for turning an NFE budget into steps)
NFE_PER_STEP = {"ddim": 1, "dpmpp_2m": 1, "dpmpp_2s": 2, "edm_heun": 2}

Tensor = torch.Tensor

#: time discretisations of the fast samplers: uniform in t, uniform in log-SNR, uniform in
#: sqrt(t) (DPM-Solver's "time_quadratic") and Karras et al.'s rho-schedule of sigma/alpha.
SCHEDULES = ("time", "logsnr", "time_quadratic", "karras")


def fast_grid(sde, n_steps: int, x: Tensor, eps: Optional[float] = None,
              schedule: str = "time", rho: float = 7.0) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Decreasing times ``ts`` (``n_steps + 1``, from ``sde.T`` to ``eps``, default ``sde.eps``)
    and ``alpha(ts), sigma(ts), log_snr(ts)``; 1-D tensors of x's dtype and device.

    ``schedule``: ``'time'`` (uniform t), ``'logsnr'`` (uniform log-SNR), ``'time_quadratic'``
    (uniform sqrt(t)) or ``'karras'`` (``sigma/alpha`` on Karras' grid with exponent ``rho``).
    One host sync checks that ``sigma > 0`` and that log-SNR increases strictly along the grid.
    """
    if schedule not in SCHEDULES:
        raise InvalidInputError(f"`schedule` must be one of {SCHEDULES}; got {schedule!r}")
    end = sde.eps if eps is None else float(eps)
    if not (0.0 <= end < sde.T):
        raise InvalidInputError(f"`eps` must satisfy 0 <= eps < T = {sde.T:g}; got {eps!r}")
    if not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho > 0):
        raise InvalidInputError(f"`rho` must be a finite number > 0; got {rho!r}")
    f64 = dict(dtype=torch.float64, device=x.device)
    T, u = torch.tensor(sde.T, **f64), torch.linspace(0.0, 1.0, n_steps + 1, **f64)
    lam_T, lam_0 = sde.log_snr(T), sde.log_snr(torch.tensor(end, **f64))
    if not bool(torch.isfinite(lam_0)):
        raise InvalidInputError(
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
        raise InvalidInputError(
            f"the {schedule!r} grid of n_steps = {n_steps} from T = {sde.T:g} to eps = {end:g} "
            f"does not have strictly increasing finite log-SNR for {type(sde).__name__}")
    to = dict(dtype=x.dtype, device=x.device)
    return ts.to(**to), sde.alpha(ts).to(**to), sde.sigma(ts).to(**to), lam.to(**to)


def data_prediction(score_fn, x: Tensor, t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """``x0_hat = (x + sigma^2 score(x, t)) / alpha`` (Tweedie) at one time ``t``."""
    return (x + sigma ** 2 * call_score(score_fn, x, t)) / alpha


def ddim_sampler(sde, score_fn, shape: Optional[Sequence[int]] = None, *, n_steps: int = 50,
                 eta: float = 0.0, schedule: str = "time", eps: Optional[float] = None,
                 denoise: bool = False, x_init: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None, dtype=None, device=None,
                 project: Optional[Project] = None,
                 poll_every: Optional[int] = None) -> Result:
    """DDIM from T to eps in ``n_steps`` steps (one score evaluation each).

    ``eta = 0`` is deterministic, ``0 < eta <= 1`` adds posterior noise (``eta = 1``: DDPM).
    ``schedule`` picks the grid (see `fast_grid`; default uniform in time, as in DDIM).
    ``project(x, t)`` is applied after every step. ``nfe = n_steps (+1 if denoise)``.
    A non-finite state raises `NonFiniteError` (checked every ``poll_every`` steps).
    """
    check_sde(sde, score_fn)
    check_project(project)
    n_steps = check_steps("n_steps", n_steps)
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not (0 <= eta <= 1):
        raise InvalidInputError(f"`eta` must be a number in [0, 1]; got {eta!r}")
    x = initial_state(sde, shape, x_init, generator, dtype, device)
    ts, a, s, lam = fast_grid(sde, n_steps, x, eps, schedule)
    poll = FinitePoll("ddim", ts, x, poll_every)
    x = apply_project(project, x, ts[0])
    for i in range(n_steps):
        x0 = data_prediction(score_fn, x, ts[i], a[i], s[i])
        e = (x - a[i] * x0) / s[i]
        c = eta * s[i + 1] * torch.sqrt(-torch.expm1(lam[i] - lam[i + 1]))
        x = a[i + 1] * x0 + torch.sqrt(s[i + 1] ** 2 - c ** 2) * e
        if eta > 0:
            x = x + c * noise(x, generator)
        x = apply_project(project, x, ts[i + 1])
        poll(i, x, i + 1)
    if denoise:
        return poll.final(tweedie_denoise(sde, score_fn, x, ts[-1]), ts[-1], n_steps + 1), \
            n_steps + 1
    return x, n_steps
