"""RNODE vs plain FFJORD: function evaluations (NFE) per forward and backward pass during
training, and the test NLL they reach (Finlay et al. 2020, "How to train your neural ODE").

For each regularisation weight λ (λ_K = λ_J = λ; λ = 0 is plain FFJORD) a CNF is trained on a
2-D toy set with the shared training loop (`generative.train`, Hutchinson trace, adjoint
gradients, dopri5 at the training tolerance). Every ``--eval-every`` steps a copy of the
current model is measured at one fixed evaluation tolerance (the same for every λ):

- ``nfe_fwd``: NFE of the density solve x -> z on the test set (exact trace, no gradient);
- ``nfe_bwd``: NFE of the backward pass (adjoint solve) of the training loss on one fixed
  training batch, with the same probes for every λ;
- ``nfe_sample``: NFE of sampling z -> x;
- ``nll``: test negative log-likelihood in nats (exact trace).

The training log's own NFE (forward/backward at the training tolerance, averaged over the
steps since the last evaluation) is recorded too.

Usage: python -m benchmarks.rnode_nfe [--data 8gaussians] [--steps 3000]
       [--lambdas 0 0.01 0.05 0.1] [--out results/rnode_nfe]
Writes rnode_nfe.json, rnode_nfe.md and rnode_nfe.png (NFE and NLL vs training step, one line
per λ) into --out and prints the table.
"""
from __future__ import annotations

import argparse
import copy
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch

from benchmarks.common import markdown_table, write_results
from generative import TrainConfig, sample_toy, train
from generative.ffjord import CNF, make_ffjord_loss
from generative.nets import ODENet


def measure(cnf: CNF, test: torch.Tensor, batch: torch.Tensor, tol: float) -> Dict[str, float]:
    """NFE (forward density solve, backward pass of the loss, sampling) and test NLL of a copy
    of ``cnf`` solved at ``rtol = atol = tol``."""
    model = copy.deepcopy(cnf)
    model.rtol = model.atol = tol
    with torch.no_grad():
        nll = -float(model.log_prob(test, divergence_method="exact").mean())
        nfe_fwd = model.nfe_stats()["nfe"]
        nfe_sample = model.sample(len(test), generator=torch.Generator().manual_seed(0)).nfe
    model.zero_grad(set_to_none=True)
    loss, _ = make_ffjord_loss()(model, batch, torch.Generator().manual_seed(1))
    loss.backward()
    nfe_bwd = model.nfe_stats()["nfe_backward"]
    return {"nll": nll, "nfe_fwd": float(nfe_fwd), "nfe_bwd": float(nfe_bwd),
            "nfe_sample": float(nfe_sample)}


def run_lambda(lam: float, args: argparse.Namespace) -> Dict[str, Any]:
    """Train one CNF with λ_K = λ_J = ``lam``; returns its evaluation curve."""
    torch.set_num_threads(args.threads)
    data = sample_toy(args.data, args.n_train, torch.Generator().manual_seed(0))
    test = sample_toy(args.data, args.n_test, torch.Generator().manual_seed(1))
    batch = data[:args.batch_size]
    torch.manual_seed(args.seed)
    cnf = CNF(2, ODENet(2, hidden=tuple(args.hidden)), divergence_method="hutchinson",
              kinetic=lam, jacobian=lam, rtol=args.train_tol, atol=args.train_tol)
    curve: List[Dict[str, float]] = [{"step": 0, **measure(cnf, test, batch, args.eval_tol)}]
    start = time.perf_counter()

    def on_log(record: Dict[str, float]) -> None:
        row = {"step": int(record["step"]), "train_nfe": record["nfe"],
               "train_nfe_backward": record.get("nfe_backward", float("nan")),
               "train_loss": record["loss"], "kinetic": record.get("kinetic", float("nan")),
               "jacobian": record.get("jacobian", float("nan")),
               "seconds": time.perf_counter() - start,
               **measure(cnf, test, batch, args.eval_tol)}
        curve.append(row)
        print(f"  λ={lam:g} step {row['step']}: NLL {row['nll']:.3f}, NFE fwd/bwd/sample "
              f"{row['nfe_fwd']:.0f}/{row['nfe_bwd']:.0f}/{row['nfe_sample']:.0f} "
              f"(train {row['train_nfe']:.0f}/{row['train_nfe_backward']:.0f})", flush=True)

    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         grad_clip=None, ema_decay=0.0, seed=args.seed,
                         log_every=args.eval_every, progress=False)
    train(cnf, make_ffjord_loss(), data, config, on_log=on_log)
    return {"lambda": lam, "curve": curve, "train_seconds": time.perf_counter() - start}


def summary_rows(runs: Sequence[Dict[str, Any]], last: int) -> List[Dict[str, object]]:
    """One row per λ: the mean over its last ``last`` evaluations (late training; the
    evaluation at step 0, before training, never counts)."""
    rows = []
    base = None
    for run in runs:
        tail = run["curve"][1:][-last:]

        def mean(key: str) -> float:
            return sum(r[key] for r in tail) / len(tail)
        row = {"lambda": run["lambda"], "nll": mean("nll"), "nfe_fwd": mean("nfe_fwd"),
               "nfe_bwd": mean("nfe_bwd"), "nfe_sample": mean("nfe_sample"),
               "train_nfe": mean("train_nfe"), "train_nfe_backward": mean("train_nfe_backward"),
               "train_seconds": run["train_seconds"]}
        if base is None:
            base = row
        row["nfe_fwd / plain"] = row["nfe_fwd"] / base["nfe_fwd"]
        row["nfe_bwd / plain"] = row["nfe_bwd"] / base["nfe_bwd"]
        row["nll - plain"] = row["nll"] - base["nll"]
        rows.append(row)
    return rows


PANELS = (("train_nfe", "training: NFE forward (mean per step)"),
          ("train_nfe_backward", "training: NFE backward (mean per step)"),
          ("nll", "test NLL [nats]"),
          ("nfe_fwd", "eval tol: NFE forward (test-set density solve)"),
          ("nfe_bwd", "eval tol: NFE backward (adjoint of the loss)"),
          ("nfe_sample", "eval tol: NFE of sampling"))


def plot(runs: Sequence[Dict[str, Any]], path: Path, title: str) -> None:
    """NFE (training log and fixed-tolerance evaluations) and test NLL against the training
    step, one line per λ (the untrained step-0 evaluation is left out)."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), dpi=100)
    try:
        for run in runs:
            curve = run["curve"][1:]
            label = f"λ = {run['lambda']:g}" + (" (plain)" if run["lambda"] == 0 else "")
            for ax, (key, _) in zip(axes.flat, PANELS):
                ax.plot([r["step"] for r in curve], [r[key] for r in curve], marker=".",
                        label=label)
        for ax, (_, name) in zip(axes.flat, PANELS):
            ax.set_xlabel("training step")
            ax.set_title(name, fontsize=9)
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def main(argv=None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="8gaussians")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.01, 0.05, 0.1])
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64, 64])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-tol", type=float, default=1e-5)
    parser.add_argument("--eval-tol", type=float, default=1e-5)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--last", type=int, default=4,
                        help="evaluations averaged in the summary table")
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--workers", type=int, default=1,
                        help="λ values trained in parallel processes")
    parser.add_argument("--out", default="results/rnode_nfe")
    args = parser.parse_args(argv)
    if args.lambdas[0] != 0:
        parser.error("--lambdas: the first value must be 0 (the plain FFJORD baseline)")
    print(f"[rnode_nfe] training λ = {', '.join(f'{lam:g}' for lam in args.lambdas)} on "
          f"{args.data} for {args.steps} steps ({args.workers} at a time)", flush=True)
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")
                                 ) as pool:
            runs = list(pool.map(run_lambda, args.lambdas, [args] * len(args.lambdas)))
    else:
        runs = [run_lambda(lam, args) for lam in args.lambdas]
    rows = summary_rows(runs, args.last)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    title = (f"FFJORD on {args.data}, hidden {tuple(args.hidden)}, batch {args.batch_size}, "
             f"train tol {args.train_tol:g}, eval tol {args.eval_tol:g}; mean of the last "
             f"{args.last} evaluations")
    columns = ["lambda", "nll", "nll - plain", "nfe_fwd", "nfe_fwd / plain", "nfe_bwd",
               "nfe_bwd / plain", "nfe_sample", "train_nfe", "train_nfe_backward",
               "train_seconds"]
    out = Path(args.out)
    path = write_results(out, "rnode_nfe", {"settings": settings, "summary": rows,
                                            "runs": runs},
                         {title: markdown_table(rows, columns)})
    plot(runs, out / "rnode_nfe.png", title)
    print(markdown_table(rows, columns))
    print(f"[rnode_nfe] wrote {path}, {path.with_suffix('.md')} and {out / 'rnode_nfe.png'}")
    return {"settings": settings, "summary": rows, "runs": runs}


if __name__ == "__main__":
    main()
