"""DDIM (Song, Meng & Ermon 2021) for any `dynamics` SDE, written with the schedule accessors
only (``alpha``, ``sigma``, ``log_snr``, ``t_from_log_snr``).

Every linear SDE has a Gaussian kernel ``x_t = alpha(t) x0 + sigma(t) z``, so the score gives
the data prediction ``x0_hat = (x + sigma^2 score) / alpha`` and the noise prediction
``eps_hat = (x - alpha x0_hat) / sigma``. One DDIM step from t to s < t is

    x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
    c   = eta * sigma_s * sqrt(1 - exp(log_snr(t) - log_snr(s)))

(``c`` is eta times the std of the posterior ``q(x_s | x_t, x0)``): ``eta = 0`` is the
deterministic DDIM step, i.e. the exact exponential integrator of the probability-flow ODE with
x0_hat frozen over the step (first order, = DPM-Solver++(1)); ``eta = 1`` is DDPM's ancestral
step. The samplers need ``sigma > 0`` on the whole grid (``t_min > 0`` for VP, sub-VP, cosine and
EDM, where ``sigma(0) = 0``); otherwise `grid.schedule_grid` raises `generative.errors.InputError`.
"""
from __future__ import annotations


import torch


from ..errors import InputError
from .base import Hook, Model
from .noise import NoiseSampler
from .grid import Grid

Tensor = torch.Tensor

__all__ = ["ddim"]


def ddim(model: Model, x: Tensor, grid: Grid, callback: Hook,
         noise: NoiseSampler, *, eta: float = 0.0) -> Tensor:
    """DDIM steps (one score evaluation each); ``eta = 0`` is deterministic, ``0 < eta <= 1``
    adds posterior noise (``eta = 1``: DDPM)."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not (0 <= eta <= 1):
        raise InputError(f"`eta` must be a number in [0, 1]; got {eta!r}")
    ts, a, s, lam = grid
    for i in range(len(ts) - 1):
        x0 = model.denoised(x, ts[i], a[i], s[i])
        e = (x - a[i] * x0) / s[i]
        c = eta * s[i + 1] * torch.sqrt(-torch.expm1(lam[i] - lam[i + 1]))
        x = a[i + 1] * x0 + torch.sqrt(s[i + 1] ** 2 - c ** 2) * e
        if eta > 0:
            x = x + c * noise(x, ts[i], ts[i + 1])
        x = callback(i + 1, ts[i + 1], x, x0)
    return x
