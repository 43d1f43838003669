"""Guidance as score transforms, and the inpainting projection.

- Classifier guidance (Dhariwal & Nichol 2021; Song et al. 2021):
  ``score(x, t | y) = score(x, t) + scale * grad_x log p_t(y | x)``; scale = 1 with the exact
  time-t classifier gives the exact conditional score.
- Classifier-free guidance (Ho & Salimans 2022): ``s_uncond + scale (s_cond - s_uncond)``;
  scale = 0 is unconditional, scale = 1 conditional.
- Inpainting / imputation by replacement: replace the known coordinates of the state at time t
  by a fresh sample of the forward kernel ``alpha(t) x_known + sigma(t) z`` (Song et al. 2021,
  App. I.2). Biased even with the exact score: the unknown coordinates only ever see the
  joint score at noised known values, never the conditional score.
- Inpainting by the conditional score: the observation ``y = x0[mask]`` is a "label", so
  ``score(x_t | y) = score(x_t) + grad_x log p(x0[mask] = y | x_t)`` (classifier guidance with
  scale 1), exact when both terms are. `GaussianMixture.observation_log_prob_fn` gives the
  exact likelihood of the oracle; for a learned score, `reconstruction_log_prob_fn`
  approximates ``p(x0 | x_t)`` by a Gaussian around Tweedie's denoiser (reconstruction
  guidance, Ho et al. 2022; PiGDM, Song et al. 2023), exact only for isotropic Gaussian data
  of a known variance.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

from solvers.errors import FunctionOutputError, describe

from .errors import InputError
from .broadcast import ScoreFn, TimeLike, broadcast_time, call_score
from .gaussian_path import GaussianPath
from .parameterization import tweedie

Tensor = torch.Tensor
LogProbFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["ClassifierGuidance", "ClassifierFreeGuidance", "cfg_combine", "classifier_grad",
           "inpaint_project", "reconstruction_log_prob_fn"]


def _check_scale(scale: float) -> float:
    try:
        return float(scale)
    except (TypeError, ValueError):
        raise InputError(f"`scale` must be a number; got {describe(scale)}") from None


def classifier_grad(log_prob_fn: LogProbFn, x: Tensor, t: TimeLike,
                    create_graph: bool = False) -> Tensor:
    """``grad_x sum_b log_prob_fn(x, t)[b]`` = per-row ``grad_x log p_t(y | x)``.

    ``log_prob_fn(x, t)`` returns ``(B,)`` log-probabilities of the target labels (bind the
    labels in a closure); ``t`` reaches it as a ``(B,)`` tensor.
    """
    tb = broadcast_time(t, x)
    with torch.enable_grad():
        xg = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
        lp = log_prob_fn(xg, tb)
        if not isinstance(lp, Tensor) or lp.shape != (x.shape[0],):
            raise FunctionOutputError(
                f"`log_prob_fn(x, t)` must return a (B,) = ({x.shape[0]},) tensor; "
                f"got {describe(lp)}")
        (grad,) = torch.autograd.grad(lp.sum(), xg, create_graph=create_graph)
    return grad


class ClassifierGuidance(nn.Module):
    """Score transform ``score_fn(x, t) + scale * grad_x log_prob_fn(x, t)``."""

    def __init__(self, score_fn: ScoreFn, log_prob_fn: LogProbFn, scale: float = 1.0,
                 create_graph: bool = False) -> None:
        super().__init__()
        if not callable(score_fn) or not callable(log_prob_fn):
            raise InputError("`score_fn` and `log_prob_fn` must be callables (x, t); got "
                             f"{describe(score_fn)} and {describe(log_prob_fn)}")
        self.score_fn, self.log_prob_fn = score_fn, log_prob_fn
        self.scale = _check_scale(scale)
        self.create_graph = create_graph

    def forward(self, x: Tensor, t: TimeLike) -> Tensor:
        s = call_score(self.score_fn, x, t)
        if self.scale == 0.0:
            return s
        return s + self.scale * classifier_grad(self.log_prob_fn, x, t, self.create_graph)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def cfg_combine(s_uncond: Tensor, s_cond: Tensor, scale: float) -> Tensor:
    """``s_uncond + scale (s_cond - s_uncond)``."""
    if s_uncond.shape != s_cond.shape:
        raise InputError(f"`s_cond` must have s_uncond's shape {tuple(s_uncond.shape)}; "
                         f"got {describe(s_cond)}")
    return s_uncond + _check_scale(scale) * (s_cond - s_uncond)


class ClassifierFreeGuidance(nn.Module):
    """Score transform ``s_u + scale (s_c - s_u)`` of a conditional and an unconditional score.

    ``cond_score_fn`` / ``uncond_score_fn`` are ``(x, t)`` callables (typically one network
    with the label bound or dropped).
    """

    def __init__(self, cond_score_fn: ScoreFn, uncond_score_fn: ScoreFn,
                 scale: float = 1.0) -> None:
        super().__init__()
        if not callable(cond_score_fn) or not callable(uncond_score_fn):
            raise InputError(
                "`cond_score_fn` and `uncond_score_fn` must be callables (x, t); got "
                f"{describe(cond_score_fn)} and {describe(uncond_score_fn)}")
        self.cond_score_fn, self.uncond_score_fn = cond_score_fn, uncond_score_fn
        self.scale = _check_scale(scale)

    @property
    def evaluations_per_call(self) -> int:
        """Score evaluations one call costs: 2 (conditional and unconditional), 1 at scale 0
        (the unconditional score alone); the NFE of a guided sampler counts them."""
        return 1 if self.scale == 0.0 else 2

    def forward(self, x: Tensor, t: TimeLike) -> Tensor:
        s_u = call_score(self.uncond_score_fn, x, t, name="uncond_score_fn")
        if self.scale == 0.0:          # unconditional: skip the conditional evaluation
            return s_u
        s_c = call_score(self.cond_score_fn, x, t, name="cond_score_fn")
        return cfg_combine(s_u, s_c, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def _mask_like(mask: Tensor, x: Tensor) -> Tensor:
    """``mask`` (1/True = known) as x's dtype, broadcast to x's shape."""
    try:
        return torch.broadcast_to(torch.as_tensor(mask).to(dtype=x.dtype, device=x.device),
                                  x.shape)
    except (RuntimeError, TypeError):
        raise InputError(f"`mask` must broadcast to x's shape {tuple(x.shape)}; "
                         f"got {describe(mask)}") from None


def inpaint_project(path: GaussianPath, x: Tensor, t: TimeLike, known: Tensor, mask: Tensor,
                    noise: Optional[Tensor] = None,
                    generator: Optional[torch.Generator] = None) -> Tensor:
    """Put the known coordinates of ``x`` (where ``mask`` is 1/True) on the forward kernel:
    ``mask * (alpha(t) known + sigma(t) z) + (1 - mask) * x``.

    ``known`` has x's shape (values outside the mask are ignored), ``mask`` broadcasts to it;
    ``path`` is any `GaussianPath`.
    """
    if known.shape != x.shape:
        raise InputError(f"`known` must have x's shape {tuple(x.shape)}; "
                         f"got {describe(known)}")
    m = _mask_like(mask, x)
    if noise is None:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    elif noise.shape != x.shape:
        raise InputError(f"`noise` must have x's shape {tuple(x.shape)}; "
                         f"got {describe(noise)}")
    a, s = path.coefs(x, t)
    known = torch.where(m > 0, known, 0.0)       # ignored outside the mask, even NaN/inf
    return m * (a * known + s * noise) + (1.0 - m) * x


def reconstruction_log_prob_fn(path: GaussianPath, score_fn: ScoreFn, known: Tensor, mask: Tensor,
                               data_var: Optional[float] = None) -> LogProbFn:
    """``(x, t) -> log p_hat(x0[mask] = known[mask] | x_t = x)``, shape (B,): the observation
    likelihood of reconstruction guidance, for `ClassifierGuidance` (scale 1 = the conditional
    score of inpainting).

    ``p(x0 | x_t)`` is replaced by ``N(x0_hat, r_t^2 I)`` with Tweedie's denoiser
    ``x0_hat = (x + sigma^2 score(x, t)) / alpha`` and the posterior variance of isotropic
    Gaussian data of variance ``data_var``: ``r_t^2 = s^2 / (1 + s^2 / data_var)``,
    ``s = sigma / alpha``. Exact for such data (then ``x0_hat`` is that posterior's mean);
    for other data an approximation (PiGDM, Song et al. 2023), so it is exact only where the
    exact observation likelihood is used instead (`GaussianMixture.observation_log_prob_fn`).
    The default ``data_var=None`` (a flat prior: ``r_t^2 = s^2``) is the reconstruction
    guidance of Ho et al. (2022) with unit weight; it fades out as ``alpha -> 0``, where a
    learned denoiser is least accurate (with a finite ``data_var`` the weight stays
    ``1 / data_var`` there, and a learned model's error in ``x0_hat``, amplified by
    ``1 / alpha``, can make sampling diverge). Its gradient differentiates through
    ``score_fn``.

    ``known`` has x's shape (or its event shape; values outside the mask are ignored),
    ``mask`` (1/True = known) broadcasts to it.
    """
    if not callable(score_fn):
        raise InputError(f"`score_fn` must be a callable score_fn(x, t); "
                         f"got {describe(score_fn)}")
    if not isinstance(known, Tensor) or not known.is_floating_point():
        raise InputError(f"`known` must be a floating-point tensor; got {describe(known)}")
    v = math.inf if data_var is None else data_var
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise InputError(f"`data_var` must be None or a number > 0; got {data_var!r}")

    def log_prob(x: Tensor, t: Tensor) -> Tensor:
        try:
            y = torch.broadcast_to(known.to(x), x.shape)
        except RuntimeError:
            raise InputError(f"`known` must broadcast to x's shape {tuple(x.shape)}; "
                             f"got {describe(known)}") from None
        m = _mask_like(mask, x)
        y = torch.where(m > 0, y, 0.0)           # ignored outside the mask, even NaN/inf
        a, s = path.coefs(x, t)
        x0 = tweedie(x, call_score(score_fn, x, t), a, s)
        s2 = (s / a) ** 2
        r2 = s2 / (1 + s2 / v)
        sq = (m * (y - x0) ** 2 / r2 + m * torch.log(2 * math.pi * r2)).flatten(1)
        return -0.5 * sq.sum(1)
    return log_prob
