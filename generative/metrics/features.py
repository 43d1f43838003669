"""The digits feature network behind "FID (digits)".

A small CNN classifier trained by the project on the digits train split (deterministic,
seconds on CPU) and cached in the user cache directory under a hash of its config. Its
penultimate layer (``feature_dim`` <= 64 pre-activation units) gives the features whose
Fréchet distance is reported as "FID (digits)".
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from ..cache import cache_dir, config_hash, load_cached
from ..checkpoint import save_checkpoint
from ..data import load_digits

Tensor = torch.Tensor

__all__ = ["ClassifierConfig", "DigitsClassifier", "train_digits_classifier",
           "load_digits_classifier", "digits_features", "digits_predict"]


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything that determines the trained classifier (its hash keys the cache)."""

    feature_dim: int = 32
    channels: int = 32
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    split_seed: int = 0
    version: int = 1  # bump when the architecture or training code changes

    def __post_init__(self) -> None:
        if not 1 <= self.feature_dim <= 64:
            raise InputError(f"feature_dim must be in [1, 64]; got {self.feature_dim!r}")


class DigitsClassifier(nn.Module):
    """CNN on ``(B, 1, 8, 8)`` images in [-1, 1]: conv features -> ``feature_dim`` -> 10."""

    def __init__(self, feature_dim: int = 32, channels: int = 32) -> None:
        super().__init__()
        c = channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),          # 4x4
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # 2x2
        )
        self.features_fc = nn.Linear(2 * c * 4, feature_dim)
        self.head = nn.Linear(feature_dim, 10)
        self.test_accuracy: Optional[float] = None

    def features(self, x: Tensor) -> Tensor:
        """Penultimate (pre-activation) features ``(B, feature_dim)``."""
        return self.features_fc(self.conv(x).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, 10)``."""
        return self.head(F.relu(self.features(x)))


@torch.no_grad()
def _accuracy(model: DigitsClassifier, x: Tensor, y: Tensor) -> float:
    return float((model(x).argmax(dim=1) == y).double().mean())


def train_digits_classifier(config: ClassifierConfig = ClassifierConfig()) -> DigitsClassifier:
    """Train on the digits train split; deterministic given ``config`` (global RNG untouched).

    Sets ``model.test_accuracy`` (accuracy on the held-out split).
    """
    data = load_digits(seed=config.split_seed)
    g = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = DigitsClassifier(config.feature_dim, config.channels)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    x, y = data.train, data.train_labels
    n_steps = config.epochs * -(-len(x) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=n_steps)
    model.train()
    for _ in range(config.epochs):
        perm = torch.randperm(len(x), generator=g)
        for idx in perm.split(config.batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    model.test_accuracy = _accuracy(model, data.test, data.test_labels)
    return model


def _cache_path(config: ClassifierConfig) -> Path:
    return cache_dir() / f"digits_classifier-{config_hash(asdict(config))}.pt"


def load_digits_classifier(config: ClassifierConfig = ClassifierConfig(), *,
                           use_cache: bool = True, device: Optional[torch.device] = None,
                           verbose: bool = False) -> DigitsClassifier:
    """The trained classifier: from the cache if present, else trained and cached (atomic).

    A corrupt cache file is retrained over. The model is returned in eval mode with
    ``requires_grad`` off and ``test_accuracy`` set.
    """
    path = _cache_path(config)
    model: Optional[DigitsClassifier] = None
    if use_cache and path.is_file():
        try:
            state = load_cached(path)
            if state is not None:
                model = DigitsClassifier(config.feature_dim, config.channels)
                model.load_state_dict(state["model"])
                model.test_accuracy = float(state["test_accuracy"])
        except (KeyError, RuntimeError, TypeError, ValueError):  # content of another shape
            model = None
    if model is None:
        start = time.perf_counter()
        model = train_digits_classifier(config)
        seconds = time.perf_counter() - start
        if verbose:
            print(f"trained digits classifier in {seconds:.1f}s, "
                  f"test accuracy {model.test_accuracy:.4f}")
        if use_cache:
            save_checkpoint(path, {"model": model.state_dict(), "config": asdict(config),
                                   "test_accuracy": model.test_accuracy,
                                   "train_seconds": seconds})
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def _prepare(x: Tensor, model: DigitsClassifier, clamp: bool) -> Tensor:
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
        raise InputError(f"the digits classifier needs images of shape (N, 1, 8, 8); "
                         f"got {tuple(x.shape)}")
    param = next(model.parameters())
    x = x.to(device=param.device, dtype=param.dtype)
    return x.clamp(-1, 1) if clamp else x


@torch.no_grad()
def digits_features(x: Tensor, classifier: Optional[DigitsClassifier] = None, *,
                    batch_size: int = 1024, clamp: bool = True) -> Tensor:
    """Penultimate classifier features ``(N, feature_dim)`` of images ``(N, 1, 8, 8)``.

    With ``clamp`` (default) inputs are clipped to the data range [-1, 1] first, as a
    saved image would be.
    """
    model = classifier if classifier is not None else load_digits_classifier()
    x = _prepare(x, model, clamp)
    return torch.cat([model.features(chunk) for chunk in x.split(batch_size)])


@torch.no_grad()
def digits_predict(x: Tensor, classifier: Optional[DigitsClassifier] = None, *,
                   batch_size: int = 1024, clamp: bool = True) -> Tuple[Tensor, Tensor]:
    """Predicted labels ``(N,)`` and their softmax confidence ``(N,)`` for digit images."""
    model = classifier if classifier is not None else load_digits_classifier()
    x = _prepare(x, model, clamp)
    probs = torch.cat([F.softmax(model(chunk), dim=1) for chunk in x.split(batch_size)])
    conf, labels = probs.max(dim=1)
    return labels, conf
