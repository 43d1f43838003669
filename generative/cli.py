"""The ``sdeflow`` command-line tool: ``train``, ``sample``, ``likelihood`` and ``demo``.

    sdeflow train --data digits --sde vp --steps 20000 --out runs/digits [--resume]
    sdeflow sample --ckpt runs/digits/checkpoint.pt --sampler pc --nfe 500 --n 64 --out grid.png
    sdeflow likelihood --ckpt runs/digits/checkpoint.pt
    sdeflow demo [--quick] [--out results/demo]

A training checkpoint carries (in its ``meta``) everything needed to rebuild the score
model: the data set, the SDE, the network and its conditioning. The network predicts the
noise ε from a preconditioned input ``x / sqrt(α² σ_data² + σ²)`` and the normalised
log-noise level ``c(t) = (log σ(t) - log σ(eps)) / (log σ(T) - log σ(eps))``; the score
is ``-ε / σ(t)`` (`dynamics.ScoreAdapter`).

Errors in the user's input (unknown names, missing or corrupt checkpoints, ``--nfe`` < 1)
print ``sdeflow: error: ...`` on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from dynamics import VESDE, VPSDE, SubVPSDE, LinearSDE, ScoreAdapter
from solvers.errors import SolverError

from .checkpoint import CheckpointError, load_checkpoint
from .data import DATA_NAMES, Dataset, dequantize_transform, load_data
from .losses import WEIGHTINGS, make_dsm_loss
from .nets import MLP, UNet
from .samplers import SAMPLERS

Tensor = torch.Tensor

__all__ = ["main", "build_parser", "SDE_NAMES", "MODEL_NAMES", "ScoreNet", "make_sde",
           "build_score_model", "load_score_model", "train_score_model", "default_meta",
           "CLIError"]

SDE_NAMES = {"vp": VPSDE, "ve": VESDE, "subvp": SubVPSDE}
MODEL_NAMES = ("mlp", "unet")
ODE_METHODS = ("euler", "midpoint", "heun", "rk4", "bosh3", "dopri5", "tsit5", "dopri8")
META_KIND = "sdeflow-score-model"
META_VERSION = 1


class CLIError(Exception):
    """A user-facing error: printed as ``sdeflow: error: <message>``, exit status 2."""


# --------------------------------------------------------------------------- the model

def make_sde(name: str) -> LinearSDE:
    if name not in SDE_NAMES:
        raise CLIError(f"unknown SDE {name!r}; valid SDEs: {', '.join(SDE_NAMES)}")
    return SDE_NAMES[name]()


class ScoreNet(nn.Module):
    """ε-prediction network with input preconditioning and log-σ conditioning.

    ``forward(x, t)`` returns the predicted noise ε̂(x, t) (x's shape); wrap it in
    ``dynamics.ScoreAdapter(model, sde, 'eps')`` for a score.
    """

    def __init__(self, net: nn.Module, sde: LinearSDE, data_std: float = 1.0,
                 cond: str = "logsigma") -> None:
        super().__init__()
        if cond not in ("logsigma", "t"):
            raise ValueError(f"cond must be 'logsigma' or 't'; got {cond!r}")
        self.net, self.sde, self.cond = net, sde, cond
        self.data_std = float(data_std)
        lo = math.log(float(sde.sigma(torch.tensor(float(sde.eps), dtype=torch.float64))))
        hi = math.log(float(sde.sigma(torch.tensor(float(sde.T), dtype=torch.float64))))
        self._log_sigma_range = (lo, hi)

    def noise_condition(self, t: Tensor) -> Tensor:
        if self.cond == "t":
            return t
        lo, hi = self._log_sigma_range
        return (torch.log(self.sde.sigma(t)) - lo) / (hi - lo)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        a = self.sde.alpha(t).reshape(-1, *([1] * (x.dim() - 1)))
        s = self.sde.sigma(t).reshape(-1, *([1] * (x.dim() - 1)))
        c_in = torch.rsqrt(a.square() * self.data_std ** 2 + s.square())
        return self.net(x * c_in, self.noise_condition(t))


def default_meta(data: Dataset, *, sde: str = "vp", model: str = "mlp",
                 model_kwargs: Optional[Dict[str, Any]] = None, weighting: str = "std2",
                 t_min: Optional[float] = None, dequantize: bool = True,
                 cond: str = "logsigma") -> Dict[str, Any]:
    """The plain dict stored in a checkpoint's ``meta`` to rebuild the score model."""
    if sde not in SDE_NAMES:
        raise CLIError(f"unknown SDE {sde!r}; valid SDEs: {', '.join(SDE_NAMES)}")
    if model not in MODEL_NAMES:
        raise CLIError(f"unknown model {model!r}; valid models: {', '.join(MODEL_NAMES)}")
    shape = list(data.event_shape)
    if model == "unet" and len(shape) != 3:
        raise CLIError(f"--model unet needs image data (C, H, W); {data.name!r} has event "
                       f"shape {tuple(shape)}; use --model mlp")
    return {"kind": META_KIND, "version": META_VERSION, "data": data.name,
            "event_shape": shape, "levels": data.levels, "sde": sde, "model": model,
            "model_kwargs": dict(model_kwargs or {}), "weighting": weighting,
            "t_min": t_min, "dequantize": bool(dequantize and data.levels is not None),
            "cond": cond, "parameterization": "eps",
            "data_std": float(data.train.to(torch.float64).std())}


def build_score_model(meta: Dict[str, Any]) -> Tuple[ScoreNet, LinearSDE]:
    """A fresh (untrained) `ScoreNet` and its SDE from checkpoint ``meta``."""
    sde = make_sde(meta["sde"])
    shape = tuple(int(s) for s in meta["event_shape"])
    kwargs = dict(meta.get("model_kwargs") or {})
    if meta["model"] == "mlp":
        net: nn.Module = MLP(shape, **kwargs)
    elif meta["model"] == "unet":
        net = UNet(in_channels=shape[0], image_size=shape[1], **kwargs)
    else:
        raise CLIError(f"unknown model {meta['model']!r}; valid models: {', '.join(MODEL_NAMES)}")
    return ScoreNet(net, sde, meta.get("data_std", 1.0), meta.get("cond", "logsigma")), sde


def load_score_model(path, *, use_ema: bool = True
                     ) -> Tuple[ScoreNet, LinearSDE, Dict[str, Any], Dict[str, Any]]:
    """Load a training checkpoint -> ``(model in eval mode, sde, meta, state)``.

    Raises `CLIError` for a missing, corrupt or foreign checkpoint."""
    try:
        state = load_checkpoint(path)
    except CheckpointError as err:
        raise CLIError(str(err)) from err
    meta = state.get("meta") if isinstance(state, dict) else None
    if not isinstance(meta, dict) or meta.get("kind") != META_KIND or "model" not in state:
        raise CLIError(f"{str(path)!r} is not a checkpoint written by `sdeflow train` "
                       "(no score-model description in its meta)")
    model, sde = build_score_model(meta)
    try:
        model.load_state_dict(state["model"])
        if use_ema and isinstance(state.get("ema"), dict):
            from .ema import EMA
            ema = EMA(model)
            ema.load_state_dict(state["ema"])
            ema.copy_to(model)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise CLIError(f"checkpoint {str(path)!r} does not match its model description: "
                       f"{str(err).splitlines()[0]}") from err
    model.eval().requires_grad_(False)
    return model, sde, meta, state


def score_function(model: ScoreNet, sde: LinearSDE) -> ScoreAdapter:
    return ScoreAdapter(model, sde, "eps")


def train_score_model(data: Dataset, meta: Dict[str, Any], config, out_dir, *,
                      resume: bool = False):
    """Train the model described by ``meta`` on ``data.train`` (`generative.train.train`)."""
    from .train import train
    model, sde = build_score_model(meta)
    loss = make_dsm_loss(sde, parameterization="eps", weighting=meta["weighting"],
                         t_min=meta["t_min"])
    transform = dequantize_transform(data.levels if meta["dequantize"] else None)
    return train(model, loss, data.train, config, out_dir=out_dir, resume=resume,
                 transform=transform, meta=meta)


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


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig
    try:
        data = load_data(args.data, seed=args.data_seed)
    except (ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from err
    model_kwargs: Dict[str, Any] = {}
    if args.model == "mlp":
        model_kwargs = {"width": args.width, "depth": args.depth}
    else:
        model_kwargs = {"base_channels": args.channels}
    meta = default_meta(data, sde=args.sde, model=args.model, model_kwargs=model_kwargs,
                        weighting=args.weighting, t_min=args.t_min,
                        dequantize=not args.no_dequantize)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         ema_decay=args.ema_decay, seed=args.seed, warmup_steps=args.warmup,
                         log_every=min(args.log_every, args.steps),
                         ckpt_every=min(args.ckpt_every, args.steps),
                         progress=not args.no_progress)
    out = Path(args.out)
    if (out / "checkpoint.pt").is_file() and not args.resume:
        raise CLIError(f"{str(out / 'checkpoint.pt')!r} exists; pass --resume to continue "
                       "that run or choose another --out")
    start = time.perf_counter()
    try:
        result = train_score_model(data, meta, config, out, resume=args.resume)
    except ValueError as err:  # e.g. resuming with a different config
        raise CLIError(str(err)) from err
    summary = {"checkpoint": str(result.checkpoint), "step": result.step,
               "seconds": time.perf_counter() - start, "data": data.name, "sde": args.sde,
               "model": args.model, **{k: v for k, v in result.metrics.items()
                                       if isinstance(v, (int, float))}}
    _write_json(out / "train_summary.json", summary)
    print(json.dumps(summary))
    return 0


def _sampler_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    kw: Dict[str, Any] = {"denoise": not args.no_denoise}
    if args.sampler == "ode":
        kw.update(method=args.method, rtol=args.rtol, atol=args.atol)
    if args.sampler == "pc":
        kw.update(snr=args.snr, n_corrector=args.n_corrector)
    if args.eps is not None:
        kw["eps"] = args.eps
    return kw


def generate(model: ScoreNet, sde: LinearSDE, sampler: str, n: int, event_shape: Sequence[int],
             *, nfe: Optional[int], batch_size: int = 1000, seed: int = 0,
             **kwargs: Any) -> Tuple[Tensor, float]:
    """``n`` samples in batches; returns ``(samples, mean NFE per sample)``."""
    from .samplers import sample
    score = score_function(model, sde)
    g = torch.Generator().manual_seed(seed)
    xs: List[Tensor] = []
    nfes: List[float] = []
    done = 0
    with torch.no_grad():
        while done < n:
            b = min(batch_size, n - done)
            x, used = sample(sampler, sde, score, (b, *event_shape), nfe=nfe, generator=g,
                             **dict(kwargs))
            xs.append(x)
            nfes.append(float(torch.as_tensor(used, dtype=torch.float64).mean()) * b)
            done += b
    return torch.cat(xs), sum(nfes) / n


def cmd_sample(args: argparse.Namespace) -> int:
    from .plots import save_samples
    model, sde, meta, _ = load_score_model(args.ckpt)
    if args.sampler != "ode" and args.nfe is None:
        args.nfe = 500
    start = time.perf_counter()
    try:
        x, nfe = generate(model, sde, args.sampler, args.n, meta["event_shape"], nfe=args.nfe,
                          seed=args.seed, **_sampler_kwargs(args))
    except SolverError as err:
        raise CLIError(str(err)) from err
    seconds = time.perf_counter() - start
    if meta.get("levels"):
        x = x.clamp(-1, 1)
    out = Path(args.out)
    reference = None
    if x.dim() == 2:  # vector data: scatter plot over the test data, MMD / sliced W2
        reference = load_data(meta["data"]).test[:2000]
    save_samples(x, out, reference=reference,
                 title=f"{args.sampler} (NFE {nfe:.0f})" if reference is not None else None)
    torch.save(x, out.with_suffix(".pt"))
    summary: Dict[str, Any] = {
        "ckpt": str(args.ckpt), "sampler": args.sampler, "n": args.n, "nfe": nfe,
        "nfe_budget": args.nfe, "seconds": seconds, "image": str(out),
        "samples": str(out.with_suffix(".pt")), "finite": bool(torch.isfinite(x).all()),
        **{k: v for k, v in _sampler_kwargs(args).items()}}
    if reference is not None:
        from .metrics import mmd_rbf, sliced_wasserstein
        ref = reference[: max(args.n, 2)]
        summary["mmd"] = mmd_rbf(x.float(), ref.float())
        summary["sliced_wasserstein"] = sliced_wasserstein(x.float(), ref.float())
    _write_json(out.with_suffix(".json"), summary)
    print(json.dumps(summary))
    return 0


def cmd_likelihood(args: argparse.Namespace) -> int:
    model, sde, meta, _ = load_score_model(args.ckpt)
    data = load_data(meta["data"])
    x = (data.test if args.split == "test" else data.train)[: args.n]
    g = torch.Generator().manual_seed(args.seed)
    if meta.get("levels"):
        x = data.dequantize(x, g)
    start = time.perf_counter()
    try:
        bpd, stats = _bpd(sde, score_function(model, sde), x, data.bin_width, args, g)
    except SolverError as err:
        raise CLIError(str(err)) from err
    summary = {"ckpt": str(args.ckpt), "split": args.split, "n": int(x.shape[0]),
               "bits_per_dim": float(bpd.mean()),
               "bits_per_dim_stderr": float(bpd.std() / math.sqrt(len(bpd))) if len(bpd) > 1
               else 0.0,
               "nfe": stats, "divergence": args.divergence, "seconds":
               time.perf_counter() - start, "dequantized": bool(meta.get("levels"))}
    if args.out:
        _write_json(Path(args.out), summary)
    print(json.dumps(summary))
    return 0


def _bpd(sde, score, x, bin_width, args, generator):
    from .likelihood import log_likelihood
    kw = dict(divergence_method=args.divergence, rtol=args.rtol, atol=args.atol,
              generator=generator)
    logp, stats = log_likelihood(sde, score, x, return_stats=True, **kw)
    D = x[0].numel()
    bpd = -logp / (D * math.log(2.0))
    if bin_width is not None:
        bpd = bpd - math.log2(bin_width)
    nfe = stats.get("nfe") if isinstance(stats, dict) else None
    nfe = float(torch.as_tensor(nfe, dtype=torch.float64).mean()) if nfe is not None else None
    return bpd, nfe


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(out_dir=args.out, quick=args.quick, retrain=args.retrain, seed=args.seed,
             progress=not args.no_progress)
    return 0


# --------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sdeflow", description="Score-based generative models "
                                "on sdeflow's ODE/SDE solvers.")
    sub = p.add_subparsers(dest="command", metavar="{train,sample,likelihood,demo}")
    sub.required = True

    t = sub.add_parser("train", help="train a score model (atomic checkpoints, --resume)")
    t.add_argument("--data", default="digits",
                   help=f"one of {', '.join(DATA_NAMES)} or a .npy/.npz path")
    t.add_argument("--sde", default="vp", choices=list(SDE_NAMES))
    t.add_argument("--steps", type=_positive_int("--steps"), required=True)
    t.add_argument("--out", required=True, help="output directory (checkpoint.pt, metrics.jsonl)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--batch-size", type=_positive_int("--batch-size"), default=128)
    t.add_argument("--lr", type=_positive_float("--lr"), default=1e-3)
    t.add_argument("--warmup", type=int, default=100, help="linear learning-rate warmup steps")
    t.add_argument("--model", default="mlp", choices=list(MODEL_NAMES))
    t.add_argument("--width", type=_positive_int("--width"), default=256)
    t.add_argument("--depth", type=_positive_int("--depth"), default=3)
    t.add_argument("--channels", type=_positive_int("--channels"), default=32,
                   help="U-Net base channels")
    t.add_argument("--weighting", default="std2", choices=list(WEIGHTINGS))
    t.add_argument("--t-min", type=_nonneg_float("--t-min"), default=None,
                   help="smallest training time (default: the SDE's eps)")
    t.add_argument("--ema-decay", type=float, default=0.999)
    t.add_argument("--no-dequantize", action="store_true",
                   help="train on the discrete levels (no uniform dequantisation)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data-seed", type=int, default=0)
    t.add_argument("--log-every", type=_positive_int("--log-every"), default=100)
    t.add_argument("--ckpt-every", type=_positive_int("--ckpt-every"), default=1000)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a trained checkpoint")
    s.add_argument("--ckpt", required=True)
    s.add_argument("--sampler", default="pc", choices=list(SAMPLERS))
    s.add_argument("--method", default="dopri5", choices=list(ODE_METHODS),
                   help="solvers method of the probability-flow ODE (--sampler ode)")
    s.add_argument("--nfe", type=_positive_int("--nfe"), default=None,
                   help="score-evaluation budget (default 500; ode: adaptive steps)")
    s.add_argument("--n", type=_positive_int("--n"), default=64)
    s.add_argument("--out", default="samples.png", help="PNG path (a .json and .pt beside it)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--snr", type=_positive_float("--snr"), default=0.16)
    s.add_argument("--n-corrector", type=int, default=1)
    s.add_argument("--rtol", type=_positive_float("--rtol"), default=1e-4)
    s.add_argument("--atol", type=_positive_float("--atol"), default=1e-4)
    s.add_argument("--eps", type=_positive_float("--eps"), default=None,
                   help="end time of sampling (default: the SDE's eps)")
    s.add_argument("--no-denoise", action="store_true", help="skip the final Tweedie step")
    s.set_defaults(func=cmd_sample)

    lk = sub.add_parser("likelihood", help="test bits/dim through the probability-flow ODE")
    lk.add_argument("--ckpt", required=True)
    lk.add_argument("--split", default="test", choices=["test", "train"])
    lk.add_argument("--n", type=_positive_int("--n"), default=10_000,
                    help="number of examples (at most the split's size)")
    lk.add_argument("--divergence", default="exact", choices=["exact", "hutchinson", "hutch++"])
    lk.add_argument("--rtol", type=_positive_float("--rtol"), default=1e-5)
    lk.add_argument("--atol", type=_positive_float("--atol"), default=1e-5)
    lk.add_argument("--seed", type=int, default=0)
    lk.add_argument("--out", default=None, help="also write the JSON here")
    lk.set_defaults(func=cmd_likelihood)

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
    except CLIError as err:
        print(f"sdeflow: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sdeflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
