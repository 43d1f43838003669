"""Denoising score matching (Vincent 2011; Song et al. 2021) for any forward SDE.

The SDE is used only through ``sde.marginal(x0, t) -> (mean, std)``, ``sde.g(t, x)``
(likelihood weighting only), ``sde.t_min`` and ``sde.T``: ``x_t = mean + std z``,
``z ~ N(0, I)``, whose conditional score is ``-z / std``. With a weighting λ(t),

    loss = E_t E_{x0, z} λ(t) |s_θ(x_t, t) + z / std|²  =  E (λ / std²) |r|²,

where ``r = std s_θ + z`` (score parameterisation: the net predicts the score) or
``r = z - ε_θ`` (ε parameterisation: the net predicts the noise, s_θ = -ε_θ / std).
Weightings: ``"std2"`` (λ = std², Song et al.'s default; λ/std² = 1) and
``"likelihood"`` (λ = g², which makes the loss a bound on the negative log-likelihood,
Song et al. 2021b). ``t ~ U[t_min, T]``, optionally stratified across the batch.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, Union

import torch
from torch import nn

from dynamics import GaussianPath, LinearSDE, check_prediction
from dynamics.checks import check_choice

from .errors import InputError
from .randomness import Random, example_positions, rand, randn

Tensor = torch.Tensor

__all__ = ["dsm_loss", "dsm_loss_per_sample", "make_dsm_loss", "sample_time", "random_perturb",
           "drop_labels", "PARAMETERIZATIONS", "WEIGHTINGS"]

PARAMETERIZATIONS = ("noise", "score")  # the predictions a DSM loss trains (dynamics names)
WEIGHTINGS = ("std2", "likelihood")


def sample_time(batch: int, t_min: float, t_max: float, *, like: Tensor,
                generator: Random = None, stratified: bool = False) -> Tensor:
    """``(batch,)`` times uniform on ``[t_min, t_max]``.

    ``stratified``: example ``i`` of a global batch of ``G`` gets ``u_i ∈ [i/G, (i+1)/G)``
    (one time per slot, jittered independently)."""
    u = rand((batch,), generator, device=like.device, dtype=like.dtype)
    if stratified:
        pos, total = example_positions(batch, generator, like=like)
        u = (pos + u) / total
    return t_min + (t_max - t_min) * u


def _weight(sde: LinearSDE, t: Tensor, x: Tensor, std: Tensor, weighting: str) -> Optional[Tensor]:
    """λ(t) / std² broadcastable to x, or ``None`` when it is 1."""
    if weighting == "std2":
        return None
    g = sde.g(t, x)
    return g.square() / std.square()


def random_perturb(sde: GaussianPath, x0: Tensor, *, t_min: Optional[float] = None,
                   generator: Random = None,
                   stratified: bool = False) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_t, t, z, std)``: one time ``t ~ U[t_min, T]`` per example (default t_min =
    ``sde.t_min``; see `sample_time`) and ``x_t = sde.perturb(x0, t, z)`` with ``z`` drawn from
    ``generator`` (a `BatchRandom` or a ``torch.Generator``)."""
    t_lo = float(sde.t_min if t_min is None else t_min)
    if not 0.0 <= t_lo < float(sde.T):
        raise InputError(f"t_min must be in [0, sde.T={float(sde.T)}); got {t_lo!r}")
    t = sample_time(x0.shape[0], t_lo, float(sde.T), like=x0, generator=generator,
                    stratified=stratified)
    z = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
    xt, _ = sde.perturb(x0, t, noise=z)
    return xt, t, z, sde.coefs(x0, t)[1]


def _check_parameterization(value: object) -> str:
    """``value`` as one of `PARAMETERIZATIONS` (old names translated by
    `dynamics.check_prediction`, with a `DeprecationWarning`)."""
    return check_choice("parameterization", check_prediction(value, "parameterization"),
                        PARAMETERIZATIONS)


def dsm_loss_per_sample(net: Callable[..., Tensor], sde: LinearSDE, x0: Tensor, *,
                        t_min: Optional[float] = None,
                        parameterization: str = "noise", weighting: str = "std2",
                        reduce: str = "mean", y: Optional[Tensor] = None,
                        generator: Random = None, stratified: bool = False) -> Tensor:
    """Per-sample DSM losses ``(B,)`` (one draw of t and z per sample).

    Args:
        net: ``net(x, t)`` (or ``net(x, t, y)`` when ``y`` is given), t of shape ``(B,)``.
        t_min: lower end of the training times (default ``sde.t_min``).
        parameterization: what the net predicts, ``'noise'`` (ε) or ``'score'`` (``'eps'``:
            the deprecated name of ``'noise'``).
        reduce: ``"mean"`` or ``"sum"`` over each sample's event dimensions.
    """
    parameterization = _check_parameterization(parameterization)
    check_choice("weighting", weighting, WEIGHTINGS)
    check_choice("reduce", reduce, ("mean", "sum"))
    xt, t, z, std = random_perturb(sde, x0, t_min=t_min, generator=generator, stratified=stratified)
    out = net(xt, t) if y is None else net(xt, t, y)
    r = z - out if parameterization == "noise" else std * out + z
    sq = r.square()
    w = _weight(sde, t, xt, std, weighting)
    if w is not None:
        sq = w * sq
    sq = sq.flatten(1)
    return sq.mean(dim=1) if reduce == "mean" else sq.sum(dim=1)


def dsm_loss(net: Callable[..., Tensor], sde: LinearSDE, x0: Tensor, **kwargs: Any) -> Tensor:
    """Batch-mean DSM loss (a scalar); keyword arguments as `dsm_loss_per_sample`."""
    return dsm_loss_per_sample(net, sde, x0, **kwargs).mean()


def drop_labels(y: Tensor, p: float, null_label: int, generator: Random = None) -> Tensor:
    """Replace each label of ``y`` ``(B,)`` by ``null_label`` with probability ``p`` (one
    uniform draw per example): the label dropout of classifier-free guidance training."""
    drop = rand(y.shape, generator, device=y.device) < p
    return torch.where(drop, torch.full_like(y, null_label), y)


def make_dsm_loss(sde: LinearSDE, *, label_dropout: float = 0.0, null_label: Optional[int] = None,
                  **kwargs: Any) -> Callable[[nn.Module, Any, Random], Tensor]:
    """A ``loss_fn(model, batch, rng)`` closure for `generative.train.train`.

    ``batch`` is ``x0`` or ``(x0, y)`` (labels are passed to the net as its third argument).
    With ``label_dropout = p > 0`` each label is replaced by ``null_label`` (the net's "no
    class" label) with probability p, so one net learns the conditional and the
    unconditional score (classifier-free guidance, Ho & Salimans 2022). Other keyword
    arguments go to `dsm_loss_per_sample`.
    """
    if "parameterization" in kwargs:
        kwargs["parameterization"] = _check_parameterization(kwargs["parameterization"])
    check_choice("weighting", kwargs.get("weighting", "std2"), WEIGHTINGS)
    if isinstance(label_dropout, bool) or not isinstance(label_dropout, (int, float)) \
            or not 0.0 <= label_dropout <= 1.0:
        raise InputError(f"label_dropout must be a number in [0, 1]; got {label_dropout!r}")
    if label_dropout > 0 and (isinstance(null_label, bool) or not isinstance(null_label, int)):
        raise InputError(f"label_dropout > 0 needs null_label, the net's int \"no class\" "
                         f"label (its num_classes); got {null_label!r}")

    def loss_fn(model: nn.Module, batch: Union[Tensor, Tuple[Tensor, ...]],
                rng: Random) -> Tensor:
        x0, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        if y is not None and label_dropout > 0:
            y = drop_labels(y, label_dropout, null_label, rng)
        return dsm_loss(model, sde, x0, y=y, generator=rng, **kwargs)

    return loss_fn
