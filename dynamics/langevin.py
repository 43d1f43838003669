"""Langevin dynamics: one unadjusted Langevin step, the predictor-corrector step-size rule from a
target signal-to-noise ratio (Song et al. 2021), and annealed Langevin dynamics (NCSN, Song &
Ermon 2019).

The Langevin step is ``x' = x + h score(x) + sqrt(2 h) z``; its stationary law is p up to an
O(h) discretisation bias (for ``N(m, s^2)`` it is ``N(m, s^2 / (1 - h / (2 s^2)))``).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch

from solvers.errors import describe

from .errors import InputError
from .broadcast import ScoreFn, TimeLike, call_score, expand_coef
from .checks import check_positive

Tensor = torch.Tensor
Step = Union[float, Tensor]

__all__ = ["langevin_step", "snr_step_size", "langevin_corrector", "annealed_langevin"]


def _noise_like(x: Tensor, noise: Optional[Tensor], generator: Optional[torch.Generator]) -> Tensor:
    if noise is None:
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    if noise.shape != x.shape:
        raise InputError(f"`noise` must have x's shape {tuple(x.shape)}; "
                         f"got {describe(noise)}")
    return noise


def langevin_step(x: Tensor, score: Tensor, step: Step, noise: Optional[Tensor] = None,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """``x + step * score + sqrt(2 step) z``.

    ``score`` is the score evaluated at ``x`` (x's shape); ``step`` a positive number, a 0-dim
    or a ``(B,)`` tensor (per-sample step sizes); ``noise`` optional fixed ``z``.
    """
    if score.shape != x.shape:
        raise InputError(f"`score` must have x's shape {tuple(x.shape)}; "
                         f"got {describe(score)}")
    z = _noise_like(x, noise, generator)
    if isinstance(step, Tensor):
        h = expand_coef(step.to(dtype=x.dtype, device=x.device), x)
        return x + h * score + torch.sqrt(2.0 * h) * z
    h = check_positive("step", step)
    return x + h * score + math.sqrt(2.0 * h) * z


def snr_step_size(score: Tensor, noise: Tensor, snr: float, alpha: Step = 1.0,
                  per_sample: bool = False) -> Tensor:
    """Corrector step size ``2 alpha (snr ||z|| / ||score||)^2`` (Song et al. 2021, Alg. 4/5).

    Norms are over each row's event dims and, as in the reference, averaged over the batch
    (0-dim result); ``per_sample=True`` gives one step per row, shape ``(B,)``. ``alpha`` is 1
    for VE and ``1 - beta_n`` for VP.
    """
    snr = check_positive("snr", snr)
    if score.shape != noise.shape:
        raise InputError(f"`noise` must have score's shape {tuple(score.shape)}; "
                         f"got {describe(noise)}")
    B = score.shape[0]
    g = torch.linalg.vector_norm(score.reshape(B, -1), dim=-1)
    z = torch.linalg.vector_norm(noise.reshape(B, -1), dim=-1)
    if not per_sample:
        g, z = g.mean(), z.mean()
    return 2.0 * alpha * (snr * z / g) ** 2


def langevin_corrector(score_fn: ScoreFn, x: Tensor, t: TimeLike, snr: float, n_steps: int = 1,
                       alpha: Step = 1.0, per_sample: bool = False,
                       generator: Optional[torch.Generator] = None) -> Tensor:
    """``n_steps`` Langevin corrector steps at time t with the `snr_step_size` rule."""
    if int(n_steps) != n_steps or n_steps < 0:
        raise InputError(f"`n_steps` must be an integer >= 0; got {n_steps!r}")
    for _ in range(int(n_steps)):
        s = call_score(score_fn, x, t)
        z = _noise_like(x, None, generator)
        h = snr_step_size(s, z, snr, alpha, per_sample)
        x = langevin_step(x, s, h, noise=z)
    return x


def annealed_langevin(score_fn: ScoreFn, x: Tensor, sigmas: Union[Sequence[float], Tensor],
                      n_steps_each: int = 100, step_lr: float = 2e-5,
                      times: Optional[Union[Sequence[float], Tensor]] = None,
                      denoise: bool = False,
                      generator: Optional[torch.Generator] = None) -> Tensor:
    """Annealed Langevin dynamics (NCSN): for each noise level ``sigma_i`` (decreasing), run
    ``n_steps_each`` Langevin steps with ``step = step_lr sigma_i^2 / sigma_L^2 / 2`` (NCSN's
    ``alpha_i / 2``, noise ``sqrt(alpha_i)``) on ``score_fn(x, times[i])``.

    ``times`` are the values passed as t for each level (default: the sigmas themselves, as NCSN
    conditions on sigma; pass ``sde.t_from_log_snr(-2 log sigma)`` for a VE SDE). With
    ``denoise=True`` the result gets one final Tweedie step ``x + sigma_L^2 score``.
    """
    sig = torch.as_tensor(sigmas, dtype=x.dtype, device=x.device).flatten()
    if sig.numel() == 0 or not bool((sig > 0).all()):
        raise InputError(f"`sigmas` must be a non-empty sequence of positive noise levels; "
                         f"got {describe(sigmas)}")
    if sig.numel() > 1 and not bool((sig[1:] <= sig[:-1]).all()):
        raise InputError("`sigmas` must be non-increasing (largest noise first)")
    tms = sig if times is None else torch.as_tensor(times, dtype=x.dtype, device=x.device).flatten()
    if tms.shape != sig.shape:
        raise InputError(f"`times` must have one entry per sigma ({sig.numel()}); "
                         f"got {describe(times)}")
    step_lr = check_positive("step_lr", step_lr)
    if int(n_steps_each) != n_steps_each or n_steps_each < 1:
        raise InputError(f"`n_steps_each` must be an integer >= 1; got {n_steps_each!r}")
    last = float(sig[-1])
    for s_i, t_i in zip(sig.tolist(), tms):
        h = 0.5 * step_lr * (s_i / last) ** 2
        for _ in range(int(n_steps_each)):
            x = langevin_step(x, call_score(score_fn, x, t_i), h, generator=generator)
    if denoise:
        x = x + last ** 2 * call_score(score_fn, x, tms[-1])
    return x
