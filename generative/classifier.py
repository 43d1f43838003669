"""Noise-conditional classifier ``p_t(y | x_t)`` for classifier guidance: its loss and accuracy.

The classifier is the model kind ``'classifier'`` (`generative.models`): a
`generative.nets.ScoreNet` (input preconditioning, log-σ conditioning) around an `MLP` with
``num_classes`` logits, described, trained, checkpointed and loaded like every other kind
(``make_spec('classifier', data)``, `train_model`, `load_model`). It sees perturbed data
``x_t = alpha(t) x0 + sigma(t) z`` with ``t ~ U[t_min, T]`` and is trained by cross-entropy on
the labels of ``x0``; ``grad_x log p_t(y | x)`` then guides any sampler
(`dynamics.ClassifierGuidance`, `generative.guidance.guided_score_fn`).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from dynamics import GaussianPath

from .errors import ModelError
from .losses import random_perturb
from .randomness import Random

Tensor = torch.Tensor

__all__ = ["classifier_loss", "make_classifier_loss", "noisy_accuracy"]


def classifier_loss(model: nn.Module, sde: GaussianPath, x0: Tensor, y: Tensor, *,
                    t_min: Optional[float] = None,
                    generator: Random = None) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Cross-entropy of ``model(x_t, t)`` on ``y`` at one random time per example;
    returns ``(loss, {"accuracy": ...})``."""
    xt, t, _, _ = random_perturb(sde, x0, t_min=t_min, generator=generator)
    logits = model(xt, t)
    acc = (logits.detach().argmax(1) == y).to(x0.dtype).mean()
    return F.cross_entropy(logits, y), {"accuracy": acc}


def make_classifier_loss(sde: GaussianPath, t_min: Optional[float] = None
                         ) -> Callable[[nn.Module, Any, Random], Tuple[Tensor, Dict]]:
    """A ``loss_fn(model, (x0, y), rng)`` closure for `generative.train.train`."""
    def loss_fn(model: nn.Module, batch: Any, rng: Random) -> Tuple[Tensor, Dict]:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ModelError("the classifier loss needs batches (x0, labels)")
        return classifier_loss(model, sde, batch[0], batch[1], t_min=t_min, generator=rng)
    return loss_fn


@torch.no_grad()
def noisy_accuracy(classifier: nn.Module, sde: GaussianPath, x0: Tensor, y: Tensor, t: float,
                   generator: Optional[torch.Generator] = None) -> float:
    """Accuracy of the classifier on ``x0`` perturbed to time ``t`` (one draw per example)."""
    tb = torch.full((x0.shape[0],), float(t), dtype=x0.dtype, device=x0.device)
    mean, std = sde.marginal(x0, tb)
    xt = mean + std * torch.randn(x0.shape, generator=generator, dtype=x0.dtype,
                                  device=x0.device)
    return float((classifier(xt, tb).argmax(1) == y).double().mean())
