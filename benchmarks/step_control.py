"""Step control at matched error: f calls against achieved error, for controller settings,
error norms and embedded error estimators, on the Van der Pol batch and the MLP workload.

Each configuration is swept over ``--rtols`` (atol = rtol); every solve's batched f calls
are counted (the same counting wrapper for every library) and its achieved error is the
largest absolute deviation from a tight float64 scipy DOP853 reference (rtol = atol = 1e-12;
its own error is bounded by its distance to a 1e-10 solve, stored as ``reference_check``).
The result is one error-vs-calls curve per configuration, not single points; the markdown
tables give the calls needed to reach a few matched error levels, interpolated linearly in
log-log between the two sweep points that bracket the level (never extrapolated).

Workloads (float64, so the curves show step control rather than float32 rounding):
  vdp  Van der Pol, mu ~ U[0.2, 8] per row, B=256, t in [0, 10] (11 outputs); sdeflow in
       per-sample mode (each row its own steps, as torchode), torchdiffeq joint
  mlp  MLP 16-64-16 (tanh) field, B=1024, t in [0, 5]; sdeflow joint (as torchdiffeq),
       torchode per-sample (its only mode)

Configurations: sdeflow dopri5 with the default integral controller and with PI / PID
gains (diffrax's parametrisation: pcoeff, icoeff, dcoeff; the values diffrax's docs list),
safety factors, factor limits, the max norm instead of RMS, the other mode; the embedded
estimators of tsit5, bosh3, dopri8 and of dopri5 with torchdiffeq's b_hat; torchdiffeq's
and torchode's own controllers for reference. Söderlind's H211b needs the step-size ratio
in the update, which the PID parametrisation has no term for; it is not in the sweep.

Usage: python -m benchmarks.step_control [--out results/step_control] [--rounds 2]
           [--quick] [--workloads vdp mlp] [--rtols ...]
Writes step_control.json, step_control.md and step_control.png into --out.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torchdiffeq
from tqdm import tqdm

from benchmarks.common import (Counted, best_of_rounds, markdown_table, save_figure,
                               write_results)
from benchmarks.matched_error import Table, curves, matched_table, table_rows
from benchmarks.ode_sizes import torchode_solve
from benchmarks.ode_speed import _mlp_field, _vdp_problem, _vdp_reference
from solvers import TABLEAUS, PIDController, SolverError, solve_ode

RTOLS = tuple(10.0 ** (-k / 2) for k in range(6, 19))       # 1e-3 ... 1e-9, half decades
QUICK_RTOLS = (1e-3, 1e-5, 1e-7)
DEFAULT = "dopri5 I (default)"
# "clearly fewer calls": at least 5% fewer at every matched level of every workload, beyond
# the interpolation's wobble (log-log between points half a decade of rtol apart)
CLEAR_RATIO = 0.95
MAX_STEPS = 50_000        # bosh3 at rtol 1e-9 on the Van der Pol batch takes ~15k per row


@dataclasses.dataclass(frozen=True)
class Config:
    """One curve: a library, a method and its step-control settings."""

    name: str
    group: str                      # "controller", "estimator" or "peer" (plot panel)
    library: str = "sdeflow"
    method: str = "dopri5"
    controller: Dict[str, float] = dataclasses.field(default_factory=dict)
    norm: str = "rms"
    other_mode: bool = False        # sdeflow in the workload's other mode


def _cfg(name: str, group: str = "controller", **kw) -> Config:
    return Config(name=name, group=group, **kw)


CONFIGS: Tuple[Config, ...] = (
    _cfg(DEFAULT),
    _cfg("dopri5 PI p0.4 i1", controller={"pcoeff": 0.4, "icoeff": 1.0}),
    _cfg("dopri5 PI p0.4 i0.3", controller={"pcoeff": 0.4, "icoeff": 0.3}),
    _cfg("dopri5 PI p0.3 i0.3", controller={"pcoeff": 0.3, "icoeff": 0.3}),
    _cfg("dopri5 PI p0.2 i0.4", controller={"pcoeff": 0.2, "icoeff": 0.4}),
    _cfg("dopri5 PID p0.2 i0.4 d0.1", controller={"pcoeff": 0.2, "icoeff": 0.4,
                                                  "dcoeff": 0.1}),
    _cfg("dopri5 I safety 0.8", controller={"safety": 0.8}),
    _cfg("dopri5 I safety 0.95", controller={"safety": 0.95}),
    _cfg("dopri5 I factor_max 5", controller={"factor_max": 5.0}),
    _cfg("dopri5 I factor_max 2", controller={"factor_max": 2.0}),
    _cfg("dopri5 I factor_min 0.1", controller={"factor_min": 0.1}),
    _cfg("dopri5 I max norm", norm="max"),
    _cfg("dopri5 I other mode", other_mode=True),
    _cfg("dopri5 (torchdiffeq's b_hat)", "estimator", method="dopri5_td_bhat"),
    _cfg("tsit5", "estimator", method="tsit5"),
    _cfg("bosh3", "estimator", method="bosh3"),
    _cfg("dopri8", "estimator", method="dopri8"),
    _cfg("torchdiffeq dopri5", "peer", library="torchdiffeq"),
    _cfg("torchdiffeq bosh3", "peer", library="torchdiffeq", method="bosh3"),
    _cfg("torchdiffeq dopri8", "peer", library="torchdiffeq", method="dopri8"),
    _cfg("torchode dopri5 I", "peer", library="torchode"),
    _cfg("torchode dopri5 PI p0.4 i0.3", "peer", library="torchode",
         controller={"pcoeff": 0.4, "icoeff": 0.3, "dcoeff": 0.0}),
    _cfg("torchode tsit5 I", "peer", library="torchode", method="tsit5"),
)


def td_bhat_dopri5():
    """sdeflow's dopri5 with torchdiffeq's embedded error weights (read from torchdiffeq)
    in place of Hairer's: the same steps, another error estimate."""
    from torchdiffeq._impl.dopri5 import _DORMAND_PRINCE_SHAMPINE_TABLEAU as td
    return dataclasses.replace(TABLEAUS["dopri5"], name="dopri5_td_bhat",
                               b_err=tuple(float(x) for x in td.c_error))


def error_norm(name: str, per_sample: bool) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """``solve_ode``'s ``error_norm`` for ``name``: None (its RMS norm) or the max norm over
    each row's flattened scaled error (per sample) or over the whole state (joint)."""
    if name == "rms":
        return None
    if per_sample:
        return lambda x: x.abs().amax(dim=-1)
    return lambda x: x.abs().amax()


# --------------------------------------------------------------------------- workloads

@dataclasses.dataclass
class Workload:
    """A problem, its tight reference and sdeflow's mode on it."""

    name: str
    f: Counted
    y0: torch.Tensor
    t: torch.Tensor
    ref: torch.Tensor               # (T, B, ...) float64
    per_sample: bool
    reference_check: float          # max |ref(1e-12) - ref(1e-10)|
    description: str


def vdp_workload(batch: int) -> Workload:
    vdp, y0, mu = _vdp_problem(batch)
    t = torch.linspace(0, 10, 11, dtype=torch.float64)
    ref = _vdp_reference(mu, y0, t)
    check = float((ref - _vdp_reference(mu, y0, t, tol=1e-10)).abs().max())
    return Workload("vdp", Counted(vdp), y0, t, ref, True, check,
                    f"Van der Pol, mu ~ U[0.2, 8], B={batch}, t in [0, 10], 11 outputs; "
                    "sdeflow per-sample")


def mlp_reference(field: torch.nn.Module, y0: torch.Tensor, t: torch.Tensor,
                  tol: float = 1e-12) -> torch.Tensor:
    """scipy DOP853 on the flattened batch (float64), outputs at ``t``: (T, B, d)."""
    from scipy.integrate import solve_ivp
    shape = y0.shape

    def rhs(s, z):
        with torch.no_grad():
            return field(s, torch.from_numpy(z).view(shape)).reshape(-1).numpy()
    sol = solve_ivp(rhs, (float(t[0]), float(t[-1])), y0.reshape(-1).numpy(), method="DOP853",
                    rtol=tol, atol=tol, t_eval=t.tolist())
    return torch.from_numpy(np.ascontiguousarray(sol.y.T)).view(len(t), *shape)


def mlp_workload(batch: int) -> Workload:
    field = _mlp_field().double()
    y0 = torch.randn(batch, 16, generator=torch.Generator().manual_seed(1),
                     dtype=torch.float64)
    t = torch.tensor([0.0, 5.0], dtype=torch.float64)
    ref = mlp_reference(field, y0, t)
    check = float((ref - mlp_reference(field, y0, t, tol=1e-10)).abs().max())
    return Workload("mlp", Counted(field), y0, t, ref, False, check,
                    f"MLP 16-64-16 tanh, B={batch}, t in [0, 5]; sdeflow joint")


# --------------------------------------------------------------------------- one solve

def make_run(cfg: Config, w: Workload, rtol: float) -> Callable[[], Tuple[torch.Tensor, float]]:
    """A solve of ``w`` at ``rtol`` (= atol) with ``cfg``; returns (ys (T, B, ...), mean
    f evaluations per row)."""
    f, y0, t = w.f, w.y0, w.t
    if cfg.library == "torchdiffeq":
        def run():
            ys = torchdiffeq.odeint(f, y0, t, rtol=rtol, atol=rtol, method=cfg.method)
            return ys, float("nan")         # joint: per row = batched calls (set by caller)
    elif cfg.library == "torchode":
        ctrl = "pid" if cfg.controller else "integral"

        def run():
            sol = torchode_solve(f, y0, t, rtol, rtol, method=cfg.method, controller=ctrl,
                                 **cfg.controller)
            return sol.ys.transpose(0, 1), float(sol.stats["n_f_evals"].double().mean())
    else:
        method = td_bhat_dopri5() if cfg.method == "dopri5_td_bhat" else cfg.method
        per_sample = w.per_sample != cfg.other_mode

        def run():
            sol = solve_ode(f, y0, t, method=method, rtol=rtol, atol=rtol,
                            per_sample=per_sample, controller=PIDController(**cfg.controller),
                            error_norm=error_norm(cfg.norm, per_sample), max_steps=MAX_STEPS)
            return sol.ys, float(sol.stats["nfe"].double().mean())
    return run


def sweep_point(cfgs: Sequence[Config], w: Workload, rtol: float, rounds: int
                ) -> List[Dict[str, object]]:
    """Every configuration at one rtol: calls and error from a first solve, wall time best
    of ``rounds`` with the configurations interleaved per round."""
    runs = [(c.name, make_run(c, w, rtol)) for c in cfgs]
    points, ok = [], []
    with torch.no_grad():
        for name, run in runs:
            w.f.calls = 0
            try:
                ys, per_row = run()
            except SolverError as exc:      # e.g. max_steps: recorded, left out of curves
                points.append({"config": name, "rtol": rtol, "f_calls": w.f.calls,
                               "mean_nfe_per_row": math.nan, "max_err": math.nan,
                               "rms_err": math.nan, "status": f"failed: {exc}"})
                continue
            calls = w.f.calls
            err = (ys - w.ref).abs()
            points.append({"config": name, "rtol": rtol, "f_calls": calls,
                           "mean_nfe_per_row": calls if math.isnan(per_row) else per_row,
                           "max_err": float(err.max()),
                           "rms_err": float(err.square().mean().sqrt()), "status": "ok"})
            ok.append((name, run))
        timing = best_of_rounds(ok, rounds) if rounds and ok else {}
    for p in points:
        p["wall_ms"] = timing[p["config"]]["best"] * 1e3 if p["config"] in timing else None
    return points


# --------------------------------------------------------------------------- analysis

def compare_to_default(tables: Dict[str, Table]) -> List[Dict[str, object]]:
    """Per sdeflow configuration, its calls over the default's at every matched level of
    every workload (an upper bound where its cheapest point already beats the level).
    ``max_ratio`` is None when some level's ratio is unknown (not reached, or only bounded
    above by more than the default's calls); ``fewer_everywhere``: all ratios below 1;
    ``clearly_fewer``: all at most `CLEAR_RATIO`."""
    ran = {name for table in tables.values() for name in table}
    names = [c.name for c in CONFIGS
             if c.library == "sdeflow" and c.name != DEFAULT and c.name in ran]
    out = []
    for name in names:
        ratios, missing = {}, 0
        for wname, table in tables.items():
            if name not in table:
                continue
            for lv, base in table[DEFAULT].items():
                mine = table[name].get(lv)
                if base is None or base.bound:
                    continue
                # an upper bound on the calls decides only when it is below the default's
                if mine is None or (mine.bound and mine.calls >= base.calls):
                    missing += 1
                    continue
                ratios[f"{wname} {lv:.0e}"] = mine.calls / base.calls
        worst = max(ratios.values()) if ratios and not missing else None
        out.append({"config": name, "ratios": ratios, "missing_levels": missing,
                    "max_ratio": worst, "fewer_everywhere": worst is not None and worst < 1.0,
                    "clearly_fewer": worst is not None and worst <= CLEAR_RATIO})
    return out


def plot_curves(results: Dict[str, List[Dict[str, object]]], path: Path) -> Path:
    """Log-log max error against batched f calls: a column per workload, a row for the
    controller settings and one for the estimators and peers (the default in both)."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    groups = (("controller",), ("estimator", "peer"))
    fig, axes = plt.subplots(2, len(results), figsize=(6.5 * len(results), 9), squeeze=False)
    style = {"controller": "-", "estimator": "--", "peer": ":"}
    colors = dict(zip([c.name for c in CONFIGS], plt.get_cmap("tab20").colors * 2))
    for j, (wname, points) in enumerate(results.items()):
        by_cfg = curves(points, "f_calls")
        for i, group in enumerate(groups):
            ax = axes[i][j]
            for cfg in CONFIGS:
                if cfg.name not in by_cfg or (cfg.group not in group and cfg.name != DEFAULT):
                    continue
                pts = sorted(pt for pt in by_cfg[cfg.name] if math.isfinite(pt[1]))
                if not pts:
                    continue
                default = cfg.name == DEFAULT
                ax.plot(*zip(*pts), style[cfg.group], marker=".", label=cfg.name,
                        color="black" if default else colors[cfg.name],
                        linewidth=2.5 if default else 1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("batched f calls")
            ax.set_ylabel("max abs error vs float64 reference")
            ax.set_title(f"{wname}: {' and '.join(group)} settings")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6.5)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- main

WORKLOADS = {"vdp": (vdp_workload, 256, 32), "mlp": (mlp_workload, 1024, 64)}


def analyse(wname: str, points: List[Dict[str, object]], per_sample: bool,
            matched: Dict[str, object], md: Dict[str, str]) -> Table:
    """Fill ``matched`` (JSON) and ``md`` (markdown tables) with the calls at matched error
    of one workload (batched calls; per-sample workloads also mean per-row evaluations);
    returns the batched-calls table."""
    metrics = ("f_calls", "mean_nfe_per_row") if per_sample else ("f_calls",)
    tables = {}
    for metric in metrics:
        levels, tables[metric] = matched_table(points, metric, DEFAULT)
        matched[f"{wname} {metric}"] = {"levels": levels, "calls": {
            n: {f"{lv:.0e}": r and {"calls": r.calls, "upper_bound": r.bound}
                for lv, r in at.items()} for n, at in tables[metric].items()}}
        rows, cols = table_rows(levels, tables[metric], DEFAULT)
        md[f"{wname}: {metric} to reach a matched max error (interpolated in log-log along "
           "each rtol sweep; '<=': the cheapest point already beats the level; '-': not "
           "reached)"] = markdown_table(rows, cols)
    return tables["f_calls"]


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/step_control")
    p.add_argument("--rounds", type=int, default=1,
                   help="timing rounds per point, configurations interleaved, best kept "
                        "(0: calls and errors only)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: small batches, rtols {QUICK_RTOLS}")
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--configs", nargs="+", default=None, metavar="NAME",
                   help="a subset of the configurations (the default is always run)")
    p.add_argument("--rtols", type=float, nargs="+", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.rounds < 0:
        p.error(f"--rounds must be >= 0; got {args.rounds}")
    known = {c.name: c for c in CONFIGS}
    unknown = sorted(set(args.configs or ()) - set(known))
    if unknown:
        p.error(f"--configs: unknown {unknown}; choose from {sorted(known)}")
    cfgs = [c for c in CONFIGS if args.configs is None or c.name in args.configs
            or c.name == DEFAULT]
    rtols = args.rtols or (QUICK_RTOLS if args.quick else RTOLS)
    if any(not 0 < r < 1 for r in rtols):
        p.error(f"--rtols must lie in (0, 1); got {rtols}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results, workloads, tables, matched, md = {}, {}, {}, {}, {}
    bar = tqdm(total=len(args.workloads) * len(rtols), desc="step_control",
               disable=args.no_progress)
    for wname in args.workloads:
        build, batch, quick_batch = WORKLOADS[wname]
        w = build(quick_batch if args.quick else batch)
        workloads[wname] = {"description": w.description, "reference_check": w.reference_check,
                            "batch": w.y0.shape[0]}
        points = []
        for rtol in rtols:
            points += sweep_point(cfgs, w, rtol, args.rounds)
            bar.update()
        results[wname] = points
        tables[wname] = analyse(wname, points, w.per_sample, matched, md)
    bar.close()
    verdict = compare_to_default(tables)
    better = [v["config"] for v in verdict if v["fewer_everywhere"]]
    md["sdeflow settings vs the default (batched f calls, every workload and level)"] = \
        markdown_table([{**v, "max_ratio": v["max_ratio"] or "-"} for v in verdict],
                       ["config", "max_ratio", "missing_levels", "fewer_everywhere",
                        "clearly_fewer"])
    failed = [{"workload": wn, **{k: pt[k] for k in ("config", "rtol", "f_calls", "status")}}
              for wn, pts in results.items() for pt in pts if pt["status"] != "ok"]
    if failed:
        md["failed solves (left out of the curves)"] = markdown_table(
            failed, ["workload", "config", "rtol", "f_calls", "status"])
    out = Path(args.out)
    png = plot_curves(results, out / "step_control.png")
    payload = {"config": {"rtols": list(rtols), "rounds": args.rounds, "quick": args.quick,
                          "configs": [dataclasses.asdict(c) for c in cfgs],
                          "max_steps": MAX_STEPS},
               "workloads": workloads, "points": results, "matched": matched,
               "vs_default": verdict, "fewer_calls_everywhere": better, "failed": failed,
               "png": str(png),
               "wall_seconds": time.perf_counter() - start}
    path = write_results(out, "step_control", payload, md)
    for title, table in md.items():
        print(f"### {title}\n\n{table}\n")
    print(f"[step_control] fewer calls than the default at every matched level: "
          f"{better or 'none'}\n[step_control] wrote {path}, {path.with_suffix('.md')}, {png}")
    return payload


if __name__ == "__main__":
    main()
