"""Running the samplers for `benchmarks.nfe_vs_fid`: the benchmark's sampler set, one run
(sampler name + `generative.samplers.sample` keywords) from a fixed prior draw, the exact
pushforward log-density of a deterministic run, and the sweeps over NFE budgets (the
samplers' defaults, and the tuned configurations of `benchmarks.sampler_tuning`)."""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from tqdm.auto import tqdm

from benchmarks import sampler_tuning
from generative.samplers import SAMPLERS as REGISTRY
from solvers.errors import InvalidInputError, SolverError

Tensor = torch.Tensor
Run = Tuple[str, Dict[str, Any]]          # (sampler name, keyword arguments of `sample`)

#: the benchmark's options of a sampler (besides ``nfe`` and ``denoise=True``)
OPTIONS: Dict[str, Dict[str, Any]] = {"ddim": {"eta": 0.0}, "pc": {"snr": 0.16, "n_corrector": 1},
                                      "ode": {"method": "heun"}}
#: every registered sampler, in the registry's order
SAMPLERS: Dict[str, Dict[str, Any]] = {name: OPTIONS.get(name, {}) for name in REGISTRY}
#: the samplers that draw no noise with these options (a map x_T -> x_0: exact KL)
DETERMINISTIC = ("ddim", "dpmpp_2m", "dpmpp_2s", "edm_heun", "ode", "dpmpp_3m", "dpm_2", "lms",
                 "dpm_solver_3", "dpm_adaptive", "unipc", "deis")
#: every run's noise comes from a generator seeded with this (stochastic rows reproducible)
NOISE_SEED = 12345


def default_run(name: str, budget: Optional[int], **extra: Any) -> Run:
    """Sampler ``name`` with its benchmark options, an NFE budget and the final denoise."""
    return name, {**SAMPLERS.get(name, {}), "nfe": budget, "denoise": True, **extra}


def run_sampler(run: Run, sde, score_fn, x_init: Tensor) -> Tuple[Tensor, float, float]:
    """``run`` from the prior draw ``x_init`` (noise from a generator seeded `NOISE_SEED`);
    returns ``(samples, mean NFE used, seconds)``."""
    from generative.samplers import sample
    kw = {"generator": torch.Generator(x_init.device).manual_seed(NOISE_SEED), **run[1]}
    start = time.perf_counter()
    x, used = sample(run[0], sde, score_fn, x_init=x_init, **kw)
    return x, float(torch.as_tensor(used, dtype=torch.float64).mean()), \
        time.perf_counter() - start


def pushforward_log_density(run: Run, sde, score_fn, x_init: Tensor
                            ) -> Tuple[Tensor, Tensor, float, float]:
    """Samples x_0 of a deterministic ``run`` from ``x_init`` and their log-density under the
    sampler's own pushforward of the prior, ``log N(x_T) - log|det dx_0/dx_T|`` (exact
    Jacobian by autograd, one backward pass per output dimension); with the NFE and seconds."""
    xT = x_init.detach().clone().requires_grad_(True)
    start = time.perf_counter()
    with torch.enable_grad():
        x0, used, _ = run_sampler(run, sde, score_fn, xT)
        flat = x0.reshape(len(x0), -1)
        d = flat.shape[1]
        rows = [torch.autograd.grad(flat[:, i].sum(), xT, retain_graph=i < d - 1)[0]
                .reshape(len(x0), -1) for i in range(d)]
    seconds = time.perf_counter() - start
    logdet = torch.linalg.slogdet(torch.stack(rows, 1))[1]
    return x0.detach(), sde.prior_logp(xT.detach()) - logdet, used, seconds


def _row(budget: int, measure: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """``measure()`` as a row; a budget the sampler rejects (`InvalidInputError`) is skipped
    with the reason, a numerical failure (`SolverError`) failed."""
    try:
        row = {"nfe_budget": budget, "status": "ok", **measure()}
        row["nfe_differs"] = abs(row["nfe_used"] - budget) > 0.5
    except InvalidInputError as err:
        row = {"nfe_budget": budget, "status": "skipped", "reason": str(err)}
    except SolverError as err:
        row = {"nfe_budget": budget, "status": "failed",
               "reason": f"{type(err).__name__}: {err}"}
    return row


def sweep(samplers: Dict[str, Dict[str, Any]], budgets: Sequence[int],
          measure: Callable[[Run], Dict[str, Any]], done: Callable[[str], None], desc: str,
          progress: bool) -> Dict[str, Dict[str, Any]]:
    """``measure(default_run(name, budget))`` for every sampler and budget (`_row`);
    ``done(name)`` runs after each sampler (to save)."""
    results: Dict[str, Dict[str, Any]] = {}
    bar = tqdm(total=len(samplers) * len(budgets), desc=desc, disable=not progress,
               dynamic_ncols=True, leave=False)
    for name, options in samplers.items():
        rows: List[Dict[str, Any]] = []
        results[name] = {"options": {**options, "denoise": True}, "rows": rows}
        for budget in budgets:
            bar.set_postfix_str(f"{name} nfe={budget}")
            rows.append(_row(budget, lambda: measure(default_run(name, budget))))
            bar.update()
        done(name)
    bar.close()
    return results


def tuned_rows(loss: Callable[[Run], float], measure: Callable[[Run], Dict[str, Any]], sde,
               budgets: Sequence[int], space: Any, meta: Dict[str, Any], save: Callable[[], None],
               progress: bool) -> Dict[str, Any]:
    """Per budget: rank the search space by ``loss`` (on the tuning draw), then ``measure``
    the winner (on the benchmark's draw). Saves after each budget."""
    out: Dict[str, Any] = {**meta, "rows": [], "search": {},
                           "n_candidates": len(list(sampler_tuning.candidates(space)))}

    def run_of(config: Dict[str, Any], budget: int) -> Run:
        return config["sampler"], sampler_tuning.sample_kwargs(config, sde, budget)
    for budget in budgets:
        ranking = sampler_tuning.tune(lambda c, b: loss(run_of(c, b)), budget, space,
                                      progress=progress)
        out["search"][str(budget)] = ranking
        best = ranking["best"]
        if best is None:
            out["rows"].append({"nfe_budget": budget, "status": "skipped",
                                "reason": "no candidate ran at this budget"})
        else:
            row = _row(budget, lambda: measure(run_of(best, budget)))
            row.update(config=best, label=sampler_tuning.label(best),
                       tuning_loss=ranking["top"][0]["loss"])
            out["rows"].append(row)
        save()
    return out


def all_rows(suite: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """A suite's sampler rows with each tuned row as its own entry (for the targets)."""
    rows = dict(suite.get("samplers", {}))
    for r in suite.get("tuned", {}).get("rows", []):
        if r["status"] == "ok":
            rows[f"tuned: {r['label']}"] = {"rows": [r]}
    return rows
