"""Noise-conditional classifier ``p_t(y | x_t)`` for classifier guidance.

The classifier sees perturbed data ``x_t = alpha(t) x0 + sigma(t) z`` with ``t ~ U[t_min, T]``
and is trained by cross-entropy on the labels of ``x0`` through `generative.train` (so it gets
EMA, atomic checkpoints and exact resume). Its network is a `MLP` with ``num_classes`` logits
behind the same input preconditioning and log-σ conditioning as the score models
(`generative.nets.ScoreNet`). ``grad_x log p_t(y | x)`` then guides any sampler
(`dynamics.ClassifierGuidance`, `generative.guidance.guided_score_fn`).

A checkpoint's ``meta`` (kind ``sdeflow-noise-classifier``) holds what `load_classifier` needs
to rebuild it: data name, event shape, SDE, number of classes, net options, data std.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from .checkpoint import load_checkpoint
from .errors import ModelError
from .models import _check_weights, make_sde
from .spec import (NET_SCHEMA_MLP, SDE_NAMES, _check_fields, _choice, _int, _int_list, _is_bool,
                   _name, _optional, _real)
from .data import Dataset, dequantize_transform
from .ema import checkpoint_weights
from .losses import random_perturb
from .nets import MLP, ScoreNet
from .randomness import Random
from .train import TrainConfig, TrainResult, train

Tensor = torch.Tensor

__all__ = ["CLASSIFIER_KIND", "NoiseConditionalClassifier", "classifier_meta",
           "validate_classifier_meta", "build_classifier", "classifier_loss",
           "make_classifier_loss", "train_classifier", "load_classifier",
           "noisy_accuracy"]

CLASSIFIER_KIND = "sdeflow-noise-classifier"
CLASSIFIER_VERSION = 1


class NoiseConditionalClassifier(ScoreNet):
    """``forward(x, t)`` = class logits ``(B, num_classes)`` of ``x`` at noise level t: a
    `ScoreNet` (input preconditioning, log-σ conditioning) around a vector-output net."""

    @property
    def num_classes(self) -> int:
        return int(self.net.out_features)


def classifier_meta(data: Dataset, *, sde: str = "vp",
                    model_kwargs: Optional[Dict[str, Any]] = None, t_min: Optional[float] = None,
                    dequantize: bool = True) -> Dict[str, Any]:
    """The plain dict stored in a classifier checkpoint's ``meta``; ``data`` must be labelled."""
    if data.train_labels is None or not data.num_classes:
        raise ValueError(f"the noise-conditional classifier needs labelled data; "
                         f"{data.name!r} has no labels")
    return validate_classifier_meta({
        "kind": CLASSIFIER_KIND, "version": CLASSIFIER_VERSION, "data": data.name,
        "event_shape": list(data.event_shape), "levels": data.levels, "sde": sde,
        "num_classes": int(data.num_classes), "model_kwargs": dict(model_kwargs or {}),
        "t_min": t_min, "dequantize": bool(dequantize and data.levels is not None),
        "data_std": float(data.train.to(torch.float64).std())})


_SCHEMA = {"kind": _choice(CLASSIFIER_KIND), "version": _int(1, CLASSIFIER_VERSION),
           "data": _name, "event_shape": _int_list(1, 4, 1, 1 << 16),
           "levels": _optional(_int(2, 1 << 16)), "sde": _choice(*SDE_NAMES),
           "num_classes": _int(1, 1 << 16),
           "model_kwargs": lambda v: None if isinstance(v, dict) else "a dict of MLP options",
           "t_min": _optional(_real(0.0, 1.0, hi_open=True)), "dequantize": _is_bool,
           "data_std": _real(0.0)}


def validate_classifier_meta(meta: Any, where: str = "meta") -> Dict[str, Any]:
    """Check a classifier description (every key known, present, typed and in range) before
    anything is built; raises `generative.models.ModelError` naming the key."""
    if not isinstance(meta, dict) or meta.get("kind") != CLASSIFIER_KIND:
        raise ModelError(f"{where} is not a noise-conditional classifier's description "
                         f"(kind {CLASSIFIER_KIND!r}, written by `sdeflow train-classifier`)")
    meta = {"data_std": 1.0, **meta}  # the first classifier checkpoints had no data_std
    _check_fields(_SCHEMA, meta, where, required=True)
    _check_fields(NET_SCHEMA_MLP, meta["model_kwargs"], f"{where}['model_kwargs']",
                  required=False)
    return meta


def build_classifier(meta: Dict[str, Any], device: Any = None
                     ) -> Tuple[NoiseConditionalClassifier, Any]:
    """A fresh (untrained) classifier and its SDE from checkpoint ``meta`` (validated first),
    with parameters on ``device`` (``'meta'``: shapes only)."""
    meta = validate_classifier_meta(meta)
    sde = make_sde(meta["sde"])
    with torch.device(device if device is not None else "cpu"):
        net = MLP(tuple(meta["event_shape"]), out_features=meta["num_classes"],
                  **meta["model_kwargs"])
        return NoiseConditionalClassifier(net, sde, meta["data_std"]), sde


def classifier_loss(model: nn.Module, sde: Any, x0: Tensor, y: Tensor, *,
                    t_min: Optional[float] = None,
                    generator: Random = None) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Cross-entropy of ``model(x_t, t)`` on ``y`` at one random time per example;
    returns ``(loss, {"accuracy": ...})``."""
    xt, t, _, _ = random_perturb(sde, x0, t_min=t_min, generator=generator)
    logits = model(xt, t)
    acc = (logits.detach().argmax(1) == y).to(x0.dtype).mean()
    return F.cross_entropy(logits, y), {"accuracy": acc}


def make_classifier_loss(sde: Any, t_min: Optional[float] = None
                         ) -> Callable[[nn.Module, Any, Random], Tuple[Tensor, Dict]]:
    """A ``loss_fn(model, (x0, y), rng)`` closure for `generative.train.train`."""
    def loss_fn(model: nn.Module, batch: Any, rng: Random) -> Tuple[Tensor, Dict]:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("the classifier loss needs batches (x0, labels)")
        return classifier_loss(model, sde, batch[0], batch[1], t_min=t_min, generator=rng)
    return loss_fn


def train_classifier(data: Dataset, meta: Dict[str, Any], config: TrainConfig,
                     out_dir: Union[str, Path, None], *, resume: bool = False) -> TrainResult:
    """Train the classifier described by ``meta`` on ``(data.train, data.train_labels)``,
    its initial weights a function of ``config.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model, sde = build_classifier(meta)
    transform = dequantize_transform(data.levels if meta["dequantize"] else None)
    return train(model, make_classifier_loss(sde, meta["t_min"]),
                 (data.train, data.train_labels), config, out_dir=out_dir, resume=resume,
                 transform=transform, meta=meta)


def load_classifier(path: Union[str, Path], *, use_ema: bool = True
                    ) -> Tuple[NoiseConditionalClassifier, Any, Dict[str, Any]]:
    """Load a classifier checkpoint -> ``(model in eval mode, sde, meta)``.

    Raises `generative.checkpoint.CheckpointError` for a missing or corrupt file and
    `generative.models.ModelError` (a ``ValueError``) for a checkpoint that is not a valid
    noise-conditional classifier: its meta is checked, and its weights' shapes compared with
    the model the meta describes, before the model is allocated."""
    state = load_checkpoint(path)
    try:
        meta = validate_classifier_meta(state.get("meta"))
        weights = checkpoint_weights(state, use_ema)
        _check_weights(build_classifier(meta, device="meta")[0], weights, "its weights")
    except ValueError as err:  # ModelError included
        raise ModelError(f"{str(path)!r}: invalid classifier checkpoint: {err}") from err
    with torch.random.fork_rng(devices=[]):  # building must not move the caller's RNG
        model, sde = build_classifier(meta)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ModelError(f"classifier checkpoint {str(path)!r} does not match its "
                         f"description: {str(err).splitlines()[0]}") from err
    model.eval().requires_grad_(False)
    return model, sde, meta


@torch.no_grad()
def noisy_accuracy(classifier: nn.Module, sde: Any, x0: Tensor, y: Tensor, t: float,
                   generator: Optional[torch.Generator] = None) -> float:
    """Accuracy of the classifier on ``x0`` perturbed to time ``t`` (one draw per example)."""
    tb = torch.full((x0.shape[0],), float(t), dtype=x0.dtype, device=x0.device)
    mean, std = sde.marginal(x0, tb)
    xt = mean + std * torch.randn(x0.shape, generator=generator, dtype=x0.dtype,
                                  device=x0.device)
    return float((classifier(xt, tb).argmax(1) == y).double().mean())
