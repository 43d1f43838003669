"""Image restoration with a score model: inpainting, colorization and super-resolution as the
linear inverse problem ``y = A x0 + sigma_y n`` (`generative.inverse`), with its measurement,
the measurement shown as an image (the baseline every restoration is compared with) and
PSNR / MSE against the original.

Tasks (images ``(B, C, H, W)`` in [-1, 1]):

- ``inpaint``: ``A x = m * x`` with a boolean mask per row (True = known,
  `generative.inpaint.known_mask`); shown with the missing pixels grey (0);
- ``colorize``: ``A`` the ITU-R 601 luma map to one channel (C = 3 needed); shown as the
  gray image replicated on the three channels;
- ``superres``: ``A`` the mean of each ``factor x factor`` block; shown upsampled by nearest
  neighbour.

Methods (both approximate for a learned score, see `generative.inverse`): ``replace``
(`replacement_callback` after every sampler step: Song et al. 2021, their decomposition for
colorization) and ``pigdm`` (`pigdm_log_prob_fn` through `dynamics.ClassifierGuidance`:
each score evaluation also backpropagates through the network). With ``sigma_y = 0`` the
result is put on the measurement exactly at the end (`Measurement.project`: the known pixels
of inpainting restored, the gray level or block means of ``y`` kept); with noise it is left
as sampled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch

from dynamics import ClassifierGuidance, LinearSDE
from dynamics.checks import check_batch, check_choice

from .errors import InputError
from .inverse import (LinearOperator, avgpool_operator, grayscale_operator, pigdm_log_prob_fn,
                      replacement_callback)
from .samplers import sample

Tensor = torch.Tensor

__all__ = ["TASKS", "METHODS", "Measurement", "measure", "restore", "psnr", "quality"]

TASKS = ("inpaint", "colorize", "superres")
METHODS = ("replace", "pigdm")
# the peak-to-peak range of images in [-1, 1], PSNR's peak
PEAK = 2.0


def _row_mask_operator(mask: Tensor) -> LinearOperator:
    """``A x = m * x`` for a mask per row ``(B, *event)`` (a projection: ``A A^T = A``, so
    replacement and PiGDM use ``c = 1`` on the observed entries)."""
    m = mask.to(torch.bool)
    return LinearOperator(lambda x: x * m.to(x), lambda y: y * m.to(y), "mask", gram=1.0)


@dataclass(frozen=True)
class Measurement:
    """A task's operator ``A``, the measurement ``y = A x0 + sigma_y n`` and its image-space
    view ``shown`` (``(B, C, H, W)``); ``mask`` for inpainting (True = known)."""

    task: str
    operator: LinearOperator
    y: Tensor
    shown: Tensor
    sigma_y: float
    mask: Optional[Tensor] = None

    def project(self, x: Tensor) -> Tensor:
        """``x`` put on ``A x = y``: ``x + A^T (y - A x) / c`` (inpainting: the known pixels
        replaced, exactly)."""
        if self.mask is not None:
            return torch.where(self.mask, self.y.to(x), x)
        A = self.operator
        return x + A.T(self.y.to(x) - A(x)) / A.gram

    def residual(self, x: Tensor) -> Tensor:
        """Per-image RMS of ``A x - y`` ``(B,)``."""
        r = self.operator(x) - self.y.to(x)
        return r.reshape(len(x), -1).square().mean(1).sqrt()


def _check_images(x: Tensor, task: str) -> None:
    check_batch("x", x)
    if x.dim() != 4:
        raise InputError(f"{task} needs images (B, C, H, W); got `x` of shape {tuple(x.shape)}")
    if task == "colorize" and x.shape[1] != 3:
        raise InputError(f"colorize needs 3-channel (RGB) images; got {x.shape[1]} channel(s)")


def measure(task: str, x: Tensor, *, mask: Optional[Tensor] = None, factor: int = 2,
            sigma_y: float = 0.0, generator: Optional[torch.Generator] = None) -> Measurement:
    """The measurement of images ``x`` for ``task`` (see the module docstring); ``mask``
    (inpaint: bool, broadcasting to ``x``, True = known), ``factor`` (superres: an integer
    >= 2 dividing H and W), ``sigma_y`` the measurement noise (drawn from ``generator``)."""
    check_choice("task", task, TASKS)
    _check_images(x, task)
    if isinstance(sigma_y, bool) or not isinstance(sigma_y, (int, float)) \
            or not (sigma_y >= 0 and math.isfinite(sigma_y)):
        raise InputError(f"`sigma_y` must be a finite number >= 0; got {sigma_y!r}")
    m = None
    if task == "inpaint":
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise InputError(f"inpaint needs a bool `mask` (True = known); got "
                             f"{type(mask).__name__}")
        m = torch.broadcast_to(mask.to(x.device), x.shape)
        A = _row_mask_operator(m)
    elif task == "colorize":
        A = grayscale_operator()
    else:
        h, w = x.shape[-2:]
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2 \
                or h % factor or w % factor:
            raise InputError(f"superres `factor` must be an integer >= 2 dividing the image "
                             f"height and width ({h}, {w}); got {factor!r}")
        A = avgpool_operator(factor)
    clean = A(x)
    noise = torch.randn(clean.shape, generator=generator, dtype=x.dtype, device=x.device)
    y = clean + sigma_y * (noise if m is None else noise * m)
    if task == "colorize":
        weights = A.T(torch.ones_like(y[:1]))          # (1, 3, H, W): the luma weights
        shown = (y / weights.sum(1, keepdim=True)).expand_as(x)
    else:
        shown = A.T(y) / A.gram                       # grey holes / nearest upsampling
    return Measurement(task, A, y, shown.contiguous(), float(sigma_y), m)


def restore(sde: LinearSDE, score_fn: Callable[[Tensor, Tensor], Tensor],
            measurement: Measurement, *, method: str = "replace", sampler: str = "pc",
            nfe: Optional[int] = None, scale: float = 1.0, data_var: Optional[float] = None,
            generator: Optional[torch.Generator] = None,
            **sampler_kwargs: Any) -> Tuple[Tensor, Union[int, Tensor]]:
    """Sample ``x0 | y`` for ``measurement`` with ``method`` ``'replace'`` or ``'pigdm'``
    (``scale``: PiGDM's guidance weight, 1 = the approximate conditional score; ``data_var``
    its prior variance, None = flat); ``sampler``, ``nfe`` and ``sampler_kwargs`` as
    `generative.samplers.sample`. Returns ``(x, nfe)`` as the samplers do, ``x`` projected
    on the measurement when ``sigma_y = 0``."""
    check_choice("method", method, METHODS)
    A, y = measurement.operator, measurement.y
    shape = tuple(measurement.shown.shape)
    kw: Dict[str, Any] = dict(sampler_kwargs, nfe=nfe, generator=generator)
    if method == "replace":
        x, used = sample(sampler, sde, score_fn, shape,
                         callback=replacement_callback(sde, A, y, generator), **kw)
    else:
        lp = pigdm_log_prob_fn(sde, score_fn, A, y, measurement.sigma_y, data_var)
        x, used = sample(sampler, sde, ClassifierGuidance(score_fn, lp, scale), shape, **kw)
    return (measurement.project(x) if measurement.sigma_y == 0 else x), used


def _mse(x: Tensor, reference: Tensor) -> Tensor:
    return (x.double() - reference.double()).reshape(len(x), -1).square().mean(1)


def psnr(x: Tensor, reference: Tensor, peak: float = PEAK) -> Tensor:
    """Per-image PSNR in dB ``10 log10(peak^2 / MSE)`` ``(B,)`` (inf for an exact match)."""
    return 10 * torch.log10(peak ** 2 / _mse(x, reference))


def quality(x: Tensor, reference: Tensor) -> Dict[str, Any]:
    """Per-image and mean PSNR (dB, peak 2: images in [-1, 1]) and MSE of ``x`` against
    ``reference``; ``psnr_of_mean_mse`` is the PSNR of the mean MSE."""
    mse = _mse(x, reference)
    p = 10 * torch.log10(PEAK ** 2 / mse)
    return {"psnr_mean": float(p.mean()),
            "psnr_of_mean_mse": float(10 * torch.log10(PEAK ** 2 / mse.mean())),
            "mse_mean": float(mse.mean()), "psnr": [float(v) for v in p],
            "mse": [float(v) for v in mse]}
