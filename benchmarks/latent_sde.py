"""Latent SDE on stochastic Lorenz data (Li et al. 2020; the model of torchsde's example):
a GRU encoder gives q(z0) and a context for the posterior drift, a prior drift and
per-dimension diagonal diffusions define the SDE, and the ELBO is the Gaussian
log-likelihood of the decoded path minus KL(q(z0) | p(z0)) and the path KL from
``logqp=True``, differentiated with the stochastic adjoint. The identical model (same
initial weights, data and batches) is trained with `solvers.compat.torchsde` and with
torchsde in the same run, each with its default adjoint method (torchsde: Itô Milstein;
sdeflow: Stratonovich midpoint on the forward grid); wall time per iteration is the median
over iterations.

    python -m benchmarks.latent_sde --out results/latent_sde [--iters 30]

Writes latent_sde.json (ELBO curves, timings) and latent_sde.png (data, posterior and prior
samples from the model trained with sdeflow).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List

import torch
from torch import distributions, nn

import solvers.compat.torchsde as sdeflow_torchsde
from benchmarks.common import markdown_table, write_results
from solvers import sdeint


class StochasticLorenz:
    """dx = σ(y - x) dt + a dW1, dy = (x(ρ - z) - y) dt + a dW2, dz = (xy - βz) dt + a dW3."""

    noise_type, sde_type = "diagonal", "ito"

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x1, x2, x3 = y.unbind(-1)
        return torch.stack([10 * (x2 - x1), x1 * (28 - x3) - x2, x1 * x2 - 8 / 3 * x3], -1)

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.full_like(y, 0.15 * 8)


def lorenz_data(n: int, ts: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """(T, n, 3) normalised stochastic Lorenz paths from random initial states."""
    gen = torch.Generator().manual_seed(seed)
    y0 = torch.randn(n, 3, generator=gen) * 5 + torch.tensor([0.0, 0.0, 25.0])
    ys = sdeint(StochasticLorenz(), y0, ts * 0.5, dt=1e-3, method="euler",
                options={"seed": seed})
    return (ys - ys.mean((0, 1))) / ys.std((0, 1))


class LatentSDE(nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, data: int = 3, latent: int = 4, context: int = 16, hidden: int = 32):
        super().__init__()
        self.encoder = nn.GRU(data, hidden)
        self.to_context = nn.Linear(hidden, context)
        self.qz0 = nn.Linear(context, 2 * latent)
        self.f_net = nn.Sequential(nn.Linear(latent + context, hidden), nn.Softplus(),
                                   nn.Linear(hidden, latent))
        self.h_net = nn.Sequential(nn.Linear(latent, hidden), nn.Softplus(),
                                   nn.Linear(hidden, latent))
        self.g_nets = nn.ModuleList(nn.Sequential(nn.Linear(1, hidden), nn.Softplus(),
                                                  nn.Linear(hidden, 1), nn.Sigmoid())
                                    for _ in range(latent))
        self.decoder = nn.Linear(latent, data)
        self.pz0_mean = nn.Parameter(torch.zeros(1, latent))
        self.pz0_logstd = nn.Parameter(torch.zeros(1, latent))
        self._ctx: Any = None

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ts, ctx = self._ctx
        i = min(int(torch.searchsorted(ts, t.detach(), right=True)), len(ts) - 1)
        return self.f_net(torch.cat([y, ctx[i]], dim=1))

    def h(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.h_net(y)

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([net(yi) for net, yi in zip(self.g_nets, y.split(1, dim=1))], dim=1)

    def elbo(self, lib: Any, xs: torch.Tensor, ts: torch.Tensor, dt: float) -> torch.Tensor:
        ctx = self.to_context(self.encoder(xs.flip(0))[0].flip(0))
        self._ctx = (ts, ctx)
        mean, logstd = self.qz0(ctx[0]).chunk(2, dim=1)
        z0 = mean + logstd.exp() * torch.randn_like(mean)
        # the context is an input of the drift: an adjoint parameter (as in torchsde's
        # example), so its gradient reaches the encoder through ordinary autograd
        params = (ctx, *self.f_net.parameters(), *self.g_nets.parameters(),
                  *self.h_net.parameters())
        zs, log_ratio = lib.sdeint_adjoint(self, z0, ts, dt=dt, logqp=True, method="euler",
                                           adjoint_params=params)
        log_lik = distributions.Normal(self.decoder(zs), 0.1).log_prob(xs).sum((0, 2))
        qz0 = distributions.Normal(mean, logstd.exp())
        pz0 = distributions.Normal(self.pz0_mean, self.pz0_logstd.exp())
        kl0 = distributions.kl_divergence(qz0, pz0).sum(1)
        return (log_lik - kl0 - log_ratio.sum(0)).mean()


def train(model: LatentSDE, lib: Any, xs: torch.Tensor, ts: torch.Tensor, iters: int,
          batch: int, dt: float, seed: int) -> Dict[str, List[float]]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(seed)
    order = torch.randint(0, xs.shape[1], (iters, batch))
    elbos, walls = [], []
    for it in range(iters):
        start = time.perf_counter()
        loss = -model.elbo(lib, xs[:, order[it]], ts, dt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        walls.append(time.perf_counter() - start)
        elbos.append(-loss.item())
    return {"elbo": elbos, "wall_s": walls}


def plot(model: LatentSDE, xs: torch.Tensor, ts: torch.Tensor, dt: float, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with torch.no_grad():
        ctx = model.to_context(model.encoder(xs.flip(0))[0].flip(0))
        model._ctx = (ts, ctx)
        mean, logstd = model.qz0(ctx[0]).chunk(2, dim=1)
        post = model.decoder(sdeflow_torchsde.sdeint(model, mean, ts, dt=dt, method="euler"))
        z0 = model.pz0_mean + model.pz0_logstd.exp() * torch.randn(xs.shape[1], mean.shape[1])
        prior = model.decoder(sdeflow_torchsde.sdeint(model, z0, ts, dt=dt, method="euler",
                                                      names={"drift": "h"}))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), subplot_kw={"projection": "3d"})
    for ax, ys, title in zip(axes, (xs, post, prior), ("data", "posterior", "prior samples")):
        for b in range(min(8, ys.shape[1])):
            ax.plot(*ys[:, b].T.numpy(), lw=0.8)
        ax.set_title(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: List[str] | None = None) -> Dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="results/latent_sde")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--no-torchsde", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    ts = torch.linspace(0, 1, 25)
    dt = 0.02
    xs = lorenz_data(512, ts)
    torch.manual_seed(0)
    init = LatentSDE()
    libs = {"sdeflow": sdeflow_torchsde}
    if not args.no_torchsde:
        import torchsde
        libs["torchsde"] = torchsde
    runs, models = {}, {}
    for name, lib in libs.items():
        models[name] = copy.deepcopy(init)
        runs[name] = train(models[name], lib, xs, ts, args.iters, args.batch, dt, seed=1)
    rows = []
    for name, r in runs.items():
        rows.append({"library": name, "wall_per_iter_s": statistics.median(r["wall_s"][1:]),
                     "elbo_first": r["elbo"][0], "elbo_last": r["elbo"][-1]})
    if "torchsde" in runs:
        rows[0]["speedup_vs_torchsde"] = rows[1]["wall_per_iter_s"] / rows[0]["wall_per_iter_s"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(models["sdeflow"], xs[:, :8], ts, dt, out / "latent_sde.png")
    cols = ["library", "wall_per_iter_s", "elbo_first", "elbo_last", "speedup_vs_torchsde"]
    payload = {"iters": args.iters, "batch": args.batch, "dt": dt, "rows": rows, "runs": runs}
    write_results(out, "latent_sde", payload, {"latent SDE training": markdown_table(rows, cols)})
    print(markdown_table(rows, cols))
    return payload


if __name__ == "__main__":
    main()
