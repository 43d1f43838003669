"""sdeflow's samplers equal k-diffusion's on the same grid, model and noise (float64).

The reference values come from tests/reference/kdiffusion_samplers.py (k-diffusion 0.1.1.post1
in a throwaway venv; how to regenerate is in its docstring), stored in
tests/data/kdiffusion_samplers.json. Both sides run the exact Gaussian-mixture oracle on EDMSDE
(alpha = 1, sigma = t: k-diffusion's variables) from the same x_T on k-diffusion's Karras grid
of 12 levels, and the stochastic samplers draw the same bank of normals in the same order.
"""
import json
import math
from pathlib import Path

import pytest
import torch

from generative.samplers import sample

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


def test_reference_is_not_trivial():
    """The cases differ from each other by far more than TOL (a sampler swapped for another
    would fail), and the stochastic ones from the deterministic."""
    xs = {k: torch.tensor(v["x"], dtype=torch.float64) for k, v in REF["cases"].items()}
    names = sorted(xs)
    gaps = [float((xs[a] - xs[b]).abs().max()) for i, a in enumerate(names) for b in names[i + 1:]]
    assert min(gaps) > 1e4 * TOL and math.isfinite(max(gaps))
