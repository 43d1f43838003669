"""Sample quality vs NFE (issues 9, 20): every registered sampler at small NFE budgets.

Suites:
  oracle  a 2-D Gaussian mixture with its exact score (`dynamics.GaussianMixture`) under the
          VP SDE: no model error, so every difference is solver error. Every sampler of
          `generative.samplers.SAMPLERS` at NFE 5, 10, 20, 50: the sliced Wasserstein distance
          (`generative.metrics.sliced_wasserstein`) between its samples and as many exact
          mixture samples (the SW of two exact sample sets is the noise floor), and for the
          deterministic samplers (`DETERMINISTIC`) the exact KL of the sampler itself: the
          sampler is a map x_T -> x_0, so its samples have density q(x_0) = N(x_T; 0, I) /
          |det dx_0/dx_T| (change of variables, 2x2 Jacobian by autograd; assumes the map is
          injective), and mean(log q - log p) over its samples is a Monte-Carlo estimate of
          KL(q || p), p the exact data mixture (reported with its standard error). Separately,
          the library's likelihood (`generative.likelihood.log_likelihood`) is checked against
          the exact log-density of p_eps and of p_0 on exact mixture samples.
  digits  the demo's trained VP score model (`generative.demo.load_demo_model`, cached; it is
          trained first if absent). Every sampler at NFE 5 ... 200: FID (digits) with a
          bootstrap CI against the 359 held-out test digits, wall time and the NFE used.
          References: the probability-flow ODE with adaptive dopri5 at rtol = atol = 1e-5 and
          1000-step PC ("converged"), the real-data floor and the Gaussian-fit baseline.

Every sampler starts from the same prior draw (fixed seed), ends with one Tweedie denoising
step (counted in the NFE budget) and uses its default time grid. The NFE is recorded as the
front end counts it (score calls); a row whose count differs from the budget is flagged
(``nfe_differs``). A sampler/budget pair the sampler rejects is recorded as skipped, with the
sampler's own message.

Tuned rows (`benchmarks.sampler_tuning`): per budget, the fast samplers' settings (order,
lower-order final steps, grid, t_min, final denoise) are searched on a separate tuning draw --
on the oracle by the second-order KL mean((log q - log p)^2) / 2 (the plain KL estimate is
too noisy to rank configurations whose KL is below its standard error), on digits by the RMSE
to the converged ODE solution of the same x_T -- and the winner is measured on the
benchmark's own draw with the suite's metric.

Targets: oracle, some sampler at <= 10 NFE with KL <= 0.015 nats; digits, some sampler at
<= 8 NFE with FID within 5% of the best converged reference (|FID / ref - 1| <= 0.05).

Usage: python -m benchmarks.nfe_vs_fid --out results/nfe_vs_fid [--quick] [--suites ...]
       python -m benchmarks.nfe_vs_fid --out results/nfe_vs_fid --markdown   (tables from JSON)
Writes nfe_vs_fid.json (after every sampler), nfe_vs_fid.md and nfe_vs_fid.png into --out.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from tqdm.auto import tqdm

from benchmarks import sampler_tuning
from benchmarks.common import write_results
from benchmarks.nfe_oracle import oracle_mixture, run_oracle
from benchmarks.nfe_runs import (DETERMINISTIC, SAMPLERS, Run, all_rows, default_run,
                                 pushforward_log_density, run_sampler, sweep, tuned_rows)
from benchmarks.nfe_vs_fid_report import markdown_tables, plot, readme_markdown, verdict_line

NAME = "nfe_vs_fid"
TARGET_NFE, TARGET_REL = 8, 0.05
KL_TARGET_NFE, KL_TARGET = 10, 0.015

FULL = {"n": 1000, "n_boot": 200, "budgets": (5, 6, 8, 10, 20, 50, 100, 200),
        "oracle_budgets": (5, 10, 20, 50), "oracle_n": 5000,
        "tune_budgets": (5, 10, 20, 50), "digits_tune_budgets": (5, 6, 8, 10),
        "tune_n": 1000, "digits_tune_n": 100,
        "tune_space": None, "ref_ode": {"method": "dopri5", "rtol": 1e-5, "atol": 1e-5},
        "ref_pc_steps": 1000, "lik_n": 200, "lik_tol": 1e-6}
QUICK = {"n": 200, "n_boot": 20, "budgets": (5, 8, 20, 50), "oracle_budgets": (5, 10, 20, 50),
         "oracle_n": 400, "tune_budgets": (10,), "digits_tune_budgets": (8,), "tune_n": 200,
         "digits_tune_n": 32,
         "tune_space": sampler_tuning.QUICK_SPACE,
         "ref_ode": {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3},
         "ref_pc_steps": 100, "lik_n": 16, "lik_tol": 1e-4}

Tensor = torch.Tensor
__all__ = ["main", "SAMPLERS", "DETERMINISTIC", "target_check", "kl_target", "verdict_line",
           "readme_markdown", "oracle_mixture", "pushforward_log_density", "sweep"]


# --------------------------------------------------------------------------- targets

def target_check(rows: Dict[str, Dict[str, Any]], references: Dict[str, Dict[str, Any]],
                 max_nfe: int = TARGET_NFE, rel: float = TARGET_REL) -> Dict[str, Any]:
    """Does some sampler reach, at <= ``max_nfe`` NFE used, an FID within ``rel`` of the best
    (lowest) converged reference, ``|fid / ref - 1| <= rel``? Rows inside the reference's CI
    or below it but not within ``rel`` are listed apart (``inside_ci_only``: a low FID at few
    steps is not convergence). Also names the lowest-FID and the closest row.

    ``rows``: sampler -> {"rows": [{"status", "nfe_used", "fid": {"value", ...}}, ...]};
    ``references``: name -> {"fid": {"value", "ci_low", "ci_high"}}.
    """
    best_ref = min(references, key=lambda k: references[k]["fid"]["value"])
    ref = references[best_ref]["fid"]
    candidates = [(name, r) for name, res in rows.items() for r in res["rows"]
                  if r["status"] == "ok" and r["nfe_used"] <= max_nfe]
    out: Dict[str, Any] = {
        "max_nfe": max_nfe, "rel_tol": rel, "best_reference": best_ref,
        "reference_fid": ref["value"], "reference_ci": [ref["ci_low"], ref["ci_high"]],
        "criterion": f"|fid / reference - 1| <= {rel:g} at nfe_used <= {max_nfe}",
        "passed": False, "passing": [], "inside_ci_only": [], "best_sampler": None,
        "best_fid": None, "best_nfe": None, "best_ratio": None, "closest": None}
    if not candidates:
        return out

    def entry(name: str, r: Dict[str, Any]) -> Dict[str, Any]:
        v = r["fid"]["value"]
        return {"sampler": name, "nfe_used": r["nfe_used"], "fid": v, "ratio": v / ref["value"]}
    name, best = min(candidates, key=lambda c: c[1]["fid"]["value"])
    e = entry(name, best)
    out.update(best_sampler=name, best_fid=e["fid"], best_nfe=e["nfe_used"],
               best_ratio=e["ratio"])
    out["closest"] = min((entry(*c) for c in candidates), key=lambda e: abs(e["ratio"] - 1))
    for c in candidates:
        e = entry(*c)
        if abs(e["ratio"] - 1) <= rel:
            out["passing"].append(e)
        elif e["fid"] <= ref["ci_high"]:
            out["inside_ci_only"].append(e)
    out["passed"] = bool(out["passing"])
    return out


def kl_target(rows: Dict[str, Dict[str, Any]], max_nfe: int = KL_TARGET_NFE,
              kl: float = KL_TARGET) -> Dict[str, Any]:
    """Does some row at <= ``max_nfe`` NFE used have KL(q || p) <= ``kl``? With the lowest."""
    found = [{"sampler": name, **{k: r[k] for k in ("nfe_used", "kl_q_p", "kl_se")}}
             for name, res in rows.items() for r in res["rows"]
             if r["status"] == "ok" and "kl_q_p" in r and r["nfe_used"] <= max_nfe]
    best = min(found, key=lambda f: f["kl_q_p"]) if found else None
    return {"nfe": max_nfe, "kl": kl, "best": best,
            "passed": best is not None and best["kl_q_p"] <= kl,
            "passing": sorted((f for f in found if f["kl_q_p"] <= kl),
                              key=lambda f: f["kl_q_p"])}


# --------------------------------------------------------------------------- digits suite

def gaussian_fit_score(train: Tensor):
    """Exact score (for the VP SDE) of the Gaussian fitted to ``train``: a no-training
    stand-in model (its samples are the Gaussian-fit baseline) for tests and smoke runs."""
    from dynamics import GaussianMixture
    flat = train.reshape(len(train), -1).double()
    cov = torch.cov(flat.T) + 1e-4 * torch.eye(flat.shape[1], dtype=torch.float64)
    mix = GaussianMixture(torch.ones(1, dtype=torch.float64), flat.mean(0)[None], cov[None])

    def make(sde):
        exact = mix.score_fn(sde)
        return lambda x, t: exact(x.double(), t.double()).to(x.dtype)
    return make


def load_model(kind: str, quick: bool, progress: bool, data) -> Tuple[Any, Any, Dict]:
    """``(sde, score_fn, info)`` of the digits model: the demo's (``'demo'``) or the
    Gaussian-fit score (``'gaussian'``)."""
    from dynamics import ScoreAdapter, VPSDE
    if kind == "gaussian":
        sde = VPSDE()
        return sde, gaussian_fit_score(data.train)(sde), {"kind": "gaussian-fit score"}
    from generative.demo import load_demo_model
    model, sde, _, info = load_demo_model(quick=quick, progress=progress, verbose=progress)
    score = model.score_fn() if callable(getattr(model, "score_fn", None)) else \
        ScoreAdapter(model, sde, "noise")
    return sde, score, {"kind": "demo (quick config)" if quick else "demo", **info}


def run_digits(cfg: Dict[str, Any], samplers: Dict[str, Dict[str, Any]], seed: int,
               model_kind: str, progress: bool, save: Callable[[], None],
               state: Dict[str, Any]) -> None:
    from generative.data import load_data
    from generative.metrics import DigitsEvaluator, gaussian_fit_sample, load_digits_classifier

    data = load_data("digits")
    classifier = load_digits_classifier(verbose=progress)
    sde, score, info = load_model(model_kind, cfg.get("quick", False), progress, data)
    scores = DigitsEvaluator(classifier, data.test, n_boot=cfg["n_boot"], seed=seed)
    n, event = cfg["n"], data.train.shape[1:]
    x_init = sde.prior_sample((n, *event), generator=torch.Generator().manual_seed(seed))

    def measure(run: Run) -> Dict[str, Any]:
        with torch.no_grad():
            x, used, sec = run_sampler(run, sde, score, x_init)
        return {"nfe_used": used, "seconds": sec, **scores(x.clamp(-1, 1))}

    g = torch.Generator().manual_seed(seed + 1)
    digits: Dict[str, Any] = {
        "model": info, "n": n, "n_reference": int(len(data.test)),
        "classifier_test_accuracy": classifier.test_accuracy,
        "baseline_gaussian_fit": scores(gaussian_fit_sample(data.train, n, g).clamp(-1, 1)),
        "references": {}}
    digits["real_data_floor"] = scores.data_floor(data.train.clamp(-1, 1), n, g)
    state["digits"] = digits
    refs = [("ode_dopri5", ("ode", {**cfg["ref_ode"], "denoise": True})),
            ("pc_steps", default_run("pc", None, n_steps=cfg["ref_pc_steps"]))]
    for key, run in tqdm(refs, desc="references", disable=not progress, leave=False):
        digits["references"][key] = {"sampler": run[0], "options": run[1], **measure(run)}
        save()

    def done(name: str) -> None:
        state["target"] = target_check(all_rows(digits), digits["references"])
        save()
    digits["samplers"] = sweep(samplers, cfg["budgets"], measure, done, "digits", progress)
    if cfg["digits_tune_budgets"]:
        tune_seed = seed + 1000
        x_tune = sde.prior_sample((cfg["digits_tune_n"], *event),
                                  generator=torch.Generator().manual_seed(tune_seed))
        with torch.no_grad():
            ref, _, _ = run_sampler(refs[0][1], sde, score, x_tune)

        def loss(run: Run) -> float:
            with torch.no_grad():
                x, _, _ = run_sampler(run, sde, score, x_tune)
            return float((x - ref).reshape(len(x), -1).square().mean(1).sqrt().mean())
        budgets = [b for b in cfg["digits_tune_budgets"] if b in cfg["budgets"]]
        digits["tuned"] = tuned_rows(loss, measure, sde, budgets, cfg["tune_space"],
                                     {"n_tune": cfg["digits_tune_n"], "tune_seed": tune_seed,
                                      "loss": "per-sample RMSE to the dopri5 reference solve of "
                                              "the same x_T (tuning draw)"}, save, progress)
    state["target"] = target_check(all_rows(digits), digits["references"])


# --------------------------------------------------------------------------- main

def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/nfe_vs_fid")
    parser.add_argument("--quick", action="store_true",
                        help="small settings: fewer samples/budgets, a small tuning space, the "
                             "demo's quick model")
    parser.add_argument("--suites", nargs="*", default=["oracle", "digits"],
                        choices=["oracle", "digits"])
    parser.add_argument("--samplers", nargs="*", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--budgets", nargs="*", type=int, default=None,
                        help="NFE budgets of both suites")
    parser.add_argument("--tune-budgets", nargs="*", type=int, default=None,
                        help="budgets of both suites' tuned rows (none: no tuning)")
    for flag in ("--n", "--n-boot", "--oracle-n", "--ref-pc-steps", "--tune-n",
                 "--digits-tune-n"):
        parser.add_argument(flag, type=int, default=None)
    parser.add_argument("--model", default="demo", choices=["demo", "gaussian"],
                        help="digits model: the demo's trained model, or the exact score of "
                             "the Gaussian fit (no training; for smoke tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--markdown", action="store_true",
                        help="print the README tables from OUT/nfe_vs_fid.json and exit")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.markdown:
        payload = json.loads((out / f"{NAME}.json").read_text())
        print(readme_markdown(payload))
        return payload

    torch.set_num_threads(args.threads)
    cfg = dict(QUICK if args.quick else FULL)
    for key in ("n", "n_boot", "oracle_n", "ref_pc_steps", "tune_n", "digits_tune_n"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.budgets is not None:
        cfg["budgets"] = cfg["oracle_budgets"] = args.budgets
    if args.tune_budgets is not None:
        cfg["tune_budgets"] = cfg["digits_tune_budgets"] = args.tune_budgets
    for key in ("budgets", "oracle_budgets", "tune_budgets", "digits_tune_budgets"):
        cfg[key] = sorted(set(int(b) for b in cfg[key]))
    cfg["quick"] = args.quick
    progress = not args.no_progress
    samplers = {k: SAMPLERS[k] for k in args.samplers}
    state: Dict[str, Any] = {"config": {**cfg, "samplers": samplers, "seed": args.seed,
                                        "model": args.model, "suites": args.suites,
                                        "target_nfe": TARGET_NFE, "target_rel": TARGET_REL,
                                        "kl_target_nfe": KL_TARGET_NFE, "kl_target": KL_TARGET},
                             "complete": False}
    wall = time.perf_counter()

    def save(figure: bool = False) -> None:
        state["wall_seconds"] = time.perf_counter() - wall
        write_results(out, NAME, state, markdown_tables(state))
        if figure:
            plot(state, out / f"{NAME}.png")

    if "oracle" in args.suites:
        run_oracle(cfg, samplers, args.seed, progress, save, state, kl_target)
        save()
    if "digits" in args.suites:
        run_digits(cfg, samplers, args.seed, args.model, progress, save, state)
    state["complete"] = True
    save(figure=True)
    for title, table in markdown_tables(state).items():
        print(f"\n### {title}\n\n{table}")
    print(f"\n[{NAME}] wrote {out / (NAME + '.json')}, .md and .png "
          f"({state['wall_seconds']:.0f} s)")
    return state


if __name__ == "__main__":
    main()
