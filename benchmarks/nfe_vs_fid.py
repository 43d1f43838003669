"""Sample quality vs NFE (issue 9): every sampler at NFE budgets 5 ... 1000.

Suites:
  oracle  a 2-D Gaussian mixture with its exact score (`dynamics.GaussianMixture`) under the
          VP SDE: no model error, so every difference is solver error. Per sampler x budget:
          sliced Wasserstein distance (`generative.metrics.sliced_wasserstein`) between the
          samples and as many exact mixture samples (the SW of two exact sample sets is the
          noise floor); for the deterministic samplers (ddim eta=0, dpmpp_2m, dpmpp_2s,
          edm_heun, ode) also the log-density error of the sampler itself: the sampler is a
          map x_T -> x_0, so its samples have density q(x_0) = N(x_T; 0, I) / |det dx_0/dx_T|
          (change of variables, 2x2 Jacobian by autograd; assumes the map is injective), and
          we report mean(log q - log p) over its samples (a Monte-Carlo estimate of
          KL(q || p), p the exact data mixture) and mean |log q - log p|. Separately, the
          library's likelihood (`generative.likelihood.log_likelihood`: probability-flow ODE,
          dopri5 at rtol = atol = 1e-6, exact divergence) is checked against the exact
          log-density of p_eps (what it computes) and of p_0 on exact mixture samples.
  digits  the demo's trained VP score model (`generative.demo.load_demo_model`, cached; it is
          trained first if absent). Per sampler x budget: FID (digits) with a bootstrap CI
          against the 359 held-out test digits, the fraction classified with confidence
          > 0.9, wall time and the NFE actually used. References: the probability-flow ODE
          with adaptive dopri5 at rtol = atol = 1e-5 and 1000-step PC ("converged"), the
          real-data floor (train digits vs test) and the Gaussian-fit baseline.

Every sampler starts from the same prior draw (fixed seed), ends with one Tweedie denoising
step (counted in the NFE budget, as in the demo) and uses its default time grid (ddim,
em, pc, ancestral, ode: uniform in t; dpmpp: uniform log-SNR; edm_heun: Karras rho = 7). The
ode sampler is Heun's method with fixed steps. A sampler/budget pair the sampler cannot do
(budget below one step; DDPM/PC steps need beta(t) dt < 1) is recorded as skipped, with the
sampler's own error message.

Target (digits): some sampler reaches, at <= 20 NFE, an FID within 5% of the best (lowest)
converged reference, or inside that reference's bootstrap CI.

Usage: python -m benchmarks.nfe_vs_fid --out results/nfe_vs_fid [--quick] [--suites ...]
       python -m benchmarks.nfe_vs_fid --out results/nfe_vs_fid --markdown   (tables from JSON)
Writes nfe_vs_fid.json (after every sampler), nfe_vs_fid.md and nfe_vs_fid.png into --out.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from tqdm.auto import tqdm

from benchmarks.common import markdown_table, write_results
from solvers.errors import InvalidInputError, SolverError

NAME = "nfe_vs_fid"
NFE_BUDGETS = (5, 10, 20, 50, 100, 200, 1000)
#: sampler -> its options (besides ``nfe`` and ``denoise=True``)
SAMPLERS: Dict[str, Dict[str, Any]] = {
    "ddim": {"eta": 0.0},
    "dpmpp_2m": {},
    "dpmpp_2s": {},
    "edm_heun": {},
    "em": {},
    "pc": {"snr": 0.16, "n_corrector": 1},
    "ancestral": {},
    "ode": {"method": "heun"},
}
DETERMINISTIC = ("ddim", "dpmpp_2m", "dpmpp_2s", "edm_heun", "ode")
TARGET_NFE, TARGET_REL = 20, 0.05

FULL = {"n": 1000, "n_boot": 200, "budgets": NFE_BUDGETS, "oracle_n": 5000,
        "ref_ode": {"method": "dopri5", "rtol": 1e-5, "atol": 1e-5},
        "ref_pc_steps": 1000, "lik_n": 200, "lik_tol": 1e-6}
QUICK = {"n": 200, "n_boot": 20, "budgets": (5, 10, 20, 50), "oracle_n": 400,
         "ref_ode": {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3},
         "ref_pc_steps": 100, "lik_n": 16, "lik_tol": 1e-4}

Tensor = torch.Tensor


# --------------------------------------------------------------------------- running samplers

def run_sampler(name: str, sde, score_fn, x_init: Tensor, *, nfe: Optional[int] = None,
                **options: Any) -> Tuple[Tensor, float, float]:
    """Sampler ``name`` from the prior draw ``x_init`` with budget ``nfe`` (or its own step
    options), Tweedie-denoised; returns ``(samples, mean NFE used, seconds)``."""
    from generative.samplers import sample
    start = time.perf_counter()
    x, used = sample(name, sde, score_fn, nfe=nfe, x_init=x_init, denoise=True, **options)
    seconds = time.perf_counter() - start
    return x, float(torch.as_tensor(used, dtype=torch.float64).mean()), seconds


def sweep(samplers: Dict[str, Dict[str, Any]], budgets: Sequence[int],
          measure: Callable[[str, Dict[str, Any], int], Dict[str, Any]],
          done: Callable[[str], None], desc: str, progress: bool
          ) -> Dict[str, Dict[str, Any]]:
    """``measure(name, options, budget)`` for every pair; a pair the sampler rejects
    (`InvalidInputError`) is recorded as skipped with the reason, a numerical failure
    (`SolverError`) as failed. ``done(name)`` runs after each sampler (to save)."""
    results: Dict[str, Dict[str, Any]] = {}
    bar = tqdm(total=len(samplers) * len(budgets), desc=desc, disable=not progress,
               dynamic_ncols=True, leave=False)
    for name, options in samplers.items():
        rows: List[Dict[str, Any]] = []
        results[name] = {"options": {**options, "denoise": True}, "rows": rows}
        for budget in budgets:
            bar.set_postfix_str(f"{name} nfe={budget}")
            try:
                row = {"nfe_budget": budget, "status": "ok", **measure(name, options, budget)}
            except InvalidInputError as err:
                row = {"nfe_budget": budget, "status": "skipped", "reason": str(err)}
            except SolverError as err:
                row = {"nfe_budget": budget, "status": "failed",
                       "reason": f"{type(err).__name__}: {err}"}
            rows.append(row)
            bar.update()
        done(name)
    bar.close()
    return results


# --------------------------------------------------------------------------- target check

def target_check(rows: Dict[str, Dict[str, Any]], references: Dict[str, Dict[str, Any]],
                 max_nfe: int = TARGET_NFE, rel: float = TARGET_REL) -> Dict[str, Any]:
    """Does some sampler reach, at <= ``max_nfe`` NFE used, an FID within ``rel`` of the best
    (lowest) converged reference (``fid <= (1 + rel) * ref``), or inside (or below) that
    reference's CI (``fid <= ci_high``)? Also names the best (lowest-FID) and the closest
    (|fid / ref - 1| smallest) sampler at <= ``max_nfe`` NFE.

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
        "criterion": f"fid <= {1 + rel:g} * reference or fid <= reference ci_high, "
                     f"at nfe_used <= {max_nfe}",
        "passed": False, "passing": [], "best_sampler": None, "best_fid": None,
        "best_nfe": None, "best_ratio": None, "closest": None}
    if not candidates:
        return out
    name, best = min(candidates, key=lambda c: c[1]["fid"]["value"])
    fid = best["fid"]["value"]
    out.update(best_sampler=name, best_fid=fid, best_nfe=best["nfe_used"],
               best_ratio=fid / ref["value"])
    name, close = min(candidates, key=lambda c: abs(c[1]["fid"]["value"] / ref["value"] - 1))
    out["closest"] = {"sampler": name, "nfe_used": close["nfe_used"],
                      "fid": close["fid"]["value"], "ratio": close["fid"]["value"] / ref["value"]}
    for name, r in candidates:
        v = r["fid"]["value"]
        within_rel, within_ci = v <= (1 + rel) * ref["value"], v <= ref["ci_high"]
        if within_rel or within_ci:
            out["passing"].append({"sampler": name, "nfe_used": r["nfe_used"], "fid": v,
                                   "ratio": v / ref["value"], "within_5pct": within_rel,
                                   "within_ci": within_ci})
    out["passed"] = bool(out["passing"])
    return out


def verdict_line(t: Dict[str, Any]) -> str:
    if t.get("best_sampler") is None:
        return (f"target (FID within {t['rel_tol']:.0%} of the best converged reference at "
                f"<= {t['max_nfe']} NFE): FAIL -- no sampler ran at <= {t['max_nfe']} NFE")
    lo, hi = t["reference_ci"]
    passing = "; ".join(
        f"{p['sampler']} at {p['nfe_used']:.0f} NFE: {p['fid']:.2f} ({p['ratio']:.2f}x, "
        + ("below the reference" if p["ratio"] < 1 - t["rel_tol"] else
           f"within {t['rel_tol']:.0%}" if p["within_5pct"] else "inside the CI") + ")"
        for p in sorted(t["passing"], key=lambda p: (p["nfe_used"], p["fid"])))
    c = t["closest"]
    return (f"target: some sampler at <= {t['max_nfe']} NFE within {t['rel_tol']:.0%} of the "
            f"best converged reference ({t['best_reference']}: FID {t['reference_fid']:.2f}, "
            f"95% CI [{lo:.2f}, {hi:.2f}]) or inside its CI: "
            f"{'PASS' if t['passed'] else 'FAIL'}. "
            + (f"Passing: {passing}. " if passing else "")
            + f"Lowest FID at <= {t['max_nfe']} NFE: {t['best_sampler']} at "
              f"{t['best_nfe']:.0f} NFE, {t['best_fid']:.2f} ({t['best_ratio']:.2f}x); "
              f"closest to the reference: {c['sampler']} at {c['nfe_used']:.0f} NFE, "
              f"{c['fid']:.2f} ({c['ratio']:.2f}x).")


# --------------------------------------------------------------------------- oracle suite

def oracle_mixture():
    """A 2-D, 5-component mixture with unequal weights, anisotropic and rotated components."""
    from dynamics import GaussianMixture
    angles = torch.tensor([0.0, 1.3, 2.5, 3.7, 5.0], dtype=torch.float64)
    means = 1.6 * torch.stack([angles.cos(), angles.sin()], 1)
    covs = []
    for k, a in enumerate(angles):
        rot = torch.tensor([[a.cos(), -a.sin()], [a.sin(), a.cos()]], dtype=torch.float64)
        lam = torch.tensor([0.12, 0.01 + 0.01 * k], dtype=torch.float64)
        covs.append(rot @ torch.diag(lam) @ rot.T)
    weights = torch.tensor([0.1, 0.3, 0.2, 0.25, 0.15], dtype=torch.float64)
    return GaussianMixture(weights, means, torch.stack(covs))


def pushforward_log_density(name: str, sde, score_fn, x_init: Tensor, nfe: Optional[int],
                            **options: Any) -> Tuple[Tensor, Tensor, float, float]:
    """Samples x_0 of deterministic sampler ``name`` from ``x_init`` and their log-density
    under the sampler's own pushforward of the prior, ``log N(x_T) - log|det dx_0/dx_T|``
    (exact Jacobian by autograd, one backward pass per output dimension)."""
    from generative.samplers import sample
    xT = x_init.detach().clone().requires_grad_(True)
    start = time.perf_counter()
    with torch.enable_grad():
        x0, used = sample(name, sde, score_fn, nfe=nfe, x_init=xT, denoise=True, **options)
        flat = x0.reshape(len(x0), -1)
        d = flat.shape[1]
        rows = [torch.autograd.grad(flat[:, i].sum(), xT, retain_graph=i < d - 1)[0]
                .reshape(len(x0), -1) for i in range(d)]
    seconds = time.perf_counter() - start
    logdet = torch.linalg.slogdet(torch.stack(rows, 1))[1]
    log_q = sde.prior_logp(xT.detach()) - logdet
    return x0.detach(), log_q, float(torch.as_tensor(used, dtype=torch.float64).mean()), seconds


def run_oracle(cfg: Dict[str, Any], samplers: Dict[str, Dict[str, Any]], seed: int,
               progress: bool, save: Callable[[], None], state: Dict[str, Any]) -> None:
    from dynamics import VPSDE
    from generative.likelihood import log_likelihood
    from generative.metrics import sliced_wasserstein

    sde, mix = VPSDE(), oracle_mixture()
    score = mix.score_fn(sde)
    n = cfg["oracle_n"]
    g = torch.Generator().manual_seed(seed)
    exact = mix.sample(n, g)          # as many as the samplers draw (SW compares sorted sets)
    x_init = sde.prior_sample((n, mix.dim), generator=g, dtype=torch.float64)

    def sw(x: Tensor) -> float:
        return sliced_wasserstein(x, exact, n_projections=256,
                                  generator=torch.Generator().manual_seed(seed + 7))

    floors = [sw(mix.sample(n, g)) for _ in range(3)]
    oracle: Dict[str, Any] = {
        "mixture": {"weights": mix.weights.tolist(), "means": mix.means.tolist(),
                    "covs": mix.covs.tolist()},
        "sde": "VPSDE() (beta 0.1..20, T=1, t_min=1e-3)", "n": n, "n_exact": len(exact),
        "dtype": "float64", "sw_floor": sum(floors) / len(floors), "sw_floor_draws": floors,
        "references": {}}
    state["oracle"] = oracle

    def kl_stats(x0: Tensor, log_q: Tensor) -> Dict[str, float]:
        diff = log_q - mix.log_prob(x0)
        ok = torch.isfinite(diff)
        return {"kl_q_p": float(diff[ok].mean()),
                "mean_abs_logp_err": float(diff[ok].abs().mean()), "nonfinite": int((~ok).sum())}

    def measure(name: str, options: Dict[str, Any], budget: Optional[int],
                **extra: Any) -> Dict[str, Any]:
        if name in DETERMINISTIC:
            x, log_q, used, sec = pushforward_log_density(name, sde, score, x_init, budget,
                                                          **options, **extra)
            return {"nfe_used": used, "sw": sw(x), **kl_stats(x, log_q), "seconds": sec}
        x, used, sec = run_sampler(name, sde, score, x_init, nfe=budget, **options, **extra)
        return {"nfe_used": used, "sw": sw(x), "seconds": sec}

    oracle["references"]["ode_dopri5"] = {
        "options": cfg["ref_ode"], **measure("ode", {}, None, **cfg["ref_ode"])}
    oracle["references"]["pc_steps"] = {
        "options": {"n_steps": cfg["ref_pc_steps"], **SAMPLERS["pc"]},
        **measure("pc", SAMPLERS["pc"], None, n_steps=cfg["ref_pc_steps"])}

    # the library's likelihood on exact mixture samples vs the exact log-densities: with the
    # exact log p_T at the end of the flow (solver error only) and with the default N(0, I)
    # prior (what `log_likelihood` reports; adds the prior mismatch p_T != N(0, I))
    xs = mix.sample(cfg["lik_n"], g)
    exact_eps, exact_0 = mix.marginal_log_prob(sde, xs, sde.t_min), mix.log_prob(xs)
    check: Dict[str, Any] = {"n": cfg["lik_n"], "method": "dopri5", "rtol": cfg["lik_tol"],
                             "atol": cfg["lik_tol"], "divergence": "exact"}
    for key, prior in (("exact_prior", lambda z: mix.marginal_log_prob(sde, z, sde.T)),
                       ("default_prior", None)):
        start = time.perf_counter()
        logp, nfe = log_likelihood(sde, score, xs, rtol=cfg["lik_tol"], atol=cfg["lik_tol"],
                                   prior_logp=prior)
        err_eps, err_0 = logp - exact_eps, logp - exact_0
        check[key] = {"nfe": nfe,
                      "seconds": time.perf_counter() - start,
                      "max_abs_err_vs_p_eps": float(err_eps.abs().max()),
                      "mean_abs_err_vs_p_eps": float(err_eps.abs().mean()),
                      "mean_err_vs_p_0": float(err_0.mean()),
                      "mean_abs_err_vs_p_0": float(err_0.abs().mean())}
    oracle["likelihood_check"] = check
    save()
    oracle["samplers"] = sweep(samplers, cfg["budgets"],
                               lambda name, opts, b: measure(name, opts, b),
                               lambda name: save(), "oracle", progress)


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
    n = cfg["n"]
    x_init = sde.prior_sample((n, *data.train.shape[1:]),
                              generator=torch.Generator().manual_seed(seed))

    def evaluate(x: Tensor) -> Dict[str, Any]:
        return scores(x.clamp(-1, 1))

    def measure(name: str, options: Dict[str, Any], budget: Optional[int],
                **extra: Any) -> Dict[str, Any]:
        with torch.no_grad():
            x, used, sec = run_sampler(name, sde, score, x_init, nfe=budget, **options, **extra)
        return {"nfe_used": used, "seconds": sec, **evaluate(x)}

    g = torch.Generator().manual_seed(seed + 1)
    digits: Dict[str, Any] = {
        "model": info, "n": n, "n_reference": int(len(data.test)),
        "classifier_test_accuracy": classifier.test_accuracy,
        "baseline_gaussian_fit": evaluate(gaussian_fit_sample(data.train, n, g)),
        "references": {}}
    digits["real_data_floor"] = scores.data_floor(data.train.clamp(-1, 1), n, g)
    state["digits"] = digits
    refs = [("ode_dopri5", "ode", {}, dict(cfg["ref_ode"])),
            ("pc_steps", "pc", SAMPLERS["pc"], {"n_steps": cfg["ref_pc_steps"]})]
    for key, name, options, extra in tqdm(refs, desc="references", disable=not progress,
                                          leave=False):
        digits["references"][key] = {"sampler": name, "options": {**options, **extra},
                                     **measure(name, options, None, **extra)}
        save()
    digits["samplers"] = {}

    def done(name: str) -> None:
        state["target"] = target_check(digits["samplers"], digits["references"])
        save()
    digits["samplers"] = sweep(samplers, cfg["budgets"],
                               lambda name, opts, b: measure(name, opts, b), done, "digits",
                               progress)
    state["target"] = target_check(digits["samplers"], digits["references"])


# --------------------------------------------------------------------------- reporting

REF_LABELS = {"ode_dopri5": "prob.-flow ODE, dopri5 (adaptive)",
              "pc_steps": "predictor-corrector"}


def _cell(r: Dict[str, Any], value: Callable[[Dict[str, Any]], float], fmt: str) -> str:
    if r["status"] != "ok":
        return "—" if r["status"] == "skipped" else "fail"
    text = format(value(r), fmt)
    return text if abs(r["nfe_used"] - r["nfe_budget"]) < 0.5 else f"{text} ({r['nfe_used']:.0f})"


def wide_table(samplers: Dict[str, Dict[str, Any]], budgets: Sequence[int],
               value: Callable[[Dict[str, Any]], float], fmt: str) -> str:
    rows = []
    for name, res in samplers.items():
        by_budget = {r["nfe_budget"]: r for r in res["rows"]}
        row = {"sampler": name}
        for b in budgets:
            row[str(b)] = _cell(by_budget[b], value, fmt) if b in by_budget else ""
        rows.append(row)
    return markdown_table(rows, ["sampler"] + [str(b) for b in budgets])


def _skip_notes(samplers: Dict[str, Dict[str, Any]]) -> str:
    notes = []
    for name, res in samplers.items():
        for r in res["rows"]:
            if r["status"] != "ok":
                notes.append(f"{name} at NFE {r['nfe_budget']} ({r['status']}): "
                             f"{r['reason'].splitlines()[0]}")
    return "\n".join(f"- {n}" for n in notes)


def markdown_tables(payload: Dict[str, Any]) -> Dict[str, str]:
    """Markdown tables (title -> table) of a results payload (as written to the JSON)."""
    budgets = payload["config"]["budgets"]
    tables: Dict[str, str] = {}
    d = payload.get("digits")
    if d and d.get("samplers"):
        tables["Digits: FID (digits) per sampler and NFE budget"] = (
            wide_table(d["samplers"], budgets, lambda r: r["fid"]["value"], ".1f")
            + "\n\n— : budget the sampler cannot do; "
              "(n): NFE actually used where it differs from the budget.")
        refs = []
        for key, r in d["references"].items():
            f = r["fid"]
            refs.append({"reference": REF_LABELS.get(key, key) + " " + _options_text(r),
                         "NFE": f"{r['nfe_used']:.0f}",
                         "FID [95% CI]": f"{f['value']:.2f} [{f['ci_low']:.2f}, "
                                         f"{f['ci_high']:.2f}]",
                         "conf > 0.9": f"{r['confident_fraction']:.1%}",
                         "seconds": f"{r['seconds']:.1f}"})
        for key, label in (("real_data_floor", "held-out real digits (floor)"),
                           ("baseline_gaussian_fit", "Gaussian fit (baseline)")):
            f = d[key]["fid"]
            refs.append({"reference": label, "NFE": "–",
                         "FID [95% CI]": f"{f['value']:.2f} [{f['ci_low']:.2f}, "
                                         f"{f['ci_high']:.2f}]",
                         "conf > 0.9": f"{d[key]['confident_fraction']:.1%}", "seconds": "–"})
        tables["Digits: references"] = markdown_table(
            refs, ["reference", "NFE", "FID [95% CI]", "conf > 0.9", "seconds"])
        tables["Digits: wall seconds per sampler and NFE budget "
               f"({d['n']} samples, one batch)"] = wide_table(
            d["samplers"], budgets, lambda r: r["seconds"], ".2f")
        tables["Digits: fraction classified with confidence > 0.9"] = wide_table(
            d["samplers"], budgets, lambda r: 100 * r["confident_fraction"], ".0f")
        if payload.get("target"):
            tables["Digits: target"] = verdict_line(payload["target"])
        notes = _skip_notes(d["samplers"])
        if notes:
            tables["Digits: skipped budgets"] = notes
    o = payload.get("oracle")
    if o and o.get("samplers"):
        refs = ", ".join(f"{REF_LABELS.get(k, k)} {_options_text(r)}: SW {r['sw']:.4f} at "
                         f"{r['nfe_used']:.0f} NFE" for k, r in o["references"].items())
        tables["Oracle (2-D mixture, exact score): sliced Wasserstein distance to exact "
               "samples"] = (
            wide_table(o["samplers"], budgets, lambda r: r["sw"], ".3f")
            + f"\n\n{o['n']} samples vs {o['n_exact']} exact ones; noise floor (exact "
              f"samples of {o['n']}): {o['sw_floor']:.4f}. References: {refs}.")
        det = {k: v for k, v in o["samplers"].items() if k in DETERMINISTIC}
        kl_refs = "; ".join(f"{REF_LABELS.get(k, k)}: {r['kl_q_p']:.4f}"
                            for k, r in o["references"].items() if "kl_q_p" in r)
        tables["Oracle: KL(q || p) of the deterministic samplers (mean log q - log p over "
               "their samples, q from the sampler's Jacobian)"] = (
            wide_table(det, budgets, lambda r: r["kl_q_p"], ".4f")
            + (f"\n\nConverged reference ({kl_refs})." if kl_refs else ""))
        lk = o.get("likelihood_check")
        if lk:
            rows = [{"prior at T": label, "NFE": f"{lk[k]['nfe']:.0f}",
                     "max abs err vs log p_eps": f"{lk[k]['max_abs_err_vs_p_eps']:.2e}",
                     "mean abs err vs log p_eps": f"{lk[k]['mean_abs_err_vs_p_eps']:.2e}",
                     "mean err vs log p_0": f"{lk[k]['mean_err_vs_p_0']:+.2e}"}
                    for k, label in (("exact_prior", "exact log p_T"),
                                     ("default_prior", "N(0, I) (default)"))]
            tables["Oracle: library likelihood vs exact log-density"] = (
                f"`log_likelihood` (dopri5, rtol = atol = {lk['rtol']:g}, exact divergence) "
                f"on {lk['n']} exact mixture samples, in nats:\n\n" + markdown_table(
                    rows, ["prior at T", "NFE", "max abs err vs log p_eps",
                           "mean abs err vs log p_eps", "mean err vs log p_0"]))
    return tables


def _options_text(r: Dict[str, Any]) -> str:
    o = r.get("options", {})
    if "rtol" in o:
        return f"(rtol = atol = {o['rtol']:g})"
    if "n_steps" in o:
        return f"({o['n_steps']} steps)"
    return ""


def _skip_summary(samplers: Dict[str, Dict[str, Any]]) -> str:
    """One line: which budgets each sampler rejected, with one of the sampler's messages."""
    parts, example = [], None
    for name, res in samplers.items():
        bad = [r for r in res["rows"] if r["status"] != "ok"]
        if bad:
            parts.append(f"{name} at {', '.join(str(r['nfe_budget']) for r in bad)} NFE")
            example = (name, bad[-1])
    if not parts:
        return ""
    name, r = example
    return (f"Not run (the sampler rejects the budget): {'; '.join(parts)}. E.g. {name} at "
            f"{r['nfe_budget']} NFE: \"{r['reason'].splitlines()[0]}\"")


def _timing_summary(d: Dict[str, Any]) -> str:
    per = sorted(r["seconds"] / r["nfe_used"] for res in d["samplers"].values()
                 for r in res["rows"] if r["status"] == "ok")
    if not per:
        return ""
    refs = ", ".join(f"{REF_LABELS.get(k, k)} {r['seconds']:.1f} s" for k, r in
                     d["references"].items())
    return (f"Wall time for {d['n']} samples in one batch (1 CPU thread): median "
            f"{1e3 * per[len(per) // 2]:.0f} ms per NFE over all runs (range "
            f"{1e3 * per[0]:.0f}-{1e3 * per[-1]:.0f} ms); references: {refs}.")


def readme_markdown(payload: Dict[str, Any]) -> str:
    """The README section body: digits FID table, references, timing, target, oracle tables."""
    tables = markdown_tables(payload)
    d = payload.get("digits") or {}
    if d.get("samplers"):
        tables.pop("Digits: skipped budgets", None)
        extra = [t for t in (_skip_summary(d["samplers"]), _timing_summary(d)) if t]
        key = "Digits: FID (digits) per sampler and NFE budget"
        tables[key] = "\n\n".join([tables[key]] + extra)
    keep = [k for k in tables if not k.startswith("Digits: wall") and
            not k.startswith("Digits: fraction")]
    return "\n\n".join(f"**{k}**\n\n{tables[k]}" for k in keep)


def plot(payload: Dict[str, Any], path: Path) -> None:
    """FID vs NFE (digits), SW vs NFE and KL(q || p) vs NFE (oracle); log-log axes, one curve
    per sampler, horizontal lines for the references."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    panels = []
    if payload.get("digits", {}).get("samplers"):
        panels.append(("digits", lambda r: r["fid"]["value"]))
    if payload.get("oracle", {}).get("samplers"):
        panels += [("oracle", lambda r: r["sw"]), ("kl", lambda r: max(r["kl_q_p"], 1e-5))]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), squeeze=False)
    for ax, (key, metric) in zip(axes[0], panels):
        suite = payload["oracle" if key == "kl" else key]
        for name, res in suite["samplers"].items():
            ok = [r for r in res["rows"] if r["status"] == "ok" and (key != "kl" or
                                                                     "kl_q_p" in r)]
            if ok:
                ax.plot([r["nfe_used"] for r in ok], [metric(r) for r in ok], "o-", ms=3,
                        label=name)
        refs = {k: r for k, r in suite.get("references", {}).items()
                if key != "kl" or "kl_q_p" in r}
        if refs:
            best = min(refs, key=lambda k: metric(refs[k]))
            ax.axhline(metric(refs[best]), color="k", ls="--", lw=1,
                       label=f"converged: {best} ({refs[best]['nfe_used']:.0f} NFE)")
        if key == "digits":
            f = refs[best]["fid"]
            ax.axhspan(f["ci_low"], f["ci_high"], color="k", alpha=0.08)
            ax.axhline(suite["real_data_floor"]["fid"]["value"], color="g", ls=":", lw=1.5,
                       label="real-data floor")
            ax.axhline(suite["baseline_gaussian_fit"]["fid"]["value"], color="r", ls=":",
                       lw=1.5, label="Gaussian-fit baseline")
            ax.set_ylabel("FID (digits)")
            ax.set_title(f"digits, VP score model, {suite['n']} samples")
        elif key == "oracle":
            ax.axhline(suite["sw_floor"], color="g", ls=":", lw=1.5,
                       label="noise floor (exact vs exact)")
            ax.set_ylabel("sliced Wasserstein distance")
            ax.set_title(f"oracle: 2-D mixture, exact score, {suite['n']} samples")
        else:
            ax.set_ylabel("KL(q || p), nats (clipped at 1e-5)")
            ax.set_title("oracle: KL of the deterministic samplers")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NFE (score evaluations)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


# --------------------------------------------------------------------------- main

def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/nfe_vs_fid")
    parser.add_argument("--quick", action="store_true",
                        help="small settings: fewer samples/budgets, the demo's quick model")
    parser.add_argument("--suites", nargs="*", default=["oracle", "digits"],
                        choices=["oracle", "digits"])
    parser.add_argument("--samplers", nargs="*", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--budgets", nargs="*", type=int, default=None)
    parser.add_argument("--n", type=int, default=None, help="digits samples per run")
    parser.add_argument("--n-boot", type=int, default=None)
    parser.add_argument("--oracle-n", type=int, default=None)
    parser.add_argument("--ref-pc-steps", type=int, default=None)
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
        d = payload.get("digits") or {}
        if d.get("samplers") and d.get("references"):
            payload["target"] = target_check(d["samplers"], d["references"])
        print(readme_markdown(payload))
        return payload

    torch.set_num_threads(args.threads)
    cfg = dict(QUICK if args.quick else FULL)
    for key in ("budgets", "n", "n_boot", "oracle_n", "ref_pc_steps"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg["budgets"] = sorted(set(int(b) for b in cfg["budgets"]))
    cfg["quick"] = args.quick
    progress = not args.no_progress
    samplers = {k: SAMPLERS[k] for k in args.samplers}
    state: Dict[str, Any] = {"config": {**cfg, "samplers": samplers, "seed": args.seed,
                                        "model": args.model, "suites": args.suites,
                                        "target_nfe": TARGET_NFE, "target_rel": TARGET_REL},
                             "complete": False}
    wall = time.perf_counter()

    def save(figure: bool = False) -> None:
        state["wall_seconds"] = time.perf_counter() - wall
        write_results(out, NAME, state, markdown_tables(state))
        if figure:
            plot(state, out / f"{NAME}.png")

    if "oracle" in args.suites:
        run_oracle(cfg, samplers, args.seed, progress, save, state)
        save(figure=True)
    if "digits" in args.suites:
        run_digits(cfg, samplers, args.seed, args.model, progress, save, state)
    state["complete"] = True
    save(figure=True)
    tables = markdown_tables(state)
    for title, table in tables.items():
        print(f"\n### {title}\n\n{table}")
    print(f"\n[{NAME}] wrote {out / (NAME + '.json')}, .md and .png "
          f"({state['wall_seconds']:.0f} s)")
    return state


if __name__ == "__main__":
    main()
