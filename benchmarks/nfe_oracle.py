"""The oracle suite of `benchmarks.nfe_vs_fid`: a 2-D Gaussian mixture with its exact score
under the VP SDE, so every difference is solver error. Per sampler and budget the sliced
Wasserstein distance to as many exact samples (beside the exact-vs-exact noise floor) and, for
the deterministic samplers, the exact KL(q || p) of the sampler's pushforward density; the
tuned rows are chosen by KL on a separate tuning draw; the library's likelihood is checked
against the exact log-density."""
from __future__ import annotations

import time
from typing import Any, Callable, Dict

import torch

from benchmarks.nfe_runs import (DETERMINISTIC, Run, all_rows, default_run,
                                 pushforward_log_density, run_sampler, sweep, tuned_rows)

Tensor = torch.Tensor


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


def kl_stats(log_q: Tensor, log_p: Tensor) -> Dict[str, Any]:
    """Over the samples of q, with ``d = log q - log p``: the KL estimate ``mean(d)``, its
    standard error, ``mean |d|`` and ``mean(d^2) / 2``, the second-order KL (``E_q e^-d = 1``
    gives ``KL = E d^2 / 2 + O(d^3)``): positive, with far less sampling noise than ``mean(d)``
    when q is close to p (the tuning loss). Non-finite rows (a singular Jacobian) are
    counted and left out."""
    diff = log_q - log_p
    ok = torch.isfinite(diff)
    d = diff[ok]
    se = float(d.std() / len(d) ** 0.5) if len(d) > 1 else float("nan")
    return {"kl_q_p": float(d.mean()), "kl_se": se, "mean_abs_logp_err": float(d.abs().mean()),
            "kl_second_order": float(d.square().mean() / 2), "nonfinite": int((~ok).sum())}


def likelihood_check(sde, mix, score, cfg: Dict[str, Any], g: torch.Generator
                     ) -> Dict[str, Any]:
    """The library's likelihood on exact mixture samples vs the exact log-densities: with the
    exact log p_T at the end of the flow (solver error only) and with the default N(0, I)
    prior (what `log_likelihood` reports; adds the prior mismatch p_T != N(0, I))."""
    from generative.likelihood import log_likelihood
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
        check[key] = {"nfe": nfe, "seconds": time.perf_counter() - start,
                      "max_abs_err_vs_p_eps": float(err_eps.abs().max()),
                      "mean_abs_err_vs_p_eps": float(err_eps.abs().mean()),
                      "mean_err_vs_p_0": float(err_0.mean()),
                      "mean_abs_err_vs_p_0": float(err_0.abs().mean())}
    return check


def run_oracle(cfg: Dict[str, Any], samplers: Dict[str, Dict[str, Any]], seed: int,
               progress: bool, save: Callable[[], None], state: Dict[str, Any],
               kl_target: Callable[[Dict[str, Dict[str, Any]]], Dict[str, Any]]) -> None:
    """Run the suite into ``state['oracle']`` (``save()`` after each step; ``kl_target`` the
    verdict of the rows)."""
    from dynamics import VPSDE
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

    def measure(run: Run, x0: Tensor = x_init) -> Dict[str, Any]:
        if run[0] in DETERMINISTIC:
            x, log_q, used, sec = pushforward_log_density(run, sde, score, x0)
            return {"nfe_used": used, "sw": sw(x), **kl_stats(log_q, mix.log_prob(x)),
                    "seconds": sec}
        x, used, sec = run_sampler(run, sde, score, x0)
        return {"nfe_used": used, "sw": sw(x), "seconds": sec}

    oracle["references"]["ode_dopri5"] = {
        "options": cfg["ref_ode"], **measure(("ode", {**cfg["ref_ode"], "denoise": True}))}
    pc = default_run("pc", None, n_steps=cfg["ref_pc_steps"])
    oracle["references"]["pc_steps"] = {"options": pc[1], **measure(pc)}
    oracle["likelihood_check"] = likelihood_check(sde, mix, score, cfg, g)
    save()
    oracle["samplers"] = sweep(samplers, cfg["oracle_budgets"], measure, lambda name: save(),
                               "oracle", progress)
    if cfg["tune_budgets"]:
        tune_seed = seed + 1000
        x_tune = sde.prior_sample((cfg["tune_n"], mix.dim), dtype=torch.float64,
                                  generator=torch.Generator().manual_seed(tune_seed))

        def loss(run: Run) -> float:
            x, log_q, _, _ = pushforward_log_density(run, sde, score, x_tune)
            return kl_stats(log_q, mix.log_prob(x))["kl_second_order"]
        budgets = [b for b in cfg["tune_budgets"] if b in cfg["oracle_budgets"]]
        oracle["tuned"] = tuned_rows(loss, measure, sde, budgets, cfg["tune_space"],
                                     {"n_tune": cfg["tune_n"], "tune_seed": tune_seed,
                                      "loss": "second-order KL, mean (log q - log p)^2 / 2, "
                                              "on the tuning draw"}, save, progress)
    oracle["kl_target"] = kl_target(all_rows(oracle))
