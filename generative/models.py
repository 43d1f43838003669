"""The model kinds of ``sdeflow train|sample|likelihood``: one registry entry per kind.

==============  =====================================================================
kind            model
==============  =====================================================================
``score``       ε-prediction score model for a `dynamics` SDE (`ScoreNet`), DSM loss
``ffjord``      continuous normalizing flow (`generative.ffjord.CNF`), optionally RNODE
``fm``          flow matching velocity field (`generative.flow_matching`, CFM)
``ot-fm``       the same with minibatch optimal-transport pairing (OT-CFM)
``classifier``  noise-conditional classifier ``p_t(y | x)`` of classifier guidance (it
                neither samples nor has a likelihood: not in `GENERATIVE_KINDS`)
==============  =====================================================================

A model is described by a `generative.spec.ModelSpec` (kind, data, net, the kind's training
options as its option dataclass), stored in its checkpoint as the plain dict ``meta``
(`ModelSpec.to_meta`; read back by `ModelSpec.from_meta`). Every public function here takes a
spec or its meta dict; `make_spec` returns a spec (`make_meta` its dict), `load_model` a
`LoadedModel` (model, spec, state). `load_model` builds the model on the meta device first and
compares its parameter names and shapes with the checkpoint's weights, so a description can
never make it allocate more than the file holds.

`make_spec` → `train_model` → `load_model` → `sample` / `log_prob` dispatch on
the spec's ``kind``. The networks live in `generative.nets` (score models: a `ScoreNet`, the
ε-predicting preconditioned wrapper of an `MLP` or `UNet`; FFJORD: an `ODENet`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from dynamics import LinearSDE
from dynamics.deprecation import renamed_argument
from dynamics.errors import as_input_error

from .checkpoint import CheckpointError, load_checkpoint
from .classifier import make_classifier_loss
from .data import Dataset, dequantize_transform
from .ema import checkpoint_weights
from .errors import InputError, ModelError
from .ffjord import CNF, make_ffjord_loss
from .flow_matching import end_times, fm_log_likelihood, fm_sample, make_fm_loss
from .guidance import classifier_log_prob_fn, guided_score_fn
from .losses import make_dsm_loss
from .nets import MLP, ODENet, ScoreNet, UNet
from .samplers import sample as run_sampler
from .results import LogProbResult, SampleResult, mean_nfe
from .samplers.ode import cost as ode_cost
from .spec import (KIND_SCHEMAS, SDE_NAMES, ModelSpec, check_known_options,
                   describe_differences, upgrade_meta, validate_meta)

Tensor = torch.Tensor

__all__ = ["ModelError", "ModelKind", "GenerativeKind", "KINDS", "GENERATIVE_KINDS",
           "ScoreSampling", "FlowSampling", "SpecLike", "LoadedModel", "DEFAULT_NFE",
           "as_spec", "score_budget", "make_sde", "make_spec", "make_meta", "build_model",
           "load_model", "train_model", "check_same_model", "sample", "log_prob"]

SpecLike = Union[ModelSpec, Mapping[str, Any]]  # a spec, or the meta dict it is stored as

# the score-evaluation budget of the SDE samplers (every sampler but the adaptive 'ode') when
# none is given: `sample`, `generate` and the CLI's sample / inpaint
DEFAULT_NFE = 500


def score_budget(sampler: str, nfe: Optional[int]) -> Optional[int]:
    """The NFE budget of a score-model sampler: ``nfe``, else `DEFAULT_NFE` (``None`` for
    ``'ode'``, which is then adaptive)."""
    return DEFAULT_NFE if nfe is None and sampler != "ode" else nfe


def as_spec(spec: SpecLike) -> ModelSpec:
    """``spec`` itself, or the `ModelSpec` of a meta dict (upgraded and validated)."""
    return spec if isinstance(spec, ModelSpec) else ModelSpec.from_meta(spec)


# --------------------------------------------------------------------------- score model

def make_sde(name: str) -> LinearSDE:
    """The SDE ``'vp'``, ``'ve'`` or ``'subvp'`` with its default parameters."""
    if name not in SDE_NAMES:
        raise ModelError(f"unknown SDE {name!r}; valid SDEs: {', '.join(SDE_NAMES)}")
    return SDE_NAMES[name]()


# --------------------------------------------------------------------------- kinds

def _time_net(spec: ModelSpec) -> nn.Module:
    """The time-conditioned `MLP` or `UNet` of ``spec`` (score and flow-matching models), with
    a class embedding when the spec is class-conditional."""
    shape = spec.event_shape
    kwargs = dict(spec.net_kwargs)
    if spec.num_classes is not None:
        kwargs["num_classes"] = int(spec.num_classes)
    if spec.net == "mlp":
        return MLP(shape, **kwargs)
    return UNet(in_channels=shape[0], image_size=shape[1], **kwargs)


def _fixed_steps(nfe: int, method: str) -> int:
    """Steps of ``method`` whose evaluations fit in the budget ``nfe``."""
    cost = ode_cost({"method": method})
    if nfe < cost.setup + cost.per_step:
        raise ModelError(f"nfe = {nfe} is too small for method {method!r}: one step needs "
                         f"{cost.setup + cost.per_step} evaluations")
    return (nfe - cost.setup) // cost.per_step


class ModelKind(ABC):
    """How one kind of model is built and trained.

    Its stored training options and networks are `generative.spec.KIND_SCHEMAS` [``name``]
    (``options``: their defaults; ``nets``).
    """

    name: str

    @property
    def options(self) -> Dict[str, Any]:
        """The kind's training options and their defaults."""
        return KIND_SCHEMAS[self.name].defaults

    @property
    def nets(self) -> Tuple[str, ...]:
        return KIND_SCHEMAS[self.name].nets

    @abstractmethod
    def build(self, spec: ModelSpec) -> nn.Module:
        """A fresh model from ``spec``."""

    @abstractmethod
    def loss(self, model: nn.Module, spec: ModelSpec) -> Callable[..., Any]:
        """The ``loss_fn(model, batch, rng)`` of `generative.train.train`."""

    def data_options(self, data: Dataset) -> Dict[str, Any]:
        """Training options that follow from the data (`make_spec` fills them in)."""
        return {}


class GenerativeKind(ModelKind):
    """A kind that samples and has a likelihood. ``sampling`` is the dataclass of its sampling
    options (`sample_batch` gets an instance); `log_prob` takes the likelihood options all
    kinds share."""

    sampling: type

    @abstractmethod
    def sample_batch(self, model: nn.Module, spec: ModelSpec, n: int, options: Any, *,
                     generator: Optional[torch.Generator]) -> SampleResult:
        """``n`` samples and the mean NFE per sample, with ``options`` a `sampling`
        instance."""

    @abstractmethod
    def log_prob(self, model: nn.Module, spec: ModelSpec, x: Tensor, *,
                 generator: Optional[torch.Generator], divergence: str, n_probes: int,
                 rtol: float, atol: float) -> LogProbResult:
        """``log p(x)`` in nats and the mean NFE of the solve."""


@dataclass(frozen=True)
class ScoreSampling:
    """Sampling options of score models: any `generative.samplers` ``sampler``; ``nfe`` is a
    budget of score calls (default `DEFAULT_NFE`; for ``'ode'`` it makes the solve
    fixed-step, else adaptive with ``rtol``/``atol``); ``snr``/``n_corrector`` of ``'pc'``;
    ``t_min`` the end time (default the SDE's ``t_min``). With a class ``label``:
    ``guidance`` ``'none'`` (conditional score), ``'cfg'`` or ``'classifier'`` (with a
    noise-conditional ``classifier``) at ``scale`` (`generative.guidance.guided_score_fn`);
    the result's ``nfe`` counts network evaluations, two per score call under ``'cfg'``."""

    sampler: str = "pc"
    nfe: Optional[int] = None
    method: str = "dopri5"
    rtol: float = 1e-4
    atol: float = 1e-4
    snr: float = 0.16
    n_corrector: int = 1
    t_min: Optional[float] = None
    denoise: bool = True
    label: Optional[Union[int, Tensor]] = None
    guidance: str = "none"
    scale: float = 1.0
    classifier: Optional[nn.Module] = None


class ScoreKind(GenerativeKind):
    name = "score"
    sampling = ScoreSampling

    def build(self, spec: ModelSpec) -> ScoreNet:
        o = spec.options
        return ScoreNet(_time_net(spec), make_sde(o.sde), spec.data_std, o.cond)

    def loss(self, model: ScoreNet, spec: ModelSpec) -> Callable[..., Any]:
        o = spec.options
        return make_dsm_loss(model.sde, parameterization="noise", weighting=o.weighting,
                             t_min=o.t_min, label_dropout=o.label_dropout,
                             null_label=spec.num_classes)

    def sample_batch(self, model: ScoreNet, spec: ModelSpec, n: int,
                     options: ScoreSampling, *, generator: Optional[torch.Generator]
                     ) -> SampleResult:
        o = options
        nfe = score_budget(o.sampler, o.nfe)
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
        if o.t_min is not None:
            kw["t_min"] = o.t_min
        x, used = run_sampler(o.sampler, model.sde, score, (n, *spec.event_shape), nfe=nfe,
                              generator=generator, **kw)
        # a guided score may cost more than one network evaluation (classifier-free: two)
        calls = mean_nfe(used)
        return SampleResult(x, calls * getattr(score, "evaluations_per_call", 1), calls)

    def log_prob(self, model: ScoreNet, spec: ModelSpec, x: Tensor, *,
                 generator: Optional[torch.Generator], divergence: str, n_probes: int,
                 rtol: float, atol: float) -> LogProbResult:
        from .likelihood import log_likelihood
        return log_likelihood(model.sde, model.score_fn(), x, divergence_method=divergence,
                              n_probes=n_probes, rtol=rtol, atol=atol, generator=generator)


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


class FFJORDKind(GenerativeKind):
    name = "ffjord"
    sampling = FlowSampling

    def build(self, spec: ModelSpec) -> CNF:
        o = spec.options
        net = _ode_net(spec.event_shape, **spec.net_kwargs)
        return CNF(spec.event_shape, net, divergence_method=o.divergence, n_probes=o.n_probes,
                   kinetic=o.kinetic, jacobian=o.jacobian, gradient=o.gradient,
                   method=o.method, rtol=o.rtol, atol=o.atol)

    def loss(self, model: CNF, spec: ModelSpec) -> Callable[..., Any]:
        return make_ffjord_loss()

    def sample_batch(self, model: CNF, spec: ModelSpec, n: int,
                     options: FlowSampling, *, generator: Optional[torch.Generator]
                     ) -> SampleResult:
        """Integrate the flow from N(0, I) at T to the data at 0."""
        method = options.method or model.method
        kw: Dict[str, Any] = {k: v for k, v in (("rtol", options.rtol), ("atol", options.atol))
                              if v is not None}
        if options.nfe is not None:
            kw["step_size"] = model.T / _fixed_steps(options.nfe, method)
        return model.sample(n, generator=generator, method=method, **kw)

    def log_prob(self, model: CNF, spec: ModelSpec, x: Tensor, *,
                 generator: Optional[torch.Generator], divergence: str, n_probes: int,
                 rtol: float, atol: float) -> LogProbResult:
        with torch.no_grad():
            d = model.density(x, with_regs=False, divergence_method=divergence,
                              n_probes=n_probes, generator=generator, rtol=rtol, atol=atol)
        return LogProbResult(d.logp, float(d.nfe))


class FlowMatchingKind(GenerativeKind):
    sampling = FlowSampling

    def __init__(self, name: str, ot: bool) -> None:
        self.name, self.ot = name, ot

    def build(self, spec: ModelSpec) -> nn.Module:
        return _time_net(spec)

    def loss(self, model: nn.Module, spec: ModelSpec) -> Callable[..., Any]:
        return make_fm_loss(spec.options.path, ot=self.ot, t_min=spec.options.t_min)

    def sample_batch(self, model: nn.Module, spec: ModelSpec, n: int,
                     options: FlowSampling, *, generator: Optional[torch.Generator]
                     ) -> SampleResult:
        """Integrate ``v`` from N(0, I) at T to ``t_min``."""
        p = next(model.parameters())
        method = options.method or "dopri5"
        kw: Dict[str, Any] = {"rtol": 1e-4 if options.rtol is None else options.rtol,
                              "atol": 1e-4 if options.atol is None else options.atol}
        if options.nfe is not None:
            lo, hi = end_times(spec.options.path, spec.options.t_min)
            kw = {"step_size": (hi - lo) / _fixed_steps(options.nfe, method)}
        return fm_sample(model, (n, *spec.event_shape), path=spec.options.path,
                         t_min=spec.options.t_min, method=method, generator=generator,
                         dtype=p.dtype, device=p.device, **kw)

    def log_prob(self, model: nn.Module, spec: ModelSpec, x: Tensor, *,
                 generator: Optional[torch.Generator], divergence: str, n_probes: int,
                 rtol: float, atol: float) -> LogProbResult:
        return fm_log_likelihood(model, x, path=spec.options.path, t_min=spec.options.t_min,
                                 divergence_method=divergence, n_probes=n_probes, rtol=rtol,
                                 atol=atol, generator=generator)


class ClassifierKind(ModelKind):
    """The noise-conditional classifier ``p_t(y | x_t)`` of classifier guidance: a `ScoreNet`
    (input preconditioning, log-σ conditioning) around an `MLP` with ``num_classes`` logits,
    trained by cross-entropy on perturbed labelled data (`generative.classifier`)."""

    name = "classifier"

    def build(self, spec: ModelSpec) -> ScoreNet:
        net = MLP(spec.event_shape, out_features=int(spec.options.num_classes),
                  **spec.net_kwargs)
        return ScoreNet(net, make_sde(spec.options.sde), spec.data_std)

    def loss(self, model: ScoreNet, spec: ModelSpec) -> Callable[..., Any]:
        return make_classifier_loss(model.sde, spec.options.t_min)

    def data_options(self, data: Dataset) -> Dict[str, Any]:
        if data.train_labels is None or not data.num_classes:
            raise ModelError(f"the noise-conditional classifier needs labelled data; "
                             f"{data.name!r} has no labels")
        return {"num_classes": int(data.num_classes)}


KINDS: Dict[str, ModelKind] = {k.name: k for k in (
    ScoreKind(), FFJORDKind(), FlowMatchingKind("fm", ot=False),
    FlowMatchingKind("ot-fm", ot=True), ClassifierKind())}
GENERATIVE_KINDS = tuple(name for name, k in KINDS.items() if isinstance(k, GenerativeKind))


def _kind(name: Any) -> ModelKind:
    if name not in KINDS:
        raise ModelError(f"unknown model kind {name!r}; valid kinds: {', '.join(KINDS)}")
    return KINDS[name]


def _generative_kind(name: str) -> GenerativeKind:
    k = _kind(name)
    if not isinstance(k, GenerativeKind):
        raise ModelError(f"{name!r} models neither sample nor have a likelihood; kinds that "
                         f"do: {', '.join(GENERATIVE_KINDS)}")
    return k


# --------------------------------------------------------------------------- meta

def make_spec(kind: str, data: Dataset, *, net: str = "mlp",
              net_kwargs: Optional[Mapping[str, Any]] = None, dequantize: bool = True,
              **options: Any) -> ModelSpec:
    """The (validated) `ModelSpec` of a new model of ``kind`` on ``data``: common fields plus
    the kind's training options (its option dataclass; those not given take their defaults,
    those that follow from the data are filled in)."""
    k = _kind(kind)
    KIND_SCHEMAS[kind].make_options(options, kind)  # names an option the kind does not have
    if net not in k.nets:
        raise ModelError(f"unknown net {net!r} for {kind!r} models; valid nets: "
                         f"{', '.join(k.nets)}")
    shape = list(data.event_shape)
    if net == "unet" and len(shape) != 3:
        raise ModelError(f"net 'unet' needs image data (C, H, W); {data.name!r} has event "
                         f"shape {tuple(shape)}; use net 'mlp'")
    spec = ModelSpec(
        kind=kind, data=data.name, event_shape=tuple(shape), levels=data.levels,
        dequantize=bool(dequantize and data.levels is not None),
        data_std=float(data.train.to(torch.float64).std()), net=net,
        net_kwargs=dict(net_kwargs or {}), options={**k.data_options(data), **options})
    spec.to_meta()  # validates every field
    return spec


def make_meta(kind: str, data: Dataset, **kwargs: Any) -> Dict[str, Any]:
    """The checkpoint form (``meta`` dict) of `make_spec` ``(kind, data, **kwargs)``."""
    return make_spec(kind, data, **kwargs).to_meta()


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


def build_model(spec: SpecLike, device: Any = None) -> nn.Module:
    """A fresh (untrained) model from ``spec`` (a meta dict is validated first), with its
    parameters on ``device`` (``'meta'``: shapes only, nothing allocated)."""
    spec = as_spec(spec)
    try:
        with torch.device(device if device is not None else "cpu"):
            return _kind(spec.kind).build(spec)
    except ModelError:
        raise
    except (ValueError, TypeError) as err:  # a combination the net rejects
        raise ModelError(f"cannot build the model of this meta: {err}") from err


# --------------------------------------------------------------------------- train / load

def train_model(data: Dataset, spec: SpecLike, config: Any,
                out_dir: Union[str, Path, None], *,
                resume: bool = False, **train_kwargs: Any) -> Any:
    """Train the model ``spec`` describes, initialised from ``config.seed``, on ``data.train``
    with `generative.train.train` (dequantising each batch when ``spec.dequantize``);
    returns its `TrainResult`. Resuming checks that the checkpoint holds the same model."""
    from .train import CHECKPOINT_NAME, train
    spec = as_spec(spec)
    meta = spec.to_meta()
    ckpt = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    if resume and ckpt is not None and ckpt.is_file():
        check_same_model(load_model(ckpt).spec, spec)
    with torch.random.fork_rng(devices=[]):  # initial weights: a function of the run's seed
        torch.manual_seed(config.seed)
        model = build_model(spec)
    transform = dequantize_transform(data.levels if spec.dequantize else None)
    train_data: Any = data.train
    if spec.num_classes is not None:  # class-conditional: batches (x, labels)
        if data.train_labels is None:
            raise ModelError(f"a class-conditional model needs labelled data; {data.name!r} "
                             "has no labels")
        train_data = (data.train, data.train_labels)
    return train(model, _kind(spec.kind).loss(model, spec), train_data, config,
                 out_dir=out_dir, resume=resume, transform=transform, meta=meta,
                 **train_kwargs)


def check_same_model(saved: SpecLike, given: SpecLike) -> None:
    """Resuming must continue the same model on data of the same shape: `ModelError` naming
    the difference that matters most first (kind, data, network; `spec.MATTERS_FIRST`)."""
    diff = describe_differences(as_spec(saved).to_meta(), as_spec(given).to_meta())
    if diff is not None:
        raise ModelError(f"cannot resume: the checkpoint holds a different model or data; "
                         f"{diff}")


@dataclass(frozen=True)
class LoadedModel:
    """What `load_model` returns: the ``model`` (eval mode), its `ModelSpec` ``spec`` and the
    checkpoint ``state``; unpacks as ``model, meta, state`` (``meta`` the spec's dict form)."""

    model: nn.Module
    spec: ModelSpec
    state: Dict[str, Any]

    @property
    def meta(self) -> Dict[str, Any]:
        return self.spec.to_meta()

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.meta, self.state))

    def __getitem__(self, index: int) -> Any:
        return (self.model, self.meta, self.state)[index]


def load_model(path: Union[str, Path], *, use_ema: bool = True) -> LoadedModel:
    """A training checkpoint -> `LoadedModel` (model in eval mode, spec, state; unpacks as
    ``model, meta, state``), EMA weights unless ``use_ema=False``. Raises `ModelError` for a
    missing, corrupt or foreign checkpoint."""
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
    return LoadedModel(model, ModelSpec.from_meta(meta), state)


# --------------------------------------------------------------------------- sample / score

def sample(model: nn.Module, spec: SpecLike, n: int, *,
           generator: Optional[torch.Generator] = None, **options: Any) -> SampleResult:
    """``n`` samples of a loaded model and the mean number of network evaluations per sample
    (a `SampleResult`, which unpacks as ``x, nfe``; classifier-free guidance counts its two
    score evaluations per step). ``options`` are the kind's sampling options (the fields of
    its ``sampling`` dataclass; ``eps`` is the deprecated name of ``t_min``); others raise
    `ModelError`."""
    spec = as_spec(spec)
    if "eps" in options:
        with as_input_error(InputError):
            options["t_min"] = renamed_argument("eps", options.pop("eps"), "t_min",
                                                options.get("t_min"), "sample")
    k = _generative_kind(spec.kind)
    check_known_options(options, [f.name for f in fields(k.sampling)], k.name,
                        "sampling option")
    return k.sample_batch(model, spec, n, k.sampling(**options), generator=generator)


def log_prob(model: nn.Module, spec: SpecLike, x: Tensor, *,
             generator: Optional[torch.Generator] = None, divergence: str = "exact",
             n_probes: Optional[int] = None, rtol: float = 1e-5, atol: float = 1e-5
             ) -> LogProbResult:
    """``log p(x)`` in nats ``(B,)`` and the NFE (a `LogProbResult`, which unpacks as
    ``logp, nfe``) of a loaded model (score models: through the
    probability-flow ODE). ``n_probes`` defaults to 3 for ``'hutch++'`` and 1 otherwise."""
    spec = as_spec(spec)
    if tuple(x.shape[1:]) != spec.event_shape:
        raise ModelError(f"x: expected data of event shape {spec.event_shape} (the "
                         f"model's), got a tensor of shape {tuple(x.shape)}")
    if n_probes is None:
        n_probes = 3 if divergence == "hutch++" else 1
    return _generative_kind(spec.kind).log_prob(
        model, spec, x, generator=generator, divergence=divergence, n_probes=n_probes,
        rtol=rtol, atol=atol)
