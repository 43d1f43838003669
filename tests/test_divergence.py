"""Tests for solvers.divergence: exact trace, Hutchinson / Hutch++ statistics, probes, gradients.

Statistical tests use fixed seeds and bounds of 5 standard errors derived from the analytic
variance (or, for a sample variance, from the delta-method standard error using the sample
fourth moment), so a correct implementation fails with probability ~1e-6 per check while a
wrong mean / probe distribution / variance formula fails with certainty (checked explicitly
where it matters).
"""
from __future__ import annotations

import importlib
import math
import warnings

import pytest
import torch
from torch import nn

from solvers.divergence import divergence, sample_probes
from solvers.errors import InvalidInputError

dv = importlib.import_module("solvers.divergence")  # the module, not the re-exported function

F64 = torch.float64


# --------------------------------------------------------------------------- helpers

def mlp(d: int, hidden: int = 16, dtype: torch.dtype = F64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Softplus(),
                         nn.Linear(hidden, d)).to(dtype)


class ImageMap(nn.Module):
    """(B, C, H, W) -> same shape; mixes channels and pixels (conv + dense), rows independent."""

    def __init__(self, c: int, h: int, w: int) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(c, 4, 3, padding=1)
        self.back = nn.Conv2d(4, c, 3, padding=1)
        self.dense = nn.Linear(c * h * w, c * h * w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.back(torch.tanh(self.conv(x)))
        return y + torch.sin(self.dense(x.flatten(1))).view_as(x)


def jacobian_blocks(fn, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Per-row Jacobians (B, D, D) from torch.autograd.functional.jacobian."""
    B, D = x.shape[0], x[0].numel()
    J = torch.autograd.functional.jacobian(fn, x, create_graph=create_graph).reshape(B, D, B, D)
    return torch.stack([J[b, :, b, :] for b in range(B)])


def trace_ref(fn, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    return torch.diagonal(jacobian_blocks(fn, x, create_graph), dim1=1, dim2=2).sum(-1)


def rademacher_var(A: torch.Tensor) -> torch.Tensor:
    """Var(zᵀAz), z Rademacher: Σ_{i<j}(A_ij + A_ji)² = ½‖A+Aᵀ‖_F² − 2 Σ A_ii²."""
    diag = torch.diagonal(A, dim1=-2, dim2=-1)
    return 0.5 * (A + A.mT).pow(2).sum((-2, -1)) - 2 * diag.pow(2).sum(-1)


def gaussian_var(A: torch.Tensor) -> torch.Tensor:
    """Var(zᵀAz), z standard normal: 2‖sym(A)‖_F²."""
    return 2 * (0.5 * (A + A.mT)).pow(2).sum((-2, -1))


def sample_var_tolerance(samples: torch.Tensor, k: float = 5.0) -> float:
    """k standard errors of the sample variance: SE² ≈ (μ₄ − σ⁴)/N (delta method)."""
    c = samples - samples.mean()
    m2, m4 = c.pow(2).mean(), c.pow(4).mean()
    return k * float(((m4 - m2 ** 2) / samples.numel()).sqrt())


@pytest.fixture(params=["loop", "vmap"])
def strategy(request, monkeypatch):
    """Force the per-product autograd loop or the torch.func vmap path."""
    if request.param == "loop":
        monkeypatch.setattr(dv, "_VMAP_MAX_ELEMENTS", 0)
    else:
        monkeypatch.setattr(dv, "_VMAP_MIN_PRODUCTS", 1)
        monkeypatch.setattr(dv, "_VMAP_MAX_ELEMENTS", 1 << 40)
    return request.param


# --------------------------------------------------------------------------- exact

def test_exact_matches_jacobian_trace_vector(strategy):
    f = mlp(5)
    x = torch.randn(6, 5, dtype=F64)
    out, div = divergence(f, x)
    assert div.shape == (6,) and div.dtype == F64
    torch.testing.assert_close(out, f(x), rtol=0, atol=1e-14)
    torch.testing.assert_close(div, trace_ref(f, x), rtol=0, atol=1e-10)


def test_exact_matches_jacobian_trace_image(strategy):
    f = ImageMap(2, 3, 4).double()
    x = torch.randn(3, 2, 3, 4, dtype=F64)
    out, div = divergence(f, x, method="exact")
    assert out.shape == x.shape and div.shape == (3,)
    ref = trace_ref(f, x)
    assert ref.abs().min() > 1e-3  # a non-trivial trace
    torch.testing.assert_close(div, ref, rtol=0, atol=1e-10)


def test_exact_float32_agrees_with_float64():
    f = mlp(4)
    x = torch.randn(8, 4, dtype=F64)
    _, d64 = divergence(f, x)
    _, d32 = divergence(f.float(), x.float())
    assert d32.dtype == torch.float32
    torch.testing.assert_close(d32.double(), d64, rtol=1e-5, atol=1e-5)


def test_product_counts(monkeypatch):
    """exact: D products; hutchinson and hutch++: n_probes products (counted in backward)."""
    monkeypatch.setattr(dv, "_VMAP_MAX_ELEMENTS", 0)
    calls = []

    class Tap(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return x.clone()

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            calls.append(1)
            return g

    f = mlp(7)
    fn = lambda z: f(Tap.apply(z))  # noqa: E731
    x = torch.randn(3, 7, dtype=F64)
    for method, n, expected in [("exact", 1, 7), ("hutchinson", 5, 5), ("hutch++", 9, 9),
                                ("hutch++", 10, 10), ("hutch++", 30, 27)]:
        calls.clear()
        divergence(fn, x, method=method, n_probes=n)
        # hutch++ with n//3 = 10 > D = 7 uses only min(k, D) products for J^T Q.
        assert len(calls) == expected, (method, n)


# --------------------------------------------------------------------------- Hutchinson

@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_unbiased_on_mlp(probe):
    """Mean of N single-probe estimates within 5 analytic standard errors of the trace."""
    f = mlp(6)
    x = torch.randn(4, 6, dtype=F64)
    J = jacobian_blocks(f, x)
    tr = torch.diagonal(J, dim1=1, dim2=2).sum(-1)
    var = rademacher_var(J) if probe == "rademacher" else gaussian_var(J)
    N = 20000
    torch.manual_seed(2)
    # Rows are independent: N copies of each row with one probe each = N independent estimates.
    _, est = divergence(f, x.repeat(N, 1), method="hutchinson", probe=probe)
    mean = est.view(N, 4).mean(0)
    se = (var / N).sqrt()
    assert torch.all((mean - tr).abs() < 5 * se), ((mean - tr) / se)
    # The bound is tight enough to catch a biased estimator: e.g. a 1 % bias would fail.
    assert torch.all(5 * se < 0.3 * tr.abs().max())


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_variance_linear_map(probe):
    """For f(x)=Ax the empirical variance matches the analytic one (5 delta-method SEs)."""
    torch.manual_seed(3)
    d = 6
    A = torch.randn(d, d, dtype=F64) + torch.diag(torch.linspace(1.0, 3.0, d, dtype=F64))
    f = lambda z: z @ A.T  # noqa: E731
    N = 40000
    x = torch.zeros(N, d, dtype=F64)
    eps = sample_probes(x, 1, probe, generator=torch.Generator().manual_seed(4))
    _, est = divergence(f, x, method="hutchinson", probes=eps)
    assert abs(float(est.mean() - A.trace())) < 5 * math.sqrt(
        float(rademacher_var(A) if probe == "rademacher" else gaussian_var(A)) / N)
    s2 = float(est.var())
    tol = sample_var_tolerance(est)
    sigma2 = float(rademacher_var(A) if probe == "rademacher" else gaussian_var(A))
    assert abs(s2 - sigma2) < tol, (s2, sigma2, tol)
    # The test discriminates: the other probe's variance, and the naive non-symmetrised
    # formula 2(‖A‖_F² − ΣA_ii²), are each outside the tolerance.
    other = float(gaussian_var(A) if probe == "rademacher" else rademacher_var(A))
    naive = float(2 * (A.pow(2).sum() - A.diag().pow(2).sum()))
    naive = naive if probe == "rademacher" else 2 * float(A.pow(2).sum())
    assert abs(other - sigma2) > 2 * tol and abs(naive - sigma2) > 2 * tol


def test_hutchinson_n_probes_averages_and_divides_variance():
    torch.manual_seed(5)
    d, n, N = 5, 4, 20000
    A = torch.randn(d, d, dtype=F64)
    f = lambda z: z @ A.T  # noqa: E731
    x = torch.zeros(N, d, dtype=F64)
    eps = sample_probes(x, n, generator=torch.Generator().manual_seed(6))
    _, est = divergence(f, x, method="hutchinson", n_probes=n, probes=eps)
    singles = torch.stack([divergence(f, x, method="hutchinson", probes=eps[i])[1]
                           for i in range(n)])
    torch.testing.assert_close(est, singles.mean(0), rtol=0, atol=1e-12)
    sigma2 = float(rademacher_var(A)) / n
    assert abs(float(est.var()) - sigma2) < sample_var_tolerance(est)


# --------------------------------------------------------------------------- Hutch++

def decaying_matrix(d: int, base: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(d, d, dtype=F64, generator=g))
    return U @ torch.diag(base ** torch.arange(d, dtype=F64)) @ U.T


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchpp_lower_variance_than_hutchinson(probe):
    d, n, N = 40, 12, 4000
    A = decaying_matrix(d, 0.5, seed=7)
    f = lambda z: z @ A.T  # noqa: E731
    x = torch.zeros(N, d, dtype=F64)
    torch.manual_seed(8)
    _, h = divergence(f, x, method="hutchinson", n_probes=n, probe=probe)
    _, hpp = divergence(f, x, method="hutch++", n_probes=n, probe=probe)
    var_h = float(rademacher_var(A) if probe == "rademacher" else gaussian_var(A)) / n
    assert abs(float(h.var()) - var_h) < sample_var_tolerance(h)
    # Hutch++ at the same product count: variance below a fifth of Hutchinson's (measured
    # ratio ~0.05; the relative SE of each sample variance at N=4000 is a few percent).
    assert float(hpp.var()) < 0.2 * float(h.var())
    assert abs(float(hpp.mean() - A.trace())) < 5 * math.sqrt(float(hpp.var()) / N)


def test_hutchpp_unbiased_on_indefinite_nonsymmetric_matrix():
    torch.manual_seed(9)
    d, n, N = 10, 6, 20000
    A = torch.randn(d, d, dtype=F64) / math.sqrt(d)
    A = A + torch.diag(torch.linspace(-2, 1, d, dtype=F64))
    f = lambda z: z @ A.T  # noqa: E731
    _, est = divergence(f, torch.zeros(N, d, dtype=F64), method="hutch++", n_probes=n)
    assert abs(float(est.mean() - A.trace())) < 5 * math.sqrt(float(est.var()) / N)


@pytest.mark.parametrize("image", [False, True])
def test_hutchpp_exact_when_sketch_spans_event(strategy, image):
    """With n_probes//3 >= D the sketch spans the event space and Hutch++ is the exact trace."""
    f = ImageMap(1, 2, 2).double() if image else mlp(4)
    x = torch.randn(5, 1, 2, 2, dtype=F64) if image else torch.randn(5, 4, dtype=F64)
    _, div = divergence(f, x, method="hutch++", n_probes=12)
    torch.testing.assert_close(div, trace_ref(f, x), rtol=0, atol=1e-10)


def test_hutchpp_gradient_holds_sketch_basis_constant():
    """d/dA of the estimate equals QQᵀ + (1/g)Σ g'g'ᵀ with Q fixed (documented behaviour)."""
    torch.manual_seed(10)
    d, n = 6, 7  # k = 2 sketch, 3 residual probes
    A = torch.randn(d, d, dtype=F64, requires_grad=True)
    x = torch.zeros(1, d, dtype=F64)
    eps = sample_probes(x, n, "gaussian", generator=torch.Generator().manual_seed(11))
    _, div = divergence(lambda z: z @ A.T, x, method="hutch++", probes=eps, create_graph=True)
    (grad,) = torch.autograd.grad(div.sum(), A)
    S, G = eps[:2, 0].T, eps[2:5, 0].T                     # (d, 2), (d, 3)
    Q, _ = torch.linalg.qr(A.detach().T @ S)                # VJPs give Jᵀv = Aᵀv
    Gp = G - Q @ (Q.T @ G)
    expected = Q @ Q.T + Gp @ Gp.T / 3
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)
    # ...and the value is tr(QᵀAQ) + (1/3) tr(G'ᵀAG').
    value = torch.trace(Q.T @ A.detach() @ Q) + torch.trace(Gp.T @ A.detach() @ Gp) / 3
    torch.testing.assert_close(div.detach()[0], value, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- probes

def test_sample_probes_shapes_and_values():
    x = torch.zeros(3, 2, 4, dtype=torch.float32)
    r = sample_probes(x, 5, "rademacher", generator=torch.Generator().manual_seed(0))
    assert r.shape == (5, 3, 2, 4) and r.dtype == torch.float32
    assert set(r.unique().tolist()) == {-1.0, 1.0}
    g = sample_probes(x.double(), 2, "gaussian", generator=torch.Generator().manual_seed(0))
    assert g.shape == (2, 3, 2, 4) and g.dtype == F64
    again = sample_probes(x, 5, "rademacher", generator=torch.Generator().manual_seed(0))
    assert torch.equal(r, again)
    assert not torch.equal(r, sample_probes(x, 5, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_probes_fix_the_estimate(method):
    f = mlp(5)
    x = torch.randn(4, 5, dtype=F64)
    eps = sample_probes(x, 6, generator=torch.Generator().manual_seed(12))
    _, a = divergence(f, x, method=method, probes=eps)
    torch.manual_seed(123)  # global RNG state must not matter when eps is given
    _, b = divergence(f, x, method=method, probes=eps, n_probes=6)
    assert torch.equal(a, b)
    _, c = divergence(f, x, method=method, n_probes=6)
    assert not torch.equal(a, c)


def test_single_probe_shape_and_manual_value():
    f = mlp(3)
    x = torch.randn(4, 3, dtype=F64)
    eps = sample_probes(x, 1, "gaussian", generator=torch.Generator().manual_seed(13))
    _, a = divergence(f, x, method="hutchinson", probes=eps[0])
    _, b = divergence(f, x, method="hutchinson", probes=eps)
    assert torch.equal(a, b)
    J = jacobian_blocks(f, x)
    manual = torch.einsum("bi,bij,bj->b", eps[0], J, eps[0])
    torch.testing.assert_close(a, manual, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- return_vjp

@pytest.mark.parametrize("image", [False, True])
def test_return_vjp_exact_gives_the_rows_of_the_jacobian(strategy, image):
    f = ImageMap(2, 2, 3).double() if image else mlp(4)
    x = torch.randn(3, 2, 2, 3, dtype=F64) if image else torch.randn(5, 4, dtype=F64)
    B, D = x.shape[0], x[0].numel()
    out, div, rows = divergence(f, x, return_vjp=True)
    assert rows.shape == (D, *x.shape)
    J = jacobian_blocks(f, x)                                           # (B, D, D)
    torch.testing.assert_close(rows.reshape(D, B, D).permute(1, 0, 2), J, rtol=0, atol=1e-12)
    torch.testing.assert_close(div, divergence(f, x)[1], rtol=0, atol=0)
    torch.testing.assert_close(rows.reshape(D, B, D).pow(2).sum((0, 2)), J.pow(2).sum((1, 2)),
                               rtol=1e-12, atol=0)


def test_return_vjp_hutchinson_gives_probe_products(strategy):
    f = mlp(4)
    x = torch.randn(5, 4, dtype=F64)
    eps = sample_probes(x, 3, "gaussian", generator=torch.Generator().manual_seed(16))
    _, div, vjp = divergence(f, x, method="hutchinson", probes=eps, return_vjp=True)
    J = jacobian_blocks(f, x)
    torch.testing.assert_close(vjp, torch.einsum("nbi,bij->nbj", eps, J), rtol=0, atol=1e-12)
    torch.testing.assert_close(div, divergence(f, x, method="hutchinson", probes=eps)[1],
                               rtol=0, atol=0)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_return_vjp_hutchinson_estimates_frobenius_norm(probe):
    """mean ‖εᵀJ‖² over 20000 probes is within 5 standard errors of ‖J‖²_F (random MLP)."""
    f = mlp(5, seed=3)
    x = torch.randn(2, 5, dtype=F64)
    n = 20000
    eps = sample_probes(x, n, probe, generator=torch.Generator().manual_seed(17))
    _, _, vjp = divergence(f, x, method="hutchinson", probes=eps, return_vjp=True)
    sq = vjp.pow(2).sum(-1)                                                 # (n, B)
    ref = jacobian_blocks(f, x).pow(2).sum((1, 2))
    se = sq.std(0) / math.sqrt(n)
    assert ((sq.mean(0) - ref).abs() < 5 * se).all(), (sq.mean(0), ref, se)
    assert (se < 0.05 * ref).all()  # the check is tight enough to catch a wrong scale


def test_return_vjp_follows_create_graph(strategy):
    """With create_graph the Frobenius term is differentiable w.r.t. fn's parameters and its
    gradient matches autograd through the full Jacobian; without, the stack is detached."""
    x, W1, b1, W2 = _tiny_params()
    x = x.detach()
    _, _, rows = divergence(_tiny_fn(W1, b1, W2), x, return_vjp=True, create_graph=True)
    (g,) = torch.autograd.grad(rows.pow(2).sum(), W1)
    frob = lambda W: jacobian_blocks(_tiny_fn(W, b1, W2), x, True).pow(2).sum()  # noqa: E731
    g_ref = torch.autograd.functional.jacobian(frob, W1.detach())
    assert g_ref.abs().max() > 1e-2
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-12)
    _, _, rows = divergence(_tiny_fn(W1, b1, W2), x, method="hutchinson", n_probes=2,
                            return_vjp=True)
    assert rows.shape == (2, *x.shape) and not rows.requires_grad


# --------------------------------------------------------------------------- gradients

def _tiny_params():
    torch.manual_seed(14)
    W1 = torch.randn(5, 3, dtype=F64, requires_grad=True)
    b1 = torch.randn(5, dtype=F64, requires_grad=True)
    W2 = torch.randn(3, 5, dtype=F64, requires_grad=True)
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    return x, W1, b1, W2


def _tiny_fn(W1, b1, W2):
    return lambda z: torch.tanh(z @ W1.T + b1) @ W2.T


def test_gradcheck_exact(strategy):
    def fun(x, W1, b1, W2):
        return divergence(_tiny_fn(W1, b1, W2), x, method="exact", create_graph=True)
    assert torch.autograd.gradcheck(fun, _tiny_params())


@pytest.mark.parametrize("method,n", [("hutchinson", 2), ("hutch++", 9)])
def test_gradcheck_estimators_with_fixed_probes(method, n):
    """Hutchinson with fixed eps is a smooth function; Hutch++ with n//3 >= D is the exact trace,
    so its Q-constant gradient is the true one."""
    params = _tiny_params()
    eps = sample_probes(params[0], n, generator=torch.Generator().manual_seed(15))

    def fun(x, W1, b1, W2):
        return divergence(_tiny_fn(W1, b1, W2), x, method=method, probes=eps, create_graph=True)
    assert torch.autograd.gradcheck(fun, params)


def test_create_graph_keeps_output_graph_and_false_detaches(strategy):
    x, W1, b1, W2 = _tiny_params()
    fn = _tiny_fn(W1, b1, W2)
    out, div = divergence(fn, x, create_graph=True)
    assert out.requires_grad and div.requires_grad
    (g_out,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(fn(x).sum(), x)
    torch.testing.assert_close(g_out, g_ref, rtol=0, atol=1e-14)
    out, div = divergence(fn, x, create_graph=False)
    assert not out.requires_grad and not div.requires_grad


def test_create_graph_without_input_grad_reaches_parameters(strategy):
    """A CNF's x may not require grad; div must still be trainable w.r.t. fn's parameters."""
    x, W1, b1, W2 = _tiny_params()
    x = x.detach()
    _, div = divergence(_tiny_fn(W1, b1, W2), x, create_graph=True)
    (g,) = torch.autograd.grad(div.sum(), W2)
    ref = lambda W: trace_ref(_tiny_fn(W1, b1, W), x, create_graph=True).sum()  # noqa: E731
    g_ref = torch.autograd.functional.jacobian(ref, W2.detach())
    assert g_ref.abs().max() > 1e-2
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-12)


def test_inside_no_grad_and_inference_mode(strategy):
    x, W1, b1, W2 = _tiny_params()
    fn = _tiny_fn(W1, b1, W2)
    ref = trace_ref(fn, x.detach())
    with torch.no_grad():
        _, div = divergence(fn, x)
        assert not div.requires_grad
        # create_graph=True still builds the graph to x's inputs.
        _, div_g = divergence(fn, x, create_graph=True)
    torch.testing.assert_close(div, ref, rtol=0, atol=1e-12)
    (gx,) = torch.autograd.grad(div_g.sum(), x)
    (gx_ref,) = torch.autograd.grad(divergence(fn, x, create_graph=True)[1].sum(), x)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=1e-14)
    with torch.inference_mode():
        xi = x.detach().clone()
        _, div_i = divergence(fn, xi, method="hutchinson", n_probes=3)
        _, div_e = divergence(fn, xi)
    torch.testing.assert_close(div_e, ref, rtol=0, atol=1e-12)
    assert div_i.shape == (2,) and torch.isfinite(div_i).all()


def test_vmap_failure_falls_back_to_loop(monkeypatch):
    monkeypatch.setattr(dv, "_VMAP_MIN_PRODUCTS", 1)

    class OldStyle(torch.autograd.Function):  # no setup_context: torch.func refuses it
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return torch.sin(z)

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            return g * torch.cos(z)

    x = torch.randn(3, 4, dtype=F64)
    with pytest.warns(RuntimeWarning, match="falling back"):
        _, div = divergence(OldStyle.apply, x)
    torch.testing.assert_close(div, torch.cos(x).sum(1), rtol=0, atol=1e-14)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["exact", "hutchinson", "hutch++"])
def test_cuda_matches_cpu(method):
    f = mlp(6, dtype=torch.float32)
    x = torch.randn(16, 6)
    eps = sample_probes(x, 6)
    _, d_cpu = divergence(f, x, method=method, probes=eps)
    _, d_gpu = divergence(f.cuda(), x.cuda(), method=method, probes=eps.cuda())
    assert d_gpu.device.type == "cuda"
    torch.testing.assert_close(d_gpu.cpu(), d_cpu, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- bad input

def _raises(match: str, **kw):
    f = kw.pop("fn", mlp(3))
    x = kw.pop("x", torch.randn(2, 3, dtype=F64))
    with pytest.raises(InvalidInputError, match=match) as info:
        divergence(f, x, **kw)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_bad_return_vjp():
    msg = _raises("return_vjp", method="hutch++", n_probes=3, return_vjp=True)
    assert "'exact'" in msg and "'hutchinson'" in msg
    _raises("return_vjp", return_vjp=1)


def test_bad_method_and_probe_list_valid_choices():
    msg = _raises("method", method="hutch")
    assert "'exact'" in msg and "'hutchinson'" in msg and "'hutch++'" in msg and "'hutch'" in msg
    msg = _raises("probe", method="hutchinson", probe="normal")
    assert "'rademacher'" in msg and "'gaussian'" in msg and "'normal'" in msg


@pytest.mark.parametrize("method,n", [("hutchinson", 0), ("hutchinson", -1), ("hutchinson", 1.5),
                                      ("hutchinson", True), ("hutch++", 2)])
def test_bad_n_probes(method, n):
    msg = _raises("n_probes", method=method, n_probes=n)
    assert repr(n) in msg and ">=" in msg


def test_bad_probes():
    x = torch.randn(2, 3, dtype=F64)
    msg = _raises("probes", x=x, method="hutchinson", probes=torch.ones(2, 4, dtype=F64))
    assert "(2, 3)" in msg and "(2, 4)" in msg
    _raises("probes", x=x, method="hutchinson", probes=torch.ones(3, 3, 3, dtype=F64))
    _raises("probes", x=x, method="hutchinson", probes=[[1.0] * 3] * 2)
    _raises("probes", x=x, method="hutch++", probes=torch.ones(2, 2, 3, dtype=F64))
    msg = _raises("n_probes", x=x, method="hutchinson", n_probes=3,
                  probes=torch.ones(4, 2, 3, dtype=F64))
    assert "4" in msg and "3" in msg


def test_eps_is_the_deprecated_name_of_probes():
    x = torch.randn(2, 3, dtype=F64, generator=torch.Generator().manual_seed(21))
    f = lambda z: z.sin()  # noqa: E731
    probes = sample_probes(x, 4, generator=torch.Generator().manual_seed(22))
    _, new = divergence(f, x, method="hutchinson", probes=probes)
    with pytest.warns(DeprecationWarning, match="eps=.*deprecated.*probes="):
        _, old = divergence(f, x, method="hutchinson", eps=probes)
    torch.testing.assert_close(old, new, rtol=0, atol=0)  # the same probes, the same arithmetic
    _raises("probes", x=x, method="hutchinson", probes=probes, eps=probes)


def test_bad_fn_output_and_x(strategy):
    msg = _raises("fn", fn=lambda z: z[:, :2])
    assert "(2, 3)" in msg and "(2, 2)" in msg
    _raises("fn", fn=lambda z: z.sum(1), method="hutchinson")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported directly, not via the torch.func fallback
        _raises("fn", fn=lambda z: 1.0)
    _raises("x", x=torch.randn(3, dtype=F64))
    _raises("x", x=torch.ones(2, 3, dtype=torch.int64))
    _raises("x", x=[[0.0, 1.0]])
