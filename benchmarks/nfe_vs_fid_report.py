"""Tables, verdicts and the figure of `benchmarks.nfe_vs_fid` (from its JSON payload)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

from benchmarks.common import markdown_table

REF_LABELS = {"ode_dopri5": "prob.-flow ODE, dopri5 (adaptive)",
              "pc_steps": "predictor-corrector"}
TUNED = "tuned (best per budget)"

Row = Dict[str, Any]


def _cell(r: Row, value: Callable[[Row], float], fmt: str) -> str:
    if r["status"] != "ok":
        return "—" if r["status"] == "skipped" else "fail"
    text = format(value(r), fmt)
    return text if abs(r["nfe_used"] - r["nfe_budget"]) < 0.5 else f"{text} ({r['nfe_used']:.0f})"


def wide_table(samplers: Dict[str, Dict[str, Any]], budgets: Sequence[int],
               value: Callable[[Row], float], fmt: str) -> str:
    """One row per sampler, one column per budget; "(n)" marks the NFE used where it differs
    from the budget, "—" a budget the sampler rejects."""
    rows = []
    for name, res in samplers.items():
        by_budget = {r["nfe_budget"]: r for r in res["rows"]}
        row = {"sampler": name}
        for b in budgets:
            row[str(b)] = _cell(by_budget[b], value, fmt) if b in by_budget else ""
        rows.append(row)
    return markdown_table(rows, ["sampler"] + [str(b) for b in budgets])


def nfe_mismatches(samplers: Dict[str, Dict[str, Any]]) -> str:
    """One line naming the samplers whose counted NFE differs from the asked budget."""
    parts = []
    for name, res in samplers.items():
        bad = [f"{r['nfe_budget']}→{r['nfe_used']:g}" for r in res["rows"]
               if r["status"] == "ok" and r["nfe_differs"]]
        if bad:
            parts.append(f"{name} ({', '.join(bad)})")
    return ("Counted NFE differs from the budget (budget→used; a step's cost does not divide "
            "the budget, or a setup evaluation): " + "; ".join(parts) + ".") if parts else \
        "Every sampler used exactly the NFE budget it was given."


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


def _options_text(r: Row) -> str:
    o = r.get("options", {})
    if "rtol" in o:
        return f"(rtol = atol = {o['rtol']:g})"
    if "n_steps" in o:
        return f"({o['n_steps']} steps)"
    return ""


def _with_tuned(suite: Dict[str, Any], kl_only: bool = False) -> Dict[str, Any]:
    """The suite's samplers and its tuned row (``kl_only``: those with a KL)."""
    out = {k: v for k, v in suite["samplers"].items()
           if not kl_only or any("kl_q_p" in r for r in v["rows"])}
    if suite.get("tuned", {}).get("rows"):
        out[TUNED] = {"rows": suite["tuned"]["rows"]}
    return out


def tuned_configs(suite: Dict[str, Any], metric: str) -> str:
    """The configuration chosen at each tuned budget, with its tuning loss."""
    t = suite.get("tuned") or {}
    lines = [f"- {r['nfe_budget']} NFE: {r['label']} (tuning {metric} {r['tuning_loss']:.4g})"
             for r in t.get("rows", []) if r["status"] == "ok"]
    if not lines:
        return ""
    return (f"Tuned rows: per budget, the lowest-{metric} of {t['n_candidates']} "
            f"configurations on a separate tuning draw ({t['n_tune']} samples, seed "
            f"{t['tune_seed']}), measured here on the benchmark's own draw:\n\n"
            + "\n".join(lines))


def _fid_text(f: Dict[str, float]) -> str:
    return f"{f['value']:.2f} [{f['ci_low']:.2f}, {f['ci_high']:.2f}]"


def verdict_line(t: Dict[str, Any]) -> str:
    """The digits target's verdict (from `benchmarks.nfe_vs_fid.target_check`) in words."""
    rel, n = t["rel_tol"], t["max_nfe"]
    if t.get("best_sampler") is None:
        return (f"target (FID within {rel:.0%} of the best converged reference at <= {n} NFE): "
                f"FAIL -- no sampler ran at <= {n} NFE")
    lo, hi = t["reference_ci"]

    def listed(rows: List[Row]) -> str:
        return "; ".join(f"{p['sampler']} at {p['nfe_used']:.0f} NFE: {p['fid']:.2f} "
                         f"({p['ratio']:.2f}x)"
                         for p in sorted(rows, key=lambda p: (p["nfe_used"], p["fid"])))
    c = t["closest"]
    return (f"target: some sampler at <= {n} NFE with FID within {rel:.0%} of the best converged "
            f"reference ({t['best_reference']}: FID {t['reference_fid']:.2f}, 95% CI "
            f"[{lo:.2f}, {hi:.2f}]), i.e. |FID / reference - 1| <= {rel:g}: "
            f"{'PASS' if t['passed'] else 'FAIL'}. "
            + (f"Within {rel:.0%}: {listed(t['passing'])}. " if t["passing"] else "")
            + (f"Not counted (inside the CI or below the reference, but not within {rel:.0%}): "
               f"{listed(t['inside_ci_only'])}. " if t["inside_ci_only"] else "")
            + f"Closest to the reference at <= {n} NFE: {c['sampler']} at {c['nfe_used']:.0f} "
              f"NFE, {c['fid']:.2f} ({c['ratio']:.2f}x); lowest FID: {t['best_sampler']} at "
              f"{t['best_nfe']:.0f} NFE, {t['best_fid']:.2f} ({t['best_ratio']:.2f}x).")


def kl_verdict(t: Any) -> str:
    """The oracle KL target's verdict in words (``t`` from `benchmarks.nfe_vs_fid`)."""
    if not t:
        return ""
    best = t["best"]
    head = (f"KL target: some deterministic sampler at <= {t['nfe']} NFE with KL(q || p) <= "
            f"{t['kl']:g} nats: {'PASS' if t['passed'] else 'FAIL'}.")
    if best is None:
        return head + f" No deterministic sampler ran at <= {t['nfe']} NFE."
    return (head + f" Lowest: {best['sampler']} at {best['nfe_used']:.0f} NFE, "
            f"{best['kl_q_p']:.4f} ± {best['kl_se']:.4f} (standard error over the samples).")


def digits_tables(d: Dict[str, Any], budgets: Sequence[int], target: Any) -> Dict[str, str]:
    tables: Dict[str, str] = {}
    rows = _with_tuned(d)
    tables["Digits: FID (digits) per sampler and NFE budget"] = "\n\n".join(t for t in (
        wide_table(rows, budgets, lambda r: r["fid"]["value"], ".1f"),
        "— : budget the sampler cannot do; (n): NFE actually used where it differs from "
        "the budget.", nfe_mismatches(d["samplers"]), _skip_summary(d["samplers"]),
        tuned_configs(d, "RMSE to the converged ODE")) if t)
    refs = [{"reference": REF_LABELS.get(k, k) + " " + _options_text(r),
             "NFE": f"{r['nfe_used']:.0f}", "FID [95% CI]": _fid_text(r["fid"]),
             "conf > 0.9": f"{r['confident_fraction']:.1%}", "seconds": f"{r['seconds']:.1f}"}
            for k, r in d["references"].items()]
    for key, name in (("real_data_floor", "held-out real digits (floor)"),
                      ("baseline_gaussian_fit", "Gaussian fit (baseline)")):
        refs.append({"reference": name, "NFE": "–", "FID [95% CI]": _fid_text(d[key]["fid"]),
                     "conf > 0.9": f"{d[key]['confident_fraction']:.1%}", "seconds": "–"})
    tables["Digits: references"] = markdown_table(
        refs, ["reference", "NFE", "FID [95% CI]", "conf > 0.9", "seconds"])
    tables[f"Digits: wall seconds per sampler and NFE budget ({d['n']} samples, one batch)"] = \
        wide_table(rows, budgets, lambda r: r["seconds"], ".2f")
    if target:
        tables["Digits: target"] = verdict_line(target)
    return tables


def oracle_tables(o: Dict[str, Any], budgets: Sequence[int]) -> Dict[str, str]:
    tables: Dict[str, str] = {}
    refs = ", ".join(f"{REF_LABELS.get(k, k)} {_options_text(r)}: SW {r['sw']:.4f} at "
                     f"{r['nfe_used']:.0f} NFE" for k, r in o["references"].items())
    tables["Oracle (2-D mixture, exact score): sliced Wasserstein distance to exact "
           "samples"] = "\n\n".join([
               wide_table(_with_tuned(o), budgets, lambda r: r["sw"], ".3f"),
               f"{o['n']} samples vs {o['n_exact']} exact ones; noise floor (SW between two "
               f"exact sample sets of {o['n']}): {o['sw_floor']:.4f}. References: {refs}.",
               nfe_mismatches(o["samplers"])])
    kl_refs = "; ".join(f"{REF_LABELS.get(k, k)}: {r['kl_q_p']:.4f}"
                        for k, r in o["references"].items() if "kl_q_p" in r)
    tables["Oracle: KL(q || p) in nats of the deterministic samplers (mean log q - log p over "
           "their samples, q from the sampler's Jacobian)"] = "\n\n".join(t for t in [
               wide_table(_with_tuned(o, True), budgets, lambda r: r["kl_q_p"], ".4f"),
               f"Converged reference ({kl_refs})." if kl_refs else "",
               tuned_configs(o, "second-order KL"), kl_verdict(o.get("kl_target"))] if t)
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


def markdown_tables(payload: Dict[str, Any]) -> Dict[str, str]:
    """Markdown tables (title -> table) of a results payload (as written to the JSON)."""
    cfg = payload["config"]
    tables: Dict[str, str] = {}
    d = payload.get("digits")
    if d and d.get("samplers"):
        tables.update(digits_tables(d, cfg["budgets"], payload.get("target")))
    o = payload.get("oracle")
    if o and o.get("samplers"):
        tables.update(oracle_tables(o, cfg["oracle_budgets"]))
    return tables


def readme_markdown(payload: Dict[str, Any]) -> str:
    """The README section body: the tables without the wall-time one."""
    tables = markdown_tables(payload)
    return "\n\n".join(f"**{k}**\n\n{v}" for k, v in tables.items()
                       if not k.startswith("Digits: wall"))


def _curves(ax: Any, samplers: Dict[str, Dict[str, Any]], metric: Callable[[Row], float],
            keep: Callable[[Row], bool]) -> None:
    import matplotlib.pyplot as plt
    colours = plt.get_cmap("tab20").colors
    for k, (name, res) in enumerate(samplers.items()):
        ok = [r for r in res["rows"] if r["status"] == "ok" and keep(r)]
        if not ok:
            continue
        style = dict(color="k", lw=2.5, ms=5) if name == TUNED else dict(
            color=colours[k % 20], lw=1, ms=3, ls=("-", "--", ":")[k // 20 % 3])
        ax.plot([r["nfe_used"] for r in ok], [metric(r) for r in ok], marker="o", label=name,
                **style)


def plot(payload: Dict[str, Any], path: Path) -> None:
    """FID vs NFE (digits), SW vs NFE and KL(q || p) vs NFE (oracle); log-log axes, one curve
    per sampler (the tuned one bold), horizontal lines for references and floors."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    panels: List[Any] = []
    d, o = payload.get("digits") or {}, payload.get("oracle") or {}
    if d.get("samplers"):
        panels.append(("digits", d, lambda r: r["fid"]["value"], lambda r: True))
    if o.get("samplers"):
        panels += [("oracle", o, lambda r: r["sw"], lambda r: True),
                   ("kl", o, lambda r: max(r["kl_q_p"], 1e-5), lambda r: "kl_q_p" in r)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), squeeze=False)
    for ax, (key, suite, metric, keep) in zip(axes[0], panels):
        _curves(ax, _with_tuned(suite), metric, keep)
        if key == "digits":
            best = min(suite["references"], key=lambda k: metric(suite["references"][k]))
            f = suite["references"][best]["fid"]
            ax.axhline(f["value"], color="k", ls="--", lw=1, label=f"converged: {best}")
            ax.axhspan(f["ci_low"], f["ci_high"], color="k", alpha=0.08)
            ax.axhline(suite["real_data_floor"]["fid"]["value"], color="g", ls=":", lw=1.5,
                       label="real-data floor")
            ax.set_ylabel("FID (digits)")
            ax.set_title(f"digits, VP score model, {suite['n']} samples")
        elif key == "oracle":
            ax.axhline(suite["sw_floor"], color="g", ls=":", lw=1.5,
                       label="noise floor (exact vs exact)")
            ax.set_ylabel("sliced Wasserstein distance")
            ax.set_title(f"oracle: 2-D mixture, exact score, {suite['n']} samples")
        else:
            target = suite.get("kl_target") or {}
            if target:
                ax.axhline(target["kl"], color="r", ls=":", lw=1.5,
                           label=f"target {target['kl']:g} nats at {target['nfe']} NFE")
            ax.set_ylabel("KL(q || p), nats (clipped at 1e-5)")
            ax.set_title("oracle: KL of the deterministic samplers")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NFE (score evaluations, as counted)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.1, top=0.93, wspace=0.22)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
