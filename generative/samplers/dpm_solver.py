"""DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models"), second order, data-prediction form, for any `dynamics` SDE, written
with the schedule accessors only.

With ``lambda = log(alpha / sigma)`` (half the log-SNR), ``h = lambda_next - lambda`` and the
data prediction ``D = (x + sigma^2 score) / alpha``, the probability-flow ODE is solved exactly
in its linear part:

    x_next = (sigma_next / sigma) x - alpha_next * expm1(-h) * D_hat

- ``dpmpp_2m_sampler`` (multistep, Algorithm 2): ``D_hat = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}``
  with ``r = h_{i-1} / h_i``; the first step is first order (DDIM). One NFE per step.
- ``dpmpp_2s_sampler`` (singlestep, Algorithm 1 with ``r = 1/2``): an intermediate DDIM step
  to ``lambda + h/2`` and ``D_hat = D(u, s)`` there. Two NFE per step.

Time discretisations (``schedule``): ``'logsnr'`` (uniform lambda, the paper's default for
low-resolution data), ``'time'`` (uniform t), ``'time_quadratic'`` and ``'karras'``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ._common import (FinitePoll, Project, Result, apply_project, check_project, check_sde,
                      check_steps, initial_state, tweedie_denoise)
from .ddim import data_prediction, fast_grid

__all__ = ["dpmpp_2m_sampler", "dpmpp_2s_sampler"]


def dpmpp_2m_sampler(sde, score_fn, shape: Optional[Sequence[int]] = None, *,
                     n_steps: int = 20, schedule: str = "logsnr", eps: Optional[float] = None,
                     denoise: bool = False, x_init: Optional[torch.Tensor] = None,
                     generator: Optional[torch.Generator] = None, dtype=None,
                     device=None, project: Optional[Project] = None,
                     poll_every: Optional[int] = None) -> Result:
    """DPM-Solver++(2M) from T to eps: ``n_steps`` steps, ``nfe = n_steps (+1 if denoise)``;
    ``project(x, t)`` is applied after every step; a non-finite state raises `NonFiniteError`
    (checked every ``poll_every`` steps)."""
    check_sde(sde, score_fn)
    check_project(project)
    n_steps = check_steps("n_steps", n_steps)
    x = initial_state(sde, shape, x_init, generator, dtype, device)
    ts, a, s, lam = fast_grid(sde, n_steps, x, eps, schedule)
    lam = lam / 2                                             # lambda = log(alpha / sigma)
    poll = FinitePoll("dpmpp_2m", ts, x, poll_every)
    x = apply_project(project, x, ts[0])
    d_prev = h_prev = None
    for i in range(n_steps):
        d = data_prediction(score_fn, x, ts[i], a[i], s[i])
        h = lam[i + 1] - lam[i]
        d_hat = d if d_prev is None else d + (d - d_prev) * (h / (2 * h_prev))
        x = (s[i + 1] / s[i]) * x - a[i + 1] * torch.expm1(-h) * d_hat
        x = apply_project(project, x, ts[i + 1])
        poll(i, x, i + 1)
        d_prev, h_prev = d, h
    if denoise:
        return poll.final(tweedie_denoise(sde, score_fn, x, ts[-1]), ts[-1], n_steps + 1), \
            n_steps + 1
    return x, n_steps


def dpmpp_2s_sampler(sde, score_fn, shape: Optional[Sequence[int]] = None, *,
                     n_steps: int = 10, schedule: str = "logsnr", eps: Optional[float] = None,
                     denoise: bool = False, x_init: Optional[torch.Tensor] = None,
                     generator: Optional[torch.Generator] = None, dtype=None,
                     device=None, project: Optional[Project] = None,
                     poll_every: Optional[int] = None) -> Result:
    """DPM-Solver++(2S) from T to eps: ``n_steps`` steps of two score evaluations each (the
    midpoint in lambda), ``nfe = 2 n_steps (+1 if denoise)``; ``project(x, t)`` is applied
    after every step; a non-finite state raises `NonFiniteError` (checked every
    ``poll_every`` steps)."""
    check_sde(sde, score_fn)
    check_project(project)
    n_steps = check_steps("n_steps", n_steps)
    x = initial_state(sde, shape, x_init, generator, dtype, device)
    ts, a, s, lam = fast_grid(sde, n_steps, x, eps, schedule)
    # midpoints in log-SNR and their times, alphas and sigmas (before the loop: no host syncs)
    lam_mid = (lam[:-1] + lam[1:]) / 2
    t_mid = sde.t_from_log_snr(lam_mid.double()).to(x)
    a_mid, s_mid = sde.alpha(t_mid).to(x), sde.sigma(t_mid).to(x)
    lam = lam / 2
    poll = FinitePoll("dpmpp_2s", ts, x, poll_every)
    x = apply_project(project, x, ts[0])
    for i in range(n_steps):
        h = lam[i + 1] - lam[i]
        d = data_prediction(score_fn, x, ts[i], a[i], s[i])
        u = (s_mid[i] / s[i]) * x - a_mid[i] * torch.expm1(-h / 2) * d
        d_mid = data_prediction(score_fn, u, t_mid[i], a_mid[i], s_mid[i])
        x = (s[i + 1] / s[i]) * x - a[i + 1] * torch.expm1(-h) * d_mid
        x = apply_project(project, x, ts[i + 1])
        poll(i, x, 2 * (i + 1))
    if denoise:
        return poll.final(tweedie_denoise(sde, score_fn, x, ts[-1]), ts[-1],
                          2 * n_steps + 1), 2 * n_steps + 1
    return x, 2 * n_steps
