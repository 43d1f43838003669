"""The model kinds of ``sdeflow train|sample|likelihood``: one registry entry per kind.

=========  ==========================================================================
kind       model
=========  ==========================================================================
``score``  ε-prediction score model for a `dynamics` SDE (`ScoreNet`), DSM loss, any sampler
``ffjord`` continuous normalizing flow (`generative.ffjord.CNF`), optionally RNODE
``fm``     flow matching velocity field (`generative.flow_matching`, CFM)
``ot-fm``  the same with minibatch optimal-transport pairing (OT-CFM)
=========  ==========================================================================

A training checkpoint's ``meta`` (a plain dict) says how to rebuild its model:

- common: ``format`` (`META_FORMAT`), ``version`` (`META_VERSION`), ``kind``, ``data``,
  ``event_shape``, ``levels``, ``dequantize``, ``data_std``, ``net`` (``'mlp'`` or
  ``'unet'``) and ``net_kwargs``;
- plus the kind's training options (`ModelKind.options`, all present):
  score ``sde, weighting, t_min, cond, num_classes, label_dropout`` (``num_classes`` set:
  class-conditional, trained on ``(x, labels)``); ffjord ``divergence, n_probes, kinetic,
  jacobian, gradient, method, rtol, atol``; fm / ot-fm ``path, t_min``.

Version-1 checkpoints (score models written before the other kinds existed: ``kind`` was
``'sdeflow-score-model'`` and ``model`` named the network) are read through `upgrade_meta`.

`validate_meta` checks a description against a schema (every key known and present, types,
ranges, ``net_kwargs`` per network) before anything is built; `load_model` then builds the
model on the meta device and compares its parameter names and shapes with the checkpoint's
weights, so a description can never make it allocate more than the file already holds.

`make_meta` → `train_model` → `load_model` → `sample` / `log_prob` dispatch on
``meta['kind']``. The networks live in `generative.nets` (score models: a `ScoreNet`, the
ε-predicting preconditioned wrapper of an `MLP` or `UNet`; FFJORD: an `ODENet`).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from dynamics import VESDE, VPSDE, LinearSDE, SubVPSDE
from solvers import DIVERGENCE_METHODS, TABLEAUS

from .checkpoint import CheckpointError, load_checkpoint
from .data import Dataset, dequantize_transform
from .ema import checkpoint_weights
from .errors import ModelError
from .ffjord import CNF, GRADIENT_MODES, make_ffjord_loss
from .flow_matching import PATHS, end_times, fm_log_likelihood, fm_sample, make_fm_loss
from .guidance import classifier_log_prob_fn, guided_score_fn
from .losses import WEIGHTINGS, make_dsm_loss
from .nets import MLP, NOISE_CONDITIONS, ODENet, ScoreNet, UNet
from .samplers import sample as run_sampler
from .samplers.ode import cost as ode_cost

Tensor = torch.Tensor

__all__ = ["ModelError", "ModelKind", "KINDS", "NET_NAMES", "SDE_NAMES", "META_FORMAT",
           "META_VERSION", "make_sde", "make_meta", "upgrade_meta", "validate_meta",
           "build_model",
           "load_model", "train_model", "sample", "log_prob"]

META_FORMAT = "sdeflow-model"
META_VERSION = 2
NET_NAMES = ("mlp", "unet")
SDE_NAMES = {"vp": VPSDE, "ve": VESDE, "subvp": SubVPSDE}
_LEGACY_SCORE_FORMAT = "sdeflow-score-model"  # version-1 meta["kind"]


# --------------------------------------------------------------------------- score model

def make_sde(name: str) -> LinearSDE:
    """The SDE ``'vp'``, ``'ve'`` or ``'subvp'`` with its default parameters."""
    if name not in SDE_NAMES:
        raise ModelError(f"unknown SDE {name!r}; valid SDEs: {', '.join(SDE_NAMES)}")
    return SDE_NAMES[name]()


# --------------------------------------------------------------------------- kinds

def _time_net(meta: Mapping[str, Any]) -> nn.Module:
    """The time-conditioned `MLP` or `UNet` of ``meta`` (score and flow-matching models), with
    a class embedding when ``meta['num_classes']`` is set."""
    shape = tuple(meta["event_shape"])
    kwargs = dict(meta["net_kwargs"])
    if meta.get("num_classes") is not None:
        kwargs["num_classes"] = int(meta["num_classes"])
    if meta["net"] == "mlp":
        return MLP(shape, **kwargs)
    return UNet(in_channels=shape[0], image_size=shape[1], **kwargs)


def _float_nfe(nfe: Any) -> float:
    return float(torch.as_tensor(nfe, dtype=torch.float64).mean())


def _fixed_steps(nfe: int, method: str) -> int:
    """Steps of ``method`` whose evaluations fit in the budget ``nfe``."""
    cost = ode_cost({"method": method})
    if nfe < cost.setup + cost.per_step:
        raise ModelError(f"nfe = {nfe} is too small for method {method!r}: one step needs "
                         f"{cost.setup + cost.per_step} evaluations")
    return (nfe - cost.setup) // cost.per_step


class ModelKind(ABC):
    """How one kind of model is built, trained, sampled and scored.

    ``options`` maps the kind's training options (stored in ``meta``) to their defaults;
    ``nets`` lists the networks it can use. ``sampling`` is the dataclass of the kind's
    sampling options (`sample_batch` gets an instance); `log_prob` takes the likelihood
    options all kinds share.
    """

    name: str
    options: Mapping[str, Any]
    sampling: type
    added: Tuple[str, ...] = ()  # options later than the kind's first checkpoints
    nets: Tuple[str, ...] = NET_NAMES

    @abstractmethod
    def build(self, meta: Mapping[str, Any]) -> nn.Module:
        """A fresh model from ``meta``."""

    @abstractmethod
    def loss(self, model: nn.Module, meta: Mapping[str, Any]) -> Callable[..., Any]:
        """The ``loss_fn(model, batch, rng)`` of `generative.train.train`."""

    @abstractmethod
    def sample_batch(self, model: nn.Module, meta: Mapping[str, Any], n: int, options: Any, *,
                     generator: Optional[torch.Generator]) -> Tuple[Tensor, float]:
        """``n`` samples and the mean NFE per sample, with ``options`` a `sampling`
        instance."""

    @abstractmethod
    def log_prob(self, model: nn.Module, meta: Mapping[str, Any], x: Tensor, *,
                 generator: Optional[torch.Generator], divergence: str, n_probes: int,
                 rtol: float, atol: float) -> Tuple[Tensor, float]:
        """``(log p(x) in nats, NFE of the solve)``."""


@dataclass(frozen=True)
class ScoreSampling:
    """Sampling options of score models: any `generative.samplers` ``sampler``; ``nfe`` is a
    budget of score evaluations (default 500; for ``'ode'`` it makes the solve fixed-step,
    else adaptive with ``rtol``/``atol``); ``snr``/``n_corrector`` of ``'pc'``; ``eps`` the
    end time (default the SDE's). With a class ``label``: ``guidance`` ``'none'``
    (conditional score), ``'cfg'`` or ``'classifier'`` (with a noise-conditional
    ``classifier``) at ``scale`` (`generative.guidance.guided_score_fn`)."""

    sampler: str = "pc"
    nfe: Optional[int] = None
    method: str = "dopri5"
    rtol: float = 1e-4
    atol: float = 1e-4
    snr: float = 0.16
    n_corrector: int = 1
    eps: Optional[float] = None
    denoise: bool = True
    label: Optional[Union[int, Tensor]] = None
    guidance: str = "none"
    scale: float = 1.0
    classifier: Optional[nn.Module] = None


class ScoreKind(ModelKind):
    name = "score"
    sampling = ScoreSampling
    # num_classes: class-conditional (labels 0..K-1 and the null label K), trained with
    # label dropout probability label_dropout for classifier-free guidance
    options = {"sde": "vp", "weighting": "std2", "t_min": None, "cond": "logsigma",
               "num_classes": None, "label_dropout": 0.0}
    added = ("num_classes", "label_dropout")  # class-conditional models came later

    def build(self, meta: Mapping[str, Any]) -> ScoreNet:
        return ScoreNet(_time_net(meta), make_sde(meta["sde"]), meta["data_std"], meta["cond"])

    def loss(self, model: ScoreNet, meta: Mapping[str, Any]) -> Callable[..., Any]:
        return make_dsm_loss(model.sde, parameterization="eps", weighting=meta["weighting"],
                             t_min=meta["t_min"], label_dropout=meta.get("label_dropout", 0.0),
                             null_label=meta.get("num_classes"))

    def sample_batch(self, model: ScoreNet, meta: Mapping[str, Any], n: int,
                     options: ScoreSampling, *, generator: Optional[torch.Generator]
                     ) -> Tuple[Tensor, float]:
        o = options
        nfe = 500 if o.sampler != "ode" and o.nfe is None else o.nfe
        score = model.score_fn()
        if o.label is not None:
            clf = o.classifier
            try:
                score = guided_score_fn(
                    model, model.sde, o.label, guidance=o.guidance, scale=o.scale,
                    classifier_log_prob=None if clf is None
                    else (lambda y: classifier_log_prob_fn(clf, y)))
            except ValueError as err:
                raise ModelError(str(err)) from err
        kw: Dict[str, Any] = {"denoise": o.denoise}
        if o.sampler == "ode":
            kw.update(method=o.method, rtol=o.rtol, atol=o.atol)
        if o.sampler == "pc":
            kw.update(snr=o.snr, n_corrector=o.n_corrector)
        if o.eps is not None:
            kw["eps"] = o.eps
        x, used = run_sampler(o.sampler, model.sde, score, (n, *meta["event_shape"]), nfe=nfe,
                              generator=generator, **kw)
        return x, _float_nfe(used)

    def log_prob(self, model: ScoreNet, meta: Mapping[str, Any], x: Tensor, *,
                 generator: Optional[torch.Generator], divergence: str, n_probes: int,
                 rtol: float, atol: float) -> Tuple[Tensor, float]:
        from .likelihood import log_likelihood
        logp, stats = log_likelihood(model.sde, model.score_fn(), x,
                                     divergence_method=divergence, n_probes=n_probes,
                                     rtol=rtol, atol=atol, generator=generator,
                                     return_stats=True)
        return logp, _float_nfe(stats["nfe"])


def _ode_net(shape: Sequence[int], width: int = 64, depth: int = 3) -> ODENet:
    return ODENet(shape, hidden=(width,) * depth)


@dataclass(frozen=True)
class FlowSampling:
    """Sampling options of flows (ffjord, fm, ot-fm): an adaptive ``method`` with
    ``rtol``/``atol`` (None: the model's training solver and tolerances for ffjord, dopri5 at
    1e-4 for flow matching), or fixed steps of ``method`` fitting the budget ``nfe``."""

    method: Optional[str] = None
    rtol: Optional[float] = None
    atol: Optional[float] = None
    nfe: Optional[int] = None


class FFJORDKind(ModelKind):
    name = "ffjord"
    sampling = FlowSampling
    options = {"divergence": "auto", "n_probes": 1, "kinetic": 0.0, "jacobian": 0.0,
               "gradient": "backsolve", "method": "dopri5", "rtol": 1e-5, "atol": 1e-5}
    nets = ("mlp",)  # FFJORD's concat-squash MLP (`ODENet`): smooth, as a CNF needs

    def build(self, meta: Mapping[str, Any]) -> CNF:
        shape = tuple(meta["event_shape"])
        net = _ode_net(shape, **meta["net_kwargs"])
        return CNF(shape, net, divergence_method=meta["divergence"], n_probes=meta["n_probes"],
                   kinetic=meta["kinetic"], jacobian=meta["jacobian"],
                   gradient=meta["gradient"], method=meta["method"], rtol=meta["rtol"],
                   atol=meta["atol"])

    def loss(self, model: CNF, meta: Mapping[str, Any]) -> Callable[..., Any]:
        return make_ffjord_loss()

    def sample_batch(self, model: CNF, meta: Mapping[str, Any], n: int,
                     options: FlowSampling, *, generator: Optional[torch.Generator]
                     ) -> Tuple[Tensor, float]:
        """Integrate the flow from N(0, I) at T to the data at 0."""
        method = options.method or model.method
        kw: Dict[str, Any] = {k: v for k, v in (("rtol", options.rtol), ("atol", options.atol))
                              if v is not None}
        if options.nfe is not None:
            kw["step_size"] = model.T / _fixed_steps(options.nfe, method)
        x, stats = model.sample(n, generator=generator, method=method, return_stats=True, **kw)
        return x, _float_nfe(stats["nfe"])

    def log_prob(self, model: CNF, meta: Mapping[str, Any], x: Tensor, *,
                 generator: Optional[torch.Generator], divergence: str, n_probes: int,
                 rtol: float, atol: float) -> Tuple[Tensor, float]:
        with torch.no_grad():
            logp = model.log_prob(x, divergence_method=divergence, n_probes=n_probes,
                                  generator=generator, rtol=rtol, atol=atol)
        return logp, float(model.last_stats["nfe"])


class FlowMatchingKind(ModelKind):
    options = {"path": "linear", "t_min": None}
    sampling = FlowSampling

    def __init__(self, name: str, ot: bool) -> None:
        self.name, self.ot = name, ot

    def build(self, meta: Mapping[str, Any]) -> nn.Module:
        return _time_net(meta)

    def loss(self, model: nn.Module, meta: Mapping[str, Any]) -> Callable[..., Any]:
        return make_fm_loss(meta["path"], ot=self.ot, t_min=meta["t_min"])

    def sample_batch(self, model: nn.Module, meta: Mapping[str, Any], n: int,
                     options: FlowSampling, *, generator: Optional[torch.Generator]
                     ) -> Tuple[Tensor, float]:
        """Integrate ``v`` from N(0, I) at T to ``t_min``."""
        p = next(model.parameters())
        method = options.method or "dopri5"
        kw: Dict[str, Any] = {"rtol": 1e-4 if options.rtol is None else options.rtol,
                              "atol": 1e-4 if options.atol is None else options.atol}
        if options.nfe is not None:
            lo, hi = end_times(meta["path"], meta["t_min"])
            kw = {"step_size": (hi - lo) / _fixed_steps(options.nfe, method)}
        x, stats = fm_sample(model, (n, *meta["event_shape"]), path=meta["path"],
                             t_min=meta["t_min"], method=method, generator=generator,
                             dtype=p.dtype, device=p.device, return_stats=True, **kw)
        return x, _float_nfe(stats["nfe"])

    def log_prob(self, model: nn.Module, meta: Mapping[str, Any], x: Tensor, *,
                 generator: Optional[torch.Generator], divergence: str, n_probes: int,
                 rtol: float, atol: float) -> Tuple[Tensor, float]:
        logp, stats = fm_log_likelihood(model, x, path=meta["path"], t_min=meta["t_min"],
                                        divergence_method=divergence, n_probes=n_probes,
                                        rtol=rtol, atol=atol, generator=generator,
                                        return_stats=True)
        return logp, _float_nfe(stats["nfe"])


KINDS: Dict[str, ModelKind] = {k.name: k for k in (
    ScoreKind(), FFJORDKind(), FlowMatchingKind("fm", ot=False),
    FlowMatchingKind("ot-fm", ot=True))}


def _kind(name: Any) -> ModelKind:
    if name not in KINDS:
        raise ModelError(f"unknown model kind {name!r}; valid kinds: {', '.join(KINDS)}")
    return KINDS[name]


# --------------------------------------------------------------------------- meta

def make_meta(kind: str, data: Dataset, *, net: str = "mlp",
              net_kwargs: Optional[Mapping[str, Any]] = None, dequantize: bool = True,
              **options: Any) -> Dict[str, Any]:
    """The ``meta`` dict of a new model of ``kind`` on ``data``: common fields plus the kind's
    training options (`ModelKind.options`; those not given take their defaults)."""
    k = _kind(kind)
    unknown = sorted(set(options) - set(k.options))
    if unknown:
        raise ModelError(f"option {unknown[0]!r} does not apply to {kind!r} models; their "
                         f"options: {', '.join(k.options)}")
    if net not in k.nets:
        raise ModelError(f"unknown net {net!r} for {kind!r} models; valid nets: "
                         f"{', '.join(k.nets)}")
    shape = list(data.event_shape)
    if net == "unet" and len(shape) != 3:
        raise ModelError(f"net 'unet' needs image data (C, H, W); {data.name!r} has event "
                         f"shape {tuple(shape)}; use net 'mlp'")
    return validate_meta({
        "format": META_FORMAT, "version": META_VERSION, "kind": kind, "data": data.name,
        "event_shape": shape, "levels": data.levels,
        "dequantize": bool(dequantize and data.levels is not None),
        "data_std": float(data.train.to(torch.float64).std()), "net": net,
        "net_kwargs": dict(net_kwargs or {}), **k.options, **options})


def upgrade_meta(meta: Any) -> Dict[str, Any]:
    """``meta`` in the current layout, or `ModelError` if it does not describe an sdeflow
    model. A version-1 score-model meta is converted, and the training options added to a kind
    after its first checkpoints (`ModelKind.added`) take their defaults when absent (which
    reproduce the old behaviour); any other missing option is an error (`validate_meta`),
    never silently a default."""
    if not isinstance(meta, dict):
        raise ModelError("no model description in the checkpoint's meta")
    if meta.get("kind") == _LEGACY_SCORE_FORMAT and meta.get("version") == 1:
        old = dict(meta)
        for key in ("kind", "version", "parameterization"):
            old.pop(key, None)
        old["net"], old["net_kwargs"] = old.pop("model"), old.pop("model_kwargs")
        meta = {"format": META_FORMAT, "version": META_VERSION, "kind": "score", **old}
    if meta.get("format") != META_FORMAT or meta.get("kind") not in KINDS:
        raise ModelError("no model description in the checkpoint's meta")
    if meta.get("version") != META_VERSION:
        raise ModelError(f"model description version {meta.get('version')!r}; this sdeflow "
                         f"reads version {META_VERSION}")
    kind = KINDS[meta["kind"]]
    return {**{k: kind.options[k] for k in kind.added}, **meta}


# --------------------------------------------------------------------------- meta schema

Check = Callable[[Any], Optional[str]]  # None when valid, else what was expected


def _int(lo: int, hi: int) -> Check:
    def check(v: Any) -> Optional[str]:
        ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"an int in [{lo}, {hi}]"
    return check


def _real(lo: float, hi: float = math.inf, *, lo_open: bool = False,
          hi_open: bool = False) -> Check:
    def check(v: Any) -> Optional[str]:
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
              and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi))
        return None if ok else (f"a finite number in {'(' if lo_open else '['}{lo:g}, "
                                f"{hi:g}{')' if hi_open else ']'}")
    return check


def _optional(check: Check) -> Check:
    def opt(v: Any) -> Optional[str]:
        expected = check(v) if v is not None else None
        return None if expected is None else f"None or {expected}"
    return opt


def _choice(*names: str) -> Check:
    return lambda v: None if v in names else f"one of {', '.join(map(repr, names))}"


def _is_bool(v: Any) -> Optional[str]:
    return None if isinstance(v, bool) else "True or False"


def _name(v: Any) -> Optional[str]:
    return None if isinstance(v, str) and v else "a non-empty string"


def _int_list(min_len: int, max_len: int, lo: int, hi: int) -> Check:
    def check(v: Any) -> Optional[str]:
        ok = (isinstance(v, (list, tuple)) and min_len <= len(v) <= max_len
              and all(isinstance(s, int) and not isinstance(s, bool) and lo <= s <= hi
                      for s in v))
        return None if ok else (f"a list of {min_len} to {max_len} ints in [{lo}, {hi}]")
    return check


# Ranges bound what a description may ask to build (module counts and widths); a checkpoint's
# weights must then match the model built from it exactly (`_check_weights`), so a description
# cannot make `load_model` allocate more than the weights the file already holds.
_SIZE = 1 << 16
_COMMON: Dict[str, Check] = {
    "format": _choice(META_FORMAT), "version": _int(META_VERSION, META_VERSION),
    "kind": lambda v: None if v in KINDS else f"one of {', '.join(map(repr, KINDS))}",
    "data": _name, "event_shape": _int_list(1, 4, 1, _SIZE),
    "levels": _optional(_int(2, 1 << 16)), "dequantize": _is_bool,
    "data_std": _real(0.0, lo_open=True), "net": _choice(*NET_NAMES),
    "net_kwargs": lambda v: None if isinstance(v, dict) else "a dict of network options",
}
_OPTIONS: Dict[str, Dict[str, Check]] = {
    "score": {"sde": _choice(*SDE_NAMES), "weighting": _choice(*WEIGHTINGS),
              "t_min": _optional(_real(0.0, 1.0, hi_open=True)),
              "cond": _choice(*NOISE_CONDITIONS), "num_classes": _optional(_int(1, _SIZE)),
              "label_dropout": _real(0.0, 1.0)},
    "ffjord": {"divergence": _choice("auto", *DIVERGENCE_METHODS),
               "n_probes": _int(1, 1024), "kinetic": _real(0.0), "jacobian": _real(0.0),
               "gradient": _choice(*GRADIENT_MODES), "method": _choice(*TABLEAUS),
               "rtol": _real(0.0, lo_open=True), "atol": _real(0.0, lo_open=True)},
    "fm": {"path": _choice(*PATHS), "t_min": _optional(_real(0.0, 1.0, hi_open=True))},
}
_OPTIONS["ot-fm"] = _OPTIONS["fm"]
_TIME_NET = {"time_dim": _int(2, _SIZE), "fourier_scale": _real(0.0, lo_open=True),
             "dropout": _real(0.0, 1.0, hi_open=True)}
NET_SCHEMA_MLP: Dict[str, Check] = {"width": _int(1, _SIZE), "depth": _int(0, 1024),
                                    **_TIME_NET}
_NET_KWARGS: Dict[Tuple[str, str], Dict[str, Check]] = {
    ("time", "mlp"): NET_SCHEMA_MLP,
    ("time", "unet"): {"base_channels": _int(1, _SIZE), "channel_mult": _int_list(1, 8, 1, 64),
                       "num_res_blocks": _int(0, 64), **_TIME_NET},
    ("ffjord", "mlp"): {"width": _int(1, _SIZE), "depth": _int(1, 1024)},
}


def _check_fields(table: Mapping[str, Check], values: Mapping[str, Any], where: str, *,
                  required: bool) -> None:
    """Every key of ``values`` is in ``table`` and passes its check; with ``required`` every
    key of ``table`` is present. `ModelError` names the key, the expected and the found."""
    if not isinstance(values, Mapping):
        raise ModelError(f"{where} must be a dict; got {type(values).__name__}")
    for key in values:
        if key not in table:
            raise ModelError(f"{where} has the unknown key {key!r}; valid keys: "
                             f"{', '.join(table)}")
    for key, test in table.items():
        if key not in values:
            if required:
                raise ModelError(f"{where} lacks the key {key!r}")
            continue
        expected = test(values[key])
        if expected is not None:
            raise ModelError(f"{where}[{key!r}] must be {expected}; got {values[key]!r}")


def validate_meta(meta: Mapping[str, Any], where: str = "meta") -> Dict[str, Any]:
    """Check a (current-layout) model description before anything is built: every key known,
    present, of the right type and in range. Returns it as a dict; raises `ModelError` naming
    the key, what was expected and what was found."""
    if not isinstance(meta, Mapping):
        raise ModelError(f"{where} must be a dict; got {type(meta).__name__}")
    kind = meta.get("kind")
    if kind not in KINDS:
        raise ModelError(f"{where}['kind'] must be one of {', '.join(map(repr, KINDS))}; got "
                         f"{kind!r}")
    _check_fields({**_COMMON, **_OPTIONS[kind]}, meta, where, required=True)
    if meta["dequantize"] and meta["levels"] is None:
        raise ModelError(f"{where}['dequantize'] is True but {where}['levels'] is None "
                         "(only quantised data is dequantised)")
    if meta["net"] not in KINDS[kind].nets:
        raise ModelError(f"{where}['net'] must be one of {', '.join(map(repr, KINDS[kind].nets))}"
                         f" for {kind!r} models; got {meta['net']!r}")
    if meta["net"] == "unet" and len(meta["event_shape"]) != 3:
        raise ModelError(f"{where}['event_shape'] must be (C, H, W) for net 'unet'; got "
                         f"{meta['event_shape']!r}")
    family = "ffjord" if kind == "ffjord" else "time"
    _check_fields(_NET_KWARGS[(family, meta["net"])], meta["net_kwargs"],
                  f"{where}['net_kwargs']", required=False)
    return dict(meta)


def _check_weights(model: nn.Module, weights: Any, where: str) -> None:
    """Raise `ModelError` unless ``weights`` has exactly ``model``'s state-dict keys and
    shapes (``model`` may live on the meta device: nothing is allocated)."""
    if not isinstance(weights, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in weights.items()):
        raise ModelError(f"{where} must be a dict of named tensors")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [f"{k}: {tuple(weights[k].shape)} vs {expected[k]}" for k in expected
             if k in weights and tuple(weights[k].shape) != expected[k]]
    problems = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
        ([f"unexpected {', '.join(unexpected[:3])}"] if unexpected else []) + \
        ([f"shapes (saved vs described) {'; '.join(wrong[:3])}"] if wrong else [])
    if problems:
        raise ModelError(f"{where}: " + " | ".join(problems))


def build_model(meta: Mapping[str, Any], device: Any = None) -> nn.Module:
    """A fresh (untrained) model from ``meta`` (validated first, see `validate_meta`), with
    its parameters on ``device`` (``'meta'``: shapes only, nothing allocated)."""
    meta = validate_meta(meta)
    try:
        with torch.device(device if device is not None else "cpu"):
            return _kind(meta["kind"]).build(meta)
    except ModelError:
        raise
    except (ValueError, TypeError) as err:  # a combination the net rejects
        raise ModelError(f"cannot build the model of this meta: {err}") from err


# --------------------------------------------------------------------------- train / load

def train_model(data: Dataset, meta: Dict[str, Any], config: Any,
                out_dir: Union[str, Path, None], *,
                resume: bool = False, **train_kwargs: Any) -> Any:
    """Train the model ``meta`` describes, initialised from ``config.seed``, on ``data.train``
    with `generative.train.train` (dequantising each batch when ``meta['dequantize']``);
    returns its `TrainResult`. Resuming checks that the checkpoint holds the same model."""
    from .train import CHECKPOINT_NAME, train
    ckpt = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    if resume and ckpt is not None and ckpt.is_file():
        _check_same_model(load_model(ckpt)[1], meta)
    with torch.random.fork_rng(devices=[]):  # initial weights: a function of the run's seed
        torch.manual_seed(config.seed)
        model = build_model(meta)
    transform = dequantize_transform(data.levels if meta["dequantize"] else None)
    train_data: Any = data.train
    if meta.get("num_classes") is not None:  # class-conditional: batches (x, labels)
        if data.train_labels is None:
            raise ModelError(f"a class-conditional model needs labelled data; {data.name!r} "
                             "has no labels")
        train_data = (data.train, data.train_labels)
    return train(model, _kind(meta["kind"]).loss(model, meta), train_data, config,
                 out_dir=out_dir, resume=resume, transform=transform, meta=meta,
                 **train_kwargs)


def _check_same_model(saved: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Resuming must continue the same model on data of the same shape."""
    diff = [k for k in sorted(set(saved) | set(meta)) if saved.get(k) != meta.get(k)]
    if diff:
        raise ModelError("cannot resume: the checkpoint holds a different model or data; "
                         + ", ".join(f"{k}: saved {saved.get(k)!r} vs given {meta.get(k)!r}"
                                     for k in diff))


def load_model(path: Union[str, Path], *, use_ema: bool = True
               ) -> Tuple[nn.Module, Dict[str, Any], Dict[str, Any]]:
    """A training checkpoint -> ``(model in eval mode, meta, state)`` (EMA weights unless
    ``use_ema=False``). Raises `ModelError` for a missing, corrupt or foreign checkpoint."""
    try:
        state = load_checkpoint(path)
    except CheckpointError as err:
        raise ModelError(str(err)) from err
    try:
        if not isinstance(state, dict) or "model" not in state:
            raise ModelError("no model weights")
        meta = upgrade_meta(state.get("meta"))
    except ModelError as err:
        raise ModelError(f"{str(path)!r} is not a checkpoint written by `sdeflow train` "
                         f"({err})") from err
    try:
        meta = validate_meta(meta)
    except ModelError as err:
        raise ModelError(f"checkpoint {str(path)!r} has an invalid model description: "
                         f"{err}") from err
    try:  # shapes first, on the meta device: a description cannot make us allocate more
        weights = checkpoint_weights(state, use_ema)
        _check_weights(build_model(meta, device="meta"), weights, "its weights")
    except ValueError as err:  # ModelError included
        raise ModelError(f"checkpoint {str(path)!r} does not match its model description: "
                         f"{err}") from err
    with torch.random.fork_rng(devices=[]):  # building must not move the caller's RNG
        model = build_model(meta)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise ModelError(f"checkpoint {str(path)!r} does not match its model description: "
                         f"{str(err).splitlines()[0]}") from err
    model.eval().requires_grad_(False)
    return model, meta, state


# --------------------------------------------------------------------------- sample / score

def sample(model: nn.Module, meta: Mapping[str, Any], n: int, *,
           generator: Optional[torch.Generator] = None, **options: Any) -> Tuple[Tensor, float]:
    """``n`` samples of a loaded model and the mean NFE per sample. ``options`` are the
    kind's sampling options (the fields of its ``sampling`` dataclass); others raise
    `ModelError`."""
    k = _kind(meta["kind"])
    valid = [f.name for f in fields(k.sampling)]
    for name in options:
        if name not in valid:
            raise ModelError(f"sampling option {name!r} does not apply to {k.name!r} models; "
                             f"their options: {', '.join(valid)}")
    return k.sample_batch(model, meta, n, k.sampling(**options), generator=generator)


def log_prob(model: nn.Module, meta: Mapping[str, Any], x: Tensor, *,
             generator: Optional[torch.Generator] = None, divergence: str = "exact",
             n_probes: Optional[int] = None, rtol: float = 1e-5, atol: float = 1e-5
             ) -> Tuple[Tensor, float]:
    """``(log p(x) in nats (B,), NFE)`` of a loaded model (score models: through the
    probability-flow ODE). ``n_probes`` defaults to 3 for ``'hutch++'`` and 1 otherwise."""
    if tuple(x.shape[1:]) != tuple(meta["event_shape"]):
        raise ModelError(f"x: expected data of event shape {tuple(meta['event_shape'])} (the "
                         f"model's), got a tensor of shape {tuple(x.shape)}")
    if n_probes is None:
        n_probes = 3 if divergence == "hutch++" else 1
    return _kind(meta["kind"]).log_prob(model, meta, x, generator=generator,
                                        divergence=divergence, n_probes=n_probes, rtol=rtol,
                                        atol=atol)
