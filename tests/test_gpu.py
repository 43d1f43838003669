"""The CUDA path: solvers, samplers and training give the CPU's results, and the stepping loops
make no host syncs beyond their documented polls. Every test needs a CUDA device (skipped
without one, see conftest.py).

Agreement is checked in float64, with every random number drawn on the CPU and moved over
(CPU and CUDA generators give different streams); remaining differences come from the two
devices' floating-point kernels (~1e-15 per operation).

Host syncs are counted with ``torch.cuda.set_sync_debug_mode('warn')``, which warns on every
synchronising call (``.item()``, ``bool(tensor)``, blocking copies in either direction).
The documented budget inside the step loop is one poll every ``poll_every`` steps, so a
solve of ``2n`` steps may make at most ``polls(2n) - polls(n)`` more syncs than the same
solve of ``n`` steps (the validation and setup syncs, equal in both, cancel).
"""
import copy
import math
import warnings

import pytest
import torch

from dynamics import VPSDE, GaussianMixture
from generative import randomness
from generative.nets import MLP
from generative.samplers import sample
from generative.train import TrainConfig, train
from solvers import BrownianInterval, sdeint, solve_ode

pytestmark = pytest.mark.gpu
F64 = torch.float64


def _count_syncs(fn):
    """``(fn(), number of synchronising CUDA calls it made)``."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            out = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return out, sum("synchroniz" in str(w.message) for w in caught)


# --------------------------------------------------------------------------- problems

class Oscillators(torch.nn.Module):
    """Row i: y'' = -w_i² y with its own frequency, as a first-order system (B, 2)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("w2", w.square())

    def forward(self, t, y):
        return torch.stack([y[:, 1], -self.w2 * y[:, 0]], dim=1)


def _oscillators(device):
    w = torch.linspace(1.0, 3.0, 16, dtype=F64)
    y0 = torch.stack([torch.ones(16, dtype=F64), torch.zeros(16, dtype=F64)], dim=1)
    return Oscillators(w).to(device), y0.to(device)


class NonlinearSDE(torch.nn.Module):
    """dY = (-Y + sin Y) dt + 0.5 (1 + 0.2 cos Y) dW, diagonal Itô noise."""

    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return -y + torch.sin(y)

    def g(self, t, y):
        return 0.5 * (1 + 0.2 * torch.cos(y))


class CPUIncrements:
    """A torchsde-style Brownian motion on `device` whose increments come from a CPU
    `BrownianInterval`, so a CUDA solve sees the CPU solve's noise."""

    def __init__(self, bm: BrownianInterval, device) -> None:
        self.bm, self.device, self.shape = bm, torch.device(device), bm.shape
        self.levy_area_approximation = bm.levy_area_approximation

    def __call__(self, ta, tb=None, return_U=False):
        out = self.bm(ta, tb, return_U=return_U)
        if isinstance(out, tuple):
            return tuple(v.to(self.device) for v in out)
        return out.to(self.device)


def _brownian(shape, entropy=7):
    return BrownianInterval(0.0, 1.0, shape, dtype=F64, entropy=entropy)


# --------------------------------------------------------------------------- agreement

def test_per_sample_dopri5_agrees_with_cpu():
    sols = []
    for device in ("cpu", "cuda"):
        f, y0 = _oscillators(device)
        t = torch.tensor([0.0, 2.0, 5.0], dtype=F64, device=device)
        sols.append(solve_ode(f, y0, t, method="dopri5", rtol=1e-9, atol=1e-9,
                              per_sample=True))
    cpu, cuda = sols
    assert cuda.ys.is_cuda
    torch.testing.assert_close(cuda.ys.cpu(), cpu.ys, rtol=0, atol=1e-7)
    # same accepted steps per row, up to a rare flipped accept/reject decision
    assert (cuda.stats["n_steps"].cpu() - cpu.stats["n_steps"]).abs().max() <= 2


@pytest.mark.parametrize("method", ["euler", "milstein"])
def test_sdeint_with_cpu_brownian_increments_agrees_with_cpu(method):
    y0 = torch.linspace(-1, 1, 12, dtype=F64).reshape(4, 3)
    ts = torch.linspace(0, 1, 5, dtype=F64)
    ys = [sdeint(NonlinearSDE(), y0.to(device), ts.to(device), dt=1 / 64, method=method,
                 bm=CPUIncrements(_brownian(y0.shape), device))
          for device in ("cpu", "cuda")]
    assert ys[1].is_cuda
    torch.testing.assert_close(ys[1].cpu(), ys[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,kw", [("ode", {"per_sample": True, "rtol": 1e-7, "atol": 1e-7}),
                                     ("ddim", {"n_steps": 40})])
def test_sampler_agrees_with_cpu(name, kw):
    sde = VPSDE()
    mixture = GaussianMixture(torch.tensor([0.3, 0.7], dtype=F64),
                              torch.tensor([[-1.0, 0.5], [1.0, -0.5]], dtype=F64),
                              0.1 * torch.eye(2, dtype=F64).expand(2, 2, 2))
    g = torch.Generator().manual_seed(0)
    x_init = sde.prior_sample((64, 2), generator=g, dtype=F64)
    xs = [sample(name, sde, mixture.score_fn(sde), x_init=x_init.to(device), **kw)[0]
          for device in ("cpu", "cuda")]
    assert xs[1].is_cuda
    torch.testing.assert_close(xs[1].cpu(), xs[0], rtol=0, atol=1e-6)


def test_training_steps_agree_with_cpu():
    """A few AdamW steps of an ε-prediction loss whose t and noise are drawn on the CPU."""
    sde = VPSDE()

    def loss_fn(model, x0, rng):
        t = 0.01 + 0.99 * randomness.rand((x0.shape[0],), rng, dtype=F64, device="cpu")
        z = randomness.randn(x0.shape, rng, dtype=F64, device="cpu")
        t, z = t.to(x0.device), z.to(x0.device)
        mean, std = sde.marginal(x0, t)
        return (model(mean + std * z, t) - z).square().mean()

    torch.manual_seed(0)
    net = MLP(2, width=32, depth=2, time_dim=16).double()
    data = torch.randn(128, 2, dtype=F64)
    config = TrainConfig(steps=5, batch_size=32, lr=1e-2, log_every=5, progress=False)
    runs = [train(copy.deepcopy(net), loss_fn, data, config, device=device)
            for device in ("cpu", "cuda")]
    assert runs[1].metrics["loss"] == pytest.approx(runs[0].metrics["loss"], rel=1e-9)
    for a, b in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert b.is_cuda
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- host syncs

def test_per_sample_adaptive_ode_syncs_only_at_polls():
    poll = 16
    f, y0 = _oscillators("cuda")

    def solve(t_end):
        t = torch.tensor([0.0, t_end], dtype=F64, device="cuda")
        return solve_ode(f, y0, t, method="dopri5", rtol=1e-9, atol=1e-9, per_sample=True,
                         poll_every=poll)

    solve(1.0)  # warm-up: CUDA context, kernels, tableau cache
    (short, n_short), (long, n_long) = _count_syncs(lambda: solve(1.0)), \
        _count_syncs(lambda: solve(40.0))
    polls = [math.ceil(int(s.stats["n_steps"].max()) / poll) for s in (short, long)]
    assert polls[1] - polls[0] >= 20  # long enough that a per-step sync would show
    assert n_short > 0  # the debug mode sees the validation syncs
    assert n_long - n_short <= polls[1] - polls[0], (n_short, n_long, polls)


def test_fixed_step_sde_syncs_only_at_polls():
    poll = 64
    y0 = torch.zeros(8, 3, dtype=F64, device="cuda")

    def solve(n_steps):
        return sdeint(NonlinearSDE(), y0, [0.0, 1.0], dt=1.0 / n_steps, method="euler",
                      options={"poll_every": poll, "seed": 3})

    solve(128)  # warm-up
    (_, n_short), (_, n_long) = _count_syncs(lambda: solve(1024)), \
        _count_syncs(lambda: solve(2048))
    assert n_short > 0
    assert n_long - n_short <= 2048 // poll - 1024 // poll, (n_short, n_long)
