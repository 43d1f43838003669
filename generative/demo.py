"""``sdeflow demo`` (``make demo``): a VP score model on the 8x8 digits, end to end.

1. Train (or load from the cache) an ε-prediction MLP score model for the VP SDE on the
   dequantised digits train split. The trained checkpoint lives in the user cache
   directory (`generative.cache.cache_dir`) under a hash of the demo config, so a second
   run only samples; an interrupted first run resumes from its last checkpoint.
2. Sample with the predictor-corrector sampler, Euler-Maruyama and the probability-flow
   ODE (dopri5), each ending with one Tweedie denoising step.
3. Report for each sampler its FID (digits) with a bootstrap CI against the held-out test
   digits, its NFE and the fraction of samples the digits classifier labels with
   confidence > 0.9; the FID of a Gaussian fitted to the training data (baseline) and of
   real training digits (noise floor); and the test bits/dim.
4. Write PNG sample grids and ``summary.json`` into the output directory and print a table.

It says at start how long it will take (`expected_time`: measured on 2 idle CPU cores, about
8.5 minutes of training the first time and 3.5 of sampling and scoring; the trained model is
cached) and where the results go: ``results/demo`` (``--quick``: tiny settings, about a
minute, into ``results/demo-quick``, its targets not expected to pass).
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from tqdm.auto import tqdm

from .cache import cache_dir, config_hash, load_cached
from .checkpoint import CheckpointError, RunLockedError
from .data import load_data
from .progress import eval_progress, evaluated_module, time_span
from .train import CHECKPOINT_NAME

__all__ = ["DEMO_CONFIG", "QUICK_CONFIG", "run_demo", "format_table", "load_demo_model",
           "default_out", "expected_time", "DEMO_OUT", "QUICK_OUT"]

DEMO_OUT = "results/demo"
QUICK_OUT = "results/demo-quick"
# measured wall times on 2 idle CPU cores (README "demo"), in minutes
_TRAIN_MINUTES = {"full": 8.5, "quick": 0.3}
_EVAL_MINUTES = {"full": 3.5, "quick": 0.5}
_CLASSIFIER_MINUTES = 2
# samples per sampler call (`generate`'s chunks)
_CHUNK = 1000

# What the full demo trains and how it samples (measured choices, see README "demo").
DEMO_CONFIG: Dict[str, Any] = {
    "version": 1,
    "data": "digits", "sde": "vp", "net": "mlp",
    "net_kwargs": {"width": 256, "depth": 3},
    "weighting": "std2", "t_min": None, "dequantize": True, "cond": "logsigma",
    "steps": 30_000, "batch_size": 128, "lr": 1e-3, "warmup_steps": 100,
    "ema_decay": 0.999, "seed": 0,
    "n_samples": 1000, "n_boot": 200, "bpd_n": None, "bpd_divergence": "exact",
    "bpd_tol": 1e-5,
    "samplers": {
        "pc": {"nfe": 400, "snr": 0.16, "n_corrector": 1, "denoise": True},
        "em": {"nfe": 400, "denoise": True},
        "ode": {"method": "dopri5", "rtol": 1e-4, "atol": 1e-4, "denoise": True},
    },
}

QUICK_CONFIG: Dict[str, Any] = {
    **DEMO_CONFIG,
    "net_kwargs": {"width": 64, "depth": 2},
    "steps": 150, "n_samples": 200, "n_boot": 20, "bpd_n": 16,
    "bpd_divergence": "hutchinson", "bpd_tol": 1e-3,
    "samplers": {
        "pc": {"nfe": 60, "snr": 0.16, "n_corrector": 1, "denoise": True},
        "em": {"nfe": 40, "denoise": True},
        "ode": {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3, "denoise": True},
    },
}

TRAIN_KEYS = ("version", "data", "sde", "net", "net_kwargs", "weighting", "t_min",
              "dequantize", "cond", "steps", "batch_size", "lr", "warmup_steps", "ema_decay",
              "seed")


# The cache key hashes the training config under the names the network keys had when the demo
# first cached models ("model", "model_kwargs"), so those cached models are still found.
_HASHED_NAMES = {"net": "model", "net_kwargs": "model_kwargs"}


def default_out(quick: bool) -> str:
    """The demo's output folder: the quick demo's results are kept apart from the full's."""
    return QUICK_OUT if quick else DEMO_OUT


def expected_time(cfg: Dict[str, Any], quick: bool) -> str:
    """What the run will take, said before it starts (cached model or not)."""
    which = "quick" if quick else "full"
    cached = (model_dir(cfg) / CHECKPOINT_NAME).is_file()
    train, evaluate = _TRAIN_MINUTES[which], _EVAL_MINUTES[which]
    first = "" if _classifier_cached() else (
        f", plus about {_CLASSIFIER_MINUTES:g} minutes training the digits classifier the "
        "FID uses (once; cached)")
    if quick:
        return f"about a minute (--quick: tiny settings){first}"
    if cached:
        return (f"about {evaluate:g} minutes (the trained model is cached; sampling and "
                f"scoring only){first}")
    return (f"about {train + evaluate:g} minutes on 2 idle CPU cores ({train:g} training the "
            f"model, cached for later runs, and {evaluate:g} sampling and scoring){first}; "
            "longer on a busy machine. `sdeflow demo --quick` takes about a minute")


def _classifier_cached() -> bool:
    from .metrics.features import ClassifierConfig, _cache_path
    return _cache_path(ClassifierConfig()).is_file()


def _train_config(cfg: Dict[str, Any]) -> Dict[str, Any]:
    return {_HASHED_NAMES.get(k, k): cfg[k] for k in TRAIN_KEYS}


def model_dir(cfg: Dict[str, Any]) -> Path:
    """The cache directory of the demo model for ``cfg`` (hash of its training config)."""
    return cache_dir() / f"demo-{cfg['sde']}-{cfg['data']}-{config_hash(_train_config(cfg))}"


def _ensure_model(cfg: Dict[str, Any], data, *, retrain: bool, progress: bool, log) -> Dict:
    """Train the demo model into the cache (or reuse it); returns timing info."""
    from .models import ModelError, load_model, make_spec, train_model
    from .train import TrainConfig

    ckdir = model_dir(cfg)
    ckpt = ckdir / CHECKPOINT_NAME
    if retrain and ckdir.exists():
        shutil.rmtree(ckdir)
    if ckpt.is_file():  # unusable content is retrained over, as --retrain does
        state, step = load_cached(ckpt, log), 0
        try:
            if state is not None:
                load_model(ckpt)  # its meta and weights checked too
                step = int(state["step"])
        except (CheckpointError, KeyError, TypeError, ValueError) as err:  # ModelError too
            log(f"cached model unusable ({err}); retraining it")
            state = None
        if state is None:
            shutil.rmtree(ckdir)
        elif step >= cfg["steps"]:
            log(f"using the cached model {ckpt}")
            return {"cached": True, "checkpoint": str(ckpt), "train_seconds": 0.0,
                    "steps": step}
        else:
            log(f"resuming the interrupted training at step {step}")
    spec = make_spec("score", data, net=cfg["net"], net_kwargs=cfg["net_kwargs"],
                     sde=cfg["sde"], weighting=cfg["weighting"], t_min=cfg["t_min"],
                     dequantize=cfg["dequantize"], cond=cfg["cond"])
    tc = TrainConfig(steps=cfg["steps"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                     warmup_steps=cfg["warmup_steps"], ema_decay=cfg["ema_decay"],
                     seed=cfg["seed"], log_every=min(500, cfg["steps"]),
                     ckpt_every=min(2000, cfg["steps"]), progress=progress)
    log(f"training a {cfg['sde'].upper()} score model ({cfg['net']} "
        f"{cfg['net_kwargs']}) on digits for {cfg['steps']} steps -> {ckdir}")
    start = time.perf_counter()
    try:
        result = train_model(data, spec, tc, ckdir, resume=True)
    except RunLockedError:  # another demo is training it: its message says so
        raise
    except (CheckpointError, ValueError) as err:  # the interrupted training cannot continue
        raise ModelError(f"cannot continue the cached demo model in {str(ckdir)!r} ({err}); "
                         "`sdeflow demo --retrain` trains it afresh") from err
    (ckdir / "demo_config.json").write_text(json.dumps(_train_config(cfg), indent=2))
    return {"cached": False, "checkpoint": str(ckpt),
            "train_seconds": time.perf_counter() - start, "steps": result.step,
            "final_loss": result.metrics.get("loss")}


def load_demo_model(config: Optional[Dict[str, Any]] = None, *, quick: bool = False,
                    retrain: bool = False, progress: bool = True, verbose: bool = True):
    """The demo's score model, trained into the cache first if needed (as `run_demo` does).

    Returns ``(model, sde, spec, model_info)`` (its `ModelSpec`; ``model_info`` as in the
    demo summary)."""
    from .models import load_model
    cfg = dict(config if config is not None else (QUICK_CONFIG if quick else DEMO_CONFIG))
    log = (lambda msg: tqdm.write(f"[demo] {msg}")) if verbose else (lambda msg: None)
    info = _ensure_model(cfg, load_data(cfg["data"]), retrain=retrain, progress=progress,
                         log=log)
    loaded = load_model(info["checkpoint"])
    return loaded.model, loaded.model.sde, loaded.spec, info


def format_table(summary: Dict[str, Any]) -> str:
    base = summary["baseline_gaussian_fit"]["fid"]["value"]
    rows = [f"{'':26s} {'NFE':>7s} {'FID (digits) [95% CI]':>26s} {'/baseline':>9s} "
            f"{'conf>0.9':>8s} {'sec':>6s}"]
    for name, r in summary["samplers"].items():
        f = r["fid"]
        rows.append(f"{name + ' (' + r['label'] + ')':26s} {r['nfe']:7.0f} "
                    f"{f['value']:9.2f} [{f['ci_low']:6.2f}, {f['ci_high']:6.2f}] "
                    f"{f['value'] / base:9.2f} {r['confident_fraction']:8.3f} "
                    f"{r['seconds']:6.1f}")
    for key, label in (("baseline_gaussian_fit", "Gaussian fit (base)"),
                       ("real_data_floor", "real digits (floor)")):
        r = summary[key]
        f = r["fid"]
        rows.append(f"{label:26s} {'-':>7s} {f['value']:9.2f} [{f['ci_low']:6.2f}, "
                    f"{f['ci_high']:6.2f}] {f['value'] / base:9.2f} "
                    f"{r['confident_fraction']:8.3f} {'':>6s}")
    lk = summary["likelihood"]
    rows.append(f"test bits/dim: {lk['bits_per_dim']:.3f} ± {lk['bits_per_dim_stderr']:.3f} "
                f"(n={lk['n']}, {lk['divergence']} divergence, {lk['nfe']:.0f} NFE)")
    rows.append(f"best sampler: {summary['best_sampler']}; classifier test accuracy "
                f"{summary['classifier_test_accuracy']:.4f}")
    t = summary["targets"]
    marks = [("PASS" if t[k] else "FAIL") for k in
             ("best_le_half_baseline", "all_below_baseline", "best_confident_ge_0.8")]
    head = "targets"
    if summary.get("quick"):
        marks = [m if m == "PASS" else "not met" for m in marks]
        head = ("targets (not expected to pass at --quick settings: a tiny model trained "
                "150 steps; run `sdeflow demo` for the real ones)")
    rows.append(head + ": best FID <= 0.5x baseline: {}; every sampler below baseline: {}; "
                ">= 80% confident: {}".format(*marks))
    rows.append(f"wall time: {summary['wall_seconds']:.1f}s (training "
                f"{summary['model']['train_seconds']:.1f}s, cached model: "
                f"{summary['model']['cached']})")
    return "\n".join(rows)


LABELS = {"pc": "predictor-corrector", "em": "Euler-Maruyama", "ode": "prob.-flow ODE"}


def run_demo(out_dir: Union[str, Path, None] = None, *, quick: bool = False,
             retrain: bool = False, seed: int = 0, progress: bool = True,
             config: Optional[Dict[str, Any]] = None, verbose: bool = True) -> Dict[str, Any]:
    """Run the demo; returns the summary dict (also written to ``out_dir/summary.json``;
    default `default_out`: ``results/demo``, with ``quick`` ``results/demo-quick``)."""
    from .generate import generate
    from .models import load_model, log_prob
    from .metrics import DigitsEvaluator, gaussian_fit_sample, load_digits_classifier
    from .plots import save_image_grid

    wall = time.perf_counter()
    cfg = dict(config if config is not None else (QUICK_CONFIG if quick else DEMO_CONFIG))
    out = Path(out_dir if out_dir is not None else default_out(quick))
    out.mkdir(parents=True, exist_ok=True)
    log = (lambda msg: tqdm.write(f"[demo] {msg}")) if verbose else (lambda msg: None)
    log(f"this takes {expected_time(cfg, quick)}; results go to {out}/ (summary.txt, "
        "summary.json, sample grids)")
    data = load_data(cfg["data"])
    classifier = load_digits_classifier(verbose=verbose)
    log(f"digits classifier test accuracy {classifier.test_accuracy:.4f}")
    model_info = _ensure_model(cfg, data, retrain=retrain, progress=progress, log=log)
    loaded = load_model(model_info["checkpoint"])
    model, spec = loaded.model, loaded.spec
    n = cfg["n_samples"]
    evaluate = DigitsEvaluator(classifier, data.test, n_boot=cfg["n_boot"], seed=seed)

    summary: Dict[str, Any] = {"config": cfg, "quick": quick, "model": model_info,
                               "classifier_test_accuracy": classifier.test_accuracy,
                               "n_samples": n, "n_reference": int(data.test.shape[0]),
                               "samplers": {}}
    g = torch.Generator().manual_seed(seed + 1)
    base_x = gaussian_fit_sample(data.train, n, g)
    summary["baseline_gaussian_fit"] = evaluate(base_x)
    summary["real_data_floor"] = evaluate.data_floor(data.train, n, g)
    save_image_grid(data.test[:64], out / "real_digits.png",
                    title="real test digits (64 of the held-out split)")
    save_image_grid(base_x[:64].clamp(-1, 1), out / "gaussian_fit.png",
                    title="Gaussian fitted to the training digits (baseline)")

    stages = tqdm(list(cfg["samplers"].items()) + [("likelihood", None)], desc="demo",
                  disable=not progress, leave=False, dynamic_ncols=True)
    for name, kw in stages:
        stages.set_postfix_str(name)
        if name == "likelihood":
            break
        kw = dict(kw)
        nfe = kw.pop("nfe", None)
        start = time.perf_counter()
        with eval_progress(evaluated_module(model), time_span(model, spec, sampling=True),
                           chunks=math.ceil(n / _CHUNK), desc=name, enabled=progress):
            x, used = generate(model, spec, n, seed=seed, sampler=name, nfe=nfe,
                               batch_size=_CHUNK, **kw)
        seconds = time.perf_counter() - start
        x = x.clamp(-1, 1)
        res = {"label": LABELS.get(name, name), "nfe": used, "settings": {"nfe": nfe, **kw},
               "seconds": seconds, **evaluate(x)}
        summary["samplers"][name] = res
        save_image_grid(x[:64], out / f"samples_{name}.png",
                        title=f"{LABELS.get(name, name)}, NFE {used:.0f} "
                        f"(FID {res['fid']['value']:.1f})")
        log(f"{name}: FID {res['fid']['value']:.2f} at NFE {used:.0f} "
            f"({seconds:.1f}s)")

    # test bits/dim through the probability-flow ODE (dequantised test digits)
    start = time.perf_counter()
    x_test = data.test if cfg["bpd_n"] is None else data.test[: cfg["bpd_n"]]
    gq = torch.Generator().manual_seed(seed + 2)
    xq = data.dequantize(x_test, gq)
    with eval_progress(evaluated_module(model), time_span(model, spec, sampling=False),
                       desc="bits/dim", enabled=progress):
        logp, nfe = log_prob(model, spec, xq, generator=gq, divergence=cfg["bpd_divergence"],
                             rtol=cfg["bpd_tol"], atol=cfg["bpd_tol"])
    bpd = data.bits_per_dim(logp)
    stages.close()
    summary["likelihood"] = {
        "bits_per_dim": float(bpd.mean()),
        "bits_per_dim_stderr": float(bpd.std() / math.sqrt(len(bpd))) if len(bpd) > 1 else 0.0,
        "n": int(len(bpd)), "divergence": cfg["bpd_divergence"],
        "nfe": nfe,
        "seconds": time.perf_counter() - start}

    base = summary["baseline_gaussian_fit"]["fid"]["value"]
    best = min(summary["samplers"], key=lambda k: summary["samplers"][k]["fid"]["value"])
    summary["best_sampler"] = best
    best_fid = summary["samplers"][best]["fid"]["value"]
    summary["targets"] = {
        "best_le_half_baseline": bool(best_fid <= 0.5 * base),
        "all_below_baseline": all(r["fid"]["value"] < base
                                  for r in summary["samplers"].values()),
        "best_confident_ge_0.8": bool(summary["samplers"][best]["confident_fraction"] >= 0.8),
    }
    summary["wall_seconds"] = time.perf_counter() - wall
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = format_table(summary)
    (out / "summary.txt").write_text(table + "\n")
    if verbose:
        print(table)
        print(f"[demo] results in {out}/: summary.txt, summary.json, samples_*.png, "
              "real_digits.png, gaussian_fit.png")
    return summary
