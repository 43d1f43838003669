"""Reference outputs of diffusers' UniPC, DEIS and DDPM schedulers on the exact Gaussian-mixture
oracle, for tests/test_generative_sampler_peers.py (diffusers is never a dependency of sdeflow).

Regenerate (diffusers 0.42.1 with --no-deps plus huggingface_hub and its small dependencies
in a throwaway venv; torch from the project's; torchvision is not needed):

    PYTHONPATH=.venv/lib/python3.11/site-packages:. /tmp/peervenv/bin/python \\
        tests/reference/diffusers_samplers.py tests/data/diffusers_samplers.json

Model: VPSDE (beta 0.1 ... 20) with the oracle's exact score as an epsilon prediction
``eps = -sigma(t) score(x, t)``, float64. diffusers keeps its noise levels in float32, so
the schedulers get sdeflow's float64 grid in their place after ``set_timesteps``: UniPC and
DEIS their ``sigmas`` (sigma/alpha at the grid times, used for every coefficient), DDPM its
``alphas_cumprod`` (alpha(t_k)^2 at t_k = (k + 1) / 1000, k = 0 ... 999) with the
'trailing' spacing. DDPM draws its noise from a seeded torch.Generator, as sdeflow does.
"""
import json
import sys

import torch


def setup():
    """The problem both sides solve (imported by the test too)."""
    from dynamics import VPSDE, GaussianMixture
    gm = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [1.5, 1.0]],
                         [[[0.3, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.4]]])
    sde = VPSDE()
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return gm, sde, x_T


def grid_times(sde, n_steps):
    """sdeflow's uniform log-SNR grid from T to eps (float64)."""
    from generative.samplers.grid import schedule_grid
    return schedule_grid(sde, n_steps, torch.zeros(1, 2, dtype=torch.float64), None,
                         "logsnr").ts


def run(scheduler, sde, gm, x, ts, generator=None):
    score = gm.score_fn(sde)
    kw = {} if generator is None else {"generator": generator}
    for i, k in enumerate(scheduler.timesteps[:len(ts) - 1]):
        t = ts[i].expand(len(x))
        eps = -sde.sigma(t)[:, None] * score(x, t)
        x = scheduler.step(eps, k, x, **kw).prev_sample
    return x


def multistep(cls, sde, gm, x_T, n_steps, **config):
    ts = grid_times(sde, n_steps)
    sch = cls(num_train_timesteps=1000, timestep_spacing="trailing", **config)
    sch.set_timesteps(n_steps)
    assert len(sch.sigmas) == n_steps + 1
    sch.sigmas = (sde.sigma(ts) / sde.alpha(ts)).double()
    return run(sch, sde, gm, x_T.clone(), ts)


def ddpm(sde, gm, x_T, variance):
    from diffusers import DDPMScheduler
    from generative.samplers.grid import spacing_grid
    sch = DDPMScheduler(num_train_timesteps=1000, variance_type=variance, clip_sample=False,
                        timestep_spacing="trailing")
    sch.set_timesteps(10)
    k = torch.arange(1000, dtype=torch.float64)
    sch.alphas_cumprod = sde.alpha((k + 1) / 1000) ** 2
    sch.one = torch.tensor(1.0, dtype=torch.float64)
    ts = spacing_grid(sde, 9, x_T, "trailing").ts
    return run(sch, sde, gm, x_T.clone(), ts, torch.Generator().manual_seed(11))


def main(out):
    import diffusers
    from diffusers import DEISMultistepScheduler, UniPCMultistepScheduler
    gm, sde, x_T = setup()
    cases = {}
    for order in (1, 2, 3):
        for variant in ("bh1", "bh2"):
            cases[f"unipc_{variant}_{order}"] = multistep(
                UniPCMultistepScheduler, sde, gm, x_T, 10, solver_order=order,
                solver_type=variant, predict_x0=True, lower_order_final=True)
        cases[f"deis_{order}"] = multistep(
            DEISMultistepScheduler, sde, gm, x_T, 10, solver_order=order,
            algorithm_type="deis", solver_type="logrho", lower_order_final=True)
    cases["unipc_bh2_3_20"] = multistep(UniPCMultistepScheduler, sde, gm, x_T, 20,
                                        solver_order=3, solver_type="bh2", predict_x0=True)
    cases["deis_3_20"] = multistep(DEISMultistepScheduler, sde, gm, x_T, 20, solver_order=3,
                                   algorithm_type="deis", solver_type="logrho")
    for variance in ("fixed_small", "fixed_large"):
        cases[f"ddpm_{variance}"] = ddpm(sde, gm, x_T, variance)
    ref = {"diffusers": diffusers.__version__,
           "cases": {k: v.tolist() for k, v in cases.items()}}
    for k, v in cases.items():
        print(k, float(v.abs().mean()))
    with open(out, "w") as f:
        json.dump(ref, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
