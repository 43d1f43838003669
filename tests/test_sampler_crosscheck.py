"""Live cross-check: sdeflow's samplers equal k-diffusion's and diffusers' (run here, not
stored) on the same grid, with the exact Gaussian-mixture oracle as the model, in float64.

k-diffusion and diffusers are bench/dev dependencies only (``pip install -e .[crosscheck]`` and
``pip install --no-deps k-diffusion==0.1.1.post1``; never imported by library code): without
them the tests skip with the reason. Problem set-up
and helpers are those of tests/reference/ (which also generated the stored references of
test_generative_sampler_peers.py): k-diffusion on EDMSDE (alpha = 1, its variables) on its
Karras grid of 12 levels, diffusers on the VP SDE with sdeflow's float64 grid put in place of
the schedulers' float32 noise levels. Stochastic samplers on both sides draw the same bank of
normals in call order (k-diffusion's ``noise_sampler``, sdeflow's ``noise=``).

Tolerance: both sides evaluate the same formulas in other orders; each of the <= 33 steps
rounds at ~1e-16 relative on values <= 10 and the flow contracts, so differences are a few
1e-15 (measured); 1e-12 leaves margin and is far below a real slip (a wrong coefficient moves
the result by >= 1e-4 on these grids).
"""
import importlib
import importlib.util

import pytest
import torch

from generative.samplers import sample
from generative.samplers.grid import schedule_grid

from reference import diffusers_samplers as dref
from reference import kdiffusion_samplers as kref

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::DeprecationWarning:diffusers.*")]
TOL = 1e-12
F64 = torch.float64


def _need(module, load):
    """``load()``, or skip with the reason when ``module`` (or what it imports) is absent."""
    why = ("(a bench/dev dependency: pip install -e .[crosscheck]; pip install --no-deps "
           "k-diffusion==0.1.1.post1)")
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed {why}")
    try:
        return load()
    except ImportError as err:
        pytest.skip(f"{module} does not import ({err}) {why}")


@pytest.fixture(scope="module")
def kd():
    """k-diffusion's sampling module, the oracle model and the problem."""
    kds = _need("k_diffusion", kref.load_kdiffusion)
    gm, sde, x_T, bank = kref.setup()
    score = gm.score_fn(sde)
    calls = [0]

    def model(x, sigma):
        calls[0] += 1
        return x + sigma[:, None] ** 2 * score(x, sigma)

    sigmas = kds.get_sigmas_karras(12, 0.02, 10.0, rho=7.0).double()[:-1]
    return dict(kds=kds, gm=gm, sde=sde, x_T=x_T, bank=bank, model=model, calls=calls,
                sigmas=sigmas)


def _bank(kd):
    return kref.Bank(kd["bank"])


# name -> (k-diffusion call (kds, model, x, sigmas, bank), sdeflow sampler, its options,
#          final sigma 0 appended on both sides = sdeflow's denoise)
KCASES = {
    "euler=ddim": (lambda k, m, x, s, b: k.sample_euler(m, x, s, disable=True),
                   "ddim", {}, False),
    "euler_final0=ddim_denoise": (lambda k, m, x, s, b: k.sample_euler(m, x, s, disable=True),
                                  "ddim", {}, True),
    "euler_ancestral=ddim_eta1": (lambda k, m, x, s, b: k.sample_euler_ancestral(
        m, x, s, eta=1.0, noise_sampler=b, disable=True), "ddim", dict(eta=1.0), False),
    "heun=edm_heun": (lambda k, m, x, s, b: k.sample_heun(m, x, s, disable=True),
                      "edm_heun", {}, False),
    "heun_final0=edm_heun_denoise": (lambda k, m, x, s, b: k.sample_heun(m, x, s, disable=True),
                                     "edm_heun", {}, True),
    "dpmpp_2m": (lambda k, m, x, s, b: k.sample_dpmpp_2m(m, x, s, disable=True),
                 "dpmpp_2m", {}, False),
    "dpmpp_2m_final0": (lambda k, m, x, s, b: k.sample_dpmpp_2m(m, x, s, disable=True),
                        "dpmpp_2m", {}, True),
    "dpmpp_3m_sde_eta0=dpmpp_3m": (lambda k, m, x, s, b: k.sample_dpmpp_3m_sde(
        m, x, s, eta=0.0, disable=True), "dpmpp_3m", {}, False),
    "dpmpp_3m_sde": (lambda k, m, x, s, b: k.sample_dpmpp_3m_sde(
        m, x, s, eta=1.0, noise_sampler=b, disable=True), "dpmpp_3m_sde", dict(eta=1.0), False),
    "dpmpp_3m_sde_eta0.5": (lambda k, m, x, s, b: k.sample_dpmpp_3m_sde(
        m, x, s, eta=0.5, noise_sampler=b, disable=True), "dpmpp_3m_sde", dict(eta=0.5), False),
    "dpmpp_2m_sde": (lambda k, m, x, s, b: k.sample_dpmpp_2m_sde(
        m, x, s, eta=1.0, noise_sampler=b, disable=True), "dpmpp_2m_sde", dict(eta=1.0), False),
    "dpmpp_2m_sde_heun": (lambda k, m, x, s, b: k.sample_dpmpp_2m_sde(
        m, x, s, eta=0.7, noise_sampler=b, solver_type="heun", disable=True), "dpmpp_2m_sde",
        dict(eta=0.7, solver_type="heun"), False),
    "dpmpp_sde": (lambda k, m, x, s, b: k.sample_dpmpp_sde(
        m, x, s, eta=1.0, noise_sampler=b, disable=True), "dpmpp_sde", dict(eta=1.0), False),
    "dpmpp_2s_ancestral": (lambda k, m, x, s, b: k.sample_dpmpp_2s_ancestral(
        m, x, s, eta=1.0, noise_sampler=b, disable=True), "dpmpp_2s_ancestral", dict(eta=1.0),
        False),
    "dpmpp_2s_ancestral_eta0=dpmpp_2s": (lambda k, m, x, s, b: k.sample_dpmpp_2s_ancestral(
        m, x, s, eta=0.0, disable=True), "dpmpp_2s", {}, False),
    "dpm_2": (lambda k, m, x, s, b: k.sample_dpm_2(m, x, s, disable=True), "dpm_2", {}, False),
    "dpm_2_ancestral": (lambda k, m, x, s, b: k.sample_dpm_2_ancestral(
        m, x, s, eta=1.0, noise_sampler=b, disable=True), "dpm_2_ancestral", dict(eta=1.0),
        False),
    "lms": (lambda k, m, x, s, b: k.sample_lms(m, x, s, order=4, disable=True),
            "lms", dict(order=4), False),
    "dpm_solver_3_steps": (lambda k, m, x, s, b: kref.dpm_solver_3(k, m, x, s),
                           "dpm_solver_3", dict(order=3), False),
}


@pytest.mark.parametrize("case", sorted(KCASES))
def test_equals_kdiffusion(kd, case):
    call, name, options, final_zero = KCASES[case]
    sigmas = kd["sigmas"]
    if final_zero:
        sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    kd["calls"][0] = 0
    with torch.no_grad():
        ref = call(kd["kds"], kd["model"], kd["x_T"].clone(), sigmas, _bank(kd))
    res = sample(name, kd["sde"], kd["gm"].score_fn(kd["sde"]), x_init=kd["x_T"],
                 sigmas=sigmas.tolist(), noise=_bank(kd), **options)
    assert res.nfe == kd["calls"][0], (res.nfe, kd["calls"][0])
    err = float((res.x - ref).abs().max())
    assert err < TOL, err
    assert float((ref - kd["x_T"]).abs().max()) > 1.0              # it moved


@pytest.mark.parametrize("nfe", [9, 10, 11])
def test_dpm_fast_equals_dpm_solver_3_segments(kd, nfe):
    """k-diffusion's DPM-Solver-Fast (its order list over a grid uniform in -log sigma) equals
    sdeflow's dpm_solver_3 run on the same grid, one segment per order. k-diffusion builds the
    grid with torch.linspace in the default dtype: it runs with float64 as the default."""
    kds, sde = kd["kds"], kd["sde"]
    solver = kds.DPMSolver(kd["model"])
    lo, hi = (torch.tensor(v, dtype=F64) for v in (0.02, 10.0))
    kd["calls"][0] = 0
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        with torch.no_grad():
            ref = solver.dpm_solver_fast(kd["x_T"].clone(), solver.t(hi), solver.t(lo), nfe)
    finally:
        torch.set_default_dtype(default)
    m = nfe // 3 + 1
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    sig = torch.exp(-torch.linspace(float(solver.t(hi)), float(solver.t(lo)), m + 1,
                                    dtype=F64))
    x, used, i = kd["x_T"], 0, 0
    while i < len(orders):                       # runs of one order: one sample() call each
        j = i
        while j < len(orders) and orders[j] == orders[i]:
            j += 1
        res = sample("dpm_solver_3", sde, kd["gm"].score_fn(sde), x_init=x,
                     sigmas=sig[i:j + 1].tolist(), order=orders[i])
        x, used, i = res.x, used + res.nfe, j
    assert used == kd["calls"][0] == nfe
    assert float((x - ref).abs().max()) < TOL


@pytest.mark.parametrize("order,kw", [(3, dict(rtol=3 / 64, atol=1 / 128)),
                                      (2, dict(rtol=1 / 128, atol=1 / 512))])
def test_dpm_adaptive_equals_kdiffusion(kd, order, kw):
    """Same accepted/rejected steps (same NFE) and result (float64 end points, tolerances
    exact binary fractions as k-diffusion keeps them in float32)."""
    kd["calls"][0] = 0
    with torch.no_grad():
        ref = kref.dpm_adaptive(kd["kds"], kd["model"], kd["x_T"].clone(), order, kw["rtol"],
                                kw["atol"])
    res = sample("dpm_adaptive", kd["sde"], kd["gm"].score_fn(kd["sde"]), x_init=kd["x_T"],
                 order=order, **kw)
    assert res.nfe == kd["calls"][0]
    assert float((res.x - ref).abs().max()) < TOL


# ------------------------------------------------------------------ diffusers (VP SDE)

@pytest.fixture(scope="module")
def df():
    diffusers = _need("diffusers", lambda: importlib.import_module("diffusers"))
    gm, sde, x_T = dref.setup()
    return dict(diffusers=diffusers, gm=gm, sde=sde, x_T=x_T)


DCASES = {f"unipc_{v}_{p}": ("UniPCMultistepScheduler", 10, "unipc", dict(order=p, variant=v),
                             dict(solver_order=p, solver_type=v, predict_x0=True,
                                  lower_order_final=True))
          for v in ("bh1", "bh2") for p in (1, 2, 3)}
DCASES.update({f"deis_{p}": ("DEISMultistepScheduler", 10, "deis", dict(order=p),
                             dict(solver_order=p, algorithm_type="deis", solver_type="logrho",
                                  lower_order_final=True)) for p in (1, 2, 3)})
DCASES.update({
    "unipc_bh2_3_20": ("UniPCMultistepScheduler", 20, "unipc", dict(order=3, variant="bh2"),
                       dict(solver_order=3, solver_type="bh2", predict_x0=True)),
    "deis_3_20": ("DEISMultistepScheduler", 20, "deis", dict(order=3),
                  dict(solver_order=3, algorithm_type="deis", solver_type="logrho")),
    # DPMSolverMultistepScheduler (dpmsolver++) without its lower-order final steps; the 3M
    # warm-up step is the phi_2 ('heun') form, as k-diffusion's and sdeflow's
    "dpmsolver++_2m=dpmpp_2m": ("DPMSolverMultistepScheduler", 10, "dpmpp_2m", {},
                                dict(solver_order=2, algorithm_type="dpmsolver++",
                                     lower_order_final=False, final_sigmas_type="sigma_min")),
    "dpmsolver++_3m=dpmpp_3m": ("DPMSolverMultistepScheduler", 10, "dpmpp_3m", {},
                                dict(solver_order=3, algorithm_type="dpmsolver++",
                                     solver_type="heun", lower_order_final=False,
                                     final_sigmas_type="sigma_min")),
})
# DPMSolverMultistepScheduler.step casts the state to float32 ("upcast") and back every step:
# its result carries float32 rounding of the state, <= 10 steps x |x| <= 4 x 2^-24 ~ 2.4e-6
# (the flow contracts); 1e-5 bounds that and still catches a wrong coefficient (>= 1e-4)
TOL_F32_STATE = {"DPMSolverMultistepScheduler": 1e-5}


@pytest.mark.parametrize("case", sorted(DCASES))
def test_equals_diffusers_multistep(df, case):
    cls, n, name, options, config = DCASES[case]
    ref = dref.multistep(getattr(df["diffusers"], cls), df["sde"], df["gm"], df["x_T"], n,
                         **config)
    res = sample(name, df["sde"], df["gm"].score_fn(df["sde"]), x_init=df["x_T"], n_steps=n,
                 schedule="logsnr", **options)
    assert res.nfe == n
    assert float((res.x - ref).abs().max()) < TOL_F32_STATE.get(cls, TOL)


@pytest.mark.parametrize("algorithm,name,options", [
    ("dpmsolver", "dpm_solver_3", dict(order=2)), ("dpmsolver++", "dpmpp_2s", {})])
def test_equals_diffusers_singlestep_order_2(df, algorithm, name, options):
    """DPMSolverSinglestepScheduler of order 2 (orders 1, 2 over each pair of a 10-step
    log-SNR-uniform grid: the pair's middle point is the log-SNR midpoint) equals sdeflow's
    singlestep order-2 sampler on the 5-step grid of every other point: noise prediction
    (DPM-Solver-2) and data prediction (DPM-Solver++(2S))."""
    from diffusers import DPMSolverSinglestepScheduler
    sde, gm, x_T = df["sde"], df["gm"], df["x_T"]
    fine = schedule_grid(sde, 10, x_T, None, "logsnr").ts
    sch = DPMSolverSinglestepScheduler(num_train_timesteps=1000, solver_order=2,
                                       algorithm_type=algorithm, solver_type="midpoint",
                                       lower_order_final=False, final_sigmas_type="sigma_min")
    sch.set_timesteps(10)
    assert len(sch.sigmas) == 11 and list(sch.order_list) == [1, 2] * 5
    sch.sigmas = (sde.sigma(fine) / sde.alpha(fine)).double()
    ref = dref.run(sch, sde, gm, x_T.clone(), fine)
    res = sample(name, sde, gm.score_fn(sde), x_init=x_T, times=fine[::2].tolist(), **options)
    assert res.nfe == 10
    assert float((res.x - ref).abs().max()) < TOL


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_ddpm_equals_diffusers(df, variance):
    """DDPM respaced on diffusers' 'trailing' timesteps of a 1000-step model (9 steps, without
    the final step), the same generator draws."""
    ref = dref.ddpm(df["sde"], df["gm"], df["x_T"], variance)
    res = sample("ddpm", df["sde"], df["gm"].score_fn(df["sde"]), x_init=df["x_T"], n_steps=9,
                 schedule="trailing", variance=variance,
                 generator=torch.Generator().manual_seed(11))
    assert res.nfe == 9
    assert float((res.x - ref).abs().max()) < TOL
