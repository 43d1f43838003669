"""The modern sampler set on the exact Gaussian-mixture oracle: convergence order by refinement
(float64, VP SDE), the stochastic samplers reproduce the mixture (and a wrong score fails),
exact NFE on every SDE, Brownian noise keeps the SDE samplers on one path, restart without
restarts is EDM Heun, and bad options raise errors naming them. Equality with k-diffusion and
diffusers is tests/test_generative_sampler_peers.py."""

import pytest
import torch

from dynamics import EDMSDE, VESDE, VPSDE, CosineVPSDE, GaussianMixture, SubVPSDE
from generative.metrics.mmd import mmd_rbf
from generative.samplers import SAMPLERS, sample
from solvers.errors import InvalidInputError

GM = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [1.5, 1.0]],
                     [[[0.3, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.4]]])
F64 = torch.float64
N = 1000
NEW = ["dpmpp_3m", "dpmpp_2m_sde", "dpmpp_3m_sde", "dpmpp_2s_ancestral", "dpmpp_sde", "dpm_2",
       "dpm_2_ancestral", "lms", "dpm_solver_3", "unipc", "deis", "ddpm", "restart"]


@pytest.fixture(scope="module")
def order_setup():
    """VP SDE, 64 prior samples, and their probability-flow image by DPM-Solver++(3M) on 1280
    log-SNR steps (differs from 2M's on 1280 steps by 3e-6, far below the errors measured)."""
    sde = VPSDE()
    sf = GM.score_fn(sde)
    x_T = sde.prior_sample((64, 2), generator=torch.Generator().manual_seed(7), dtype=F64)
    return sde, sf, x_T, sample("dpmpp_3m", sde, sf, x_init=x_T, n_steps=1280).x


def _slope(errs, nfes):
    lx = torch.log(torch.tensor(nfes, dtype=F64))
    ly = torch.log(torch.tensor(errs, dtype=F64))
    lx = lx - lx.mean()
    return float(-(lx * (ly - ly.mean())).sum() / (lx * lx).sum())


# Measured slopes (this setup): 3M 2.32, LMS 3.03, DPM-Solver-3 3.68, UniPC 3.81 (bh1 3.85),
# DEIS 2.68, DPM-2 2.29. The multistep methods warm up with a first-order step, whose local
# error O(h^2) caps their global order at 2 asymptotically (3M, DEIS); UniPC's corrector and
# the singlestep DPM-Solver-3 reach order >= 3.
@pytest.mark.parametrize("name,kw,steps,lo,hi", [
    ("dpmpp_3m", {}, [10, 20, 40, 80], 2.0, 3.5),
    ("lms", {}, [10, 20, 40, 80], 2.5, 4.5),
    ("dpm_solver_3", {}, [5, 10, 20, 40], 3.0, 4.5),
    ("unipc", {}, [10, 20, 40, 80], 3.2, 4.5),
    ("unipc", dict(variant="bh1"), [10, 20, 40, 80], 3.2, 4.5),
    ("deis", {}, [10, 20, 40, 80], 2.2, 3.5),
    ("dpm_2", {}, [5, 10, 20, 40], 1.8, 2.8),
])
def test_convergence_order(name, kw, steps, lo, hi, order_setup):
    sde, sf, x_T, ref = order_setup
    errs, nfes = [], []
    for n in steps:
        res = sample(name, sde, sf, x_init=x_T, n_steps=n, **kw)
        errs.append(float((res.x - ref).square().mean().sqrt()))
        nfes.append(res.nfe)
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert lo <= _slope(errs, nfes) <= hi, (_slope(errs, nfes), errs)


def test_dpm_adaptive_error_follows_the_tolerance(order_setup):
    """Tighter tolerances: more NFE and a smaller error (measured 4.6e-3 at 45 NFE, 2.6e-4 at
    84, 2.7e-5 at 147 for rtol 1e-2, 1e-3, 1e-4)."""
    sde, sf, x_T, ref = order_setup
    runs = [sample("dpm_adaptive", sde, sf, x_init=x_T, rtol=r, atol=r / 10)
            for r in (1e-2, 1e-3, 1e-4)]
    errs = [float((r.x - ref).square().mean().sqrt()) for r in runs]
    assert runs[0].nfe < runs[1].nfe < runs[2].nfe
    assert errs[0] > 5 * errs[1] > 25 * errs[2], errs
    assert errs[2] < 1e-4


# ------------------------------------------------------------ stochastic samplers: the law

@pytest.fixture(scope="module")
def mmd_bound():
    """1.5x the largest MMD between two independent data samples of size N (10 pairs)."""
    g = torch.Generator().manual_seed(123)
    return 1.5 * max(mmd_rbf(GM.sample(N, g), GM.sample(N, g)) for _ in range(10))


@pytest.fixture(scope="module")
def data():
    return GM.sample(N, torch.Generator().manual_seed(1))


STOCHASTIC = [("dpmpp_2m_sde", dict(n_steps=30)), ("dpmpp_3m_sde", dict(n_steps=30)),
              ("dpmpp_2s_ancestral", dict(n_steps=20)), ("dpmpp_sde", dict(n_steps=20)),
              ("dpm_2_ancestral", dict(n_steps=25)), ("ddpm", dict(n_steps=100)),
              ("ddpm", dict(n_steps=100, variance="fixed_large")), ("restart", {})]


@pytest.mark.parametrize("name,kw", STOCHASTIC, ids=[f"{n}-{i}" for i, (n, _) in
                                                     enumerate(STOCHASTIC)])
def test_stochastic_samplers_reproduce_the_mixture(name, kw, mmd_bound, data):
    sde = VPSDE()
    sf = GM.score_fn(sde)
    g = torch.Generator().manual_seed(0)
    x = sample(name, sde, sf, (N, 2), generator=g, denoise=True, **kw).x
    assert torch.isfinite(x).all() and mmd_rbf(x, data) < mmd_bound
    bad = sample(name, sde, lambda x, t: 0.8 * sf(x, t), (N, 2), generator=g, denoise=True,
                 **kw).x
    assert mmd_rbf(bad, data) > mmd_bound                       # negative control


def test_dpmpp_sde_needs_one_path():
    """dpmpp_sde's two draws a step are increments of one Brownian path (its default noise);
    independent draws bias it. 4000 samples, 20 steps: measured MMD ~0.0095 with independent
    draws, <= 0.001 with Brownian ones, against data-vs-data MMDs within +-0.0006."""
    sde = VPSDE()
    sf = GM.score_fn(sde)
    n = 4000
    data = GM.sample(n, torch.Generator().manual_seed(9))
    bound = 0.003          # 5x the spread of data-vs-data MMDs at n = 4000 (+-0.0006)
    runs = {noise: sample("dpmpp_sde", sde, sf, (n, 2), n_steps=20, noise=noise, seed=0,
                          denoise=True).x for noise in ("indexed", "brownian")}
    assert mmd_rbf(runs["brownian"], data) < bound < mmd_rbf(runs["indexed"], data)


def test_brownian_noise_keeps_sde_samplers_on_one_path():
    """DPM-Solver++(2M) SDE with Brownian noise: refining the grid converges to one solution
    per sample (median over samples; a few sit on the boundary between modes)."""
    sde = VPSDE()
    sf = GM.score_fn(sde)
    x_T = sde.prior_sample((32, 2), generator=torch.Generator().manual_seed(4), dtype=F64)

    def run(n, noise="brownian", seed=3):
        return sample("dpmpp_2m_sde", sde, sf, x_init=x_T, n_steps=n, noise=noise, seed=seed).x

    ref = run(640)
    errs = [float((run(n) - ref).square().sum(1).sqrt().median()) for n in (20, 40, 80)]
    assert errs[0] > errs[1] > errs[2], errs
    fresh = float((run(80, "indexed") - ref).square().sum(1).sqrt().median())
    assert fresh > 5 * errs[2], (fresh, errs)


# ------------------------------------------------------------ NFE, SDEs, restart, errors

@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), CosineVPSDE(), VESDE(sigma_max=10.0),
                                 EDMSDE(sigma_max=10.0)],
                         ids=["vp", "subvp", "cosine", "ve", "edm"])
def test_nfe_is_counted_exactly(name, sde):
    """NFE as counted by wrapping the score, float32 in and out, on every dynamics SDE."""
    calls = []
    sf = GM.score_fn(sde)

    def counting(x, t):
        calls.append(1)
        return sf(x, t)

    for denoise in (False, True):
        calls.clear()
        res = sample(name, sde, counting, (8, 2), n_steps=4, denoise=denoise,
                     generator=torch.Generator().manual_seed(0))
        cost = SAMPLERS[name].cost({})
        assert res.nfe == len(calls) == cost.setup + cost.per_step * 4 + denoise
        assert res.x.dtype == torch.float32 and torch.isfinite(res.x).all()


def test_restart_without_restarts_is_edm_heun():
    sde = VPSDE()
    sf = GM.score_fn(sde)
    x_T = sde.prior_sample((16, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    a = sample("restart", sde, sf, x_init=x_T, n_steps=12, restarts=[])
    b = sample("edm_heun", sde, sf, x_init=x_T, n_steps=12)
    assert a.nfe == b.nfe == 24
    # the same Heun steps; levels mapped to times by t_from_log_snr vs taken from the grid
    assert torch.allclose(a.x, b.x, rtol=0, atol=1e-12)
    c = sample("restart", sde, sf, x_init=x_T, n_steps=12, restarts=[(2, 3, 0.1, 0.5)],
               generator=torch.Generator().manual_seed(1))
    assert c.nfe == 24 + 2 * 2 * 3 and (c.x - a.x).abs().max() > 1e-3


def test_dpm_adaptive_with_a_budget_takes_fixed_steps():
    """An NFE budget (as models.sample and the CLI always give) makes dpm_adaptive fixed-step
    DPM-Solver of its order: the same as dpm_solver_3 on the same grid."""
    sde = VPSDE()
    sf = GM.score_fn(sde)
    x_T = sde.prior_sample((16, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    a = sample("dpm_adaptive", sde, sf, x_init=x_T, nfe=30, order=2)
    b = sample("dpm_solver_3", sde, sf, x_init=x_T, n_steps=15, order=2, schedule="logsnr")
    assert a.nfe == b.nfe == 30 and torch.equal(a.x, b.x)


def test_nfe_budget_of_the_new_samplers():
    sde = VPSDE()
    sf = GM.score_fn(sde)
    for name, budget, used in [("unipc", 10, 10), ("dpm_solver_3", 10, 9), ("dpmpp_sde", 11, 10),
                               ("restart", 30, 12 + 18), ("lms", 7, 7)]:
        assert sample(name, sde, sf, (4, 2), nfe=budget).nfe == used, name


def test_option_errors():
    sde = VPSDE()
    sf = GM.score_fn(sde)
    bad = [("dpmpp_2m_sde", dict(eta=-1.0), "eta"), ("dpmpp_sde", dict(r=0.0), "`r`"),
           ("dpmpp_2m_sde", dict(solver_type="rk4"), "solver_type"),
           ("lms", dict(order=5), "order"), ("unipc", dict(order=4), "order"),
           ("unipc", dict(variant="bh3"), "variant"), ("deis", dict(order=0), "order"),
           ("ddpm", dict(variance="learned"), "variance"),
           ("restart", dict(restarts=[(0, 1, 0.1, 0.5)]), "restarts"),
           ("restart", dict(restarts=[(2, 1, 0.5, 0.1)]), "restarts"),
           ("dpm_adaptive", dict(order=1), "order"), ("dpm_solver_3", dict(order=4), "order")]
    for name, kw, match in bad:
        with pytest.raises(InvalidInputError, match=match):
            sample(name, sde, sf, (2, 2), **({"n_steps": 3} if name != "dpm_adaptive" else {}),
                   **kw)
    with pytest.raises(InvalidInputError, match="brownian"):
        sample("restart", sde, sf, (2, 2), n_steps=5, noise="brownian")


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["dpmpp_3m", "dpm_2", "lms", "dpm_solver_3", "unipc", "deis",
                                  "dpm_adaptive", "restart"])
def test_runs_on_cuda(name):
    """Unchanged on CUDA: output on the device, same NFE, close to the CPU result (float64,
    the same x_T; restart without restarts so that it draws nothing)."""
    sde = VPSDE()
    sf = GM.score_fn(sde)
    x_T = sde.prior_sample((64, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    kw = {} if name == "dpm_adaptive" else dict(n_steps=6)
    if name == "restart":
        kw["restarts"] = []
    cpu = sample(name, sde, sf, x_init=x_T, **kw)
    gpu = sample(name, sde, sf, x_init=x_T.cuda(), **kw)
    assert gpu.x.is_cuda and gpu.nfe == cpu.nfe
    assert torch.allclose(gpu.x.cpu(), cpu.x, rtol=0, atol=1e-8)
