"""`ModelSpec`: the typed, versioned description of a model, and its stored form ``meta``.

A training checkpoint's ``meta`` (a plain dict, so that ``torch.load(weights_only=True)``
reads it) says how to rebuild its model:

- common: ``format`` (`META_FORMAT`), ``version`` (`META_VERSION`), ``kind``, ``data``,
  ``event_shape``, ``levels``, ``dequantize``, ``data_std``, ``net`` (``'mlp'`` or
  ``'unet'``) and ``net_kwargs``;
- plus the fields of the kind's training-option dataclass (`KIND_SCHEMAS`, all present):
  `ScoreOptions` ``sde, weighting, t_min, cond, num_classes, label_dropout``
  (``num_classes`` set: class-conditional, trained on ``(x, labels)``); `FFJORDOptions`
  ``divergence, n_probes, kinetic, jacobian, gradient, method, rtol, atol``;
  `FlowMatchingOptions` (fm / ot-fm) ``path, t_min``; `ClassifierOptions`
  ``sde, t_min, num_classes``.

`ModelSpec.from_meta` reads any meta sdeflow wrote (through `upgrade_meta`, then
`validate_meta`) and `ModelSpec.to_meta` writes the current layout; ``ModelSpec.options`` is
the kind's option dataclass. Version-1 checkpoints
(score models written before the other kinds existed: ``kind`` was ``'sdeflow-score-model'``
and ``model`` named the network) and classifier checkpoints of the layout they had before
they were a kind (``kind`` ``'sdeflow-noise-classifier'``, ``model_kwargs``) are converted by
`upgrade_meta`. `validate_meta` checks a
description against the schema (every key known and present, types, ranges, ``net_kwargs``
per network) before anything is built. `meta_differences` / `describe_differences` say how
two descriptions differ, the key that matters most (kind, data, network) first.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from dynamics import VESDE, VPSDE, SubVPSDE
from solvers import DIVERGENCE_METHODS, TABLEAUS

from .errors import ModelError
from .flow_matching import PATHS
from .likelihood import GRADIENT_MODES
from .losses import WEIGHTINGS
from .nets import NOISE_CONDITIONS

__all__ = ["ModelSpec", "KindSchema", "KIND_SCHEMAS", "KindOptions", "ScoreOptions",
           "FFJORDOptions", "FlowMatchingOptions", "ClassifierOptions", "check_known_options",
           "META_FORMAT", "META_VERSION", "NET_NAMES", "SDE_NAMES", "MATTERS_FIRST",
           "upgrade_meta", "validate_meta", "meta_differences", "describe_differences"]

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


# --------------------------------------------------------------------------- kind options

def check_known_options(given: Iterable[str], valid: Sequence[str], kind: str,
                        what: str = "option") -> None:
    """`ModelError` naming the first (alphabetically) of ``given`` not in ``valid``, the
    options of ``kind`` models."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ModelError(f"{what} {unknown[0]!r} does not apply to {kind!r} models; their "
                         f"options: {', '.join(valid)}")


@dataclass(frozen=True)
class ScoreOptions:
    """Training options of ``score`` models: the SDE (`SDE_NAMES`), the DSM loss ``weighting``,
    the smallest training time ``t_min`` (None: the SDE's ``t_min``), the network's noise
    conditioning ``cond``; ``num_classes`` set: class-conditional (labels 0..K-1 and the null
    label K), trained with label dropout probability ``label_dropout`` for classifier-free
    guidance."""

    sde: str = "vp"
    weighting: str = "std2"
    t_min: Optional[float] = None
    cond: str = "logsigma"
    num_classes: Optional[int] = None
    label_dropout: float = 0.0


@dataclass(frozen=True)
class FFJORDOptions:
    """Training options of ``ffjord`` models (`generative.ffjord.CNF`): the divergence
    estimator and its probe count, the RNODE weights ``kinetic`` and ``jacobian``, the
    gradient mode and the training solver ``method`` with ``rtol``/``atol``."""

    divergence: str = "auto"
    n_probes: int = 1
    kinetic: float = 0.0
    jacobian: float = 0.0
    gradient: str = "backsolve"
    method: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5


@dataclass(frozen=True)
class FlowMatchingOptions:
    """Training options of ``fm`` / ``ot-fm`` models: the probability ``path`` (`PATHS`) and
    the smallest training time ``t_min`` (None: the path's ``t_min``)."""

    path: str = "linear"
    t_min: Optional[float] = None


@dataclass(frozen=True)
class ClassifierOptions:
    """Training options of the noise-conditional ``classifier``: the SDE whose marginals it
    classifies, the smallest training time ``t_min`` and ``num_classes`` (from the labelled
    data; required)."""

    sde: str = "vp"
    t_min: Optional[float] = None
    num_classes: Optional[int] = None


KindOptions = Union[ScoreOptions, FFJORDOptions, FlowMatchingOptions, ClassifierOptions]


@dataclass(frozen=True)
class KindSchema:
    """What a kind stores in ``meta``: its training options (the dataclass ``options_type``,
    whose field defaults are the defaults, and a ``checks`` entry per field), the networks it
    can use (``net_family`` selects their ``net_kwargs`` schema) and the options added after
    its first checkpoints (absent from old ones: they take their defaults, which reproduce the
    old behaviour)."""

    options_type: type
    checks: Mapping[str, Check]
    nets: Tuple[str, ...] = NET_NAMES
    net_family: str = "time"
    added: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert set(self.checks) == {f.name for f in fields(self.options_type)}

    @property
    def defaults(self) -> Dict[str, Any]:
        return {f.name: f.default for f in fields(self.options_type)}

    def make_options(self, values: Mapping[str, Any], kind: str) -> Any:
        """An ``options_type`` instance from ``values`` (absent fields: their defaults);
        `ModelError` names an option the kind does not have."""
        check_known_options(values, list(self.checks), kind)
        return self.options_type(**values)


_FLOW_MATCHING = KindSchema(FlowMatchingOptions,
                            {"path": _choice(*PATHS), "t_min": _T_MIN})
KIND_SCHEMAS: Dict[str, KindSchema] = {
    "score": KindSchema(ScoreOptions, {
        "sde": _choice(*SDE_NAMES), "weighting": _choice(*WEIGHTINGS), "t_min": _T_MIN,
        "cond": _choice(*NOISE_CONDITIONS), "num_classes": _optional(_int(1, _SIZE)),
        "label_dropout": _real(0.0, 1.0)}, added=("num_classes", "label_dropout")),
    # FFJORD's concat-squash MLP (`generative.nets.ODENet`): smooth, as a CNF needs
    "ffjord": KindSchema(FFJORDOptions, {
        "divergence": _choice("auto", *DIVERGENCE_METHODS), "n_probes": _int(1, 1024),
        "kinetic": _real(0.0), "jacobian": _real(0.0), "gradient": _choice(*GRADIENT_MODES),
        "method": _choice(*TABLEAUS), "rtol": _real(0.0, lo_open=True),
        "atol": _real(0.0, lo_open=True)}, nets=("mlp",), net_family="ffjord"),
    "fm": _FLOW_MATCHING,
    "ot-fm": _FLOW_MATCHING,
    # the noise-conditional classifier p_t(y | x): num_classes comes from the labelled data
    "classifier": KindSchema(ClassifierOptions, {
        "sde": _choice(*SDE_NAMES), "t_min": _T_MIN, "num_classes": _int(1, _SIZE)},
        nets=("mlp",)),
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
    defaults = schema.defaults
    return {**{k: defaults[k] for k in schema.added}, **meta}


# --------------------------------------------------------------------------- the spec

@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a model: its ``kind``, the data it models (name, event shape,
    quantisation ``levels``, whether batches are dequantised, the data's std), its network
    (``net`` and ``net_kwargs``), the kind's training ``options`` (the kind's option dataclass,
    `KIND_SCHEMAS` [kind].options_type; a dict of some of its fields is converted, the rest
    taking their defaults) and the layout ``version``."""

    kind: str
    data: str
    event_shape: Tuple[int, ...]
    levels: Optional[int]
    dequantize: bool
    data_std: float
    net: str = "mlp"
    net_kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Any = None
    version: int = META_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KIND_SCHEMAS:
            raise ModelError(f"unknown model kind {self.kind!r}; valid kinds: "
                             f"{', '.join(KIND_SCHEMAS)}")
        schema = KIND_SCHEMAS[self.kind]
        options = {} if self.options is None else self.options
        if isinstance(options, Mapping):
            options = schema.make_options(options, self.kind)
        elif not isinstance(options, schema.options_type):
            raise ModelError(f"options of a {self.kind!r} model must be a "
                             f"{schema.options_type.__name__} or a dict of its fields; got "
                             f"{type(options).__name__}")
        object.__setattr__(self, "options", options)
        object.__setattr__(self, "event_shape", tuple(self.event_shape))

    @classmethod
    def from_meta(cls, meta: Any, where: str = "meta") -> "ModelSpec":
        """The spec of any ``meta`` sdeflow wrote (upgraded, then validated); `ModelError`
        names what is wrong."""
        m = validate_meta(upgrade_meta(meta), where)
        schema = KIND_SCHEMAS[m["kind"]]
        return cls(kind=m["kind"], data=m["data"], event_shape=tuple(m["event_shape"]),
                   levels=m["levels"], dequantize=m["dequantize"], data_std=m["data_std"],
                   net=m["net"], net_kwargs=dict(m["net_kwargs"]),
                   options=schema.options_type(**{k: m[k] for k in schema.checks}),
                   version=m["version"])

    def to_meta(self) -> Dict[str, Any]:
        """The plain dict stored in a checkpoint (current layout, validated)."""
        return validate_meta({
            "format": META_FORMAT, "version": self.version, "kind": self.kind,
            "data": self.data, "event_shape": list(self.event_shape), "levels": self.levels,
            "dequantize": self.dequantize, "data_std": self.data_std, "net": self.net,
            "net_kwargs": dict(self.net_kwargs), **asdict(self.options)})

    @property
    def num_classes(self) -> Optional[int]:
        """The number of classes of a class-conditional model, else None."""
        return getattr(self.options, "num_classes", None)


# the keys that say most about how two model descriptions differ, in this order (the rest
# follow by name): what is modelled, on which data, by which network, then the kind's options
MATTERS_FIRST = ("kind", "data", "event_shape", "net", "net_kwargs", "num_classes", "sde",
                 "path", "levels", "dequantize")


def meta_differences(saved: Mapping[str, Any], given: Mapping[str, Any]) -> List[str]:
    """The keys on which two meta dicts differ, the one that matters most first
    (`MATTERS_FIRST`, then alphabetical)."""
    keys = [k for k in sorted(set(saved) | set(given)) if saved.get(k) != given.get(k)]
    rank = {k: i for i, k in enumerate(MATTERS_FIRST)}
    return sorted(keys, key=lambda k: rank.get(k, len(rank)))


def describe_differences(saved: Mapping[str, Any], given: Mapping[str, Any],
                         shown: int = 4) -> Optional[str]:
    """``None`` when the two descriptions agree, else ``"first K: saved A vs given B (also
    ...)"`` naming the key that matters most first, up to ``shown`` keys in all."""
    diff = meta_differences(saved, given)
    if not diff:
        return None

    def show(k: str) -> str:
        return f"{k}: saved {saved.get(k)!r} vs given {given.get(k)!r}"
    also = [show(k) for k in diff[1:shown]]
    if len(diff) > shown:
        also.append(f"{len(diff) - shown} more ({', '.join(diff[shown:])})")
    return f"first {show(diff[0])}" + (f" (also {'; '.join(also)})" if also else "")
