"""The ``sdeflow`` command-line tool: ``train``, ``sample``, ``likelihood`` and ``demo``.

    sdeflow train --model score --data digits --sde vp --steps 20000 --out runs/digits [--resume]
    sdeflow train --model ffjord --data 8gaussians --kinetic 0.01 --jacobian 0.01 ...
    sdeflow train --model ot-fm --data moons --path linear ...
    sdeflow sample --ckpt runs/digits/checkpoint.pt --sampler pc --nfe 500 --n 64 --out grid.png
    sdeflow likelihood --ckpt runs/moons/checkpoint.pt [--density-plot density.png]
    sdeflow demo [--quick] [--out results/demo]

Controllable generation (score models):

    sdeflow train --data digits --class-conditional --label-dropout 0.1 ... --out runs/cond
    sdeflow train-classifier --data digits --sde vp --steps 5000 --out runs/clf
    sdeflow sample --ckpt runs/cond/checkpoint.pt --class 3 --guidance cfg --scale 2.0 ...
    sdeflow sample --ckpt ... --class 3 --guidance classifier --classifier runs/clf/checkpoint.pt
    sdeflow inpaint --ckpt ... --mask left|center|random [--mode replace|conditional]

``--model`` picks the kind (score, ffjord, fm, ot-fm) and ``--net`` its network (mlp, unet).
A training checkpoint carries (in its ``meta``) everything needed to rebuild the model;
`generative.models` builds, trains, samples and scores each kind — this module parses
arguments and writes the outputs.

Errors in the user's input (unknown names, missing or corrupt checkpoints, ``--nfe`` < 1)
print ``sdeflow: error: ...`` on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from solvers import DIVERGENCE_METHODS
from solvers.brownian import seed_for
from solvers.errors import SolverError

from .checkpoint import CheckpointError
from .data import DATA_NAMES, load_data
from .distributed import (SINGLE_PROCESS, DistContext, gather_feature_stats, init_distributed,
                          torchrun_env_present)
from .ffjord import GRADIENT_MODES
from .flow_matching import PATHS
from .guidance import GUIDANCE
from .inpaint import MASKS, MODES
from .losses import WEIGHTINGS
from .models import (KINDS, NET_NAMES, SDE_NAMES, ModelError, load_model, log_prob, make_meta,
                     train_model)
from .models import sample as sample_model
from .samplers import SAMPLERS
from .train import TrainConfig

Tensor = torch.Tensor

__all__ = ["main", "build_parser", "generate", "CLIError"]

ODE_METHODS = ("euler", "midpoint", "heun", "rk4", "bosh3", "dopri5", "tsit5", "dopri8")
# every kind's training options (`generative.models.ModelKind.options`); a CLI flag exists for
# each except score's `cond` (and `num_classes`, set by --class-conditional)
_KIND_OPTIONS = sorted({name for kind in KINDS.values() for name in kind.options})


class CLIError(Exception):
    """A user-facing error: printed as ``sdeflow: error: <message>``, exit status 2."""


# --------------------------------------------------------------------------- argument types

def _number(name: str, cast: Callable[[str], Any], valid: Callable[[Any], bool],
            expected: str) -> Callable[[str], Any]:
    """An argparse ``type`` that casts and range-checks, naming the option on failure."""
    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"{name} must be {expected}; got {text!r}")
        return value
    return parse


def _positive_int(name: str) -> Callable[[str], int]:
    return _number(name, int, lambda v: v >= 1, "an integer >= 1")


def _positive_float(name: str) -> Callable[[str], float]:
    return _number(name, float, lambda v: v > 0 and math.isfinite(v), "a positive number")


def _nonneg_float(name: str) -> Callable[[str], float]:
    return _number(name, float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0")


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


def _train_setup(args: argparse.Namespace) -> Tuple[TrainConfig, Path]:
    """The `TrainConfig` and output directory of a training command; refuses to overwrite
    an existing run without ``--resume``."""
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         ema_decay=args.ema_decay, seed=args.seed, warmup_steps=args.warmup,
                         log_every=min(args.log_every, args.steps),
                         ckpt_every=min(args.ckpt_every, args.steps),
                         progress=not args.no_progress)
    out = Path(args.out)
    if (out / "checkpoint.pt").is_file() and not args.resume:
        raise CLIError(f"{str(out / 'checkpoint.pt')!r} exists; pass --resume to continue "
                       "that run or choose another --out")
    return config, out


def cmd_train(args: argparse.Namespace) -> int:
    try:
        data = load_data(args.data, seed=args.data_seed)
    except (ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from err
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
    meta = make_meta(args.model, data, net=args.net,
                     net_kwargs={k: v for k, v in sizes.items() if v is not None},
                     dequantize=not args.no_dequantize,
                     **{k: v for k, v in options.items() if v is not None})
    config, out = _train_setup(args)
    start = time.perf_counter()
    with _distributed(args.distributed) as dist:
        try:
            result = train_model(data, meta, config, out, resume=args.resume,
                                 distributed=dist)
        except ValueError as err:  # e.g. resuming with a different config
            raise CLIError(str(err)) from err
    if dist is not None and not dist.is_main:
        return 0
    summary = {"checkpoint": str(result.checkpoint), "step": result.step,
               "seconds": time.perf_counter() - start, "data": data.name,
               "kind": meta["kind"], "net": meta["net"],
               **{k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}}
    _write_json(out / "train_summary.json", summary)
    print(json.dumps(summary))
    return 0


def _sample_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The sampling options given on the command line (each model kind has its defaults and
    rejects options that do not apply to it)."""
    given = {"sampler": args.sampler, "nfe": args.nfe, "method": args.method,
             "rtol": args.rtol, "atol": args.atol, "snr": args.snr,
             "n_corrector": args.n_corrector, "eps": args.eps,
             "denoise": False if args.no_denoise else None, "label": args.label,
             "guidance": args.guidance, "scale": args.scale}
    return {k: v for k, v in given.items() if v is not None}


def _guidance_classifier(args: argparse.Namespace, meta: Dict[str, Any]) -> Optional[nn.Module]:
    """Check the class-guidance options against the model; the loaded ``--classifier`` (or
    ``None``)."""
    from .classifier import load_classifier
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
        num_classes = meta.get("num_classes")
        if num_classes is None:
            raise CLIError(f"--class with --guidance {args.guidance or 'none'} needs a "
                           "class-conditional model (sdeflow train --class-conditional); "
                           "this one is unconditional: use --guidance classifier")
        classifier = None
    else:
        try:
            classifier, _, cmeta = load_classifier(args.classifier)
        except (CheckpointError, ValueError) as err:
            raise CLIError(f"--classifier: {err}") from err
        for key in ("sde", "event_shape"):
            if cmeta[key] != meta.get(key):
                raise CLIError(f"--classifier was trained with {key} {cmeta[key]!r} but the "
                               f"model has {meta.get(key)!r}")
        num_classes = cmeta["num_classes"]
    try:
        check_label(args.label, num_classes, name="--class")
    except ValueError as err:
        raise CLIError(str(err)) from err
    return classifier


def generate(model: nn.Module, meta: Dict[str, Any], n: int, *, batch_size: int = 1000,
             seed: int = 0, distributed: Optional[DistContext] = None,
             **options: Any) -> Tuple[Tensor, float]:
    """``n`` samples of a loaded model (any kind; ``options`` are its sampling options, see
    `generative.models.sample`) in chunks of ``batch_size``; returns
    ``(samples, mean NFE per sample)``.

    Chunk ``c`` is drawn with a generator (on the model's device) seeded by ``(seed, c)``, so
    the samples depend on ``(seed, n, batch_size)`` only. With ``distributed`` this process
    draws its contiguous share of the chunks and returns those rows (the single-process
    result's rows at their positions) and their mean NFE; ``distributed.gather_rows``
    collects all ``n`` on rank 0.
    """
    ctx = distributed if distributed is not None else SINGLE_PROCESS
    device = next(model.parameters()).device
    xs: List[Tensor] = []
    nfes: List[float] = []
    with torch.no_grad():
        for c in ctx.shard(math.ceil(n / batch_size)):
            b = min(batch_size, n - c * batch_size)
            g = torch.Generator(device=device).manual_seed(seed_for(seed, c))
            x, used = sample_model(model, meta, b, generator=g, **options)
            xs.append(x)
            nfes.append(used * b)
    x = torch.cat(xs) if xs else torch.empty((0, *meta["event_shape"]), device=device)
    return x, sum(nfes) / max(len(x), 1)


def _digits_fid(x: Tensor, dist: Optional[DistContext]) -> Optional[float]:
    """FID (digits-classifier features) of every process's samples against the held-out test
    digits: each process featurises its own share and the Fréchet statistics merge exactly
    on rank 0 (`gather_feature_stats`). ``None`` on the other ranks."""
    from .metrics import digits_features, feature_stats, frechet_distance, load_digits_classifier
    ctx = dist if dist is not None else SINGLE_PROCESS
    ctx.run_on_main(lambda: load_digits_classifier() and None)  # trains + caches it once
    classifier = load_digits_classifier()
    stats = gather_feature_stats(digits_features(x.cpu(), classifier).double(), ctx)
    if stats is None:
        return None
    reference = feature_stats(digits_features(load_data("digits").test, classifier).double())
    return frechet_distance(*stats, *reference)


def cmd_sample(args: argparse.Namespace) -> int:
    from .plots import save_samples
    model, meta, _ = load_model(args.ckpt)
    if args.fid and meta["data"] != "digits":
        raise CLIError(f"--fid scores digits models; this one was trained on {meta['data']!r}")
    options = _sample_options(args)
    classifier = _guidance_classifier(args, meta)
    if classifier is not None:
        options["classifier"] = classifier
    start = time.perf_counter()
    with _distributed() as dist:  # under torchrun: each process draws its share
        try:
            x, nfe = generate(model.to(dist.device if dist else "cpu"), meta, args.n,
                              seed=args.seed, distributed=dist, **options)
        except SolverError as err:
            raise CLIError(str(err)) from err
        fid = _digits_fid(x, dist) if args.fid else None
        if dist is not None:  # rank 0 gathers every share and writes the outputs
            parts = dist.gather_object((x.cpu(), nfe))
            if parts is None:
                return 0
            x = torch.cat([p[0] for p in parts])
            nfe = sum(len(p[0]) * p[1] for p in parts) / args.n
    seconds = time.perf_counter() - start
    if meta.get("levels"):
        x = x.clamp(-1, 1)
    out = Path(args.out)
    reference = None
    if x.dim() == 2:  # vector data: scatter plot over the test data, MMD / sliced W2
        reference = load_data(meta["data"]).test[:2000]
    method = options.get("sampler", meta["kind"])
    save_samples(x, out, reference=reference,
                 title=f"{method} (NFE {nfe:.0f})" if reference is not None else None)
    torch.save(x, out.with_suffix(".pt"))
    if classifier is not None:
        options["classifier"] = str(args.classifier)
    summary: Dict[str, Any] = {
        "ckpt": str(args.ckpt), "kind": meta["kind"], "n": args.n, "nfe": nfe,
        "options": options, "seconds": seconds, "image": str(out),
        "samples": str(out.with_suffix(".pt")), "finite": bool(torch.isfinite(x).all())}
    if reference is not None:
        from .metrics import mmd_rbf, sliced_wasserstein
        ref = reference[: max(args.n, 2)]
        summary["mmd"] = mmd_rbf(x.float(), ref.float())
        summary["sliced_wasserstein"] = sliced_wasserstein(x.float(), ref.float())
    if fid is not None:
        summary["fid"] = fid
    _write_json(out.with_suffix(".json"), summary)
    print(json.dumps(summary))
    return 0


def cmd_likelihood(args: argparse.Namespace) -> int:
    model, meta, _ = load_model(args.ckpt)
    if args.density_plot and tuple(meta["event_shape"]) != (2,):
        raise CLIError(f"--density-plot needs a model of 2-D data; this one has event shape "
                       f"{tuple(meta['event_shape'])}")
    data = load_data(meta["data"])
    split = data.test if args.split == "test" else data.train
    x = split[: args.n]
    g = torch.Generator().manual_seed(args.seed)
    if meta.get("levels"):
        x = data.dequantize(x, g)
    tol = {"rtol": args.rtol, "atol": args.atol}
    start = time.perf_counter()
    try:
        logp, nfe = log_prob(model, meta, x, generator=g, divergence=args.divergence,
                             n_probes=args.n_probes, **tol)
    except SolverError as err:
        raise CLIError(str(err)) from err
    bpd = -logp / (x[0].numel() * math.log(2.0))
    if data.bin_width is not None:
        bpd = bpd - math.log2(data.bin_width)
    summary = {"ckpt": str(args.ckpt), "kind": meta["kind"], "split": args.split,
               "n": int(x.shape[0]),
               "bits_per_dim": float(bpd.mean()),
               "bits_per_dim_stderr": float(bpd.std() / math.sqrt(len(bpd))) if len(bpd) > 1
               else 0.0,
               "nfe": nfe, "divergence": args.divergence, "seconds":
               time.perf_counter() - start, "dequantized": bool(meta.get("levels"))}
    if args.density_plot:
        from .plots import save_density  # the model density beside the whole split's histogram
        save_density(lambda pts: log_prob(model, meta, pts, **tol)[0], split,
                     args.density_plot, title=f"{meta['kind']} on {meta['data']}")
        summary["density_plot"] = str(args.density_plot)
    if args.out:
        _write_json(Path(args.out), summary)
    print(json.dumps(summary))
    return 0


def cmd_train_classifier(args: argparse.Namespace) -> int:
    from .classifier import classifier_meta, noisy_accuracy, train_classifier
    try:
        data = load_data(args.data, seed=args.data_seed)
        meta = classifier_meta(data, sde=args.sde, t_min=args.t_min,
                               model_kwargs={"width": args.width, "depth": args.depth},
                               dequantize=not args.no_dequantize)
    except (ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from err
    config, out = _train_setup(args)
    start = time.perf_counter()
    try:
        result = train_classifier(data, meta, config, out, resume=args.resume)
    except ValueError as err:  # e.g. resuming with a different config
        raise CLIError(str(err)) from err
    model = result.ema.model
    sde = model.sde
    g = torch.Generator().manual_seed(args.seed)
    accuracy = {f"{frac:g}T": noisy_accuracy(model, sde, data.test, data.test_labels,
                                             max(frac * sde.T, sde.eps), g)
                for frac in (0.0, 0.25, 0.5, 0.75)}
    summary = {"checkpoint": str(result.checkpoint), "step": result.step,
               "seconds": time.perf_counter() - start, "data": data.name, "sde": args.sde,
               "test_accuracy_at_t": accuracy,
               **{k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}}
    _write_json(out / "train_summary.json", summary)
    print(json.dumps(summary))
    return 0


def cmd_inpaint(args: argparse.Namespace) -> int:
    from .inpaint import inpaint, known_mask
    from .plots import save_image_grid, save_samples
    model, meta, _ = load_model(args.ckpt)
    if meta["kind"] != "score":
        raise CLIError(f"inpaint needs a score model (--model score); {str(args.ckpt)!r} is a "
                       f"{meta['kind']!r} model")
    data = load_data(meta["data"])
    x = (data.test if args.split == "test" else data.train)[: args.n]
    g = torch.Generator().manual_seed(args.seed)
    mask = known_mask(args.mask, meta["event_shape"], len(x), generator=g)
    nfe = args.nfe if args.nfe is not None or args.sampler == "ode" else 500
    start = time.perf_counter()
    try:
        with torch.no_grad():
            out_x, used = inpaint(model.sde, model.score_fn(), x, mask, mode=args.mode,
                                  sampler=args.sampler, nfe=nfe, scale=args.scale,
                                  denoise=not args.no_denoise, generator=g)
    except (SolverError, ValueError) as err:
        raise CLIError(str(err)) from err
    seconds = time.perf_counter() - start
    if meta.get("levels"):
        out_x = out_x.clamp(-1, 1)
    out = Path(args.out)
    if x.dim() == 4:  # rows of originals, masked inputs (missing pixels grey), inpaintings
        shown = torch.cat([x, torch.where(mask, x, torch.zeros_like(x)), out_x])
        save_image_grid(shown, out, ncol=len(x))
    else:
        save_samples(out_x, out, reference=x, title=f"inpainted ({args.mode}, {args.mask})")
    torch.save({"original": x, "mask": mask, "inpainted": out_x}, out.with_suffix(".pt"))
    missing = ~mask
    summary = {"ckpt": str(args.ckpt), "mode": args.mode, "mask": args.mask,
               "sampler": args.sampler, "n": int(len(x)), "scale": args.scale,
               "nfe": float(torch.as_tensor(used, dtype=torch.float64).mean()),
               "missing_fraction": float(missing.double().mean()),
               "mse_missing": float((out_x - x)[missing].square().mean()),
               "seconds": seconds, "image": str(out), "samples": str(out.with_suffix(".pt"))}
    _write_json(out.with_suffix(".json"), summary)
    print(json.dumps(summary))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(out_dir=args.out, quick=args.quick, retrain=args.retrain, seed=args.seed,
             progress=not args.no_progress)
    return 0


# --------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sdeflow", description="Score-based generative models "
                                "on sdeflow's ODE/SDE solvers.")
    sub = p.add_subparsers(dest="command", metavar="{train,sample,likelihood,demo,"
                           "train-classifier,inpaint}")
    sub.required = True

    t = sub.add_parser("train", help="train a model (atomic checkpoints, --resume)")
    t.add_argument("--data", default="digits",
                   help=f"one of {', '.join(DATA_NAMES)} or a .npy/.npz path")
    t.add_argument("--model", default="score", choices=list(KINDS),
                   help="score model, FFJORD, flow matching or OT flow matching")
    t.add_argument("--steps", type=_positive_int("--steps"), required=True)
    t.add_argument("--out", required=True, help="output directory (checkpoint.pt, metrics.jsonl)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--batch-size", type=_positive_int("--batch-size"), default=128)
    t.add_argument("--lr", type=_positive_float("--lr"), default=1e-3)
    t.add_argument("--warmup", type=int, default=100, help="linear learning-rate warmup steps")
    t.add_argument("--net", default="mlp", choices=list(NET_NAMES),
                   help="network (ffjord: mlp, FFJORD's concat-squash MLP)")
    t.add_argument("--width", type=_positive_int("--width"), default=None,
                   help="MLP width (default 256; ffjord 64)")
    t.add_argument("--depth", type=_positive_int("--depth"), default=None,
                   help="MLP depth (default 3)")
    t.add_argument("--channels", type=_positive_int("--channels"), default=None,
                   help="U-Net base channels (default 32)")
    t.add_argument("--t-min", type=_nonneg_float("--t-min"), default=None,
                   help="score, fm: smallest training time (default: the SDE's eps / 0, "
                   "1e-3 on the vp path)")
    sc = t.add_argument_group("score models (--model score)")
    sc.add_argument("--sde", default=None, choices=list(SDE_NAMES), help="default vp")
    sc.add_argument("--weighting", default=None, choices=list(WEIGHTINGS), help="default std2")
    sc.add_argument("--class-conditional", action="store_true",
                    help="condition on the data's labels (class embedding and a null label, "
                    "for --class and classifier-free guidance at sampling)")
    sc.add_argument("--label-dropout", type=_number("--label-dropout", float,
                                                    lambda v: 0 <= v <= 1, "a number in [0, 1]"),
                    default=None, help="--class-conditional: probability of training a batch "
                    "row with the null label (default 0.1)")
    ff = t.add_argument_group("FFJORD (--model ffjord)")
    ff.add_argument("--divergence", default=None, choices=["auto", *DIVERGENCE_METHODS],
                    help="training trace estimator (default auto: exact for D <= 8)")
    ff.add_argument("--n-probes", type=_positive_int("--n-probes"), default=None,
                    help="Hutchinson / Hutch++ probes (default 1)")
    ff.add_argument("--kinetic", type=_nonneg_float("--kinetic"), default=None,
                    help="RNODE weight of the kinetic energy (default 0)")
    ff.add_argument("--jacobian", type=_nonneg_float("--jacobian"), default=None,
                    help="RNODE weight of the Jacobian Frobenius norm (default 0)")
    ff.add_argument("--gradient", default=None, choices=list(GRADIENT_MODES),
                    help="default backsolve (adjoint)")
    ff.add_argument("--method", default=None, choices=list(ODE_METHODS), help="default dopri5")
    ff.add_argument("--rtol", type=_positive_float("--rtol"), default=None,
                    help="default 1e-5")
    ff.add_argument("--atol", type=_positive_float("--atol"), default=None,
                    help="default 1e-5")
    fm = t.add_argument_group("flow matching (--model fm / ot-fm)")
    fm.add_argument("--path", default=None, choices=list(PATHS), help="default linear")
    t.add_argument("--ema-decay", type=float, default=0.999)
    t.add_argument("--no-dequantize", action="store_true",
                   help="train on the discrete levels (no uniform dequantisation)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data-seed", type=int, default=0)
    t.add_argument("--log-every", type=_positive_int("--log-every"), default=100)
    t.add_argument("--ckpt-every", type=_positive_int("--ckpt-every"), default=1000)
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes of a torchrun launch (automatic "
                   "when WORLD_SIZE > 1): torchrun --nproc_per_node N -m generative.cli train")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a trained checkpoint")
    s.add_argument("--ckpt", required=True)
    s.add_argument("--sampler", default=None, choices=list(SAMPLERS),
                   help="score models (default pc)")
    s.add_argument("--method", default=None, choices=list(ODE_METHODS),
                   help="ODE method: score models with --sampler ode, ffjord, fm (default "
                   "dopri5; ffjord: its training method)")
    s.add_argument("--nfe", type=_positive_int("--nfe"), default=None,
                   help="evaluation budget (score: default 500; ode, ffjord, fm: fixed steps "
                   "of --method instead of adaptive ones)")
    s.add_argument("--n", "--num-samples", dest="n", type=_positive_int("--n"), default=64,
                   help="number of samples (under torchrun write --num-samples: torchrun "
                   "takes --n for an abbreviation of its own options)")
    s.add_argument("--out", default="samples.png", help="PNG path (a .json and .pt beside it)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fid", action="store_true",
                   help="digits models: FID against the held-out test digits (sharded "
                   "over torchrun processes, statistics merged exactly)")
    s.add_argument("--snr", type=_positive_float("--snr"), default=None,
                   help="pc sampler (default 0.16)")
    s.add_argument("--n-corrector", type=int, default=None, help="pc sampler (default 1)")
    s.add_argument("--rtol", type=_positive_float("--rtol"), default=None,
                   help="adaptive ODE solves (default 1e-4; ffjord: its training rtol)")
    s.add_argument("--atol", type=_positive_float("--atol"), default=None,
                   help="adaptive ODE solves (default 1e-4; ffjord: its training atol)")
    s.add_argument("--eps", type=_positive_float("--eps"), default=None,
                   help="score models: end time of sampling (default: the SDE's eps)")
    s.add_argument("--no-denoise", action="store_true",
                   help="score models: skip the final Tweedie step")
    g = s.add_argument_group("class-conditional sampling (score models)")
    g.add_argument("--class", dest="label", type=_number("--class", int, lambda v: v >= 0,
                                                         "an integer >= 0"),
                   default=None, help="sample this class")
    g.add_argument("--guidance", default=None, choices=list(GUIDANCE),
                   help="none (default: the conditional score of a --class-conditional "
                   "model), cfg (classifier-free) or classifier (needs --classifier)")
    g.add_argument("--scale", type=_number("--scale", float, math.isfinite, "a finite number"),
                   default=None, help="guidance scale (default 1; cfg: 0 = unconditional)")
    g.add_argument("--classifier", default=None, metavar="CKPT",
                   help="noise-conditional classifier checkpoint (sdeflow train-classifier)")
    s.set_defaults(func=cmd_sample)

    lk = sub.add_parser("likelihood", help="test bits/dim (score models: through the "
                        "probability-flow ODE)")
    lk.add_argument("--ckpt", required=True)
    lk.add_argument("--split", default="test", choices=["test", "train"])
    lk.add_argument("--n", type=_positive_int("--n"), default=10_000,
                    help="number of examples (at most the split's size)")
    lk.add_argument("--divergence", default="exact", choices=list(DIVERGENCE_METHODS))
    lk.add_argument("--n-probes", type=_positive_int("--n-probes"), default=None,
                    help="Hutchinson / Hutch++ probes (default 1; hutch++ 3)")
    lk.add_argument("--density-plot", default=None, metavar="PNG",
                    help="2-D models: write the model density on a grid beside the data "
                    "histogram")
    lk.add_argument("--rtol", type=_positive_float("--rtol"), default=1e-5)
    lk.add_argument("--atol", type=_positive_float("--atol"), default=1e-5)
    lk.add_argument("--seed", type=int, default=0)
    lk.add_argument("--out", default=None, help="also write the JSON here")
    lk.set_defaults(func=cmd_likelihood)

    c = sub.add_parser("train-classifier", help="train a noise-conditional classifier "
                       "p_t(y | x_t) for classifier guidance")
    c.add_argument("--data", default="digits", help="a labelled data set (digits, a toy set "
                   "or a .npz with labels)")
    c.add_argument("--sde", default="vp", choices=list(SDE_NAMES),
                   help="the score model's SDE (default vp)")
    c.add_argument("--steps", type=_positive_int("--steps"), required=True)
    c.add_argument("--out", required=True, help="output directory (checkpoint.pt)")
    c.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    c.add_argument("--batch-size", type=_positive_int("--batch-size"), default=128)
    c.add_argument("--lr", type=_positive_float("--lr"), default=1e-3)
    c.add_argument("--warmup", type=int, default=100, help="linear learning-rate warmup steps")
    c.add_argument("--width", type=_positive_int("--width"), default=256, help="MLP width")
    c.add_argument("--depth", type=_positive_int("--depth"), default=3, help="MLP depth")
    c.add_argument("--t-min", type=_nonneg_float("--t-min"), default=None,
                   help="smallest training time (default: the SDE's eps)")
    c.add_argument("--ema-decay", type=float, default=0.999)
    c.add_argument("--no-dequantize", action="store_true")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--data-seed", type=int, default=0)
    c.add_argument("--log-every", type=_positive_int("--log-every"), default=100)
    c.add_argument("--ckpt-every", type=_positive_int("--ckpt-every"), default=1000)
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=cmd_train_classifier)

    ip = sub.add_parser("inpaint", help="fill in masked pixels of test images with a score "
                        "model (replacement or conditional score)")
    ip.add_argument("--ckpt", required=True)
    ip.add_argument("--mask", default="center", choices=list(MASKS),
                    help="missing region: left half, central square or a random half of the "
                    "pixels (default center)")
    ip.add_argument("--mode", default="replace", choices=list(MODES),
                    help="replace: known pixels put on the forward kernel after every step "
                    "(Song et al. 2021); conditional: reconstruction-guided conditional score")
    ip.add_argument("--scale", type=_nonneg_float("--scale"), default=1.0,
                    help="conditional: weight of the reconstruction guidance (default 1)")
    ip.add_argument("--sampler", default="pc", choices=list(SAMPLERS),
                    help="default pc (replace: not ode)")
    ip.add_argument("--nfe", type=_positive_int("--nfe"), default=None,
                    help="score-evaluation budget (default 500; ode: adaptive)")
    ip.add_argument("--n", type=_positive_int("--n"), default=16, help="number of images")
    ip.add_argument("--split", default="test", choices=["test", "train"])
    ip.add_argument("--out", default="inpaint.png",
                    help="PNG path (rows: originals, masked, inpainted; .json and .pt beside)")
    ip.add_argument("--seed", type=int, default=0)
    ip.add_argument("--no-denoise", action="store_true", help="skip the final Tweedie step")
    ip.set_defaults(func=cmd_inpaint)

    d = sub.add_parser("demo", help="train (or load cached) a VP model on digits, sample with "
                       "PC / Euler-Maruyama / probability-flow ODE, report FID and bits/dim")
    d.add_argument("--out", default="results/demo")
    d.add_argument("--quick", action="store_true", help="tiny settings (< 1 minute)")
    d.add_argument("--retrain", action="store_true", help="ignore the cached model")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, ModelError) as err:
        print(f"sdeflow: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sdeflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
