"""The SRK engine (`sde.srk`): noise terms formed a block of fixed-grid steps at a time give
exactly the per-step terms and states; the compiled weight columns are the tableau's."""
import pytest
import torch

from solvers import sdeint
from solvers.brownian.grid import GridIncrements
from solvers.sde.methods import METHODS, SDEMethod
from solvers.sde.srk import block_noise, compile_srk, step_noise
from solvers.sde.tableaus import SRA1, SRI2


@pytest.mark.parametrize("tab", [SRA1, SRI2])
def test_weight_columns_reproduce_the_tableau(tab):
    ct = compile_srk(tab)
    for s in range(tab.n_stages):
        want = [tab.beta[k][s] for k in range(4)]
        i = ct.weight_of[s]
        got = [0.0] * 4
        for k, c in (() if i is None else ct.combos[i]):
            got[k] = c
        assert got == want
    assert len(ct.combos) == len(set(ct.combos))


@pytest.mark.parametrize("tab", [SRA1, SRI2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_block_noise_equals_step_noise_bitwise(tab, dtype):
    """The same elementwise ops with per-step coefficients as tensors (host-computed, the
    values a Python float becomes in the op) give the same bits; steps of both signs."""
    ct = compile_srk(tab)
    hs = [0.01, 0.013, -0.02, 0.0071, -0.5]
    g = torch.Generator().manual_seed(0)
    dw = torch.randn(len(hs), 6, 3, generator=g, dtype=dtype) * 0.1
    lev = torch.randn(len(hs), 6, 3, generator=g, dtype=dtype) * 0.03
    block = block_noise(ct, dw, lev, hs)
    for k, h in enumerate(hs):
        one = step_noise(ct, dw[k], lev[k], h)
        assert torch.equal(block[k].i10h, one.i10h)
        for wb, ws in zip(block[k].w, one.w):
            assert (wb is None) == (ws is None)
            if wb is not None:
                assert torch.equal(wb, ws)


class _Nonlinear:
    sde_type = "ito"

    def __init__(self, noise_type):
        self.noise_type = noise_type
        self.S = torch.tensor([[0.3, 0.1, 0.0], [-0.1, 0.4, 0.2], [0.0, 0.1, 0.5]])

    def f(self, t, y):
        return torch.sin(y) - 0.5 * y + 0.1 * t

    def g(self, t, y):
        if self.noise_type == "diagonal":
            return 0.3 * torch.cos(y) + 0.05 * t
        if self.noise_type == "scalar":
            return (0.3 * torch.cos(y)).unsqueeze(-1)
        return (self.S.to(y.dtype) * (1 + t)).expand(y.shape[0], 3, 3)


@pytest.mark.parametrize("noise_type", ["diagonal", "scalar", "additive"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grid_solve_with_block_terms_equals_per_step_terms(noise_type, dtype, monkeypatch):
    """A fixed-grid srk solve is bit-identical whether the noise terms come in blocks from
    `GridIncrements.prepared` or are formed in each step from the raw increments (same seed,
    so the same increments); 700 steps cross chunk and block boundaries."""
    y0 = torch.linspace(-1, 1, 12, dtype=dtype).reshape(4, 3)
    ts = torch.tensor([0.0, 0.31, 0.7], dtype=dtype)
    kw = dict(method="srk", dt=1e-3, options={"seed": 11, "chunk_size": 96})
    fast = sdeint(_Nonlinear(noise_type), y0, ts, **kw)
    monkeypatch.setattr(SDEMethod, "block_noise", lambda self, noise_type: None)
    slow = sdeint(_Nonlinear(noise_type), y0, ts, **kw)
    assert torch.isfinite(fast).all() and torch.equal(fast, slow)


def test_prepared_blocks_follow_the_chunks():
    """`prepared(k)` returns the terms ``prepare`` made of step k's own increments, for any
    order of k (blocks inside chunks, chunks reloaded)."""
    hs = [0.01] * 37
    seen = []

    def prepare(dw, lev, steps):
        seen.append(len(steps))
        return [(dw[i].clone(), steps[i]) for i in range(len(steps))]

    gi = GridIncrements(hs, (2, 3), torch.float64, torch.device("cpu"), 5, True, 10, prepare,
                        block_numel=24)                       # 4 steps per block
    for k in [36, 0, 13, 9, 10, 35, 3]:
        dw, h = gi.prepared(k)
        assert torch.equal(dw, gi.get(k)[0]) and h == hs[k]
    assert max(seen) == 4


def test_only_srk_forms_block_terms():
    assert [n for n, m in METHODS.items() if m.block_noise("diagonal") is not None] == ["srk"]


class _OU:
    sde_type = "ito"

    def __init__(self, noise_type):
        self.noise_type, self.S = noise_type, 0.3 * torch.eye(3)

    def f(self, t, y):
        return -0.5 * y                                   # 1 op

    def g(self, t, y):                                    # 1 op
        return torch.full_like(y, 0.3) if self.noise_type == "diagonal" else \
            self.S.expand(y.shape[0], 3, 3)


@pytest.mark.parametrize("noise_type, per_step", [
    # SRI2: 3 f and 4 g calls (7 ops); stage points 2 + 1, 2 + 4, 4; output 3 drift adds and
    # 4 addcmuls; 3 distinct stage times: 30
    ("diagonal", 30),
    # SRA1: 2 f and 2 g calls (4 ops); 2 stage times; stage point 1 add + 1 product; output
    # 2 adds + 1 product (g is the same tensor at both stage times: one product with ΔW);
    # a product of a batch-shared g is select, transpose, addmm: 15
    ("additive", 15)])
def test_srk_fixed_grid_op_count(noise_type, per_step):
    """Dispatched ops per fixed-grid srk step (no noise arithmetic in the step: the blocks'
    terms, drawing and polling add under 0.3 per step over 1000 steps)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Count():
        sdeint(_OU(noise_type), torch.ones(8, 3), torch.tensor([0.0, 1.0]), method="srk",
               dt=1e-3)
    assert per_step <= Count.n / 1000 < per_step + 0.3


class _SharedOrCopied:
    """Additive noise, time independent: g returns one tensor (shared product) or a fresh
    copy per call (one product per stage)."""

    noise_type, sde_type = "additive", "ito"

    def __init__(self, copy):
        self.copy = copy
        self.S = torch.tensor([[0.3, 0.1, 0.0], [-0.1, 0.4, 0.2], [0.0, 0.1, 0.5]],
                              dtype=torch.float64)

    def f(self, t, y):
        return torch.sin(y) - 0.5 * y

    def g(self, t, y):
        return (self.S.clone() if self.copy else self.S).expand(y.shape[0], 3, 3)


def test_shared_diffusion_product_agrees_to_round_off():
    """g(t + h) and g(t) one tensor: the output's noise is g ΔW in one product instead of
    g (ΔW - I10/h) + g I10/h (equal in exact arithmetic); float64 over 500 steps."""
    y0 = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)
    ts = torch.tensor([0.0, 0.5], dtype=torch.float64)
    kw = dict(method="srk", dt=1e-3, options={"seed": 3})
    shared = sdeint(_SharedOrCopied(False), y0, ts, **kw)
    copied = sdeint(_SharedOrCopied(True), y0, ts, **kw)
    # |y| ~ 1 and each step's round-off ~1e-16, accumulating over 500 steps: 1e-12 is
    # well above the accumulated difference and far below any step's noise (~3e-2)
    assert not torch.equal(shared, copied) and torch.allclose(shared, copied, rtol=0, atol=1e-12)
