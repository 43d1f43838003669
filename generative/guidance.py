"""Class-conditional sampling from trained models: label-bound scores, classifier-free guidance
and classifier guidance, each a score function ``score_fn(x, t)`` that every sampler accepts.

- ``none``: the conditional score of a class-conditional model (label bound).
- ``cfg``: ``s(x, t | null) + scale (s(x, t | y) - s(x, t | null))`` from one class-conditional
  model trained with label dropout (`generative.losses.make_dsm_loss`); scale 0 is the
  unconditional model (the null label), 1 the conditional one, > 1 sharpens the class.
- ``classifier``: ``s(x, t) + scale grad_x log p_t(y | x)`` with a noise-conditional classifier
  (`generative.classifier`); the score model may be unconditional (a class-conditional one is
  used with its null label).

The score model is an ε-predicting ``model(x, t, y=None)`` (`generative.nets.ScoreNet`) whose
net has ``num_classes`` (``None`` when unconditional) and the null label ``num_classes``.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn

from dynamics import ClassifierFreeGuidance, ClassifierGuidance, GaussianPath, ScoreAdapter
from dynamics.checks import check_choice

from .errors import InputError

Tensor = torch.Tensor
Label = Union[int, Tensor]
ScoreFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["GUIDANCE", "LabelBound", "model_num_classes", "check_label", "class_score_fn",
           "guided_score_fn", "classifier_log_prob_fn"]

GUIDANCE = ("none", "cfg", "classifier")


def model_num_classes(model: nn.Module) -> Optional[int]:
    """``num_classes`` of a model or of the net it wraps (``None``: unconditional)."""
    return getattr(model, "num_classes", getattr(getattr(model, "net", None), "num_classes", None))


def check_label(label: Label, num_classes: int, name: str = "label") -> None:
    """Raise ``ValueError`` unless ``label`` (int or int tensor) lies in ``[0, num_classes)``."""
    if isinstance(label, Tensor):
        ok = not label.is_floating_point() and label.dim() <= 1 and (
            label.numel() == 0 or (int(label.min()) >= 0 and int(label.max()) < num_classes))
    else:
        ok = isinstance(label, int) and not isinstance(label, bool) and 0 <= label < num_classes
    if not ok:
        form = "a (B,) int tensor of classes" if isinstance(label, Tensor) else "an int class"
        raise InputError(f"{name} must be {form} in [0, {num_classes}); got {label!r}")


class LabelBound(nn.Module):
    """``model(x, t, y)`` with the label bound: ``forward(x, t) = model(x, t, y)``.

    ``label`` is an int (every row), a ``(B,)`` tensor (one per row) or ``None`` (the null
    label: the model's unconditional output).
    """

    def __init__(self, model: nn.Module, label: Optional[Label]) -> None:
        super().__init__()
        self.model, self.label = model, label

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if self.label is None:
            return self.model(x, t)
        y = torch.as_tensor(self.label, dtype=torch.long, device=x.device)
        return self.model(x, t, y.expand(x.shape[0]) if y.dim() == 0 else y)


def class_score_fn(model: nn.Module, sde: GaussianPath, label: Optional[Label]) -> ScoreFn:
    """The score ``-ε̂(x, t, label) / sigma(t)`` of an ε-model with ``label`` bound
    (``None``: unconditional, i.e. the null label of a class-conditional model)."""
    return ScoreAdapter(LabelBound(model, label), sde, "noise")


def guided_score_fn(model: nn.Module, sde: GaussianPath, label: Label, *, guidance: str = "none",
                    scale: float = 1.0,
                    classifier_log_prob: Optional[Callable[[Label], ScoreFn]] = None
                    ) -> ScoreFn:
    """The score for sampling class ``label`` (int or ``(B,)`` tensor) with ``guidance``.

    Args:
        model: ε-prediction model ``model(x, t, y=None)``.
        guidance: ``'none'`` (conditional score; needs a class-conditional model),
            ``'cfg'`` (classifier-free, needs a class-conditional model) or ``'classifier'``.
        scale: guidance scale γ (ignored by ``'none'``).
        classifier_log_prob: for ``'classifier'``: ``label -> log_prob_fn(x, t)``, the
            classifier's ``log p_t(label | x)`` (e.g. `classifier_log_prob_fn`).

    Raises ``ValueError`` naming the argument for an unknown guidance, a missing classifier, a
    label out of range or conditional guidance of an unconditional model.
    """
    check_choice("guidance", guidance, GUIDANCE)
    k = model_num_classes(model)
    if guidance == "classifier":
        if classifier_log_prob is None:
            raise InputError("guidance='classifier' needs classifier_log_prob (a trained "
                             "noise-conditional classifier)")
        return ClassifierGuidance(class_score_fn(model, sde, None), classifier_log_prob(label),
                                  scale)
    if k is None:
        raise InputError(f"guidance={guidance!r} needs a class-conditional score model "
                         "(trained with labels); this one is unconditional. Use "
                         "guidance='classifier' with a noise-conditional classifier")
    check_label(label, k)
    cond = class_score_fn(model, sde, label)
    if guidance == "none":
        return cond
    return ClassifierFreeGuidance(cond, class_score_fn(model, sde, None), scale)


def classifier_log_prob_fn(classifier: nn.Module, label: Label) -> ScoreFn:
    """``(x, t) -> log p_t(label | x)``, shape (B,), of a noise-conditional classifier (a
    model of kind ``'classifier'``: ``classifier(x, t)`` -> logits of its net's
    ``out_features`` classes) for `dynamics.ClassifierGuidance`; ``label`` is an int or a
    ``(B,)`` tensor of classes in ``[0, out_features)``."""
    check_label(label, classifier.net.out_features)

    def fn(x: Tensor, t: Tensor) -> Tensor:
        lp = torch.log_softmax(classifier(x, t), dim=-1)
        y = torch.as_tensor(label, dtype=torch.long, device=x.device).expand(x.shape[0])
        return lp.gather(1, y[:, None])[:, 0]
    return fn
