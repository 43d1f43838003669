"""`ModelSpec`: the typed, versioned description of a model, and its stored form ``meta``.

A training checkpoint's ``meta`` (a plain dict, so that ``torch.load(weights_only=True)``
reads it) says how to rebuild its model:

- common: ``format`` (`META_FORMAT`), ``version`` (`META_VERSION`), ``kind``, ``data``,
  ``event_shape``, ``levels``, ``dequantize``, ``data_std``, ``net`` (``'mlp'`` or
  ``'unet'``) and ``net_kwargs``;
- plus the kind's training options (`KIND_SCHEMAS`, all present):
  score ``sde, weighting, t_min, cond, num_classes, label_dropout`` (``num_classes`` set:
  class-conditional, trained on ``(x, labels)``); ffjord ``divergence, n_probes, kinetic,
  jacobian, gradient, method, rtol, atol``; fm / ot-fm ``path, t_min``; classifier
  ``sde, t_min, num_classes``.

`ModelSpec.from_meta` reads any meta sdeflow wrote (through `upgrade_meta`, then
`validate_meta`) and `ModelSpec.to_meta` writes the current layout. Version-1 checkpoints
(score models written before the other kinds existed: ``kind`` was ``'sdeflow-score-model'``
and ``model`` named the network) and classifier checkpoints of the layout they had before
they were a kind (``kind`` ``'sdeflow-noise-classifier'``, ``model_kwargs``) are converted by
`upgrade_meta`. `validate_meta` checks a
description against the schema (every key known and present, types, ranges, ``net_kwargs``
per network) before anything is built.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from dynamics import VESDE, VPSDE, SubVPSDE
from solvers import DIVERGENCE_METHODS, TABLEAUS

from .errors import ModelError
from .flow_matching import PATHS
from .likelihood import GRADIENT_MODES
from .losses import WEIGHTINGS
from .nets import NOISE_CONDITIONS

__all__ = ["ModelSpec", "KindSchema", "KIND_SCHEMAS", "META_FORMAT", "META_VERSION",
           "NET_NAMES", "SDE_NAMES", "upgrade_meta", "validate_meta"]

META_FORMAT = "sdeflow-model"
META_VERSION = 2
NET_NAMES = ("mlp", "unet")
SDE_NAMES = {"vp": VPSDE, "ve": VESDE, "subvp": SubVPSDE}
_LEGACY_SCORE_FORMAT = "sdeflow-score-model"  # version-1 meta["kind"]
_LEGACY_CLASSIFIER_FORMAT = "sdeflow-noise-classifier"  # classifiers' own version-1 layout

# --------------------------------------------------------------------------- checks

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


# --------------------------------------------------------------------------- the schema

# Ranges bound what a description may ask to build (module counts and widths); a checkpoint's
# weights must then match the model built from it exactly (`generative.models.load_model`), so
# a description cannot make it allocate more than the weights the file already holds.
_SIZE = 1 << 16
_T_MIN = _optional(_real(0.0, 1.0, hi_open=True))


@dataclass(frozen=True)
class KindSchema:
    """What a kind stores in ``meta``: its training options (name -> ``(default, check)``),
    the networks it can use (``net_family`` selects their ``net_kwargs`` schema) and the
    options added after its first checkpoints (absent from old ones: they take their
    defaults, which reproduce the old behaviour)."""

    options: Mapping[str, Tuple[Any, Check]]
    nets: Tuple[str, ...] = NET_NAMES
    net_family: str = "time"
    added: Tuple[str, ...] = ()

    @property
    def defaults(self) -> Dict[str, Any]:
        return {k: default for k, (default, _) in self.options.items()}

    @property
    def checks(self) -> Dict[str, Check]:
        return {k: check for k, (_, check) in self.options.items()}


_FLOW_MATCHING = KindSchema({"path": ("linear", _choice(*PATHS)), "t_min": (None, _T_MIN)})
KIND_SCHEMAS: Dict[str, KindSchema] = {
    # num_classes: class-conditional (labels 0..K-1 and the null label K), trained with label
    # dropout probability label_dropout for classifier-free guidance (both came later)
    "score": KindSchema({
        "sde": ("vp", _choice(*SDE_NAMES)), "weighting": ("std2", _choice(*WEIGHTINGS)),
        "t_min": (None, _T_MIN), "cond": ("logsigma", _choice(*NOISE_CONDITIONS)),
        "num_classes": (None, _optional(_int(1, _SIZE))),
        "label_dropout": (0.0, _real(0.0, 1.0))}, added=("num_classes", "label_dropout")),
    # FFJORD's concat-squash MLP (`generative.nets.ODENet`): smooth, as a CNF needs
    "ffjord": KindSchema({
        "divergence": ("auto", _choice("auto", *DIVERGENCE_METHODS)),
        "n_probes": (1, _int(1, 1024)), "kinetic": (0.0, _real(0.0)),
        "jacobian": (0.0, _real(0.0)), "gradient": ("backsolve", _choice(*GRADIENT_MODES)),
        "method": ("dopri5", _choice(*TABLEAUS)), "rtol": (1e-5, _real(0.0, lo_open=True)),
        "atol": (1e-5, _real(0.0, lo_open=True))}, nets=("mlp",), net_family="ffjord"),
    "fm": _FLOW_MATCHING,
    "ot-fm": _FLOW_MATCHING,
    # the noise-conditional classifier p_t(y | x): num_classes comes from the labelled data
    "classifier": KindSchema({
        "sde": ("vp", _choice(*SDE_NAMES)), "t_min": (None, _T_MIN),
        "num_classes": (None, _int(1, _SIZE))}, nets=("mlp",)),
}
_COMMON: Dict[str, Check] = {
    "format": _choice(META_FORMAT), "version": _int(META_VERSION, META_VERSION),
    "kind": _choice(*KIND_SCHEMAS),
    "data": _name, "event_shape": _int_list(1, 4, 1, _SIZE),
    "levels": _optional(_int(2, 1 << 16)), "dequantize": _is_bool,
    "data_std": _real(0.0, lo_open=True), "net": _choice(*NET_NAMES),
    "net_kwargs": lambda v: None if isinstance(v, dict) else "a dict of network options",
}
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
    if kind not in KIND_SCHEMAS:
        raise ModelError(f"{where}['kind'] must be one of "
                         f"{', '.join(map(repr, KIND_SCHEMAS))}; got {kind!r}")
    schema = KIND_SCHEMAS[kind]
    _check_fields({**_COMMON, **schema.checks}, meta, where, required=True)
    if meta["dequantize"] and meta["levels"] is None:
        raise ModelError(f"{where}['dequantize'] is True but {where}['levels'] is None "
                         "(only quantised data is dequantised)")
    if meta["net"] not in schema.nets:
        raise ModelError(f"{where}['net'] must be one of {', '.join(map(repr, schema.nets))}"
                         f" for {kind!r} models; got {meta['net']!r}")
    if meta["net"] == "unet" and len(meta["event_shape"]) != 3:
        raise ModelError(f"{where}['event_shape'] must be (C, H, W) for net 'unet'; got "
                         f"{meta['event_shape']!r}")
    _check_fields(_NET_KWARGS[(schema.net_family, meta["net"])], meta["net_kwargs"],
                  f"{where}['net_kwargs']", required=False)
    return dict(meta)


def upgrade_meta(meta: Any) -> Dict[str, Any]:
    """``meta`` in the current layout, or `ModelError` if it does not describe an sdeflow
    model. A version-1 score-model meta is converted, and the training options added to a kind
    after its first checkpoints (`KindSchema.added`) take their defaults when absent (which
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
    elif meta.get("kind") == _LEGACY_CLASSIFIER_FORMAT and meta.get("version") == 1:
        old = {k: v for k, v in meta.items() if k not in ("kind", "version")}
        if "model_kwargs" in old:
            old["net_kwargs"] = old.pop("model_kwargs")
        meta = {"format": META_FORMAT, "version": META_VERSION, "kind": "classifier",
                "net": "mlp", "data_std": 1.0, **old}  # the first ones had no data_std
    if meta.get("format") != META_FORMAT or meta.get("kind") not in KIND_SCHEMAS:
        raise ModelError("no model description in the checkpoint's meta")
    if meta.get("version") != META_VERSION:
        raise ModelError(f"model description version {meta.get('version')!r}; this sdeflow "
                         f"reads version {META_VERSION}")
    schema = KIND_SCHEMAS[meta["kind"]]
    return {**{k: schema.options[k][0] for k in schema.added}, **meta}


# --------------------------------------------------------------------------- the spec

@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a model: its ``kind``, the data it models (name, event shape,
    quantisation ``levels``, whether batches are dequantised, the data's std), its network
    (``net`` and ``net_kwargs``), the kind's training ``options`` (`KIND_SCHEMAS`) and the
    layout ``version``."""

    kind: str
    data: str
    event_shape: Tuple[int, ...]
    levels: Optional[int]
    dequantize: bool
    data_std: float
    net: str = "mlp"
    net_kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    version: int = META_VERSION

    @classmethod
    def from_meta(cls, meta: Any, where: str = "meta") -> "ModelSpec":
        """The spec of any ``meta`` sdeflow wrote (upgraded, then validated); `ModelError`
        names what is wrong."""
        m = validate_meta(upgrade_meta(meta), where)
        return cls(kind=m["kind"], data=m["data"], event_shape=tuple(m["event_shape"]),
                   levels=m["levels"], dequantize=m["dequantize"], data_std=m["data_std"],
                   net=m["net"], net_kwargs=dict(m["net_kwargs"]),
                   options={k: m[k] for k in KIND_SCHEMAS[m["kind"]].options},
                   version=m["version"])

    def to_meta(self) -> Dict[str, Any]:
        """The plain dict stored in a checkpoint (current layout, validated)."""
        return validate_meta({
            "format": META_FORMAT, "version": self.version, "kind": self.kind,
            "data": self.data, "event_shape": list(self.event_shape), "levels": self.levels,
            "dequantize": self.dequantize, "data_std": self.data_std, "net": self.net,
            "net_kwargs": dict(self.net_kwargs), **self.options})

    @property
    def num_classes(self) -> Optional[int]:
        """The number of classes of a class-conditional model, else None."""
        return self.options.get("num_classes")
