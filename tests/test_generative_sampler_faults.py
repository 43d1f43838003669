"""Faults in every sampler of the registry (issue 14, item 4): a NaN score or a NaN ``x_init``
raises `NonFiniteError` with the time reached, found by the poll (one host sync every
``poll_every`` steps) or by the check at the end; bad ``dtype``, ``generator``, ``device``,
``shape`` or a meta ``x_init`` raise a clear error naming the argument."""
from __future__ import annotations

import math

import pytest
import torch

from dynamics import VPSDE, GaussianMixture
from generative.samplers import SAMPLERS, sample
from solvers.errors import InvalidInputError, NonFiniteError

NAMES = sorted(SAMPLERS)
#: samplers on the grid's steps (dpm_adaptive chooses its own: tested on its own below)
GRID_NAMES = [n for n in NAMES if n != "dpm_adaptive"]
SDE = VPSDE()
MIX = GaussianMixture([0.5, 0.5], [[-1.0, 0.5], [1.0, -0.5]],
                      [0.1 * torch.eye(2), 0.2 * torch.eye(2)])
EXACT = MIX.score_fn(SDE)
N = 20


def options(name: str, n_steps: int = N) -> dict:
    """Fixed uniform-in-time grids of ``n_steps`` steps, so poll windows have a known length."""
    if name == "ode":
        return {"method": "euler", "n_steps": n_steps}
    if name == "dpm_adaptive":
        return {}
    if SAMPLERS[name].grid == "schedule":
        return {"n_steps": n_steps, "schedule": "time"}
    return {"n_steps": n_steps}


def nan_below(t_nan: float):
    """The exact score, NaN at every time <= t_nan (no host sync: torch.where)."""
    return lambda x, t: torch.where(t[:, None] <= t_nan, math.nan, EXACT(x, t))


# --------------------------------------------------------------------------- NaN score

@pytest.mark.parametrize("poll_every", [1, 4])
@pytest.mark.parametrize("name", GRID_NAMES)
def test_nan_score_raises_non_finite_error_within_the_poll_window(name, poll_every):
    t_nan = 0.5
    h = (SDE.T - SDE.eps) / N
    with pytest.raises(NonFiniteError, match=rf"the `{name}` sampler's state became "
                                             r"non-finite by t = [0-9.]+") as info:
        sample(name, SDE, nan_below(t_nan), (4, 2), poll_every=poll_every, **options(name))
    t = float(torch.as_tensor(info.value.t))
    assert f"polled every {poll_every} step(s)" in str(info.value)
    # The NaN enters in the first step that evaluates the score at a time <= t_nan (that step
    # ends at >= t_nan - h); the next poll, at most poll_every steps later, reports it.
    assert t_nan - (poll_every + 1) * h - 1e-9 <= t <= t_nan + 1e-9
    if poll_every == 1:
        assert t >= t_nan - 2 * h - 1e-9
    assert info.value.ys is not None and info.value.stats is not None


@pytest.mark.parametrize("name", [n for n in GRID_NAMES if n not in ("em", "ode")])
def test_poll_reports_the_last_finite_state(name):
    with pytest.raises(NonFiniteError) as info:
        sample(name, SDE, nan_below(0.5), (4, 2), poll_every=3, **options(name))
    err = info.value
    assert torch.isfinite(err.ys).all() and err.ys.shape == (4, 2)
    assert err.stats["t_finite"] > float(err.t)
    assert err.stats["n_steps"] <= N and err.stats["nfe"] >= 1
    assert f"it was finite at t = {err.stats['t_finite']:.6g}" in str(err)


def test_nan_score_from_dpm_adaptive():
    """A NaN error estimate raises at once (the controller would shrink h forever)."""
    with pytest.raises(NonFiniteError, match=r"the `dpm_adaptive` sampler's state became "
                                             r"non-finite by t = [0-9.]+") as info:
        sample("dpm_adaptive", SDE, nan_below(0.5), (4, 2))
    assert float(torch.as_tensor(info.value.t)) <= 0.5 + 1e-9


def test_nan_score_from_the_adaptive_ode_sampler():
    with pytest.raises(NonFiniteError, match=r"the `ode` sampler's state became non-finite"):
        sample("ode", SDE, nan_below(0.5), (4, 2))
    with pytest.raises(NonFiniteError, match=r"non-finite by t = .* \(per row\)"):
        sample("ode", SDE, nan_below(0.5), (4, 2), per_sample=True)


@pytest.mark.parametrize("name", NAMES)
def test_nan_in_the_final_denoising_step_is_caught_at_the_end(name):
    eps = SDE.eps
    with pytest.raises(NonFiniteError, match=rf"the `{name}` sampler's state became "
                                             r"non-finite") as info:
        sample(name, SDE, nan_below(eps), (4, 2), denoise=True, **options(name))
    assert float(torch.as_tensor(info.value.t)) == pytest.approx(eps)
    # EDM's and restart's Heun corrector already evaluate at eps, inside the loop; the
    # ancestral DPM samplers' last move aims below the grid's last level (k-diffusion's
    # sigma_down), so their midpoint lies below eps
    if name not in ("edm_heun", "restart", "dpm_2_ancestral", "dpmpp_2s_ancestral"):
        assert "in the final denoising step" in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_nan_x_init_raises_before_sampling(name):
    x = torch.randn(4, 2)
    x[1, 0] = math.nan
    calls = []

    def score(x, t):
        calls.append(1)
        return EXACT(x, t)
    with pytest.raises(NonFiniteError, match=r"`x_init` is non-finite \(1 NaN/inf of 8 "
                                             r"entries\): the sampler would start at t = T = 1"
                       ) as info:
        sample(name, SDE, score, x_init=x, **options(name))
    assert float(info.value.t) == SDE.T and not calls


@pytest.mark.parametrize("name", NAMES)
def test_polling_does_not_change_the_samples(name):
    out = []
    for k in (1, 7):
        g = torch.Generator().manual_seed(0)
        x, _ = sample(name, SDE, EXACT, (4, 2), generator=g, poll_every=k, **options(name))
        out.append(x)
    assert torch.equal(out[0], out[1])


# --------------------------------------------------------------------------- bad arguments

FAULTS = [
    ("dtype=int64", dict(dtype=torch.int64),
     r"`dtype` must be None or a floating-point torch.dtype .* got torch.int64"),
    ("dtype=str", dict(dtype="float32"),
     r"`dtype` must be None or a floating-point torch.dtype .* got 'float32'"),
    ("generator=3", dict(generator=3),
     r"`generator` must be None or a torch.Generator .* got int 3"),
    ("device=foo", dict(device="foo"),
     r"`device` must be None, a torch.device or a device string .* got str 'foo'"),
    ("device=meta", dict(device="meta"), r"`device` must hold values to sample on .* got 'meta'"),
    ("shape=(-1,2)", dict(shape=(-1, 2)),
     r"`shape` must be a sequence of positive ints \(B, \*event\); got \(-1, 2\)"),
    ("shape=(2.5,2)", dict(shape=(2.5, 2)),
     r"`shape` must be a sequence of positive ints .* got \(2.5, 2\) \(entries must be ints\)"),
    ("shape=(4,)", dict(shape=(4,)), r"`shape` must be \(B, \*event\) with at least one event"),
    ("poll_every=0", dict(poll_every=0), r"`poll_every` must be an integer >= 1; got 0"),
    ("meta x_init", dict(x_init=torch.empty(4, 2, device="meta")),
     r"`x_init` must be a floating-point tensor .* shape \(4, 2\).* on the meta device"),
    ("empty x_init", dict(x_init=torch.empty(0, 2)),
     r"`x_init` must be .* with values and positive sizes; got Tensor of shape \(0, 2\)"),
    ("x_init and generator=3", dict(x_init=torch.randn(4, 2), generator=3),
     r"`generator` must be None or a torch.Generator .* got int 3"),
]
if not torch.cuda.is_available():
    FAULTS.append(("device=cuda", dict(device="cuda"),
                   r"`device` = 'cuda' is not available on this machine \(0 CUDA device"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fault, kwargs, message", FAULTS, ids=[f[0] for f in FAULTS])
def test_bad_arguments_raise_a_clear_error(name, fault, kwargs, message):
    kwargs = dict(kwargs)
    shape = kwargs.pop("shape", None if "x_init" in kwargs else (4, 2))
    calls = []

    def score(x, t):
        calls.append(1)
        return EXACT(x, t)
    with pytest.raises(InvalidInputError, match=message):
        sample(name, SDE, score, shape, **options(name), **kwargs)
    assert not calls  # rejected before any work


# --------------------------------------------------------------------------- likelihood, inpaint

def test_log_likelihood_faults_are_clear():
    from generative.likelihood import log_likelihood
    x = torch.randn(4, 2)
    bad = x.clone()
    bad[0, 1] = math.inf
    with pytest.raises(NonFiniteError, match=r"`x` is non-finite \(1 NaN/inf of 8 entries\)"):
        log_likelihood(SDE, EXACT, bad)
    with pytest.raises(InvalidInputError, match=r"`x` must be .* on the meta device"):
        log_likelihood(SDE, EXACT, torch.empty(4, 2, device="meta"))
    with pytest.raises(InvalidInputError, match=r"`x` must be .* got Tensor of shape \(0, 2\)"):
        log_likelihood(SDE, EXACT, torch.empty(0, 2))
    with pytest.raises(InvalidInputError, match=r"`generator` must be None or a torch.Generator"):
        log_likelihood(SDE, EXACT, x, divergence_method="hutchinson", generator=3)
    with pytest.raises(NonFiniteError, match=r"log p_t_min\(x\) is non-finite for 4 of 4 rows: "
                                             r"the prior log-density .* \(prior_logp\)"):
        log_likelihood(SDE, EXACT, x, method="euler", step_size=0.25,
                       prior_logp=lambda z: z[:, 0] * math.nan)
    with pytest.raises(InvalidInputError, match=r"`prior_logp\(z\)` must return a \(4,\) tensor"):
        log_likelihood(SDE, EXACT, x, method="euler", step_size=0.25,
                       prior_logp=lambda z: z)
    with pytest.raises(NonFiniteError):  # a NaN score: the solver's poll
        log_likelihood(SDE, nan_below(0.5), x, method="euler", step_size=0.1)


def test_inpaint_faults_are_clear():
    from generative.inpaint import inpaint
    x, mask = torch.randn(4, 2), torch.tensor([True, False])
    bad = x.clone()
    bad[:, 1] = math.nan                      # unknown pixels may hold anything
    for mode in ("replace", "conditional"):
        out, _ = inpaint(SDE, EXACT, bad, mask, mode=mode, sampler="ddim", n_steps=5)
        assert torch.isfinite(out[:, 1]).all()
    bad[0, 0] = math.nan
    for mode in ("replace", "conditional"):
        with pytest.raises(ValueError, match=r"known must be finite at the known pixels "
                                             r"\(mask True\); 1 are NaN/inf"):
            inpaint(SDE, EXACT, bad, mask, mode=mode, sampler="ddim", n_steps=5)
    with pytest.raises(ValueError, match=r"`known` must be .* on the meta device"):
        inpaint(SDE, EXACT, torch.empty(4, 2, device="meta"), mask, sampler="ddim", n_steps=5)
    with pytest.raises(InvalidInputError, match=r"`generator` must be None or a torch.Generator"):
        inpaint(SDE, EXACT, x, mask, sampler="ddim", n_steps=5, generator=3)
