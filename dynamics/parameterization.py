"""One conversion table between the predictions a model can make on a `GaussianPath`
``x_t = alpha x0 + sigma eps``: the ``'score'``, the ``'noise'`` eps (ε-prediction; ``'eps'``
is its deprecated name), ``'x0'``, ``'v'`` (Salimans & Ho 2022) and the flow-matching
``'velocity'``.

Every prediction fixes the pair ``(x0_hat, eps_hat)`` given ``x = x_t`` (`_TO_PAIR`), and every
prediction is a linear function of that pair (`_FROM_PAIR`):

- score    = -eps / sigma                      (Tweedie: x0 = (x + sigma^2 score) / alpha)
- v        = alpha eps - sigma x0
- velocity = alpha' x0 + sigma' eps            (the marginal flow-matching field)

so a flow-matching model runs with every score-based sampler (``ScoreAdapter(net, path,
'velocity')``) and a score model with every path-based tool. ``t`` is a number, a 0-dim or a
``(B,)`` tensor; results have x's shape.
"""
from __future__ import annotations

import warnings
from typing import Callable, Dict, Tuple

import torch
from torch import nn

from solvers.errors import describe

from .errors import InputError
from .broadcast import TimeLike, broadcast_time, call_score
from .checks import check_choice
from .gaussian_path import GaussianPath, check_path

Tensor = torch.Tensor
Pair = Tuple[Tensor, Tensor]

__all__ = ["PREDICTIONS", "check_prediction", "tweedie", "convert", "to_score", "from_score",
           "ScoreAdapter"]

PREDICTIONS = ("score", "noise", "x0", "v", "velocity")
# old prediction names -> their names now
_RENAMED = {"eps": "noise"}


def check_prediction(value: object, name: str = "prediction") -> str:
    """``value`` if it is one of `PREDICTIONS` (a deprecated old name, e.g. ``'eps'`` for
    ``'noise'``, is translated with a `DeprecationWarning`), else `InputError`."""
    if isinstance(value, str) and value in _RENAMED:
        warnings.warn(f"the prediction {value!r} is deprecated, use {_RENAMED[value]!r}",
                      DeprecationWarning, stacklevel=3)
        value = _RENAMED[value]
    return check_choice(name, value, PREDICTIONS)


def tweedie(x: Tensor, score: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Tweedie's denoiser ``E[x0 | x_t = x] = (x + sigma^2 score) / alpha``."""
    return (x + sigma ** 2 * score) / alpha


class _Coefs:
    """alpha, sigma (and, for the velocity, their derivatives) at (x, t), shaped against x."""

    def __init__(self, path: GaussianPath, x: Tensor, t: TimeLike, derivatives: bool) -> None:
        self.a, self.s = path.coefs(x, t)
        if derivatives:
            self.da, self.ds = path.d_coefs(x, t)


def _velocity_pair(v: Tensor, x: Tensor, c: _Coefs) -> Pair:
    det = c.a * c.ds - c.s * c.da
    return (c.ds * x - c.s * v) / det, (c.a * v - c.da * x) / det


_TO_PAIR: Dict[str, Callable[[Tensor, Tensor, _Coefs], Pair]] = {
    "score": lambda p, x, c: (tweedie(x, p, c.a, c.s), -c.s * p),
    "noise": lambda p, x, c: ((x - c.s * p) / c.a, p),
    "x0": lambda p, x, c: (p, (x - c.a * p) / c.s),
    "v": lambda p, x, c: ((c.a * x - c.s * p) / (c.a ** 2 + c.s ** 2),
                          (c.a * p + c.s * x) / (c.a ** 2 + c.s ** 2)),
    "velocity": _velocity_pair,
}

_FROM_PAIR: Dict[str, Callable[[Tensor, Tensor, _Coefs], Tensor]] = {
    "score": lambda x0, noise, c: -noise / c.s,
    "noise": lambda x0, noise, c: noise,
    "x0": lambda x0, noise, c: x0,
    "v": lambda x0, noise, c: c.a * noise - c.s * x0,
    "velocity": lambda x0, noise, c: c.da * x0 + c.ds * noise,
}


def convert(pred: Tensor, x: Tensor, t: TimeLike, path: GaussianPath, source: str,
            target: str) -> Tensor:
    """A ``source`` prediction at (x, t) as a ``target`` prediction (both in `PREDICTIONS`).
    Needs ``alpha != 0`` and ``sigma > 0`` where a division by them is involved."""
    source = check_prediction(source, "source")
    target = check_prediction(target, "target")
    if source == target:
        return pred
    c = _Coefs(path, x, t, derivatives="velocity" in (source, target))
    x0, noise = _TO_PAIR[source](pred, x, c)
    return _FROM_PAIR[target](x0, noise, c)


def to_score(pred: Tensor, x: Tensor, t: TimeLike, path: GaussianPath, prediction: str) -> Tensor:
    """Convert a ``prediction`` at (x, t) into a score."""
    return convert(pred, x, t, path, prediction, "score")


def from_score(score: Tensor, x: Tensor, t: TimeLike, path: GaussianPath,
               prediction: str) -> Tensor:
    """Convert a score at (x, t) into a ``prediction``."""
    return convert(score, x, t, path, "score", prediction)


class ScoreAdapter(nn.Module):
    """Wrap a model ``model(x, t)`` predicting the noise, x0, v, the velocity (or the score) as
    ``score_fn(x, t)``.

    The model receives ``t`` as a ``(B,)`` tensor and is registered as a submodule when it is
    an ``nn.Module`` (so its parameters are visible to optimisers and adjoints).
    """

    def __init__(self, model: Callable[[Tensor, Tensor], Tensor], path: GaussianPath,
                 prediction: str = "noise") -> None:
        super().__init__()
        prediction = check_prediction(prediction)
        if not callable(model):
            raise InputError(f"`model` must be callable model(x, t); got {describe(model)}")
        self.model = model
        self.path = check_path(path)
        self.prediction = prediction

    def forward(self, x: Tensor, t: TimeLike) -> Tensor:
        tb = broadcast_time(t, x)
        pred = call_score(self.model, x, tb, name="model")
        return to_score(pred, x, tb, self.path, self.prediction)

    def extra_repr(self) -> str:
        return f"prediction={self.prediction!r}"
