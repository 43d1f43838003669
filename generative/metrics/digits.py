"""The digits evaluation, in one place: FID against the held-out test digits (features of the
cached digits classifier, `generative.metrics.features`) and the classifier's confidence on
the samples, for the demo, the benchmarks and ``sdeflow sample --fid``.

- `DigitsEvaluator` ``(x, labels=None)``: bootstrap FID (`bootstrap_frechet`), the fraction of
  samples classified with confidence > `CONFIDENT` and the mean confidence (with ``labels``:
  also the accuracy of the predicted classes); `DigitsEvaluator.data_floor` scores ``n`` real
  training digits the same way (the floor a perfect model reaches at that sample size).
- `digits_fid`: the plain FID of every process's samples, the Fréchet statistics merged
  exactly across torchrun processes (`generative.distributed.gather_feature_stats`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

import numpy as np
import torch

from .features import DigitsClassifier, digits_features, digits_predict, load_digits_classifier
from .frechet import bootstrap_frechet, feature_stats, frechet_distance

if TYPE_CHECKING:
    from ..distributed import DistContext

Tensor = torch.Tensor

__all__ = ["CONFIDENT", "DigitsEvaluator", "digits_fid"]

# a sample counts as a confident digit when the classifier's top probability exceeds this
CONFIDENT = 0.9


def _test_digits() -> Tensor:
    from ..data import load_data
    return load_data("digits").test


class DigitsEvaluator:
    """Scores digit samples against ``reference`` (default: the held-out test digits) with
    ``classifier`` (default: the cached digits classifier); ``n_boot`` bootstrap replicates
    seeded by ``seed`` give the FID's interval."""

    def __init__(self, classifier: Optional[DigitsClassifier] = None,
                 reference: Optional[Tensor] = None, *, n_boot: int = 200, seed: int = 0
                 ) -> None:
        self.classifier = classifier if classifier is not None else load_digits_classifier()
        self.reference = reference if reference is not None else _test_digits()
        self.n_boot, self.seed = n_boot, seed
        self._f_ref: np.ndarray = digits_features(self.reference, self.classifier).numpy()

    def __call__(self, x: Tensor, labels: Optional[Tensor] = None) -> Dict[str, Any]:
        """``fid`` (`FrechetResult.as_dict`), ``confident_fraction``, ``mean_confidence`` and,
        with ``labels`` ``(n,)``, ``accuracy`` of samples ``x`` ``(n, 1, 8, 8)``."""
        fr = bootstrap_frechet(digits_features(x, self.classifier).numpy(), self._f_ref,
                               n_boot=self.n_boot, seed=self.seed)
        pred, conf = digits_predict(x, self.classifier)
        out: Dict[str, Any] = {"fid": fr.as_dict(),
                               "confident_fraction": float((conf > CONFIDENT).double().mean()),
                               "mean_confidence": float(conf.double().mean())}
        if labels is not None:
            out["accuracy"] = float((pred == labels.to(pred.device)).double().mean())
        return out

    def data_floor(self, train: Tensor, n: int, generator: torch.Generator,
                   labels: Optional[Tensor] = None) -> Dict[str, Any]:
        """The scores of ``n`` real digits drawn from ``train`` without replacement (with their
        ``labels`` when given), and ``n``."""
        idx = torch.randperm(len(train), generator=generator)[:n]
        scores = self(train[idx], None if labels is None else labels[idx])
        return {**scores, "n": int(len(idx))}


def digits_fid(x: Tensor, dist: Optional[DistContext] = None) -> Optional[float]:
    """FID (digits-classifier features) of every process's samples ``x`` against the held-out
    test digits: each process featurises its own share and the Fréchet statistics merge
    exactly on rank 0. ``None`` on the other ranks."""
    # here, not at the top: generative.distributed itself imports generative.metrics.frechet
    from ..distributed import SINGLE_PROCESS, gather_feature_stats
    ctx = dist if dist is not None else SINGLE_PROCESS
    ctx.run_on_main(lambda: load_digits_classifier() and None)  # trains + caches it once
    classifier = load_digits_classifier()
    stats = gather_feature_stats(digits_features(x.cpu(), classifier).double(), ctx)
    if stats is None:
        return None
    reference = feature_stats(digits_features(_test_digits(), classifier).double())
    return frechet_distance(*stats, *reference)
