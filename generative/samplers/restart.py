"""Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes"):
EDM Heun steps down the grid, and at the grid level nearest each restart interval's lower end
``s_min`` the state is sent forward to ``s_max`` with fresh noise, ``x~ += sqrt(s_max^2 -
s_min^2) z``, and brought back by ``n_restart`` Heun steps on a Karras (rho = 7) grid from
``s_max`` to ``s_min``; ``k_restart`` times per interval. Levels are in units of sigma/alpha,
as `edm`'s; the forward jump is exact for every linear SDE in the scaled variables of `levels`.

``restarts``: a sequence of ``(n_restart, k_restart, s_min, s_max)`` (the paper's
``restart_info`` entries ``[N_restart, K, t_min, t_max]``); default one interval ``(3, 2,
0.06, 0.30)``. NFE: 2 per main Heun step plus ``2 n_restart k_restart`` per interval.
Restart draws fresh noise for each repetition, so Brownian noise (one path per sample) is
refused.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Sequence, Tuple

import torch

from ..errors import InputError
from .base import Hook, Model, StepCost
from .grid import Grid
from .levels import Levels
from .noise import BrownianNoise, NoiseSampler

Tensor = torch.Tensor

__all__ = ["restart", "cost", "check_restarts", "DEFAULT_RESTARTS"]

DEFAULT_RESTARTS = ((3, 2, 0.06, 0.30),)


def check_restarts(restarts: Any) -> Tuple[Tuple[int, int, float, float], ...]:
    """The restart intervals, each ``(n_restart >= 1, k_restart >= 0, 0 < s_min < s_max)``."""
    try:
        out = tuple((int(n), int(k), float(lo), float(hi)) for n, k, lo, hi in restarts)
        ok = all(n >= 1 and k >= 0 and 0 < lo < hi < math.inf and n == n0 and k == k0
                 for (n, k, lo, hi), (n0, k0, _, _) in zip(out, restarts))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"`restarts` must be a sequence of (n_restart >= 1, k_restart >= 0, "
                         f"s_min, s_max) with 0 < s_min < s_max; got {restarts!r}")
    return out


def cost(options: Dict[str, Any]) -> StepCost:
    """2 NFE per main step, and the restarts' ``2 n k`` once."""
    rs = check_restarts(options.get("restarts", DEFAULT_RESTARTS))
    return StepCost(2, setup=sum(2 * n * k for n, k, _, _ in rs))


Denoiser = Callable[[Tensor], Tensor]


def _heun(xt: Tensor, sig: Tensor, sig_next: Tensor, den: Denoiser, den_next: Denoiser
          ) -> Tuple[Tensor, Tensor]:
    """A Heun step of ``x~`` from ``sig`` to ``sig_next`` with the denoisers at both levels;
    returns the new ``x~`` and the x0 estimate at ``sig_next`` (of the Euler predictor)."""
    d = (xt - den(xt)) / sig
    x_e = xt + (sig_next - sig) * d
    x0 = den_next(x_e)
    return xt + (sig_next - sig) * (d + (x_e - x0) / sig_next) / 2, x0


def _at(lv: Levels, level: Any) -> Denoiser:
    """The denoiser at grid point ``level`` (an int: at the grid's time) or at a level."""
    if isinstance(level, int):
        return lambda y: lv.denoise(y, level)
    return lambda y: lv.denoise_level(y, level)


def _karras(hi: float, lo: float, n: int, like: Tensor) -> Tensor:
    u = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
    return ((hi ** (1 / 7) + u * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7).to(like)


def restart(model: Model, x: Tensor, grid: Grid, callback: Hook, noise: NoiseSampler, *,
            restarts: Sequence[Tuple[int, int, float, float]] = DEFAULT_RESTARTS,
            s_noise: float = 1.0) -> Tensor:
    """Heun steps with restarts (see the module docstring)."""
    if isinstance(noise, BrownianNoise):
        raise InputError("`restart` draws fresh noise at every repetition: use noise=None or "
                         "'indexed', not 'brownian'")
    lv = Levels(model, grid, x)
    sig, xt = lv.sig, lv.scale(x)
    levels = sig.double().cpu()
    at = {}                                   # grid index -> its restart intervals
    for n, k, lo, hi in check_restarts(restarts):
        i = int(torch.argmin((levels - lo).abs()))
        at.setdefault(i, []).append((n, k, float(levels[i]), hi))
    for i in range(lv.n):
        xt, x0 = _heun(xt, sig[i], sig[i + 1], _at(lv, i), _at(lv, i + 1))
        for n, k, lo, hi in at.get(i + 1, []):
            t_lo = lv.ts[i + 1]
            t_hi, _ = lv.time(torch.tensor(hi, dtype=torch.float64))
            ladder = _karras(hi, lo, n, sig)
            ladder[-1] = sig[i + 1]
            for _ in range(k):
                xt = xt + s_noise * math.sqrt(hi ** 2 - lo ** 2) * noise(xt, t_lo, t_hi)
                for j in range(n):                       # the last ends on grid point i + 1
                    xt, x0 = _heun(xt, ladder[j], ladder[j + 1], _at(lv, ladder[j]),
                                   _at(lv, i + 1 if j == n - 1 else ladder[j + 1]))
        xt = lv.done(callback, i + 1, xt, x0)
    return lv.unscale(xt)
