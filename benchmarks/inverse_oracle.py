"""Linear inverse problems on the Gaussian-mixture oracle (issue 20): how close each sampling
method's posterior is to the closed-form one.

Prior: a 4-component Gaussian mixture on 3 x 4 x 4 "images" (48 dims; spatially smooth,
channel-correlated covariances, `image_mixture`) under the VP SDE. Observation
``y = A x0 + sigma_y n`` (sigma_y = 0.05) of one draw x0 of the prior, for four tasks: inpaint
(a mask of the left half of the pixels, all channels), colorize (the ITU-R 601 grayscale
map), superres (2 x 2 average pooling) and a random Gaussian matrix (12 x 48). The posterior
p(x0 | y) is again a mixture (`generative.inverse.mixture_posterior`), with known mean m and
covariance C. Methods, each drawing ``n`` samples:

- exact: the closed-form conditional score (``posterior.score_fn(sde)``) with DPM-Solver++(2M)
  at 20 and 50 NFE (solver error only);
- replacement (`generative.inverse.replacement_callback`, operators with ``A A^T = c I``: not
  the random matrix) on DDIM steps with the prior's exact score;
- PiGDM (`generative.inverse.pigdm_log_prob_fn` in `dynamics.ClassifierGuidance`, data_var =
  the prior's mean variance) on DDIM steps with the prior's exact score.

Errors of the sample moments: ``|m_hat - m| / sqrt(tr C)`` (mean, in units of the
posterior's spread) and ``|C_hat - C|_F / |C|_F`` (covariance), beside the noise floor: the
same errors of ``n`` exact posterior samples (mean and max over `FLOOR_DRAWS` draws). A method
at the floor is indistinguishable from the posterior at this ``n``.

Usage: python -m benchmarks.inverse_oracle --out results/inverse_oracle [--quick]
Writes inverse_oracle.json, .md and .png into --out.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from tqdm.auto import tqdm

from benchmarks.common import markdown_table, write_results

NAME = "inverse_oracle"
EVENT = (3, 4, 4)
SIGMA_Y = 0.05
TASKS = ("inpaint", "colorize", "superres", "matrix")
#: method -> (sampler, options): the exact conditional score, replacement, PiGDM
METHODS: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "exact (dpmpp_2m, 20 NFE)": ("dpmpp_2m", {"nfe": 20}),
    "exact (dpmpp_2m, 50 NFE)": ("dpmpp_2m", {"nfe": 50}),
    "replacement (ddim eta=1, 200 steps)": ("ddim", {"n_steps": 200, "eta": 1.0}),
    "pigdm (ddim eta=1, 200 steps)": ("ddim", {"n_steps": 200, "eta": 1.0}),
}
FLOOR_DRAWS = 3
FULL = {"n": 4000}
QUICK = {"n": 300}

Tensor = torch.Tensor
F64 = torch.float64


def image_mixture(seed: int = 0, k: int = 4, event: Sequence[int] = EVENT):
    """A k-component mixture on ``event``-shaped images: random means (smooth in space), and
    covariances ``s^2 (C_channel kron K_space) + 0.01 I`` with a random channel correlation
    and a squared-exponential spatial kernel of random length scale (float64)."""
    from dynamics import GaussianMixture
    g = torch.Generator().manual_seed(seed)
    c, h, w = event
    yy, xx = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64),
                            indexing="ij")
    pos = torch.stack([yy.reshape(-1), xx.reshape(-1)], 1)
    dist2 = (pos[:, None] - pos[None]).square().sum(-1)
    means, covs = [], []
    for _ in range(k):
        ell = 1.0 + 2.0 * float(torch.rand((), generator=g, dtype=F64))
        space = torch.exp(-dist2 / (2 * ell ** 2))
        L = torch.randn(c, c, generator=g, dtype=F64)
        chan = L @ L.T / c + 0.2 * torch.eye(c, dtype=F64)
        scale = 0.2 + 0.3 * float(torch.rand((), generator=g, dtype=F64))
        covs.append(scale * torch.kron(chan, space) + 0.01 * torch.eye(c * h * w, dtype=F64))
        z = torch.randn(c * h * w, generator=g, dtype=F64)
        means.append(torch.linalg.cholesky(torch.kron(chan, space)
                                           + 1e-6 * torch.eye(c * h * w, dtype=F64)) @ z)
    weights = torch.softmax(torch.randn(k, generator=g, dtype=F64) / 2, 0)
    return GaussianMixture(weights, torch.stack(means), torch.stack(covs))


def make_operator(task: str, event: Sequence[int] = EVENT, seed: int = 0):
    """The task's `generative.inverse.LinearOperator` on ``event``-shaped images."""
    from generative.inverse import (avgpool_operator, grayscale_operator, mask_operator,
                                    matrix_operator)
    if task == "inpaint":
        mask = torch.zeros(event, dtype=torch.bool)
        mask[:, :, : event[2] // 2] = True
        return mask_operator(mask)
    if task == "colorize":
        return grayscale_operator()
    if task == "superres":
        return avgpool_operator(2)
    if task == "matrix":
        d = math.prod(event)
        M = torch.randn(d // 4, d, generator=torch.Generator().manual_seed(seed + 5),
                        dtype=F64) / math.sqrt(d)
        return matrix_operator(M, event)
    raise ValueError(f"task: expected one of {', '.join(TASKS)}; got {task!r}")


def moment_errors(x: Tensor, mean: Tensor, cov: Tensor) -> Dict[str, float]:
    """Errors of the sample mean and covariance of ``x`` ``(n, d)`` against ``mean`` ``(d,)``
    and ``cov`` ``(d, d)``: ``|m_hat - m| / sqrt(tr C)`` and ``|C_hat - C|_F / |C|_F``."""
    if x.dim() != 2 or len(x) < 2 or x.shape[1] != len(mean) or cov.shape != (len(mean),) * 2:
        raise ValueError(f"moment_errors: need x (n >= 2, d), mean (d,), cov (d, d); got "
                         f"{tuple(x.shape)}, {tuple(mean.shape)}, {tuple(cov.shape)}")
    x = x.to(F64)
    m = x.mean(0)
    xc = x - m
    c_hat = xc.T @ xc / (len(x) - 1)
    return {"mean_err": float((m - mean).norm() / torch.sqrt(torch.trace(cov))),
            "cov_err": float((c_hat - cov).norm() / cov.norm())}


def noise_floor(post, n: int, draws: int, g: torch.Generator) -> Dict[str, Any]:
    """`moment_errors` of ``draws`` sets of ``n`` exact posterior samples: mean and max."""
    m, c = post.mean(), post.covariance()
    errs = [moment_errors(post.sample(n, g), m, c) for _ in range(draws)]
    return {k: {"mean": sum(e[k] for e in errs) / draws, "max": max(e[k] for e in errs)}
            for k in ("mean_err", "cov_err")}


def run_method(method: str, sde, mix, post, A, y: Tensor, x_init: Tensor, seed: int
               ) -> Optional[Tuple[Tensor, int]]:
    """``(samples (n, d), NFE)`` of ``method`` from ``x_init``; None if it does not apply."""
    from dynamics import ClassifierGuidance
    from generative.inverse import pigdm_log_prob_fn, replacement_callback
    from generative.samplers import sample
    name, options = METHODS[method]
    g = torch.Generator().manual_seed(seed)
    kw: Dict[str, Any] = {"x_init": x_init, "denoise": True, "generator": g, **options}
    if method.startswith("exact"):
        score = post.score_fn(sde)
    elif method.startswith("replacement"):
        if A.gram is None:
            return None
        score = mix.score_fn(sde)
        kw["callback"] = replacement_callback(sde, A, y, torch.Generator().manual_seed(seed + 1))
    else:
        data_var = float(torch.diagonal(mix.covariance()).mean())
        score = ClassifierGuidance(mix.score_fn(sde), pigdm_log_prob_fn(
            sde, mix.score_fn(sde), A, y, SIGMA_Y, data_var=data_var))
    with torch.enable_grad():
        res = sample(name, sde, score, **kw)
    return res.x.detach().reshape(len(x_init), -1), int(res.nfe)


def run_task(task: str, n: int, seed: int, progress: bool) -> Dict[str, Any]:
    """Every method on ``task``: moment errors, the noise floor, NFE, seconds, observation
    residual ``rms(A x - y)`` (the exact posterior's is about sigma_y or below)."""
    from dynamics import VPSDE
    from generative.inverse import mixture_posterior
    sde, mix, A = VPSDE(), image_mixture(seed), make_operator(task, seed=seed)
    g = torch.Generator().manual_seed(seed + 11)
    x0 = mix.sample(1, g).reshape(1, *EVENT)
    y = (A(x0) + SIGMA_Y * torch.randn(A(x0).shape, generator=g, dtype=F64))[0]
    post = mixture_posterior(mix, A, y, SIGMA_Y, event_shape=EVENT)
    m, c = post.mean(), post.covariance()
    x_init = sde.prior_sample((n, *EVENT), generator=g, dtype=F64)

    def residual(x: Tensor) -> float:
        return float((A(x.reshape(len(x), *EVENT)) - y).square().mean().sqrt())
    out: Dict[str, Any] = {
        "task": task, "operator": repr(A), "obs_dim": int(y.numel()), "n": n,
        "posterior_modes": int((post.weights > 1e-3).sum()),
        "posterior_weights": post.weights.tolist(), "prior_to_posterior_mean_err":
            moment_errors(mix.sample(n, g), m, c)["mean_err"],
        "floor": noise_floor(post, n, FLOOR_DRAWS, g),
        "exact_residual": residual(post.sample(n, g)), "methods": {}}
    for method in tqdm(METHODS, desc=task, disable=not progress, leave=False):
        start = time.perf_counter()
        got = run_method(method, sde, mix, post, A, y, x_init, seed + 3)
        if got is None:
            out["methods"][method] = {"status": "not applicable",
                                      "reason": f"replacement needs A A^T = c I; {A!r} is not"}
            continue
        x, nfe = got
        out["methods"][method] = {"status": "ok", "nfe": nfe,
                                  "seconds": time.perf_counter() - start,
                                  "residual": residual(x), **moment_errors(x, m, c)}
    return out


def markdown(payload: Dict[str, Any]) -> Dict[str, str]:
    """One table per error (mean, covariance): tasks as rows, methods and the floor as
    columns."""
    tasks = payload.get("tasks", {})
    if not tasks:
        return {}
    tables = {}
    for key, title in (("mean_err", "mean error |m_hat - m| / sqrt(tr C)"),
                       ("cov_err", "covariance error |C_hat - C|_F / |C|_F")):
        rows = []
        for task, r in tasks.items():
            row = {"task": task, "noise floor (max)": f"{r['floor'][key]['mean']:.3f} "
                                                      f"({r['floor'][key]['max']:.3f})"}
            for method, res in r["methods"].items():
                row[method] = f"{res[key]:.3f}" if res["status"] == "ok" else "n/a"
            rows.append(row)
        cols = ["task", "noise floor (max)"] + list(METHODS)
        tables[f"Inverse problems on the oracle: {title}"] = markdown_table(rows, cols) + (
            f"\n\n{payload['config']['n']} samples per method; floor: the same error of as "
            f"many exact posterior samples (mean and max of {FLOOR_DRAWS} draws); n/a: "
            "replacement needs A A^T = c I.")
    return tables


def plot(payload: Dict[str, Any], path: Path) -> None:
    """Grouped bars per task (mean and covariance error per method), the floor as a line."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    tasks = payload["tasks"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / len(METHODS)
    for ax, key in zip(axes, ("mean_err", "cov_err")):
        for j, method in enumerate(METHODS):
            vals = [tasks[t]["methods"][method].get(key, float("nan")) for t in tasks]
            ax.bar([i + j * width for i in range(len(tasks))], vals, width, label=method)
        for i, t in enumerate(tasks):
            ax.hlines(tasks[t]["floor"][key]["max"], i - width / 2, i + 0.8 - width / 2,
                      color="k", ls="--", lw=1.2, label="noise floor (max)" if i == 0 else None)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(tasks))], list(tasks))
        ax.set_yscale("log")
        ax.set_ylabel({"mean_err": "|m_hat - m| / sqrt(tr C)",
                       "cov_err": "|C_hat - C|_F / |C|_F"}[key])
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"posterior moments vs closed form, mixture on {EVENT} images, "
                 f"{payload['config']['n']} samples")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=f"results/{NAME}")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK['n']} samples")
    parser.add_argument("--n", type=int, default=None, help="samples per method")
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = args.n or (QUICK if args.quick else FULL)["n"]
    state: Dict[str, Any] = {"config": {"n": n, "event": list(EVENT), "sigma_y": SIGMA_Y,
                                        "seed": args.seed, "methods": METHODS,
                                        "floor_draws": FLOOR_DRAWS}, "tasks": {}}
    out, wall = Path(args.out), time.perf_counter()
    save: Callable[[], Path] = lambda: write_results(out, NAME, state, markdown(state))
    for task in args.tasks:
        state["tasks"][task] = run_task(task, n, args.seed, not args.no_progress)
        state["wall_seconds"] = time.perf_counter() - wall
        save()
    plot(state, out / f"{NAME}.png")
    for title, table in markdown(state).items():
        print(f"\n### {title}\n\n{table}")
    print(f"\n[{NAME}] wrote {out / (NAME + '.json')}, .md and .png "
          f"({state['wall_seconds']:.0f} s)")
    return state


if __name__ == "__main__":
    main()
