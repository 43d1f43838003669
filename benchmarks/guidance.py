"""Controllable generation (issue 9): class accuracy and FID vs guidance scale, and the bias of
inpainting by replacement.

Suites:
  digits   a class-conditional VP score model (MLP, label dropout 0.2: one net gives the
           conditional and the unconditional score) and a noise-conditional classifier
           p_t(y | x_t), both trained on the digits train split and cached in the user cache
           directory (`generative.cache.cache_dir`) under a hash of their configs (an
           interrupted training resumes). For classifier-free guidance (cfg) and classifier
           guidance at each scale γ, ``n`` samples with requested classes ``i mod 10`` (one
           prior draw shared by every run): the accuracy of the project's digits classifier
           (`generative.metrics.digits_predict`) on them for the requested class, and their
           FID (digits) against the held-out test digits with a bootstrap CI. γ = 0 is the
           unconditional model for both. Also digits inpainting (central 4x4 square missing)
           by replacement and by the reconstruction-guided conditional score (scale 1 and 4)
           with the same model (null label): mean squared error of the filled pixels and the
           digits classifier's accuracy on the completed images for their true labels.
  oracle   inpainting with the exact score of a 3-D Gaussian mixture under the VP SDE (one
           coordinate known): the mean / covariance error of the sampled missing coordinates
           against the exact conditional mixture (`GaussianMixture.condition`), for
           replacement, for the conditional score with the exact observation likelihood
           (`GaussianMixture.observation_log_prob_fn`) and with reconstruction guidance (the
           learned-model default, here on the exact score), next to the error of an exact
           sample of the same size (the noise floor).

Usage: python -m benchmarks.guidance --out results/guidance [--quick] [--suites ...]
Writes guidance.json, guidance.md, guidance.png (accuracy and FID vs γ) and sample grids
(columns = classes) into --out.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import torch
from tqdm.auto import tqdm

from benchmarks.common import markdown_table, write_results

NAME = "guidance"
Tensor = torch.Tensor

FULL: Dict[str, Any] = {
    "score": {"net_kwargs": {"width": 256, "depth": 3}, "label_dropout": 0.2, "steps": 20_000,
              "batch_size": 128, "lr": 1e-3, "warmup_steps": 100, "ema_decay": 0.999,
              "seed": 0},
    "classifier": {"model_kwargs": {"width": 256, "depth": 3}, "steps": 3_000,
                   "batch_size": 128, "lr": 1e-3, "warmup_steps": 100, "ema_decay": 0.999,
                   "seed": 0},
    "scales": [0.0, 0.5, 1.0, 2.0, 4.0], "n": 1000, "n_boot": 100,
    "sampler": {"name": "pc", "nfe": 400, "snr": 0.16, "n_corrector": 1},
    "inpaint_n": 200, "oracle_n": 4000,
}
QUICK: Dict[str, Any] = {
    **FULL,
    "score": {**FULL["score"], "net_kwargs": {"width": 64, "depth": 2}, "steps": 200},
    "classifier": {**FULL["classifier"], "model_kwargs": {"width": 64, "depth": 2},
                   "steps": 200},
    "scales": [0.0, 1.0, 4.0], "n": 100, "n_boot": 10,
    "sampler": {"name": "pc", "nfe": 60, "snr": 0.16, "n_corrector": 1},
    "inpaint_n": 20, "oracle_n": 500,
}
VERSION = 1


# --------------------------------------------------------------------------- cached training

def _cached(kind: str, cfg: Dict[str, Any], train: Callable[[Path, Any], Any],
            log: Callable[[str], None]) -> Dict[str, Any]:
    """Train into ``cache_dir()/guidance-<kind>-<hash of cfg>`` unless a finished checkpoint is
    there (an unfinished one is resumed); returns where it is and how long training took."""
    from generative.cache import cache_dir, config_hash
    from generative.checkpoint import CheckpointError, load_checkpoint
    from generative.train import TrainConfig
    path = cache_dir() / f"guidance-{kind}-{config_hash({**cfg, 'version': VERSION})}"
    ckpt = path / "checkpoint.pt"
    try:
        if ckpt.is_file() and int(load_checkpoint(ckpt).get("step", -1)) >= cfg["steps"]:
            log(f"using the cached {kind} {ckpt}")
            return {"checkpoint": str(ckpt), "cached": True, "train_seconds": 0.0}
    except CheckpointError as err:
        log(f"cached {kind} unusable ({err}); retraining")
        ckpt.unlink()
    tc = TrainConfig(steps=cfg["steps"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                     warmup_steps=cfg["warmup_steps"], ema_decay=cfg["ema_decay"],
                     seed=cfg["seed"], log_every=min(500, cfg["steps"]),
                     ckpt_every=min(1000, cfg["steps"]), progress=False)
    log(f"training the {kind} ({cfg['steps']} steps) -> {path}")
    start = time.perf_counter()
    result = train(path, tc)
    return {"checkpoint": str(ckpt), "cached": False,
            "train_seconds": time.perf_counter() - start, "final_metrics": result.metrics}


def load_models(cfg: Dict[str, Any], data, log: Callable[[str], None]):
    """``(score model, its ModelSpec, classifier, info)``, trained into the cache first if
    needed."""
    from generative.models import load_model, make_spec, train_model
    s, c = cfg["score"], cfg["classifier"]
    spec = make_spec("score", data, net="mlp", net_kwargs=s["net_kwargs"], sde="vp",
                     num_classes=data.num_classes, label_dropout=s["label_dropout"])
    info = {"score": _cached("score-model", s, lambda path, tc: train_model(
        data, spec, tc, path, resume=True), log)}
    cspec = make_spec("classifier", data, sde="vp", net_kwargs=c["model_kwargs"])
    info["classifier"] = _cached("classifier", c, lambda path, tc: train_model(
        data, cspec, tc, path, resume=True), log)
    loaded = load_model(info["score"]["checkpoint"])
    classifier = load_model(info["classifier"]["checkpoint"]).model
    return loaded.model, loaded.spec, classifier, info


# --------------------------------------------------------------------------- digits suite

def run_digits(cfg: Dict[str, Any], seed: int, progress: bool, log: Callable[[str], None],
               out: Path) -> Dict[str, Any]:
    from dynamics import ClassifierGuidance
    from generative.classifier import noisy_accuracy
    from generative.guidance import classifier_log_prob_fn
    from generative.data import load_data
    from generative.guidance import class_score_fn, guided_score_fn
    from generative.inpaint import inpaint, known_mask
    from generative.metrics import DigitsEvaluator, digits_predict, load_digits_classifier
    from generative.plots import save_image_grid
    from generative.samplers import sample

    data = load_data("digits")
    features_net = load_digits_classifier()
    model, spec, classifier, info = load_models(cfg, data, log)
    sde = model.sde
    g = torch.Generator().manual_seed(seed)
    info["classifier"]["test_accuracy_at_t"] = {
        f"{frac:g}T": noisy_accuracy(classifier, sde, data.test, data.test_labels,
                                     max(frac * sde.T, sde.t_min), g)
        for frac in (0.0, 0.25, 0.5, 0.75)}
    scores = DigitsEvaluator(features_net, data.test, n_boot=cfg["n_boot"], seed=seed)
    n, sc = cfg["n"], dict(cfg["sampler"])
    name, nfe = sc.pop("name"), sc.pop("nfe")
    labels = torch.arange(n) % 10
    x_init = sde.prior_sample((n, *spec.event_shape), generator=g)

    def run(score_fn, tag: str) -> Dict[str, Any]:
        start = time.perf_counter()
        x, used = sample(name, sde, score_fn, nfe=nfe, x_init=x_init.clone(), denoise=True,
                         generator=torch.Generator().manual_seed(seed + 1), **sc)
        seconds = time.perf_counter() - start
        x = x.clamp(-1, 1)
        save_image_grid(x[:100], out / f"samples_{tag}.png", ncol=10)
        return {"nfe": float(torch.as_tensor(used, dtype=torch.float64).mean()),
                "seconds": seconds, **scores(x, labels)}

    def classifier_guided(scale: float):
        return ClassifierGuidance(class_score_fn(model, sde, None),
                                  classifier_log_prob_fn(classifier, labels), scale)

    methods = {"cfg": lambda s: guided_score_fn(model, sde, labels, guidance="cfg", scale=s),
               "classifier": classifier_guided}
    result: Dict[str, Any] = {"models": info, "n": n, "sampler": cfg["sampler"],
                              "methods": {m: [] for m in methods}}
    result["real_data_floor"] = scores.data_floor(data.train, n, g, data.train_labels)
    bar = tqdm(total=len(methods) * len(cfg["scales"]), disable=not progress, leave=False,
               desc="guidance", dynamic_ncols=True)
    unguided: Optional[Dict[str, Any]] = None
    for method, make in methods.items():
        for scale in cfg["scales"]:
            bar.set_postfix_str(f"{method} γ={scale:g}")
            if scale == 0.0 and unguided is not None:   # both are the unconditional model
                row = dict(unguided)
            else:
                row = run(make(scale), f"{method}_{scale:g}")
                if scale == 0.0:
                    unguided = row
            result["methods"][method].append({"scale": scale, **row})
            log(f"{method} γ={scale:g}: accuracy {row['accuracy']:.3f}, "
                f"FID {row['fid']['value']:.2f}")
            bar.update()
    bar.close()

    # inpainting digits: central square missing, replacement vs conditional score
    m = cfg["inpaint_n"]
    x0, y0 = data.test[:m], data.test_labels[:m]
    mask = known_mask("center", spec.event_shape, m)
    rows = {}
    for tag, mode, scale in (("replace", "replace", 1.0), ("conditional", "conditional", 1.0),
                             ("conditional, scale 4", "conditional", 4.0)):
        start = time.perf_counter()
        xi, used = inpaint(sde, class_score_fn(model, sde, None), x0, mask, mode=mode,
                           sampler=name, nfe=nfe, scale=scale,
                           generator=torch.Generator().manual_seed(seed + 2), **sc)
        xi = xi.clamp(-1, 1)
        pred, _ = digits_predict(xi, features_net)
        rows[tag] = {"mse_missing": float((xi - x0)[~mask].square().mean()),
                     "accuracy_true_label": float((pred == y0).double().mean()),
                     "nfe": float(torch.as_tensor(used, dtype=torch.float64).mean()),
                     "seconds": time.perf_counter() - start}
        save_image_grid(torch.cat([x0[:10], torch.where(mask[:10], x0[:10], 0 * x0[:10]),
                                   xi[:10]]), out / f"inpaint_{mode}_{scale:g}.png", ncol=10)
        log(f"inpaint {tag}: MSE {rows[tag]['mse_missing']:.4f}, "
            f"accuracy {rows[tag]['accuracy_true_label']:.3f}")
    pred, _ = digits_predict(torch.where(mask, x0, torch.zeros_like(x0)), features_net)
    rows["masked_input"] = {"accuracy_true_label": float((pred == y0).double().mean())}
    result["inpainting"] = {"mask": "center", "n": m, **rows}
    return result


# --------------------------------------------------------------------------- oracle suite

ORACLE_SAMPLERS = {"reverse_diffusion": {"n_steps": 500}, "pc": {"n_steps": 500},
                   "ddim": {"n_steps": 200, "eta": 1.0}}


def oracle_problem():
    """The 3-D two-component mixture, the mask (first coordinate known) and its value."""
    import dynamics as D
    f64 = torch.float64
    cov = torch.tensor([[1.0, 0.8, 0.3], [0.8, 1.0, 0.2], [0.3, 0.2, 1.0]], dtype=f64)
    mix = D.GaussianMixture(torch.tensor([0.5, 0.5], dtype=f64),
                            torch.tensor([[-1.5, -1.5, 0.0], [1.5, 1.5, 0.0]], dtype=f64),
                            torch.stack([cov, cov]))
    return mix, torch.tensor([True, False, False]), torch.tensor([0.8, 0.0, 0.0], dtype=f64)


def moment_errors(x: Tensor, target) -> Dict[str, float]:
    """Max abs error of the sample mean and covariance against a mixture's exact moments."""
    return {"mean_err": float((x.mean(0) - target.mean()).abs().max()),
            "cov_err": float((torch.cov(x.T) - target.covariance()).abs().max())}


def run_oracle(cfg: Dict[str, Any], seed: int, log: Callable[[str], None]) -> Dict[str, Any]:
    import dynamics as D
    from generative.inpaint import inpaint
    mix, mask, values = oracle_problem()
    sde = D.VPSDE()
    target = mix.condition(values, mask)
    n = cfg["oracle_n"]
    known = values.expand(n, 3).clone()
    floor = moment_errors(target.sample(n, torch.Generator().manual_seed(seed)), target)
    result: Dict[str, Any] = {"n": n, "known_value": values[mask].tolist(),
                              "exact_sample_floor": floor, "rows": []}
    exact_lik = mix.observation_log_prob_fn(sde, values, mask)
    # (label, inpaint mode, exact observation likelihood?, sampler, options)
    runs = [("replace", "replace", False, s, o) for s, o in ORACLE_SAMPLERS.items()]
    runs += [("conditional (exact likelihood)", "conditional", True, s, o)
             for s, o in ORACLE_SAMPLERS.items()]
    runs += [("conditional (exact likelihood)", "conditional", True, "ode",
              {"method": "dopri5", "rtol": 1e-6, "atol": 1e-6}),
             ("conditional (reconstruction guidance)", "conditional", False,
              "reverse_diffusion", ORACLE_SAMPLERS["reverse_diffusion"])]
    for label, mode, exact, sampler, options in runs:
        x, used = inpaint(sde, mix.score_fn(sde), known, mask, mode=mode, sampler=sampler,
                          log_likelihood_fn=exact_lik if exact else None,
                          generator=torch.Generator().manual_seed(seed), dtype=torch.float64,
                          **options)
        row = {"mode": label, "sampler": sampler, "options": options,
               "nfe": float(torch.as_tensor(used, dtype=torch.float64).mean()),
               **moment_errors(x[:, ~mask], target)}
        result["rows"].append(row)
        log(f"oracle {mode} {sampler}: mean err {row['mean_err']:.4f}, "
            f"cov err {row['cov_err']:.4f}")
    return result


# --------------------------------------------------------------------------- report

def markdown_tables(state: Dict[str, Any]) -> Dict[str, str]:
    tables: Dict[str, str] = {}
    d = state.get("digits")
    if d:
        rows = []
        for method, runs in d["methods"].items():
            for r in runs:
                f = r["fid"]
                rows.append({"guidance": method, "γ": r["scale"], "accuracy": r["accuracy"],
                             "FID (digits)": f"{f['value']:.2f} [{f['ci_low']:.2f}, "
                                             f"{f['ci_high']:.2f}]",
                             "NFE": r["nfe"], "seconds": r["seconds"]})
        tables[f"digits: accuracy of the requested class and FID vs γ ({d['n']} samples)"] = \
            markdown_table(rows, ["guidance", "γ", "accuracy", "FID (digits)", "NFE",
                                  "seconds"])
        ip = d["inpainting"]
        tables["digits inpainting (central square missing)"] = markdown_table(
            [{"mode": k, **v} for k, v in ip.items() if isinstance(v, dict)],
            ["mode", "mse_missing", "accuracy_true_label", "nfe", "seconds"])
    o = state.get("oracle")
    if o:
        rows = [{"mode": r["mode"], "sampler": r["sampler"], "NFE": r["nfe"],
                 "mean error": r["mean_err"], "cov error": r["cov_err"]} for r in o["rows"]]
        rows.append({"mode": "exact sample (noise floor)", "mean error":
                     o["exact_sample_floor"]["mean_err"],
                     "cov error": o["exact_sample_floor"]["cov_err"]})
        tables[f"oracle inpainting: error vs the exact conditional ({o['n']} samples)"] = \
            markdown_table(rows, ["mode", "sampler", "NFE", "mean error", "cov error"])
    return tables


def plot(state: Dict[str, Any], path: Path) -> None:
    """Accuracy and FID vs γ, one curve per guidance method."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    d = state["digits"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, runs in d["methods"].items():
        scales = [r["scale"] for r in runs]
        axes[0].plot(scales, [r["accuracy"] for r in runs], "o-", label=method)
        axes[1].errorbar(scales, [r["fid"]["value"] for r in runs],
                         yerr=[[r["fid"]["value"] - r["fid"]["ci_low"] for r in runs],
                               [r["fid"]["ci_high"] - r["fid"]["value"] for r in runs]],
                         fmt="o-", capsize=3, label=method)
    axes[0].axhline(d["real_data_floor"]["accuracy"], color="g", ls=":", label="real digits")
    axes[1].axhline(d["real_data_floor"]["fid"]["value"], color="g", ls=":",
                    label="real digits (floor)")
    axes[0].set_ylabel("accuracy of the requested class")
    axes[1].set_ylabel("FID (digits)")
    for ax in axes:
        ax.set_xlabel("guidance scale γ")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"class-conditional digits, {d['sampler']['name']} "
                 f"(NFE {d['sampler']['nfe']}), {d['n']} samples")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/guidance")
    parser.add_argument("--quick", action="store_true", help="tiny models and sample sizes")
    parser.add_argument("--suites", nargs="*", default=["oracle", "digits"],
                        choices=["oracle", "digits"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        tqdm.write(f"[{NAME}] {msg}")

    state: Dict[str, Any] = {"config": {**cfg, "quick": args.quick, "seed": args.seed}}
    wall = time.perf_counter()
    if "oracle" in args.suites:
        state["oracle"] = run_oracle(cfg, args.seed, log)
    if "digits" in args.suites:
        state["digits"] = run_digits(cfg, args.seed, not args.no_progress, log, out)
        plot(state, out / f"{NAME}.png")
    state["wall_seconds"] = time.perf_counter() - wall
    tables = markdown_tables(state)
    write_results(out, NAME, state, tables)
    for title, table in tables.items():
        print(f"\n### {title}\n\n{table}")
    return state


if __name__ == "__main__":
    main()
