"""Conversions between score, epsilon-, x0- and v-predictions for ``x_t = alpha x0 + sigma eps``.

With ``alpha = alpha(t)``, ``sigma = sigma(t)`` of any object with ``alpha(t)`` and ``sigma(t)``
(a linear SDE or an interpolation path):

- score = -eps / sigma                    (Tweedie: E[eps | x_t] = -sigma score)
- x0    = (x - sigma eps) / alpha
- v     = alpha eps - sigma x0            (Salimans & Ho 2022), so
  eps = (alpha v + sigma x) / (alpha^2 + sigma^2), x0 = (alpha x - sigma v) / (alpha^2 + sigma^2)

``t`` is a number, a 0-dim or a ``(B,)`` tensor; results have x's shape.
"""
from __future__ import annotations

from typing import Any, Callable, Tuple

import torch
from torch import nn

from solvers.errors import InvalidInputError, describe

from .broadcast import TimeLike, broadcast_time, call_score, expand_coef

Tensor = torch.Tensor

__all__ = ["PREDICTIONS", "score_from_eps", "score_from_x0", "score_from_v",
           "eps_from_score", "x0_from_score", "v_from_score", "to_score", "from_score",
           "ScoreAdapter"]

PREDICTIONS = ("score", "eps", "x0", "v")


def _coefs(process: Any, x: Tensor, t: TimeLike) -> Tuple[Tensor, Tensor]:
    tb = broadcast_time(t, x)
    return expand_coef(process.alpha(tb), x), expand_coef(process.sigma(tb), x)


def score_from_eps(eps: Tensor, x: Tensor, t: TimeLike, process: Any) -> Tensor:
    """score = -eps / sigma(t)."""
    _, s = _coefs(process, x, t)
    return -eps / s


def score_from_x0(x0: Tensor, x: Tensor, t: TimeLike, process: Any) -> Tensor:
    """score = -(x - alpha x0) / sigma^2."""
    a, s = _coefs(process, x, t)
    return -(x - a * x0) / s ** 2


def score_from_v(v: Tensor, x: Tensor, t: TimeLike, process: Any) -> Tensor:
    """score = -eps / sigma with eps = (alpha v + sigma x) / (alpha^2 + sigma^2)."""
    a, s = _coefs(process, x, t)
    return -(a * v + s * x) / ((a ** 2 + s ** 2) * s)


def eps_from_score(score: Tensor, x: Tensor, t: TimeLike, process: Any) -> Tensor:
    """eps = -sigma score."""
    _, s = _coefs(process, x, t)
    return -s * score


def x0_from_score(score: Tensor, x: Tensor, t: TimeLike, process: Any) -> Tensor:
    """x0 = (x + sigma^2 score) / alpha (Tweedie's denoiser)."""
    a, s = _coefs(process, x, t)
    return (x + s ** 2 * score) / a


def v_from_score(score: Tensor, x: Tensor, t: TimeLike, process: Any) -> Tensor:
    """v = alpha eps - sigma x0 with eps, x0 from the score."""
    a, s = _coefs(process, x, t)
    eps = -s * score
    return a * eps - s * (x - s * eps) / a


_TO_SCORE = {"eps": score_from_eps, "x0": score_from_x0, "v": score_from_v}
_FROM_SCORE = {"eps": eps_from_score, "x0": x0_from_score, "v": v_from_score}


def _check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise InvalidInputError(
            f"`prediction` must be one of {PREDICTIONS}; got {prediction!r}")


def to_score(pred: Tensor, x: Tensor, t: TimeLike, process: Any, prediction: str) -> Tensor:
    """Convert a ``prediction`` ('score', 'eps', 'x0' or 'v') at (x, t) into a score."""
    _check_prediction(prediction)
    return pred if prediction == "score" else _TO_SCORE[prediction](pred, x, t, process)


def from_score(score: Tensor, x: Tensor, t: TimeLike, process: Any, prediction: str) -> Tensor:
    """Convert a score at (x, t) into a ``prediction`` ('score', 'eps', 'x0' or 'v')."""
    _check_prediction(prediction)
    return score if prediction == "score" else _FROM_SCORE[prediction](score, x, t, process)


class ScoreAdapter(nn.Module):
    """Wrap a model ``model(x, t)`` predicting eps, x0, v (or the score) as ``score_fn(x, t)``.

    The model receives ``t`` as a ``(B,)`` tensor and is registered as a submodule when it is
    an ``nn.Module`` (so its parameters are visible to optimisers and adjoints).
    """

    def __init__(self, model: Callable[[Tensor, Tensor], Tensor], process: Any,
                 prediction: str = "eps") -> None:
        super().__init__()
        _check_prediction(prediction)
        if not callable(model):
            raise InvalidInputError(f"`model` must be callable model(x, t); got {describe(model)}")
        if not (hasattr(process, "alpha") and hasattr(process, "sigma")):
            raise InvalidInputError(
                f"`process` must have alpha(t) and sigma(t) (an SDE or a path); "
                f"got {describe(process)}")
        self.model = model
        self.process = process
        self.prediction = prediction

    def forward(self, x: Tensor, t: TimeLike) -> Tensor:
        tb = broadcast_time(t, x)
        pred = call_score(self.model, x, tb, name="model")
        return to_score(pred, x, tb, self.process, self.prediction)

    def extra_repr(self) -> str:
        return f"prediction={self.prediction!r}"
