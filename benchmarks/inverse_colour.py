"""Colorization and super-resolution of colour patches with the cached colour score model
(issue 20): restored-vs-original PSNR of replacement and PiGDM against the measurement
baseline.

The model is `generative.colour_model.load_colour_model` (a small VP MLP score model on the
8x8 colour patches of scikit-image's photographs, trained into the user cache the first time:
about 2 minutes on an idle core). For ``n`` patches of the test split (the held-out
photograph, ``chelsea``; evenly spaced through it) and each task (colorize; superres x2 and
x4, block means), method (``replace``, ``pigdm``) and sampler (``em``, ``ddim``), ``k``
restorations per patch from independent sampler draws (same measurement, ``sigma_y`` 0 by
default), through `generative.restore` as ``sdeflow inpaint --task`` runs them. Reported per
row (PSNR in dB with peak 2, images in [-1, 1], per patch then averaged):

- ``psnr_sample``: one restoration (averaged over the ``k n`` restorations);
- ``psnr_mean_of_k``: the mean of the ``k`` restorations of a patch (an estimate of the
  posterior mean, which a posterior sample trails by up to 3 dB: its expected squared error
  is twice the posterior variance);
- ``psnr_baseline``: the measurement shown as an image (the gray image on three channels, the
  block means upsampled by nearest neighbour), the middle row of the CLI's PNG;

with the MSEs, the measurement residual and wall times.

Usage: python -m benchmarks.inverse_colour [--quick] [--out results/inverse_colour]
Writes inverse_colour.json, inverse_colour.md and inverse_colour.png (labelled rows: the
originals, then per task the measurement and each method's first restoration with the first
sampler).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch
from tqdm.auto import tqdm

from benchmarks.common import markdown_table, write_results

NAME = "inverse_colour"
Tensor = torch.Tensor

FULL: Dict[str, Any] = {"n": 256, "k": 8, "samplers": ["em", "ddim"], "nfe": 100,
                        "sigma_y": 0.0,
                        "tasks": [["colorize", 2], ["superres", 2], ["superres", 4]],
                        "methods": ["replace", "pigdm"], "shown": 8}
QUICK: Dict[str, Any] = {**FULL, "n": 16, "k": 2, "nfe": 20}
COLUMNS = ["task", "method", "sampler", "psnr_sample", "psnr_mean_of_k", "psnr_baseline",
           "mse_sample", "mse_baseline", "residual_rms", "nfe", "seconds"]


def _task_name(task: str, factor: int) -> str:
    return task if task == "colorize" else f"superres x{factor}"


def _restore_rows(model: Any, x: Tensor, measured: Any, method: str, sampler: str,
                  cfg: Dict[str, Any], g: torch.Generator) -> Dict[str, Any]:
    """``k`` restorations of each patch of ``x`` (from ``measured``); their metrics."""
    from generative.restore import quality, restore
    k = cfg["k"]
    repeated = dataclasses.replace(measured, y=measured.y.repeat_interleave(k, 0),
                                   shown=measured.shown.repeat_interleave(k, 0))
    start = time.perf_counter()
    with torch.no_grad():
        out, nfe = restore(model.sde, model.score_fn(), repeated, method=method,
                           sampler=sampler, nfe=cfg["nfe"], denoise=True, generator=g)
    seconds = time.perf_counter() - start
    out = out.clamp(-1, 1)                           # 256-level data in [-1, 1], as the CLI
    one = quality(out, x.repeat_interleave(k, 0))
    mean = quality(out.reshape(len(x), k, *x.shape[1:]).mean(1), x)
    base = quality(measured.shown, x)
    return {"psnr_sample": one["psnr_mean"], "psnr_mean_of_k": mean["psnr_mean"],
            "psnr_baseline": base["psnr_mean"], "mse_sample": one["mse_mean"],
            "mse_baseline": base["mse_mean"],
            "residual_rms": float(repeated.residual(out).mean()),
            "nfe": float(torch.as_tensor(nfe, dtype=torch.float64).mean()),
            "seconds": seconds, "n_restorations": len(out), "first": out[::k]}


def run(cfg: Dict[str, Any], seed: int, progress: bool) -> Dict[str, Any]:
    """Every (task, method, sampler) restoration of ``cfg['n']`` test patches: the rows and
    the PNG's labelled rows (the first sampler's restorations)."""
    from generative.colour_model import load_colour_model
    from generative.data import load_data
    from generative.restore import measure
    loaded, info = load_colour_model(progress=progress, log=tqdm.write)
    model = loaded.model.eval()
    test = load_data(loaded.spec.data).test
    x = test[torch.linspace(0, len(test) - 1, cfg["n"]).round().long()]
    shown = cfg["shown"]
    rows: List[Dict[str, Any]] = []
    figure = [("original", x[:shown])]
    g = torch.Generator().manual_seed(seed)
    jobs = [(t, f, m, s) for t, f in cfg["tasks"] for m in cfg["methods"]
            for s in cfg["samplers"]]
    measured = {}
    for task, factor, method, sampler in tqdm(jobs, desc=NAME, disable=not progress):
        name = _task_name(task, factor)
        if name not in measured:
            measured[name] = measure(task, x, factor=factor, sigma_y=cfg["sigma_y"],
                                     generator=g)
            figure.append((f"{name.replace('superres ', '')} measured",
                           measured[name].shown[:shown]))
        row = _restore_rows(model, x, measured[name], method, sampler, cfg, g)
        first = row.pop("first")
        rows.append({"task": name, "method": method, "sampler": sampler, **row})
        if sampler == cfg["samplers"][0]:
            figure.append((f"{name.replace('superres ', '')} {method}", first[:shown]))
    return {"rows": rows, "figure": figure, "model": info,
            "model_meta": loaded.spec.to_meta()}


def main(argv: Sequence[str] = ()) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=f"results/{NAME}")
    p.add_argument("--quick", action="store_true", help="16 patches, 2 draws, 20 NFE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(list(argv))
    from generative.row_figure import save_row_figure
    cfg = QUICK if args.quick else FULL
    start = time.perf_counter()
    result = run(cfg, args.seed, not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = save_row_figure(result["figure"], out / f"{NAME}.png",
                          title=f"{cfg['samplers'][0]}, NFE {cfg['nfe']}: the first of "
                          f"{cfg['k']} restorations")
    payload = {"config": cfg, "seed": args.seed, "quick": args.quick, "rows": result["rows"],
               "model": result["model"], "model_meta": result["model_meta"],
               "seconds": time.perf_counter() - start, "image": str(png)}
    table = markdown_table(result["rows"], COLUMNS)
    path = write_results(out, NAME, payload, {
        f"colour patches ({cfg['n']} test patches x {cfg['k']} draws, NFE {cfg['nfe']}, "
        f"sigma_y {cfg['sigma_y']:g}; PSNR dB, peak 2)": table})
    print(table)
    print(f"[{NAME}] wrote {path}, {path.with_suffix('.md')} and {png}")
    return payload


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
