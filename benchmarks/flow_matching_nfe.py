"""Flow matching: sample quality (MMD to held-out data) against NFE, for CFM and OT-CFM.

A CFM and an OT-CFM velocity field (same MLP, linear path, same seed and steps) are trained on
a 2-D toy set with the shared loop (`generative.train`, EMA weights used for sampling). Each
is sampled with fixed-step euler / midpoint / rk4 at increasing NFE budgets (the step count is
the budget divided by the method's stages) and with adaptive dopri5 at a few tolerances, and
two squared MMDs (`generative.metrics.mmd_rbf`) between ``--n`` samples and ``--n`` held-out
data points are reported:

- ``mmd``: RBF kernels with the median-heuristic bandwidth h × (0.5, 1, 2) — the metric of
  tests/test_generative_flow_matching.py. On 8 gaussians h ≈ 4 (the ring's diameter scale),
  so it measures the ring, not the modes: samples smeared along the ring between the modes
  score like data;
- ``mmd_local``: fixed bandwidths (0.1 h, 0.2 h) of the data (≈ 0.4, 0.8, the modes' scale),
  which sees mass between the modes.

Calibration: the MMD between independent data sets of the same size (``--n-calib`` draws)
gives each metric's noise level ``max |data-vs-data MMD|``; its bound is
``5 × noise + 1e-3`` (the test's). For each model, method and metric the table gives the
smallest NFE within the bound, and within the noise level itself.

Usage: python -m benchmarks.flow_matching_nfe [--data 8gaussians] [--steps 2000]
       [--out results/flow_matching_nfe]
Writes flow_matching_nfe.json, .md and .png (MMD vs NFE) into --out and prints the tables.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Dict, List

import torch

from benchmarks.common import markdown_table, write_results
from generative import MLP, TrainConfig, sample_toy, train
from generative.flow_matching import fm_sample, make_fm_loss
from generative.metrics import mmd_rbf
from generative.metrics.mmd import median_bandwidth
from generative.samplers.ode import cost as ode_cost

FIXED = ("euler", "midpoint", "rk4")
BUDGETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
TOLERANCES = (1e-2, 1e-3, 1e-5)


METRICS = ("mmd", "mmd_local")
FEWEST = tuple(f"{m} within {what}" for m in METRICS for what in ("bound", "noise"))


def calibrate(data: str, n: int, draws: int) -> Dict[str, Any]:
    """The reference set, the local bandwidths and each metric's data-vs-data noise."""
    ref = sample_toy(data, n, torch.Generator().manual_seed(11))
    draws_ = [sample_toy(data, n, torch.Generator().manual_seed(20 + i)) for i in range(draws)]
    h = median_bandwidth(draws_[0], ref)
    calib: Dict[str, Any] = {"reference_seed": 11, "median_bandwidth": h,
                             "local_bandwidths": [0.1 * h, 0.2 * h]}
    for metric in METRICS:
        base = [distance(metric, d, ref, calib) for d in draws_]
        noise = max(abs(b) for b in base)
        calib[metric] = {"data_vs_data": base, "noise": noise, "bound": 5 * noise + 1e-3}
    return calib


def distance(metric: str, x: torch.Tensor, ref: torch.Tensor, calib: Dict[str, Any]) -> float:
    if metric == "mmd":
        return mmd_rbf(x, ref)
    return mmd_rbf(x, ref, calib["local_bandwidths"])


def train_model(data: str, ot: bool, args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    net = MLP(2, width=args.width, depth=args.depth)
    train_set = sample_toy(data, args.n_train, torch.Generator().manual_seed(0))
    result = train(net, make_fm_loss("linear", ot=ot), train_set,
                   TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                               ema_decay=0.99, seed=args.seed, log_every=args.steps,
                               progress=False))
    result.ema.copy_to(net)
    return net.eval().requires_grad_(False)


def evaluate(net: torch.nn.Module, ref: torch.Tensor, calib: Dict[str, Any]
             ) -> List[Dict[str, Any]]:
    rows = []

    def run(method: str, **kw: Any) -> Dict[str, Any]:
        x, nfe = fm_sample(net, (len(ref), 2), method=method,
                           generator=torch.Generator().manual_seed(3), **kw)
        row: Dict[str, Any] = {"method": method, "nfe": int(nfe)}
        for metric in METRICS:
            value = distance(metric, x, ref, calib)
            row.update({metric: value, f"{metric} within bound": value < calib[metric]["bound"],
                        f"{metric} within noise": value < calib[metric]["noise"]})
        return row

    for method in FIXED:
        per = ode_cost({"method": method}).per_step
        for budget in BUDGETS:
            if budget % per == 0:
                rows.append({**run(method, step_size=per / budget), "setting": f"nfe {budget}"})
    for tol in TOLERANCES:
        rows.append({**run("dopri5", rtol=tol, atol=tol), "setting": f"tol {tol:g}"})
    return rows


def plot(results: Dict[str, List[Dict[str, Any]]], calib: Dict[str, Any], path: Path,
         title: str) -> None:
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    try:
        styles = {"euler": ":", "midpoint": "--", "rk4": "-", "dopri5": "-."}
        for ax, metric in zip(axes, METRICS):
            for (model, rows), colour in zip(results.items(), ("C0", "C1")):
                for method, style in styles.items():
                    pts = sorted((r["nfe"], r[metric]) for r in rows if r["method"] == method)
                    ax.plot([p[0] for p in pts], [max(p[1], 1e-6) for p in pts], style,
                            marker="o" if method == "dopri5" else ".", color=colour,
                            label=f"{model} {method}")
            ax.axhline(calib[metric]["bound"], color="k", lw=0.8,
                       label="bound (5x noise + 1e-3)")
            ax.axhline(calib[metric]["noise"], color="0.5", lw=0.8, ls=":",
                       label="data-vs-data noise")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("NFE")
            ax.set_ylabel(f"{metric}: MMD² to held-out data (≤ 0 drawn at 1e-6)")
        axes[0].set_title("median bandwidth h x (0.5, 1, 2)", fontsize=9)
        axes[1].set_title("local bandwidths (0.1 h, 0.2 h)", fontsize=9)
        axes[0].legend(fontsize=7, ncol=2)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def main(argv=None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="8gaussians")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--n", type=int, default=1000, help="samples and reference points")
    parser.add_argument("--n-calib", type=int, default=20)
    parser.add_argument("--n-train", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/flow_matching_nfe")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    calib = calibrate(args.data, args.n, args.n_calib)
    ref = sample_toy(args.data, args.n, torch.Generator().manual_seed(calib["reference_seed"]))
    results: Dict[str, List[Dict[str, Any]]] = {}
    seconds: Dict[str, float] = {}
    for name, ot in (("CFM", False), ("OT-CFM", True)):
        start = time.perf_counter()
        net = train_model(args.data, ot, args)
        seconds[name] = time.perf_counter() - start
        results[name] = [{**r, "model": name} for r in evaluate(net, ref, calib)]
        print(f"[flow_matching_nfe] {name}: trained in {seconds[name]:.0f} s", flush=True)
    fewest = []
    for name, rows in results.items():
        for method in (*FIXED, "dopri5"):
            row: Dict[str, Any] = {"model": name, "method": method}
            for key in FEWEST:
                ok = [r["nfe"] for r in rows if r["method"] == method and r[key]]
                row[key] = min(ok) if ok else "none"
            fewest.append(row)
    all_rows = [r for rows in results.values() for r in rows]
    title = (f"{args.data}: MLP {args.width}x{args.depth}, {args.steps} steps, n = {args.n}; "
             f"bounds {calib['mmd']['bound']:.2e} / {calib['mmd_local']['bound']:.2e}")
    tables = {f"MMD² vs NFE ({title})": markdown_table(
                  all_rows, ["model", "method", "setting", "nfe", "mmd", "mmd_local"]),
              "fewest NFE within each metric's bound / data noise": markdown_table(
                  fewest, ["model", "method", *FEWEST])}
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    out = Path(args.out)
    path = write_results(out, "flow_matching_nfe",
                         {"settings": settings, "calibration": calib, "train_seconds": seconds,
                          "rows": all_rows, "fewest": fewest}, tables)
    plot(results, calib, out / "flow_matching_nfe.png", title)
    for t, table in tables.items():
        print(f"### {t}\n{table}\n")
    print(f"[flow_matching_nfe] wrote {path}, {path.with_suffix('.md')} and "
          f"{out / 'flow_matching_nfe.png'}")
    return {"calibration": calib, "rows": all_rows, "fewest": fewest}


if __name__ == "__main__":
    main()
