"""The ``sdeflow`` command-line tool: ``train``, ``sample``, ``likelihood`` and ``demo``.

    sdeflow train --model score --data digits --sde vp --steps 20000 --out runs/digits [--resume]
    sdeflow train --model ffjord --data 8gaussians --kinetic 0.01 --jacobian 0.01 ...
    sdeflow train --model ot-fm --data moons --path linear ...
    sdeflow train --config runs/digits/config.toml --out runs/again   # repeat a run
    sdeflow train --data my_images/ --image-size 32 --net unet ...     # a folder of PNG/JPEG
    sdeflow sample --ckpt runs/digits/checkpoint.pt --sampler pc --nfe 500 --n 64 --out grid.png
    sdeflow likelihood --ckpt runs/moons/checkpoint.pt [--density-plot density.png]
    sdeflow demo [--quick] [--out results/demo]

Controllable generation (score models):

    sdeflow train --data digits --class-conditional --label-dropout 0.1 ... --out runs/cond
    sdeflow train-classifier --data digits --sde vp --steps 5000 --out runs/clf
    sdeflow sample --ckpt runs/cond/checkpoint.pt --class 3 --guidance cfg --scale 2.0 ...
    sdeflow sample --ckpt ... --class 3 --guidance classifier --classifier runs/clf/checkpoint.pt
    sdeflow inpaint --ckpt ... [--task inpaint] --mask left|center|random [--method replace|pigdm]
    sdeflow inpaint --ckpt runs/colour/checkpoint.pt --task colorize [--sigma-y 0.02]
    sdeflow inpaint --ckpt runs/colour/checkpoint.pt --task superres --factor 2 --method pigdm

``--model`` picks the kind (score, ffjord, fm, ot-fm) and ``--net`` its network (mlp, unet).
A training checkpoint carries (in its ``meta``) everything needed to rebuild the model;
`generative.models` builds, trains, samples and scores each kind — this module parses
arguments and writes the outputs.

Output files: ``sample`` and ``inpaint`` take ``--out NAME.png`` and write ``NAME.json`` (the
summary) and ``NAME.pt`` (the samples) beside it; any other suffix is refused, so the three
never collide. ``likelihood --out`` must end in ``.json`` and ``--density-plot`` in ``.png``;
``train``, ``train-classifier`` and ``demo`` take an output directory. Every output path is
checked before any work (not empty, not a directory where a file is expected or a file where
a directory is, names within the file system's limit, a directory a file can be created in).
``sample`` writes the samples first: a later failure (the image, the metrics) says where they
were saved. Metrics of vector samples run in bounded memory on at most `METRIC_MAX_SAMPLES`
samples (the summary states the counts).

Training writes ``OUT/config.toml`` (its flags; ``--config FILE`` reads such a file, flags on
the command line win) and, when the ``tensorboard`` package is installed, TensorBoard
scalars and sample grids under ``OUT/tensorboard``. Long commands show a progress bar with
an ETA on a terminal (``--no-progress`` turns it off). A missing optional dependency (scipy,
scikit-learn, matplotlib, pillow, scikit-image) is named with the extra that installs it.

Errors: every mistake in the input (unknown names, bad numbers, missing or corrupt
checkpoints, unusable output paths, ``--n`` / ``--nfe`` / ``--batch-size`` whose size estimate
exceeds the free memory) and every fault such as a full disk prints ONE line
``sdeflow: error: ...`` on stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, NoReturn, Optional, Sequence, Tuple

import torch
from torch import nn

from solvers import ADAPTIVE_METHODS, DIVERGENCE_METHODS, FIXED_METHODS, TABLEAUS
from solvers.errors import SolverError

from .checkpoint import CheckpointError
from .cli_checks import (CLIError, EMA_DECAY, FACTOR, check_sample_size, check_train_size,
                         first_line, hidden_units, inverse_settings, is_out_of_memory,
                         is_torch_write_failure, nonneg_float, nonneg_int, number_type,
                         os_reason, output_dir, output_file, positive_float, positive_int,
                         writing)
from .data import DATA_NAMES, IMAGE_MODES, load_data
from .distributed import DistContext, init_distributed, torchrun_env_present
from .ffjord import GRADIENT_MODES
from .flow_matching import PATHS
from .generate import generate
from .guidance import GUIDANCE
from .inpaint import MASKS, MODES
from .losses import WEIGHTINGS
from .models import (DEFAULT_NFE, GENERATIVE_KINDS, KINDS, ModelError, load_model, log_prob,
                     make_spec, score_budget, train_model)
from .progress import eval_progress, evaluated_module, progress_wanted, time_span
from .run_config import CONFIG_NAME, ConfigError, config_argv, read_config, write_config
from .samplers import SAMPLERS
from .restore import METHODS, TASKS
from .results import SampleResult, merge_samples
from .spec import NET_NAMES, SDE_NAMES, ModelSpec, describe_differences
from .train import CHECKPOINT_NAME, TrainConfig

Tensor = torch.Tensor

__all__ = ["main", "build_parser", "CLIError", "DEFAULT_NFE"]

# the ODE methods are the solvers' tableaus (fixed-step ones first)
ODE_METHOD_HELP = (f"fixed-step {', '.join(FIXED_METHODS)}; adaptive "
                   f"{', '.join(ADAPTIVE_METHODS)}")
# the optional packages of the `generative` extra -> what to install
_EXTRA_HINT = "pip install 'sdeflow[generative]' (in a checkout: pip install -e '.[generative]')"
_EXTRA_PACKAGES = {"scipy": "scipy", "sklearn": "scikit-learn", "matplotlib": "matplotlib",
                   "PIL": "pillow", "tqdm": "tqdm", "skimage": "scikit-image"}
# every kind's training options (`generative.models.ModelKind.options`); a CLI flag exists for
# each except score's `cond` (and `num_classes`, set by --class-conditional)
_KIND_OPTIONS = sorted({name for kind in KINDS.values() for name in kind.options})


# --------------------------------------------------------------------------- commands

def _write_json(path: Path, obj: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def _distributed(requested: bool = False) -> Iterator[Optional[DistContext]]:
    """The process group of a torchrun launch (``WORLD_SIZE`` > 1, or ``requested`` by
    ``--distributed``), left on exit; ``None`` for a plain one-process run."""
    if not (requested or torchrun_env_present()):
        yield None
        return
    try:
        ctx = init_distributed(force=True)
    except RuntimeError as err:
        raise CLIError(str(err)) from err
    try:
        yield ctx
    finally:
        ctx.close()


def _train_setup(args: argparse.Namespace, numel: int, hidden: int) -> Tuple[TrainConfig, Path]:
    """The `TrainConfig` and (checked, created) output directory of a training command;
    refuses to overwrite an existing run without ``--resume`` and a ``--batch-size`` whose
    size estimate (``numel`` values and ``hidden`` activations per example) exceeds memory."""
    out = output_dir("--out", args.out)
    if (out / CHECKPOINT_NAME).is_file() and not args.resume:
        raise CLIError(f"{str(out / CHECKPOINT_NAME)!r} exists; pass --resume to continue "
                       "that run or choose another --out")
    check_train_size(args.batch_size, numel, hidden)
    try:
        config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                             ema_decay=args.ema_decay, seed=args.seed,
                             warmup_steps=args.warmup,
                             log_every=min(args.log_every, args.steps),
                             ckpt_every=min(args.ckpt_every, args.steps),
                             progress=progress_wanted(args.no_progress))
    except ValueError as err:  # the parser's types check each flag; this is a backstop
        raise CLIError(str(err)) from err
    return config, out


def _resume_step(out: Path, spec: Optional[ModelSpec], steps: int) -> None:
    """Before resuming from ``out``: a model of another description (``spec``: a model of
    ``sdeflow train``) is refused naming the key that matters first
    (`generative.spec.describe_differences`); the step reached is printed ("resuming at step
    N")."""
    ckpt = out / CHECKPOINT_NAME
    if not ckpt.is_file():
        print(f"sdeflow: no checkpoint in {str(out)!r} yet; starting at step 0",
              file=sys.stderr)
        return
    try:
        if spec is not None:
            loaded = load_model(ckpt)
            saved, state = loaded.spec, loaded.state
        else:
            from .checkpoint import load_checkpoint
            state, saved = load_checkpoint(ckpt, map_location="cpu"), None
        step = int(state["step"])
    except (ModelError, CheckpointError, KeyError, TypeError, ValueError):
        return  # the training loop reports what is wrong with it
    diff = None if saved is None else describe_differences(saved.to_meta(), spec.to_meta())
    if diff is not None:
        raise CLIError(f"cannot resume {str(ckpt)!r}: it holds another model; {diff}. "
                       f"Train into another --out, or repeat that run's flags (--config "
                       f"{str(out / CONFIG_NAME)!r})")
    print(f"sdeflow: resuming {str(ckpt)!r} at step {step} (of {steps})", file=sys.stderr)


def _data_for_training(args: argparse.Namespace) -> Any:
    try:
        return load_data(args.data, seed=args.data_seed, image_size=args.image_size,
                         image_mode=args.image_mode)
    except (ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from err


def _save_config(out: Path, args: argparse.Namespace) -> None:
    """The run's flags as ``OUT/config.toml`` (`generative.run_config`)."""
    with writing(f"{str(out / CONFIG_NAME)!r}"):
        write_config(out / CONFIG_NAME, args, args.command_parser,
                     skip=("resume", "distributed", "out", "config"))


@contextlib.contextmanager
def _tensorboard(args: argparse.Namespace, out: Path, main_rank: bool) -> Iterator[Dict[str, Any]]:
    """``{'on_log': TensorBoardLog}`` for `train` when the ``tensorboard`` package is installed
    (and not ``--no-tensorboard``; rank 0 only), else ``{}``."""
    from .tensorboard_log import TensorBoardLog, summary_writer_class
    writer_class = summary_writer_class() if main_rank and not args.no_tensorboard else None
    if writer_class is None:
        yield {}
        return
    log = TensorBoardLog(out, out / CHECKPOINT_NAME, writer_class, seed=args.seed)
    print(f"sdeflow: TensorBoard logs in {str(log.dir)!r} (tensorboard --logdir "
          f"{str(log.dir)})", file=sys.stderr)
    try:
        yield {"on_log": log}
    finally:
        log.close()


@contextlib.contextmanager
def _training(out: Path) -> Iterator[None]:
    """Errors of a training run -> `CLIError`: a resume that does not fit, a corrupt
    checkpoint, a diverged loss, a failed write under ``out``."""
    try:
        with writing(f"the run under --out {str(out)!r}"):
            yield
    except (ValueError, CheckpointError, FloatingPointError) as err:
        raise CLIError(str(err)) from err


def _check_world(batch_size: int, dist: Optional[DistContext]) -> None:
    if dist is not None and batch_size % dist.world_size:
        raise CLIError(f"--batch-size {batch_size} must be divisible by the number of "
                       f"processes (world size {dist.world_size}): each process takes an "
                       "equal share of every batch")


def cmd_train(args: argparse.Namespace) -> int:
    data = _data_for_training(args)
    sizes = ({"width": args.width, "depth": args.depth} if args.net == "mlp"
             else {"base_channels": args.channels})
    options = {name: getattr(args, name, None) for name in _KIND_OPTIONS}
    if args.class_conditional:
        if not data.num_classes:
            raise CLIError(f"--class-conditional needs labelled data; {data.name!r} has no "
                           "labels")
        options["num_classes"] = data.num_classes
        options["label_dropout"] = 0.1 if args.label_dropout is None else args.label_dropout
    elif args.label_dropout is not None:
        raise CLIError("--label-dropout applies to --class-conditional models only")
    spec = make_spec(args.model, data, net=args.net,
                     net_kwargs={k: v for k, v in sizes.items() if v is not None},
                     dequantize=not args.no_dequantize,
                     **{k: v for k, v in options.items() if v is not None})
    config, out = _train_setup(args, data.dim, hidden_units(args.net, spec.net_kwargs, data.dim))
    start = time.perf_counter()
    with _distributed(args.distributed) as dist:
        _check_world(args.batch_size, dist)
        main_rank = dist is None or dist.is_main
        if main_rank:
            if args.resume:
                _resume_step(out, spec, args.steps)
            _save_config(out, args)
        with _training(out), _tensorboard(args, out, main_rank) as logging:
            result = train_model(data, spec, config, out, resume=args.resume,
                                 distributed=dist, **logging)
    if dist is not None and not dist.is_main:
        return 0
    summary = {"checkpoint": str(result.checkpoint), "step": result.step,
               "seconds": time.perf_counter() - start, "data": data.name,
               "kind": spec.kind, "net": spec.net,
               **{k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}}
    with writing(f"{str(out / 'train_summary.json')!r}"):
        _write_json(out / "train_summary.json", summary)
    print(json.dumps(summary))
    return 0


def _sample_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The sampling options given on the command line (each model kind has its defaults and
    rejects options that do not apply to it)."""
    given = {"sampler": args.sampler, "nfe": args.nfe, "method": args.method,
             "rtol": args.rtol, "atol": args.atol, "snr": args.snr,
             "n_corrector": args.n_corrector, "t_min": args.t_min,
             "denoise": False if args.no_denoise else None, "label": args.label,
             "guidance": args.guidance, "scale": args.scale}
    return {k: v for k, v in given.items() if v is not None}


def _guidance_classifier(args: argparse.Namespace, spec: ModelSpec) -> Optional[nn.Module]:
    """Check the class-guidance options against the model; the loaded ``--classifier`` (or
    ``None``)."""
    from .guidance import check_label
    if args.label is None:
        for flag, value in (("--guidance", args.guidance), ("--scale", args.scale),
                            ("--classifier", args.classifier)):
            if value is not None:
                raise CLIError(f"{flag} needs --class (the class to sample)")
        return None
    if (args.guidance == "classifier") != (args.classifier is not None):
        raise CLIError("--guidance classifier and --classifier PATH go together; got "
                       f"--guidance {args.guidance or 'none'} and --classifier "
                       f"{args.classifier!r}")
    if args.classifier is None:
        num_classes = spec.num_classes
        if num_classes is None:
            raise CLIError(f"--class with --guidance {args.guidance or 'none'} needs a "
                           "class-conditional model (sdeflow train --class-conditional); "
                           "this one is unconditional: use --guidance classifier")
        classifier = None
    else:
        try:
            loaded = load_model(args.classifier)
        except (CheckpointError, ValueError) as err:
            raise CLIError(f"--classifier: {err}") from err
        classifier, cspec = loaded.model, loaded.spec
        if cspec.kind != "classifier":
            raise CLIError(f"--classifier {args.classifier!r} holds a {cspec.kind!r} model, "
                           "not a noise-conditional classifier (sdeflow train-classifier)")
        for key, theirs, ours in (
                ("sde", cspec.options.sde, getattr(spec.options, "sde", None)),
                ("event_shape", list(cspec.event_shape), list(spec.event_shape))):
            if theirs != ours:
                raise CLIError(f"--classifier was trained with {key} {theirs!r} but the "
                               f"model has {ours!r}")
        num_classes = cspec.num_classes
    try:
        check_label(args.label, num_classes, name="--class")
    except ValueError as err:
        raise CLIError(str(err)) from err
    return classifier


# samples drawn per sampler call (`generate`'s chunks)
_CHUNK = 1000


def _data(name: str, flag: str = "the model's training data") -> Any:
    """`load_data` with its errors as `CLIError`."""
    try:
        return load_data(name)
    except (ValueError, OSError) as err:
        raise CLIError(f"cannot load {flag} {name!r}: {err}") from err


@contextlib.contextmanager
def _after_saving(saved: Path) -> Iterator[None]:
    """A failure after the samples were written says that they were (and where)."""
    try:
        yield
    except CLIError as err:
        raise CLIError(f"{err} (the samples were saved to {str(saved)!r})") from err
    except ModuleNotFoundError as err:
        message = _missing_package(err)
        if message is None:
            raise
        raise CLIError(f"{message} (the samples were saved to {str(saved)!r})") from err
    except (RuntimeError, ValueError, MemoryError, OSError) as err:
        raise CLIError(f"{type(err).__name__}: {first_line(err)} (the samples were saved "
                       f"to {str(saved)!r})") from err


# the sample-based metrics of vector data use at most this many samples (the first ones; the
# summary states the count): MMD costs O(n x reference) kernel evaluations
METRIC_MAX_SAMPLES = 10_000
METRIC_REFERENCE = 2000


def _vector_metrics(x: Tensor, data: str, n: int) -> Dict[str, Any]:
    """MMD and sliced W2 of vector samples against the test split of ``data`` (bounded
    memory)."""
    from .metrics import mmd_rbf, sliced_wasserstein
    if len(x) < 2:
        return {"metrics_skipped": "MMD and sliced W2 need --n >= 2"}
    try:
        reference = load_data(data).test[:METRIC_REFERENCE]
    except (ValueError, OSError) as err:
        print(f"sdeflow: warning: no MMD / sliced W2: cannot load the test data "
              f"{data!r} ({first_line(err)})", file=sys.stderr)
        return {"metrics_skipped": f"cannot load the test data {data!r}"}
    ref = reference[: max(n, 2)].float()
    xs = x[:METRIC_MAX_SAMPLES].float()
    against = f"the first {len(ref)} points of the test split of {data!r}"
    return {"mmd": mmd_rbf(xs, ref), "mmd_n_samples": int(len(xs)),
            "sliced_wasserstein": sliced_wasserstein(x.float(), ref),
            "metric_reference": {"data": data, "split": "test", "n": int(len(ref))},
            "metric_n_reference": int(len(ref)),
            "metrics_note": f"MMD (RBF kernel, median bandwidth) and sliced W2 of "
                            f"{len(xs)} samples against {against}"}


def _sample_title(kind: str, options: Dict[str, Any], nfe: float) -> str:
    """The picture's title: the sampler (or kind and ODE method), class and NFE (network
    evaluations per sample)."""
    what = options.get("sampler") or (kind if kind != "score" else "pc")
    if "method" in options:
        what += f" {options['method']}"
    if options.get("label") is not None:
        what += f", class {options['label']}"
        if options.get("guidance") not in (None, "none"):
            what += f" ({options['guidance']} x{options.get('scale', 1.0):g})"
    return f"{what}, NFE {nfe:.0f}"


def _network_evaluations(nfe: float, score_calls: Optional[float],
                         options: Dict[str, Any]) -> Dict[str, Any]:
    """The NFE fields of a sample summary: ``nfe`` counts network evaluations per sample
    (`generative.models.sample`: classifier-free guidance evaluates the score twice per
    guided-score call, conditional and unconditional); ``score_evaluations`` the sampler's
    guided-score calls when they differ."""
    if score_calls is not None and nfe != score_calls:
        return {"nfe": nfe, "score_evaluations": score_calls,
                "nfe_note": "classifier-free guidance: 2 network evaluations per guided "
                            "score (conditional and unconditional)"}
    if options.get("guidance") == "classifier":
        return {"nfe": nfe, "classifier_evaluations": nfe}
    return {"nfe": nfe}


def cmd_sample(args: argparse.Namespace) -> int:
    from .plots import save_samples
    out = output_file("--out", args.out, ".png", beside=(".json", ".pt"))
    pt, js = out.with_suffix(".pt"), out.with_suffix(".json")
    loaded = load_model(args.ckpt)
    model, spec = loaded.model, loaded.spec
    if args.fid and spec.data != "digits":
        raise CLIError(f"--fid scores digits models; this one was trained on {spec.data!r}")
    options = _sample_options(args)
    classifier = _guidance_classifier(args, spec)
    if classifier is not None:
        options["classifier"] = classifier
    start = time.perf_counter()
    with _distributed() as dist:  # under torchrun: each process draws its share
        device = dist.device if dist else torch.device("cpu")
        check_sample_size(args.n, args.nfe, spec, _CHUNK, device)
        chunks = math.ceil(args.n / _CHUNK)
        if dist is not None:
            chunks = len(list(dist.shard(chunks)))
        span = time_span(model, spec, sampling=True, t_min=args.t_min)
        try:
            with eval_progress(evaluated_module(model), span, chunks=chunks, desc="sample",
                               enabled=progress_wanted(args.no_progress)
                               and (dist is None or dist.is_main)):
                local = generate(model.to(device), spec, args.n, seed=args.seed,
                                 batch_size=_CHUNK, distributed=dist, **options)
        except SolverError as err:
            raise CLIError(str(err)) from err
        result = local
        if dist is not None:  # rank 0 gathers every share and writes the outputs
            parts = dist.gather_object(SampleResult(local.x.cpu(), local.nfe, local.score_calls))
            if parts is not None:
                result = merge_samples(parts)
        x, nfe = result
        main_rank = dist is None or dist.is_main
        if main_rank:  # the samples first: nothing after this may lose them
            x = x.cpu()
            if spec.levels:
                x = x.clamp(-1, 1)
            with writing(f"the samples {str(pt)!r}"):
                torch.save(x, pt)
        seconds = time.perf_counter() - start
        with _after_saving(pt) if main_rank else contextlib.nullcontext():
            fid = None
            if args.fid:
                from .metrics import digits_fid
                fid = digits_fid(local.x, dist)
        if not main_rank:
            return 0
    with _after_saving(pt):
        reference = None
        if x.dim() == 2:  # vector data: scatter plot over the test data, MMD / sliced W2
            with contextlib.suppress(ValueError, OSError):
                reference = load_data(spec.data).test[:METRIC_REFERENCE]
        with writing(f"the image {str(out)!r}"):
            save_samples(x, out, reference=reference, title=_sample_title(spec.kind, options, nfe))
        if classifier is not None:
            options["classifier"] = str(args.classifier)
        summary: Dict[str, Any] = {
            "ckpt": str(args.ckpt), "kind": spec.kind, "n": args.n,
            **_network_evaluations(nfe, result.score_calls, options), "options": options,
            "seconds": seconds,
            "image": str(out), "samples": str(pt), "finite": bool(torch.isfinite(x).all())}
        if x.dim() == 2:
            summary.update(_vector_metrics(x, spec.data, args.n))
        if fid is not None:
            summary["fid"] = fid
        with writing(f"the summary {str(js)!r}"):
            _write_json(js, summary)
    print(json.dumps(summary))
    return 0


def cmd_likelihood(args: argparse.Namespace) -> int:
    out = output_file("--out", args.out, ".json")
    plot = output_file("--density-plot", args.density_plot, ".png")
    loaded = load_model(args.ckpt)
    model, spec = loaded.model, loaded.spec
    if plot is not None and spec.event_shape != (2,):
        raise CLIError(f"--density-plot needs a model of 2-D data; this one has event shape "
                       f"{spec.event_shape}")
    data = _data(spec.data)
    split = data.test if args.split == "test" else data.train
    x = split[: args.n]
    g = torch.Generator().manual_seed(args.seed)
    if spec.levels:
        x = data.dequantize(x, g)
    tol = {"rtol": args.rtol, "atol": args.atol}
    start = time.perf_counter()
    try:
        with eval_progress(evaluated_module(model), time_span(model, spec, sampling=False),
                           desc="likelihood", enabled=progress_wanted(args.no_progress)):
            logp, nfe = log_prob(model, spec, x, generator=g, divergence=args.divergence,
                                 n_probes=args.n_probes, **tol)
    except SolverError as err:
        raise CLIError(str(err)) from err
    bpd = data.bits_per_dim(logp)
    nats = bpd * (data.dim * math.log(2.0))  # -log p per example, of the discrete data if any

    def stderr(v: Tensor) -> float:
        return float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0

    summary = {"ckpt": str(args.ckpt), "kind": spec.kind, "split": args.split,
               "n": int(x.shape[0]),
               "bits_per_dim": float(bpd.mean()), "bits_per_dim_stderr": stderr(bpd),
               "nll_nats": float(nats.mean()), "nll_nats_stderr": stderr(nats),
               "nats_per_dim": float(bpd.mean()) * math.log(2.0),
               "nfe": nfe, "divergence": args.divergence, "seconds":
               time.perf_counter() - start, "dequantized": bool(spec.levels)}
    if plot is not None:
        from .plots import save_density  # the model density beside the whole split's histogram
        try:
            with writing(f"--density-plot {str(plot)!r}"):
                save_density(lambda pts: log_prob(model, spec, pts, **tol).logp, split, plot,
                             title=f"{spec.kind} on {spec.data}")
        except SolverError as err:
            raise CLIError(f"--density-plot: {err}") from err
        summary["density_plot"] = str(plot)
    if out is not None:
        with writing(f"--out {str(out)!r}"):
            _write_json(out, summary)
    print(json.dumps(summary))
    return 0


def cmd_train_classifier(args: argparse.Namespace) -> int:
    from .classifier import noisy_accuracy
    data = _data_for_training(args)
    try:
        spec = make_spec("classifier", data, sde=args.sde, t_min=args.t_min,
                         net_kwargs={"width": args.width, "depth": args.depth},
                         dequantize=not args.no_dequantize)
    except (ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from err
    config, out = _train_setup(args, data.dim, args.width * args.depth)
    if args.resume:
        _resume_step(out, None, args.steps)
    _save_config(out, args)
    start = time.perf_counter()
    with _training(out):
        result = train_model(data, spec, config, out, resume=args.resume)
    model = result.ema.model
    sde = model.sde
    g = torch.Generator().manual_seed(args.seed)
    accuracy = {f"{frac:g}T": noisy_accuracy(model, sde, data.test, data.test_labels,
                                             max(frac * sde.T, sde.t_min), g)
                for frac in (0.0, 0.25, 0.5, 0.75)}
    summary = {"checkpoint": str(result.checkpoint), "step": result.step,
               "seconds": time.perf_counter() - start, "data": data.name, "sde": args.sde,
               "test_accuracy_at_t": accuracy,
               **{k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}}
    with writing(f"{str(out / 'train_summary.json')!r}"):
        _write_json(out / "train_summary.json", summary)
    print(json.dumps(summary))
    return 0


_MEASURED = {"inpaint": "missing pixels grey", "colorize": "gray image",
             "superres": "block means upsampled (nearest)"}


def cmd_inpaint(args: argparse.Namespace) -> int:
    """``sdeflow inpaint --task inpaint|colorize|superres`` (`generative.restore`)."""
    from .inpaint import known_mask
    from .restore import measure, quality, restore
    from .row_figure import save_row_figure
    out = output_file("--out", args.out, ".png", beside=(".json", ".pt"))
    pt, js = out.with_suffix(".pt"), out.with_suffix(".json")
    loaded = load_model(args.ckpt)
    model, spec = loaded.model, loaded.spec
    if spec.kind != "score":
        raise CLIError(f"{args.task} needs a score model (--model score); {str(args.ckpt)!r} "
                       f"is a {spec.kind!r} model")
    settings = inverse_settings(args, spec.event_shape, str(args.ckpt))
    task, method = settings["task"], settings["method"]
    data = _data(spec.data)
    split = data.test if args.split == "test" else data.train
    if args.n > len(split):
        raise CLIError(f"--n {args.n} is more than the {len(split)} images of the "
                       f"{args.split} split of {spec.data!r}")
    x = split[: args.n]
    nfe = score_budget(args.sampler, args.nfe)
    check_sample_size(len(x), nfe, spec, len(x), None)
    g = torch.Generator().manual_seed(args.seed)
    mask = known_mask(settings["mask"], spec.event_shape, len(x), generator=g) \
        if task == "inpaint" else None
    measured = measure(task, x, mask=mask, factor=settings.get("factor", 2),
                       sigma_y=args.sigma_y, generator=g)
    start = time.perf_counter()
    try:
        with torch.no_grad(), eval_progress(model, time_span(model, spec, sampling=True),
                                            desc=task,
                                            enabled=progress_wanted(args.no_progress)):
            restored, used = restore(model.sde, model.score_fn(), measured, method=method,
                                     sampler=args.sampler, nfe=nfe,
                                     scale=settings.get("scale", 1.0),
                                     denoise=not args.no_denoise, generator=g)
    except (SolverError, ValueError) as err:
        raise CLIError(str(err)) from err
    seconds = time.perf_counter() - start
    if spec.levels:
        restored = restored.clamp(-1, 1)
    saved = {"original": x, "measured": measured.y, "measured_image": measured.shown,
             "restored": restored}
    if mask is not None:  # the names of the inpainting-only command, kept
        saved.update(mask=mask, inpainted=restored)
    with writing(f"the restorations {str(pt)!r}"):
        torch.save(saved, pt)
    with _after_saving(pt):
        mean_nfe = float(torch.as_tensor(used, dtype=torch.float64).mean())
        what = {"inpaint": f"inpaint ({settings.get('mask')} mask)", "colorize": "colorize",
                "superres": f"superres x{settings.get('factor')}"}[task]
        with writing(f"the image {str(out)!r}"):
            save_row_figure([("original", x), ("measured", measured.shown),
                             ("restored", restored)], out,
                            title=f"{what}: {method}, {args.sampler}, NFE {mean_nfe:.0f}")
        metrics = {"restored": quality(restored, x), "measured": quality(measured.shown, x)}
        summary: Dict[str, Any] = {
            "ckpt": str(args.ckpt), **settings, "sampler": args.sampler, "n": int(len(x)),
            "split": args.split, "seed": args.seed, "sigma_y": args.sigma_y, "nfe": mean_nfe,
            "psnr_restored": metrics["restored"]["psnr_mean"],
            "psnr_measured": metrics["measured"]["psnr_mean"],
            "measured_image": _MEASURED[task],
            "measurement_rms_residual": float(measured.residual(restored).mean()),
            "metrics": metrics,
            "metrics_note": "PSNR in dB with peak 2 (images in [-1, 1]) and MSE against the "
                            "originals; 'measured' is the baseline: the measurement shown as "
                            "an image (the middle row)",
            "seconds": seconds, "image": str(out), "samples": str(pt)}
        if method == "pigdm":
            summary["nfe_note"] = "pigdm: every score evaluation also backpropagates through " \
                                  "the network"
        if mask is not None:
            missing = ~mask
            summary.update(missing_fraction=float(missing.double().mean()),
                           mse_missing=float((restored - x)[missing].square().mean()))
        with writing(f"the summary {str(js)!r}"):
            _write_json(js, summary)
    print(json.dumps(summary))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .cache import cache_dir
    from .demo import default_out, run_demo
    out = output_dir("--out", args.out if args.out is not None else default_out(args.quick))
    try:
        with writing(f"the demo's outputs (--out {str(out)!r}, cache "
                     f"{str(cache_dir())!r})"):
            run_demo(out_dir=out, quick=args.quick, retrain=args.retrain, seed=args.seed,
                     progress=progress_wanted(args.no_progress))
    except (CheckpointError, FloatingPointError) as err:
        raise CLIError(f"{err} (sdeflow demo --retrain trains the demo model afresh)") from err
    return 0


# --------------------------------------------------------------------------- parser

class _Parser(argparse.ArgumentParser):
    """argparse with the tool's one-line error format (``sdeflow: error: ...``, status 2)."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]
        self.exit(2, f"sdeflow: error: {message} (see `{self.prog} --help`)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in ``--help``: ``(default: X)`` appended unless the help already
    states it (options whose default depends on the model say so in words)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False \
                or action.default is argparse.SUPPRESS or action.nargs == 0:
            return text
        return text + " (default: %(default)s)"


def _version() -> str:
    from importlib import metadata
    try:
        return metadata.version("sdeflow")
    except metadata.PackageNotFoundError:
        return "unknown (not installed; pip install -e .)"


def _training_options() -> argparse.ArgumentParser:
    """The options `train` and `train-classifier` share (one parent parser)."""
    c = argparse.ArgumentParser(add_help=False, formatter_class=_HelpFormatter)
    c.add_argument("--config", default=None, metavar="TOML",
                   help="read flags from a TOML file whose keys are these flags (e.g. "
                   "batch-size = 256); flags on the command line win; every run writes its "
                   f"own as OUT/{CONFIG_NAME} (default: none)")
    c.add_argument("--steps", type=positive_int("--steps"), required=True,
                   help="optimiser steps (required)")
    c.add_argument("--out", required=True,
                   help=f"output directory ({CHECKPOINT_NAME}, metrics.jsonl, {CONFIG_NAME}; "
                   "required)")
    c.add_argument("--resume", action="store_true",
                   help=f"continue from OUT/{CHECKPOINT_NAME}")
    c.add_argument("--image-size", type=positive_int("--image-size"), default=None,
                   help="--data FOLDER: resize and centre-crop every image to this square "
                   "size (default 32)")
    c.add_argument("--image-mode", default=None, choices=list(IMAGE_MODES),
                   help="--data FOLDER: gray (1 channel) or rgb (3) (default: gray when every "
                   "image is grayscale)")
    c.add_argument("--batch-size", type=positive_int("--batch-size"), default=128,
                   help="examples per optimiser step")
    c.add_argument("--lr", type=positive_float("--lr"), default=1e-3, help="learning rate")
    c.add_argument("--warmup", type=nonneg_int("--warmup"), default=100,
                   help="linear learning-rate warmup steps")
    c.add_argument("--ema-decay", type=EMA_DECAY, default=0.999,
                   help="decay of the weights' exponential moving average")
    c.add_argument("--no-dequantize", action="store_true",
                   help="train on the discrete levels (no uniform dequantisation)")
    c.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    c.add_argument("--data-seed", type=int, default=0, help="seed of the train / test split")
    c.add_argument("--log-every", type=positive_int("--log-every"), default=100,
                   help="steps between metrics.jsonl records")
    c.add_argument("--ckpt-every", type=positive_int("--ckpt-every"), default=1000,
                   help="steps between checkpoints")
    c.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is none when stderr is not a terminal)")
    return c


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sdeflow", description="Score-based generative models "
                "on sdeflow's ODE/SDE solvers.", formatter_class=_HelpFormatter)
    p.add_argument("--version", action="version", version=f"sdeflow {_version()}")
    sub = p.add_subparsers(dest="command", metavar="{train,sample,likelihood,demo,"
                           "train-classifier,inpaint}")
    sub.required = True
    training = _training_options()

    def command(name: str, **kw: Any) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, formatter_class=_HelpFormatter, **kw)
        parser.set_defaults(command_parser=parser)
        return parser

    data_help = (f"one of {', '.join(DATA_NAMES)}, a .npy/.npz array ((N, d), (N, C, H, W) "
                 "or (N, H, W, C)) or a folder of PNG/JPEG images")
    no_progress = "no progress bar (there is none when stderr is not a terminal)"

    t = command("train", parents=[training], help="train a model (atomic checkpoints, "
                "--resume, --config)")
    t.add_argument("--data", default="digits", help=data_help)
    t.add_argument("--model", default="score", choices=list(GENERATIVE_KINDS),
                   help="score model, FFJORD, flow matching or OT flow matching")
    t.add_argument("--net", default="mlp", choices=list(NET_NAMES),
                   help="network (ffjord: mlp, FFJORD's concat-squash MLP)")
    t.add_argument("--width", type=positive_int("--width"), default=None,
                   help="MLP width (default 256; ffjord 64)")
    t.add_argument("--depth", type=positive_int("--depth"), default=None,
                   help="MLP depth (default 3)")
    t.add_argument("--channels", type=positive_int("--channels"), default=None,
                   help="U-Net base channels (default 32)")
    t.add_argument("--t-min", type=nonneg_float("--t-min"), default=None,
                   help="score, fm: smallest training time (default: the SDE's t_min / 0, "
                   "1e-3 on the vp path)")
    sc = t.add_argument_group("score models (--model score)")
    sc.add_argument("--sde", default=None, choices=list(SDE_NAMES), help="default vp")
    sc.add_argument("--weighting", default=None, choices=list(WEIGHTINGS), help="default std2")
    sc.add_argument("--class-conditional", action="store_true",
                    help="condition on the data's labels (class embedding and a null label, "
                    "for --class and classifier-free guidance at sampling)")
    sc.add_argument("--label-dropout", type=number_type("--label-dropout", float,
                                                        lambda v: 0 <= v <= 1,
                                                        "a number in [0, 1]"),
                    default=None, help="--class-conditional: probability of training a batch "
                    "row with the null label (default 0.1)")
    ff = t.add_argument_group("FFJORD (--model ffjord)")
    ff.add_argument("--divergence", default=None, choices=["auto", *DIVERGENCE_METHODS],
                    help="training trace estimator (default auto: exact for D <= 8)")
    ff.add_argument("--n-probes", type=positive_int("--n-probes"), default=None,
                    help="Hutchinson / Hutch++ probes (default 1)")
    ff.add_argument("--kinetic", type=nonneg_float("--kinetic"), default=None,
                    help="RNODE weight of the kinetic energy (default 0)")
    ff.add_argument("--jacobian", type=nonneg_float("--jacobian"), default=None,
                    help="RNODE weight of the Jacobian Frobenius norm (default 0)")
    ff.add_argument("--gradient", default=None, choices=list(GRADIENT_MODES),
                    help="default backsolve (adjoint)")
    ff.add_argument("--method", default=None, choices=list(TABLEAUS),
                    help=f"ODE method: {ODE_METHOD_HELP} (default dopri5)")
    ff.add_argument("--rtol", type=positive_float("--rtol"), default=None,
                    help="default 1e-5")
    ff.add_argument("--atol", type=positive_float("--atol"), default=None,
                    help="default 1e-5")
    fm = t.add_argument_group("flow matching (--model fm / ot-fm)")
    fm.add_argument("--path", default=None, choices=list(PATHS), help="default linear")
    t.add_argument("--no-tensorboard", action="store_true",
                   help="no TensorBoard logs (written to OUT/tensorboard when the "
                   "tensorboard package is installed)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes of a torchrun launch (automatic "
                   "when WORLD_SIZE > 1): torchrun --nproc_per_node N -m generative train")
    t.set_defaults(func=cmd_train)

    s = command("sample", help="draw samples from a trained checkpoint")
    s.add_argument("--ckpt", required=True, help="a checkpoint of sdeflow train (required)")
    s.add_argument("--sampler", default=None, choices=list(SAMPLERS),
                   help="score models (default pc)")
    s.add_argument("--method", default=None, choices=list(TABLEAUS),
                   help=f"ODE method ({ODE_METHOD_HELP}): score models with --sampler ode, "
                   "ffjord, fm (default dopri5; ffjord: its training method)")
    s.add_argument("--nfe", type=positive_int("--nfe"), default=None,
                   help=f"evaluation budget (score: default {DEFAULT_NFE}; ode, ffjord, fm: "
                   "fixed steps of --method instead of adaptive ones)")
    s.add_argument("--n", "--num-samples", dest="n", type=positive_int("--n"), default=64,
                   help="number of samples (under torchrun write --num-samples: torchrun "
                   "takes --n for an abbreviation of its own options)")
    s.add_argument("--out", default="samples.png",
                   help="NAME.png (NAME.json and NAME.pt are written beside it)")
    s.add_argument("--seed", type=int, default=0, help="seed of the samples")
    s.add_argument("--fid", action="store_true",
                   help="digits models: FID against the held-out test digits (sharded "
                   "over torchrun processes, statistics merged exactly)")
    s.add_argument("--snr", type=positive_float("--snr"), default=None,
                   help="pc sampler (default 0.16)")
    s.add_argument("--n-corrector", type=nonneg_int("--n-corrector"), default=None,
                   help="pc sampler (default 1)")
    s.add_argument("--rtol", type=positive_float("--rtol"), default=None,
                   help="adaptive ODE solves (default 1e-4; ffjord: its training rtol)")
    s.add_argument("--atol", type=positive_float("--atol"), default=None,
                   help="adaptive ODE solves (default 1e-4; ffjord: its training atol)")
    s.add_argument("--t-min", "--eps", dest="t_min", type=positive_float("--t-min"),
                   default=None, help="score models: end time of sampling (default: the SDE's "
                   "t_min; --eps is its old name)")
    s.add_argument("--no-denoise", action="store_true",
                   help="score models: skip the final Tweedie step")
    s.add_argument("--no-progress", action="store_true", help=no_progress)
    g = s.add_argument_group("class-conditional sampling (score models)")
    g.add_argument("--class", dest="label", type=number_type("--class", int, lambda v: v >= 0,
                                                             "an integer >= 0"),
                   default=None, help="sample this class (default: unconditional)")
    g.add_argument("--guidance", default=None, choices=list(GUIDANCE),
                   help="none (default: the conditional score of a --class-conditional "
                   "model), cfg (classifier-free) or classifier (needs --classifier)")
    g.add_argument("--scale", type=number_type("--scale", float, math.isfinite, "a finite number"),
                   default=None, help="guidance scale (default 1; cfg: 0 = unconditional)")
    g.add_argument("--classifier", default=None, metavar="CKPT",
                   help="noise-conditional classifier checkpoint (sdeflow train-classifier; "
                   "default none)")
    s.set_defaults(func=cmd_sample)

    lk = command("likelihood", help="test NLL in nats and bits/dim (score models: through "
                 "the probability-flow ODE)")
    lk.add_argument("--ckpt", required=True, help="a checkpoint of sdeflow train (required)")
    lk.add_argument("--split", default="test", choices=["test", "train"],
                    help="which split of the model's data")
    lk.add_argument("--n", type=positive_int("--n"), default=10_000,
                    help="number of examples (at most the split's size)")
    lk.add_argument("--divergence", default="exact", choices=list(DIVERGENCE_METHODS),
                    help="trace estimator of the change of variables")
    lk.add_argument("--n-probes", type=positive_int("--n-probes"), default=None,
                    help="Hutchinson / Hutch++ probes (default 1; hutch++ 3)")
    lk.add_argument("--density-plot", default=None, metavar="PNG",
                    help="2-D models: write the model density on a grid beside the data "
                    "histogram (default: none)")
    lk.add_argument("--rtol", type=positive_float("--rtol"), default=1e-5,
                    help="relative tolerance of the adaptive solve")
    lk.add_argument("--atol", type=positive_float("--atol"), default=1e-5,
                    help="absolute tolerance of the adaptive solve")
    lk.add_argument("--seed", type=int, default=0, help="seed of dequantisation and probes")
    lk.add_argument("--out", default=None, metavar="JSON",
                    help="also write the JSON here (a .json path; default: stdout only)")
    lk.add_argument("--no-progress", action="store_true", help=no_progress)
    lk.set_defaults(func=cmd_likelihood)

    c = command("train-classifier", parents=[training], help="train a noise-conditional "
                "classifier p_t(y | x_t) for classifier guidance")
    c.add_argument("--data", default="digits", help="a labelled data set (digits, a toy set "
                   "or a .npz with labels)")
    c.add_argument("--sde", default="vp", choices=list(SDE_NAMES),
                   help="the score model's SDE")
    c.add_argument("--width", type=positive_int("--width"), default=256, help="MLP width")
    c.add_argument("--depth", type=positive_int("--depth"), default=3, help="MLP depth")
    c.add_argument("--t-min", type=nonneg_float("--t-min"), default=None,
                   help="smallest training time (default: the SDE's t_min)")
    c.set_defaults(func=cmd_train_classifier)

    ip = command("inpaint", help="restore test images from a linear measurement with a score "
                 "model: inpaint, colorize or super-resolve (replacement or PiGDM guidance)")
    ip.add_argument("--ckpt", required=True, help="a checkpoint of sdeflow train (required)")
    ip.add_argument("--task", default="inpaint", choices=list(TASKS),
                    help="inpaint masked pixels, colorize the gray image (3-channel models) "
                    "or super-resolve block means")
    ip.add_argument("--method", default=None, choices=list(METHODS),
                    help="replace: the measured component put on the forward kernel after "
                    "every step (Song et al. 2021); pigdm: approximate posterior guidance "
                    "(Song et al. 2023) (default replace)")
    ip.add_argument("--mask", default=None, choices=list(MASKS),
                    help="inpaint: missing region, the left half, central square or a random "
                    "half of the pixels (default center)")
    ip.add_argument("--factor", type=FACTOR, default=None,
                    help="superres: block side, dividing the image height and width "
                    "(default 2)")
    ip.add_argument("--mode", default=None, choices=list(MODES),
                    help="inpaint: the old name of --method (replace = replace, conditional "
                    "= pigdm, the reconstruction-guided conditional score) (default: none)")
    ip.add_argument("--sigma-y", type=nonneg_float("--sigma-y"), default=0.0,
                    help="standard deviation of the measurement noise (0: the result is put "
                    "on the measurement exactly)")
    ip.add_argument("--scale", type=nonneg_float("--scale"), default=None,
                    help="pigdm: weight of the guidance (default 1)")
    ip.add_argument("--sampler", default="pc", choices=list(SAMPLERS), help="sampler")
    ip.add_argument("--nfe", type=positive_int("--nfe"), default=None,
                    help=f"score-evaluation budget (default {DEFAULT_NFE}; ode: adaptive)")
    ip.add_argument("--n", type=positive_int("--n"), default=16,
                    help="number of images (at most the split's size)")
    ip.add_argument("--split", default="test", choices=["test", "train"],
                    help="which split's images")
    ip.add_argument("--out", default="inpaint.png",
                    help="NAME.png (labelled rows: original, measured, restored; NAME.json "
                    "with PSNR / MSE and NAME.pt beside it)")
    ip.add_argument("--seed", type=int, default=0,
                    help="seed of the mask, the measurement noise and the sampler")
    ip.add_argument("--no-denoise", action="store_true", help="skip the final Tweedie step")
    ip.add_argument("--no-progress", action="store_true", help=no_progress)
    ip.set_defaults(func=cmd_inpaint)

    d = command("demo", help="train (or load cached) a VP model on digits, sample with "
                "PC / Euler-Maruyama / probability-flow ODE, report FID and bits/dim")
    d.add_argument("--out", default=None,
                   help="output folder (default results/demo; with --quick results/demo-quick)")
    d.add_argument("--quick", action="store_true",
                   help="tiny settings (about a minute), results apart from the full demo's")
    d.add_argument("--retrain", action="store_true", help="ignore the cached model")
    d.add_argument("--seed", type=int, default=0, help="seed of the samples")
    d.add_argument("--no-progress", action="store_true", help=no_progress)
    d.set_defaults(func=cmd_demo)
    return p


def _with_config(parser: argparse.ArgumentParser, argv: List[str]) -> List[str]:
    """``argv`` with a training command's ``--config FILE`` expanded: the file's flags come
    first, so those on the command line override them."""
    if not argv or argv[0] not in ("train", "train-classifier"):
        return argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv[1:])
    if known.config is None:
        return argv
    command = parser._subparsers._group_actions[0].choices[argv[0]]  # type: ignore[union-attr]
    where = f"--config {known.config!r}"
    try:
        table = read_config(known.config)
        return [argv[0], *config_argv(table, command, where), *argv[1:]]
    except ConfigError as err:
        msg = str(err)
        raise CLIError(msg if msg.startswith(where) else f"{where}: {msg}") from err


def _missing_package(err: ModuleNotFoundError) -> Optional[str]:
    """The message for an optional dependency that is not installed (else None)."""
    top = (err.name or "").split(".")[0]
    if top not in _EXTRA_PACKAGES:
        return None
    return (f"this command needs the {_EXTRA_PACKAGES[top]!r} package, which is not "
            f"installed: it comes with sdeflow's 'generative' extra: {_EXTRA_HINT}")


def _error(message: str) -> int:
    print(f"sdeflow: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the tool; returns the exit status (2 with one ``sdeflow: error: ...`` line for a
    mistake in the input or a fault such as a full disk)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = _with_config(parser, argv)
    except CLIError as err:
        return _error(str(err))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, ModelError, CheckpointError) as err:
        return _error(str(err))
    except ModuleNotFoundError as err:
        message = _missing_package(err)
        if message is None:
            raise
        return _error(message)
    except KeyboardInterrupt:
        print("sdeflow: interrupted", file=sys.stderr)
        return 130
    # backstops for faults the commands do not turn into a CLIError themselves
    except OSError as err:
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        return _error(f"{os_reason(err)}{where}")
    except (RuntimeError, MemoryError) as err:
        if is_torch_write_failure(err):
            return _error(f"a write failed: no space left on device (or the file system "
                          f"refused it; torch: {first_line(err)})")
        if is_out_of_memory(err):
            return _error(f"out of memory ({first_line(err)}); lower --n, --batch-size or "
                          "--nfe")
        raise


if __name__ == "__main__":
    sys.exit(main())
