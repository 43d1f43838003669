"""Inpainting / imputation: sample the missing pixels of an image given the known ones.

Two modes, both running any sampler (`generative.samplers`):

- ``replace`` (Song et al. 2021, App. I.2): sample the joint model and, after every step,
  replace the known pixels by a fresh forward-kernel sample ``alpha(t) x_known + sigma(t) z``
  (`dynamics.inpaint_project` as the samplers' ``callback``). Biased even with the
  exact score: the missing pixels are driven by the joint score at noised known values, which
  is not the conditional score ``grad log p_t(x_missing | x_known)``.
- ``conditional``: sample ``p_t(x_t | x0[mask] = known)`` with its score
  ``score(x_t) + grad_x log p(x0[mask] = known | x_t)`` (`dynamics.ClassifierGuidance`), which
  is exact when both terms are. With the exact observation likelihood of a Gaussian mixture
  (`dynamics.GaussianMixture.observation_log_prob_fn`) and its exact score the samples follow
  the exact conditional law; for a learned score the default likelihood is a Gaussian
  around Tweedie's denoiser (`dynamics.reconstruction_log_prob_fn`: reconstruction guidance,
  Ho et al. 2022), an approximation whose gradient backpropagates through the score network
  (about 3x the cost per step); ``scale`` > 1 weights it up (Ho et al.'s w_r; scale 1 is the
  conditional score, the exact one with the exact likelihood). Works with every sampler, the
  ``ode`` sampler included.

Masks are boolean with True = known pixel; the ``left`` / ``center`` / ``random`` masks of
`known_mask` mark the left half, the central square, or a random half of the pixels missing.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple, Union

import torch

from dynamics import ClassifierGuidance, LinearSDE, inpaint_project, reconstruction_log_prob_fn
from dynamics.checks import check_batch, check_choice

from .errors import InputError
from .samplers import sample

Tensor = torch.Tensor

__all__ = ["MASKS", "MODES", "known_mask", "inpaint"]

MASKS = ("left", "center", "random")
MODES = ("replace", "conditional")


def known_mask(kind: str, event_shape: Sequence[int], n: int = 1,
               generator: Optional[torch.Generator] = None) -> Tensor:
    """Boolean masks ``(n, *event_shape)``, True = known pixel.

    ``left``: the left half of the last axis is missing (for vectors: the first half of the
    coordinates); ``center``: the central block of half the side on the last two axes (for
    vectors: the middle half); ``random``: each pixel missing independently with probability
    1/2 (a different mask per row, drawn from ``generator``).
    """
    check_choice("mask", kind, MASKS)
    shape = tuple(int(s) for s in event_shape)
    if not shape or min(shape) < 1 or int(n) < 1:
        raise InputError(f"need a non-empty event_shape and n >= 1; got {shape} and n={n!r}")
    if kind == "random":
        return torch.rand((int(n), *shape), generator=generator) >= 0.5
    m = torch.ones(shape, dtype=torch.bool)
    w = shape[-1]
    if kind == "left":
        m[..., : w // 2] = False
    elif len(shape) >= 2:
        h = shape[-2]
        m[..., h // 4: h // 4 + max(h // 2, 1), w // 4: w // 4 + max(w // 2, 1)] = False
    else:
        m[w // 4: w // 4 + max(w // 2, 1)] = False
    return m.expand(int(n), *shape).clone()


def _check_inputs(known: Tensor, mask: Any) -> Tensor:
    check_batch("known", known)
    m = torch.as_tensor(mask, device=known.device)
    if m.dtype != torch.bool:
        raise InputError(f"mask must be a bool tensor (True = known); got dtype {m.dtype}")
    try:
        m = torch.broadcast_to(m, known.shape)
    except RuntimeError:
        raise InputError(f"mask of shape {tuple(m.shape)} does not broadcast to the image "
                         f"shape {tuple(known.shape)}") from None
    if not bool(torch.isfinite(known[m]).all()):   # (unknown pixels may hold anything)
        raise InputError(f"known must be finite at the known pixels (mask True); "
                         f"{int((~torch.isfinite(known[m])).sum())} are NaN/inf")
    return m


def inpaint(sde: LinearSDE, score_fn: Callable[[Tensor, Tensor], Tensor], known: Tensor,
            mask: Tensor, *, mode: str = "replace", sampler: str = "pc",
            nfe: Optional[int] = None,
            log_likelihood_fn: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
            scale: float = 1.0, restore_known: bool = True,
            generator: Optional[torch.Generator] = None,
            **sampler_kwargs: Any) -> Tuple[Tensor, Union[int, Tensor]]:
    """Sample the pixels of ``known`` ``(B, *event)`` where ``mask`` is False.

    Args:
        sde, score_fn: the forward SDE and the (joint) score ``score_fn(x, t)``.
        mask: bool, True = known; broadcasts to ``known`` (one mask or one per row).
        mode: ``'replace'`` or ``'conditional'`` (see the module docstring).
        sampler, nfe, sampler_kwargs: as `generative.samplers.sample`.
        log_likelihood_fn: for ``'conditional'``: ``(x, t) -> log p(x0[mask] = known | x_t)``
            ``(B,)``; default `dynamics.reconstruction_log_prob_fn` (flat prior).
        scale: for ``'conditional'``: weight of ``grad log p(x0[mask] = known | x_t)``.
        restore_known: return the known pixels exactly (else the sampler's values, which
            carry the final noise level ``sigma(t_min)``).

    Returns ``(samples, nfe)`` as the samplers do (``nfe`` counts the sampler's score
    evaluations; in ``'conditional'`` mode each also backpropagates through the likelihood).
    """
    check_choice("mode", mode, MODES)
    m = _check_inputs(known, mask)
    kw = dict(sampler_kwargs, nfe=nfe, generator=generator)
    if mode == "replace":
        def project(i: int, t: Tensor, x: Tensor, denoised: Optional[Tensor]) -> Tensor:
            return inpaint_project(sde, x, t, known.to(x), m, generator=generator)
        x, used = sample(sampler, sde, score_fn, tuple(known.shape), callback=project, **kw)
    else:
        lp = log_likelihood_fn if log_likelihood_fn is not None else \
            reconstruction_log_prob_fn(sde, score_fn, known, m)
        x, used = sample(sampler, sde, ClassifierGuidance(score_fn, lp, scale),
                         tuple(known.shape), **kw)
    return (torch.where(m, known.to(x), x) if restore_known else x), used
