"""sdeflow's samplers equal k-diffusion's and diffusers' on the same grid, model and noise
(float64).

The reference values come from tests/reference/kdiffusion_samplers.py (k-diffusion 0.1.1.post1)
and tests/reference/diffusers_samplers.py (diffusers 0.42.1), run in a throwaway venv (how to
regenerate is in their docstrings), stored in tests/data/*_samplers.json. For k-diffusion
both sides run the exact Gaussian-mixture oracle on EDMSDE (alpha = 1, sigma = t: k-diffusion's
variables) from the same x_T on k-diffusion's Karras grid of 12 levels, and the stochastic
samplers draw the same bank of normals in the same order; for diffusers the VP SDE on a
uniform log-SNR grid (measured differences: <= 5e-15 for k-diffusion, <= 1.5e-14 for
diffusers).
"""
import json
import math
from pathlib import Path

import pytest
import torch

from generative.samplers import sample

from reference.diffusers_samplers import setup as dsetup
from reference.kdiffusion_samplers import Bank, setup

REF = json.loads((Path(__file__).parent / "data" / "kdiffusion_samplers.json").read_text())
# Same formulas, evaluated in other orders: each of the <= 33 steps rounds at ~1e-16 relative on
# values <= 10 and the flow is contracting: measured differences are <= 5e-15 (0 for
# dpm_solver_3 and dpm_adaptive); 1e-12 leaves two orders of margin and is far below any real
# slip (a wrong coefficient changes the result by >= 1e-4 on this grid).
TOL = 1e-12

# sdeflow sampler and options for each k-diffusion case
CASES = {
    "dpmpp_2m": ("dpmpp_2m", {}),
    "dpmpp_3m": ("dpmpp_3m", {}),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", dict(eta=1.0)),
    "dpmpp_2m_sde_heun": ("dpmpp_2m_sde", dict(eta=0.7, solver_type="heun")),
    "dpmpp_3m_sde": ("dpmpp_3m_sde", dict(eta=1.0)),
    "dpmpp_2s_ancestral": ("dpmpp_2s_ancestral", dict(eta=1.0)),
    "dpmpp_2s_ancestral_eta0": ("dpmpp_2s", {}),
    "dpmpp_sde": ("dpmpp_sde", dict(eta=1.0)),
    "dpm_2": ("dpm_2", {}),
    "dpm_2_ancestral": ("dpm_2_ancestral", dict(eta=1.0)),
    "lms": ("lms", dict(order=4)),
    "dpm_solver_3": ("dpm_solver_3", dict(order=3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_equals_kdiffusion(case):
    gm, sde, x_T, bank = setup()
    name, kw = CASES[case]
    ref = REF["cases"][case]
    res = sample(name, sde, gm.score_fn(sde), x_init=x_T, times=REF["sigmas"],
                 noise=Bank(bank), **kw)
    assert res.nfe == ref["nfe"]
    err = float((res.x - torch.tensor(ref["x"], dtype=torch.float64)).abs().max())
    assert err < TOL, err


@pytest.mark.parametrize("order,kw", [(3, dict(rtol=3 / 64, atol=1 / 128)),
                                      (2, dict(rtol=1 / 128, atol=1 / 512))])
def test_dpm_adaptive_equals_kdiffusion(order, kw):
    """Same accepted and rejected steps (same NFE) and the same result."""
    gm, sde, x_T, _ = setup()
    ref = REF["cases"][f"dpm_adaptive_{order}"]
    res = sample("dpm_adaptive", sde, gm.score_fn(sde), x_init=x_T, order=order, **kw)
    assert res.nfe == ref["nfe"]
    err = float((res.x - torch.tensor(ref["x"], dtype=torch.float64)).abs().max())
    assert err < TOL, err


def test_edm_churn_paper_convention_equals_kdiffusion():
    """Karras' Algorithm 2 with S_churn / N over all N intervals (the final one to sigma = 0
    included: ``churn_steps = n_steps + 1``) and the final Euler step (``denoise=True``), as
    k-diffusion's ``sample_heun``; the churn noise from the same seeded generator."""
    gm, sde, x_T, _ = setup()
    ref = REF["cases"]["heun_churn"]
    res = sample("edm_heun", sde, gm.score_fn(sde), x_init=x_T, times=REF["sigmas"],
                 denoise=True, churn=2.0, s_tmin=0.05, s_tmax=5.0, churn_steps=12,
                 generator=torch.Generator().manual_seed(5))
    assert res.nfe == ref["nfe"] == 23
    err = float((res.x - torch.tensor(ref["x"], dtype=torch.float64)).abs().max())
    assert err < TOL, err
    other = sample("edm_heun", sde, gm.score_fn(sde), x_init=x_T, times=REF["sigmas"],
                   denoise=True, churn=2.0, s_tmin=0.05, s_tmax=5.0,
                   generator=torch.Generator().manual_seed(5))
    assert float((other.x - res.x).abs().max()) > 1e-6       # S_churn / n_steps differs


def test_reference_is_not_trivial():
    """The cases differ from each other by far more than TOL (a sampler swapped for another
    would fail), and the stochastic ones from the deterministic."""
    xs = {k: torch.tensor(v["x"], dtype=torch.float64) for k, v in REF["cases"].items()}
    names = sorted(xs)
    gaps = [float((xs[a] - xs[b]).abs().max()) for i, a in enumerate(names) for b in names[i + 1:]]
    assert min(gaps) > 1e4 * TOL and math.isfinite(max(gaps))


# ------------------------------------------------------------------ diffusers (VP SDE)

DREF = json.loads((Path(__file__).parent / "data" / "diffusers_samplers.json").read_text())
DCASES = {f"unipc_{v}_{p}": ("unipc", 10, dict(order=p, variant=v))
          for v in ("bh1", "bh2") for p in (1, 2, 3)}
DCASES.update({f"deis_{p}": ("deis", 10, dict(order=p)) for p in (1, 2, 3)})
DCASES.update({"unipc_bh2_3_20": ("unipc", 20, dict(order=3, variant="bh2")),
               "deis_3_20": ("deis", 20, dict(order=3))})


@pytest.mark.parametrize("case", sorted(DCASES))
def test_equals_diffusers_multistep(case):
    """UniPC and DEIS equal diffusers' schedulers given the same float64 log-SNR grid. The
    grid's sigma/alpha round-trips through diffusers' alpha = 1/sqrt(1 + s^2): a few ulp,
    so the same 1e-12 bound."""
    gm, sde, x_T = dsetup()
    name, n, kw = DCASES[case]
    res = sample(name, sde, gm.score_fn(sde), x_init=x_T, n_steps=n, schedule="logsnr", **kw)
    assert res.nfe == n
    err = float((res.x - torch.tensor(DREF["cases"][case], dtype=torch.float64)).abs().max())
    assert err < TOL, err


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_ddpm_equals_diffusers(variance):
    """DDPM respaced on diffusers' 'trailing' timesteps of a 1000-step model (9 steps, without
    the final step, where diffusers' fixed_large adds beta noise and sdeflow denoises), same
    generator draws."""
    gm, sde, x_T = dsetup()
    res = sample("ddpm", sde, gm.score_fn(sde), x_init=x_T, n_steps=9, schedule="trailing",
                 variance=variance, generator=torch.Generator().manual_seed(11))
    assert res.nfe == 9
    ref = torch.tensor(DREF["cases"][f"ddpm_{variance}"], dtype=torch.float64)
    assert float((res.x - ref).abs().max()) < TOL


def test_ddpm_fixed_small_is_ddim_eta_1():
    """The posterior step written through (x_t, x0) equals DDIM's through (x0, eps) with
    eta = 1, draw for draw (round-off only)."""
    gm, sde, x_T = dsetup()
    g = torch.Generator
    a = sample("ddpm", sde, gm.score_fn(sde), x_init=x_T, n_steps=30,
               generator=g().manual_seed(3))
    b = sample("ddim", sde, gm.score_fn(sde), x_init=x_T, n_steps=30, eta=1.0,
               generator=g().manual_seed(3))
    assert torch.allclose(a.x, b.x, rtol=0, atol=1e-12)
