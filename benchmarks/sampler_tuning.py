"""Choosing a fast sampler's settings for an NFE budget: the search space and the search.

The levers are the ones samplers expose, nothing model-specific: the sampler and its order /
variant / ``lower_order_final`` (DPM-Solver's recommended warm-up and final lower orders), the
time grid (the named `generative.samplers.SCHEDULES`, Karras' rho, or a time-power grid
``t_i = (T^(1/k) + u_i (t_min^(1/k) - T^(1/k)))^k`` with u uniform, given as ``times=``:
DPM-Solver's "time_quadratic" is k = 2), the end time ``t_min`` and whether the last
evaluation is a Tweedie denoising step (it counts as an NFE either way).

`tune` evaluates every candidate at a budget with a caller-given loss on a *tuning* draw and
returns them ranked; the caller then measures the winner on its own (held-out) draw, so the
reported figure is not the minimum of many noisy measurements of the same samples.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch
from tqdm.auto import tqdm

from solvers.errors import InvalidInputError, SolverError

Config = Dict[str, Any]

#: sampler -> the option variants searched
VARIANTS: Dict[str, List[Dict[str, Any]]] = {
    "unipc": [dict(order=o, variant=v, lower_order_final=low) for o in (2, 3)
              for v in ("bh1", "bh2") for low in (True, False)],
    "deis": [dict(order=o, lower_order_final=low) for o in (2, 3) for low in (True, False)],
    "dpmpp_2m": [{}],
    "dpmpp_3m": [{}],
}
#: the grids searched: named schedules (with Karras' rho) and time-power grids
GRIDS: List[Dict[str, Any]] = (
    [{"schedule": s} for s in ("time", "logsnr", "time_quadratic")]
    + [{"schedule": "karras", "rho": r} for r in (5.0, 10.0)]
    + [{"power": k} for k in (2.5, 3.0, 4.0)])
T_MINS = (1e-3, 3e-3, 1e-2)
#: a small space for smoke runs (--quick)
QUICK_SPACE = {"variants": {"unipc": [dict(order=2, variant="bh2", lower_order_final=False)],
                            "dpmpp_2m": [{}]},
               "grids": [{"schedule": "logsnr"}, {"power": 3.0}], "t_mins": (1e-3, 3e-3)}


def power_times(T: float, t_min: float, n_steps: int, power: float) -> torch.Tensor:
    """``n_steps + 1`` decreasing times from T to t_min, uniform in ``t^(1/power)``."""
    if not (power > 0 and 0 < t_min < T and n_steps >= 1):
        raise ValueError(f"power_times: need power > 0, 0 < t_min < T, n_steps >= 1; got "
                         f"power={power!r}, t_min={t_min!r}, T={T!r}, n_steps={n_steps!r}")
    u = torch.linspace(0.0, 1.0, n_steps + 1, dtype=torch.float64)
    ts = (T ** (1 / power) + u * (t_min ** (1 / power) - T ** (1 / power))) ** power
    ts[0], ts[-1] = T, t_min
    return ts


def candidates(space: Optional[Dict[str, Any]] = None) -> Iterator[Config]:
    """Every configuration of the search ``space`` (default: the full one)."""
    space = space or {"variants": VARIANTS, "grids": GRIDS, "t_mins": T_MINS}
    for sampler, variants in space["variants"].items():
        for options in variants:
            for grid in space["grids"]:
                for t_min in space["t_mins"]:
                    for denoise in (True, False):
                        yield {"sampler": sampler, "options": dict(options),
                               "grid": dict(grid), "t_min": t_min, "denoise": denoise}


def sample_kwargs(config: Config, sde: Any, budget: int) -> Dict[str, Any]:
    """The keyword arguments of `generative.samplers.sample` that run ``config`` within the
    NFE ``budget`` (a time-power grid is a given ``times`` grid of the steps that fit)."""
    from generative.samplers import SAMPLERS
    kw = {**config["options"], "denoise": config["denoise"]}
    grid = config["grid"]
    if "power" in grid:
        steps = SAMPLERS[config["sampler"]].cost(config["options"]).steps(
            budget, config["denoise"], config["sampler"])
        kw["times"] = power_times(sde.T, config["t_min"], steps, grid["power"])
    else:
        kw.update(nfe=budget, t_min=config["t_min"], **grid)
    return kw


def label(config: Config) -> str:
    """A short readable name of a configuration."""
    opts = ", ".join(f"{k}={v}" for k, v in config["options"].items())
    g = config["grid"]
    grid = (f"t^(1/{g['power']:g}) uniform" if "power" in g else
            f"karras rho={g['rho']:g}" if g["schedule"] == "karras" else g["schedule"])
    return (f"{config['sampler']}({opts}{', ' if opts else ''}{grid}, t_min={config['t_min']:g}"
            f", {'denoise' if config['denoise'] else 'no denoise'})")


def tune(loss: Callable[[Config, int], float], budget: int,
         space: Optional[Dict[str, Any]] = None, keep: int = 10,
         progress: bool = False) -> Dict[str, Any]:
    """Evaluate ``loss(config, budget)`` for every candidate (a candidate the sampler rejects,
    or that fails numerically, is counted and left out); returns the ranking: ``best``, the
    ``keep`` lowest as ``top`` ``[(loss, config)]``, counts and seconds."""
    start, scored, rejected = time.perf_counter(), [], 0
    pool = list(candidates(space))
    for config in tqdm(pool, desc=f"tune nfe={budget}", disable=not progress, leave=False,
                       dynamic_ncols=True):
        try:
            value = loss(config, budget)
        except (InvalidInputError, SolverError):
            rejected += 1
            continue
        if value == value:                                 # NaN: a broken candidate
            scored.append((value, config))
    scored.sort(key=lambda s: s[0])
    return {"budget": budget, "n_candidates": len(pool), "n_rejected": rejected,
            "seconds": time.perf_counter() - start,
            "best": scored[0][1] if scored else None,
            "top": [{"loss": v, "config": c, "label": label(c)} for v, c in scored[:keep]]}
