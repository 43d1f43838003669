"""Samplers with the exact GaussianMixture oracle score: every sampler must reproduce the
mixture (MMD to fresh mixture samples within a bound calibrated from data-vs-data MMDs at the
same sample size), a deliberately wrong score must fail that bound, NFE is reported, and bad
input raises clear errors."""
import pytest
import torch

from dynamics import VESDE, VPSDE, GaussianMixture, SubVPSDE
from generative.metrics.mmd import mmd_rbf
from generative.samplers import SAMPLERS, sample
from solvers.errors import InvalidInputError

N = 1000

GM = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [1.5, 1.0]],
                     [[[0.3, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.4]]])

SDES = {"vp": lambda: VPSDE(), "ve": lambda: VESDE(sigma_max=10.0)}

CASES = [
    ("em", dict(n_steps=200)),
    ("reverse_diffusion", dict(n_steps=200)),
    ("ancestral", dict(n_steps=200)),
    ("pc", dict(n_steps=100, n_corrector=1, snr=0.16)),
    ("pc", dict(n_steps=100, predictor="ancestral", n_corrector=1)),
    ("pc", dict(n_steps=100, predictor="em", n_corrector=2, snr=0.1)),
    ("ode", dict(method="dopri5", rtol=1e-5, atol=1e-5)),
    ("ode", dict(method="rk4", n_steps=20)),
    ("ode", dict(method="bosh3", per_sample=True, rtol=1e-4, atol=1e-4)),
    ("em", dict(n_steps=200, denoise=True)),
    ("reverse_diffusion", dict(n_steps=200, denoise=True)),
]


@pytest.fixture(scope="module")
def mmd_bound():
    """1.5x the largest MMD between two independent data samples of size N (10 pairs)."""
    g = torch.Generator().manual_seed(123)
    null = [mmd_rbf(GM.sample(N, g), GM.sample(N, g)) for _ in range(10)]
    return 1.5 * max(null)


# New stages per step of the adaptive ODE methods (FSAL: the last stage is the next step's
# first) and the evaluations before the first step: f(t0, y0) and one more for the initial
# step-size heuristic (Hairer, Nørsett & Wanner, II.4).
NEW_STAGES = {"dopri5": 6, "bosh3": 3}
ADAPTIVE_SETUP_NFE = 2


def _expected_nfe(name, kw):
    """Score evaluations of a fixed-step sampler from its algorithm (None: adaptive)."""
    n = kw.get("n_steps")
    extra = 1 if kw.get("denoise") else 0        # the final Tweedie denoising step
    if name == "pc":                             # per step: n_corrector Langevin + 1 predictor
        return n * (kw.get("n_corrector", 1) + 1) + extra
    if name == "ode":
        return None if n is None else n * {"rk4": 4}[kw["method"]] + extra
    if name == "em":                             # + the SDE solver's one shape-check call of f
        return n + 1 + extra
    return n + extra                             # reverse_diffusion, ancestral: 1 per step


@pytest.mark.parametrize("sde_name", sorted(SDES))
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_sampler_reproduces_mixture(sde_name, name, kw, mmd_bound):
    sde = SDES[sde_name]()
    score = GM.score_fn(sde)
    calls = []

    def counted(x, t):
        calls.append(x.shape[0])
        return score(x, t)
    x, nfe = sample(name, sde, counted, (N, 2), generator=torch.Generator().manual_seed(0), **kw)
    assert x.shape == (N, 2) and torch.isfinite(x).all()
    ref = GM.sample(N, torch.Generator().manual_seed(1))
    assert mmd_rbf(x, ref) < mmd_bound
    # the reported NFE is the number of score evaluations, each on the whole batch ...
    assert set(calls) == {N}
    expected = _expected_nfe(name, kw)
    if kw.get("per_sample"):
        # ... per row: the rows active longest were active for every call; every row's count
        # is the adaptive method's setup plus whole steps
        assert nfe.shape == (N,) and int(nfe.max()) == len(calls)
        assert bool(((nfe - ADAPTIVE_SETUP_NFE) % NEW_STAGES[kw["method"]] == 0).all())
        assert int(nfe.min()) > ADAPTIVE_SETUP_NFE
    else:
        assert isinstance(nfe, int) and nfe == len(calls)
        if expected is None:   # ... adaptive: setup + whole steps (at least one)
            steps, rest = divmod(nfe - ADAPTIVE_SETUP_NFE, NEW_STAGES[kw["method"]])
            assert rest == 0 and steps >= 1, nfe
        else:                  # ... fixed steps: exactly what the algorithm evaluates
            assert nfe == expected


@pytest.mark.parametrize("name,kw", [("em", dict(n_steps=200)), ("pc", dict(n_steps=100)),
                                     ("ode", dict())])
def test_wrong_score_fails_the_bound(name, kw, mmd_bound):
    """Negative control: the same test with a 20% too small score must fail."""
    sde = VPSDE()
    sf = GM.score_fn(sde)
    x, _ = sample(name, sde, lambda x, t: 0.8 * sf(x, t), (N, 2),
                  generator=torch.Generator().manual_seed(0), **kw)
    assert mmd_rbf(x, GM.sample(N, torch.Generator().manual_seed(1))) > mmd_bound


def test_mean_and_covariance_match(mmd_bound):
    sde = VPSDE()
    x, _ = sample("reverse_diffusion", sde, GM.score_fn(sde), (4000, 2), n_steps=200,
                  generator=torch.Generator().manual_seed(5))
    m, c = GM.mean(), GM.covariance()
    se = (torch.diagonal(c) / 4000).sqrt()
    assert ((x.mean(0) - m).abs() < 4 * se).all()
    assert torch.allclose(torch.cov(x.T), c, atol=0.1)


def test_nfe_budget_and_reproducibility():
    sde = VPSDE()
    sf = GM.score_fn(sde)
    x1, nfe = sample("pc", sde, sf, (16, 2), nfe=61, generator=torch.Generator().manual_seed(3))
    assert nfe == 60                              # 30 steps x (1 corrector + 1 predictor)
    assert torch.isfinite(x1).all()
    x2, _ = sample("pc", sde, sf, (16, 2), nfe=61, generator=torch.Generator().manual_seed(3))
    assert torch.equal(x1, x2)
    x3, _ = sample("pc", sde, sf, (16, 2), nfe=61, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(x1, x3)
    _, nfe = sample("em", sde, sf, (16, 2), nfe=50)
    assert nfe == 50
    _, nfe = sample("ode", sde, sf, (16, 2), nfe=41, method="rk4")
    assert nfe == 40
    # FSAL: a dopri5 step costs 6 evaluations after one before the first step (10 steps = 61)
    for method, budget, used in (("dopri5", 61, 61), ("dopri5", 66, 61), ("bosh3", 31, 31)):
        _, nfe = sample("ode", sde, sf, (16, 2), nfe=budget, method=method)
        assert nfe == used, (method, budget, nfe)
    _, nfe = sample("ancestral", VESDE(), GM.score_fn(VESDE()), (16, 2), nfe=5, denoise=True)
    assert nfe == 5
    x0 = torch.randn(8, 2)
    x, nfe = sample("reverse_diffusion", VESDE(), GM.score_fn(VESDE()), x_init=x0, n_steps=3)
    assert x.shape == (8, 2) and nfe == 3 and torch.isfinite(x).all()


def test_bad_input_errors():
    sde = VPSDE()
    sf = GM.score_fn(sde)
    with pytest.raises(InvalidInputError,
                       match="`name` must be one of 'ancestral', 'ddim'.*'pc'.*got 'nope'"):
        sample("nope", sde, sf, (4, 2))
    for bad in (0, -3, 2.5):
        with pytest.raises(InvalidInputError, match="nfe"):
            sample("em", sde, sf, (4, 2), nfe=bad)
    with pytest.raises(InvalidInputError, match="too small"):
        sample("ode", sde, sf, (4, 2), nfe=3, method="rk4")
    with pytest.raises(InvalidInputError, match="n_steps"):
        sample("em", sde, sf, (4, 2), n_steps=0)
    with pytest.raises(InvalidInputError, match="ancestral.*SubVPSDE"):
        sample("ancestral", SubVPSDE(), sf, (4, 2), n_steps=2)
    for name in ("reverse_diffusion", "ancestral", "pc"):   # DDPM step needs beta(T) dt < 1
        with pytest.raises(InvalidInputError, match="too coarse.*beta_n"):
            sample(name, sde, sf, (4, 2), n_steps=10)
    with pytest.raises(InvalidInputError, match="predictor"):
        sample("pc", sde, sf, (4, 2), n_steps=2, predictor="heun")
    with pytest.raises(InvalidInputError, match="n_steps.*fixed-step"):
        sample("ode", sde, sf, (4, 2), method="euler")
    with pytest.raises(InvalidInputError, match="method"):
        sample("ode", sde, sf, (4, 2), method="nope")
    with pytest.raises(InvalidInputError, match="sde"):
        sample("em", "vp", sf, (4, 2))
    with pytest.raises(InvalidInputError, match="shape"):
        sample("em", sde, sf, n_steps=2)
    assert sorted(SAMPLERS) == [
        "ancestral", "ddim", "ddpm", "deis", "dpm_2", "dpm_2_ancestral", "dpm_adaptive",
        "dpm_solver_3", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_2s", "dpmpp_2s_ancestral",
        "dpmpp_3m", "dpmpp_3m_sde", "dpmpp_sde", "edm_heun", "em", "lms", "ode", "pc",
        "restart", "reverse_diffusion", "unipc"]


FM_CASES = [("em", dict(n_steps=200)), ("reverse_diffusion", dict(n_steps=200)),
            ("pc", dict(n_steps=100)), ("ode", dict()), ("ddim", dict(n_steps=50)),
            ("dpmpp_2m", dict(n_steps=20)), ("dpmpp_2s", dict(n_steps=10)),
            ("edm_heun", dict(n_steps=40))]


@pytest.mark.parametrize("name,kw", FM_CASES, ids=[n for n, _ in FM_CASES])
def test_flow_matching_velocity_runs_with_every_sampler(name, kw, mmd_bound):
    """A flow-matching model (here the exact marginal velocity of the linear path) runs with the
    score-based samplers: `ScoreAdapter(v, path, 'velocity')` is its score and `PathSDE(path)`
    the SDE with the path's kernel (T < 1: alpha(1) = 0 on the linear path)."""
    from dynamics import LinearPath, PathSDE, ScoreAdapter, convert
    path = LinearPath()
    sde = PathSDE(path, T=0.999, eps=1e-3)

    def velocity(x, t):
        return convert(GM.marginal_denoise(path, x, t, check=False), x, t, path, "x0",
                       "velocity")
    x, _ = sample(name, sde, ScoreAdapter(velocity, path, "velocity"), (N, 2),
                  generator=torch.Generator().manual_seed(0), **kw)
    assert mmd_rbf(x, GM.sample(N, torch.Generator().manual_seed(1))) < mmd_bound
