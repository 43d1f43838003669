"""FFJORD / RNODE: exact densities of linear CNFs, Hutchinson unbiasedness, RNODE closed forms,
adjoint vs direct gradients, brute-force change of variables, sampling, training, errors.

Clock: data at t=0, base N(0, I) at t=T. For f(x) = A x the flow maps x to z = e^{AT} x, so
log p(x) = log N(e^{AT} x) + T tr(A) (equivalently, the pushed-forward Gaussian
log p1(x1) = log p0(e^{-B} x1) - tr(B) of the brief with B = -A, T = 1).
"""
import math

import pytest
import torch
from torch import nn

from generative.ffjord import CNF, make_ffjord_loss
from generative.nets import ConvODENet, ODENet
from generative.likelihood import integrate_log_density, standard_normal_logp
from solvers import sample_probes
from solvers.errors import InvalidInputError

D64 = torch.float64


class Linear(nn.Module):
    def __init__(self, A):
        super().__init__()
        self.A = nn.Parameter(A.clone())

    def forward(self, x, t):
        return x @ self.A.T


def _setup(d=3, B=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = 0.6 * torch.randn(d, d, generator=g, dtype=D64)
    x = torch.randn(B, d, generator=g, dtype=D64)
    return A, x


def _closed_form_logp(A, x, T=1.0):
    z = x @ torch.linalg.matrix_exp(A * T).T
    return standard_normal_logp(z) + T * torch.trace(A)


@pytest.mark.parametrize("T", [1.0, 0.7])
def test_linear_cnf_exact_logdensity(T):
    A, x = _setup()
    cnf = CNF(3, Linear(A), T=T, divergence_method="exact", rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        lp = cnf.log_prob(x)
    torch.testing.assert_close(lp, _closed_form_logp(A, x, T), rtol=0, atol=1e-7)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_linear_cnf_hutchinson_per_probe_and_unbiased(probe):
    """With probes fixed per solve, Δ = εᵀAε exactly for a linear field; over N independent
    rows the mean error vs the exact log-density is within 4 standard errors of 0."""
    d, N = 3, 4000
    A, _ = _setup(d)
    x = torch.randn(N, d, generator=torch.Generator().manual_seed(1), dtype=D64)
    cnf = CNF(d, Linear(A), divergence_method="hutchinson", probe=probe, rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        lp = cnf.log_prob(x, generator=torch.Generator().manual_seed(5))
    eps = sample_probes(x, 1, probe, generator=torch.Generator().manual_seed(5))[0]
    exact = _closed_form_logp(A, x)
    quad = ((eps @ A.T) * eps).sum(1)
    torch.testing.assert_close(lp - exact, quad - torch.trace(A), rtol=0, atol=1e-6)
    S = 0.5 * (A + A.T)
    if probe == "rademacher":  # var(εᵀAε) = Σ_{i≠j} S_ij² · 2
        var = 2 * (S.pow(2).sum() - S.diagonal().pow(2).sum())
    else:  # var = 2 ‖S‖_F²
        var = 2 * S.pow(2).sum()
    err = (lp - exact).mean()
    assert abs(float(err)) < 4 * math.sqrt(float(var) / N)
    # and the estimator is genuinely random (the check above is not vacuous)
    assert float((lp - exact).std()) > 0.1 * math.sqrt(float(var))


def test_rnode_terms_linear_closed_form():
    """kinetic = ∫_0^T ‖A x(t)‖² dt with x(t) = e^{At} x; Frobenius = ‖A‖_F² T (exact trace)."""
    A, x = _setup(d=2, B=4)
    T = 1.0
    cnf = CNF(2, Linear(A), T=T, divergence_method="exact", kinetic=1.0, jacobian=1.0,
              rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        regs = cnf.density(x).regs
    # Gauss-Legendre quadrature of the kinetic integral (smooth integrand: exact to ~1e-12)
    nodes, weights = (torch.from_numpy(a) for a in __import__("numpy").polynomial.legendre
                      .leggauss(30))
    ts = 0.5 * T * (nodes + 1)
    vals = torch.stack([((x @ torch.linalg.matrix_exp(A * t).T) @ A.T).pow(2).sum(1)
                        for t in ts])
    kinetic = 0.5 * T * (weights[:, None] * vals).sum(0)
    torch.testing.assert_close(regs["kinetic"], kinetic, rtol=1e-7, atol=0)
    torch.testing.assert_close(regs["jacobian"], torch.full((4,), T * A.pow(2).sum().item(),
                                                            dtype=D64), rtol=1e-8, atol=0)


def test_rnode_frobenius_hutchinson_same_probe():
    """Hutchinson Frobenius term: exactly T‖εᵀA‖² with the solve's probe, unbiased over probes."""
    d, N = 3, 3000
    A, _ = _setup(d)
    x = torch.randn(N, d, generator=torch.Generator().manual_seed(2), dtype=D64)
    cnf = CNF(d, Linear(A), divergence_method="hutchinson", jacobian=1.0, rtol=1e-8, atol=1e-8)
    with torch.no_grad():
        regs = cnf.density(x, generator=torch.Generator().manual_seed(3)).regs
    eps = sample_probes(x, 1, "rademacher", generator=torch.Generator().manual_seed(3))[0]
    torch.testing.assert_close(regs["jacobian"], (eps @ A).pow(2).sum(1), rtol=1e-6, atol=0)
    est = regs["jacobian"]
    assert abs(float(est.mean()) - float(A.pow(2).sum())) < 4 * float(est.std()) / math.sqrt(N)


def _small_cnf(**kw):
    torch.manual_seed(0)
    net = ODENet(2, hidden=(16, 16)).double()
    return CNF(2, net, rtol=1e-8, atol=1e-8, **kw)


@pytest.mark.parametrize("div", ["exact", "hutchinson"])
def test_adjoint_and_checkpoint_gradients_match_direct(div):
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=D64)
    grads, nfes = {}, {}
    for mode in ("direct", "backsolve", "checkpoint"):
        cnf = _small_cnf(divergence_method=div, kinetic=0.1, jacobian=0.1, gradient=mode)
        loss_fn = make_ffjord_loss()
        loss, extras = loss_fn(cnf, x, torch.Generator().manual_seed(7))
        loss.backward()
        grads[mode] = torch.cat([p.grad.flatten() for p in cnf.parameters()])
        nfes[mode] = cnf.nfe_stats()
        assert {"nll", "bpd", "kinetic", "jacobian", "nfe"} <= set(extras)
    scale = grads["direct"].abs().max()
    assert scale > 1e-3
    torch.testing.assert_close(grads["backsolve"], grads["direct"], rtol=0, atol=1e-5 * scale)
    torch.testing.assert_close(grads["checkpoint"], grads["direct"], rtol=0, atol=1e-9 * scale)
    assert nfes["direct"]["nfe_backward"] == 0
    assert nfes["backsolve"]["nfe_backward"] > 0 and nfes["checkpoint"]["nfe_backward"] > 0


def test_exact_trace_matches_bruteforce_change_of_variables():
    """log p(x) = log N(z) + log|det ∂z/∂x|, the Jacobian by autograd through the same solve."""
    cnf = _small_cnf(divergence_method="exact", gradient="direct")
    with torch.no_grad():  # make the field non-trivial
        for p in cnf.parameters():
            p.mul_(3.0)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(4), dtype=D64)
    with torch.no_grad():
        lp = cnf.log_prob(x)
    for b in range(3):
        def flow(xb):
            z, *_ = integrate_log_density(cnf.net, xb[None], 0.0, 1.0, rtol=1e-10, atol=1e-10)
            return z[0]
        J = torch.autograd.functional.jacobian(flow, x[b])
        ref = standard_normal_logp(flow(x[b])[None])[0] + torch.linalg.slogdet(J)[1]
        assert abs(float((lp[b] - ref).detach())) < 1e-6
        assert abs(float(torch.linalg.slogdet(J)[1])) > 0.05  # a non-volume-preserving field


def test_sample_inverts_the_density_flow_and_shapes():
    cnf = _small_cnf(divergence_method="exact")
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=D64)
    x = cnf.sample(5, z=z).x
    assert x.shape == (5, 2)
    z_back, *_ = integrate_log_density(cnf.net, x, 0.0, 1.0, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(z_back, z, rtol=0, atol=1e-6)
    s = cnf.sample(7, generator=torch.Generator().manual_seed(1)).x
    assert s.shape == (7, 2) and s.dtype == D64
    with torch.no_grad():
        bpd = cnf.bits_per_dim(x)
        lp = cnf.log_prob(x)
    torch.testing.assert_close(bpd, -lp / (2 * math.log(2)))
    torch.testing.assert_close(cnf.bits_per_dim(x, bin_width=0.5),
                               -lp / (2 * math.log(2)) + 1.0)


def test_image_cnf_convnet_hutchpp_shapes():
    torch.manual_seed(0)
    cnf = CNF((1, 4, 4), divergence_method="hutch++", n_probes=3, method="rk4",
              step_size=0.25)
    assert isinstance(cnf.net, ConvODENet)
    x = torch.randn(2, 1, 4, 4)
    with torch.no_grad():
        lp = cnf.log_prob(x)
        ex = cnf.log_prob(x, divergence_method="exact")
    assert lp.shape == (2,) and torch.isfinite(lp).all() and ex.shape == (2,)
    assert cnf.sample(2).x.shape == (2, 1, 4, 4)


def test_bad_inputs_name_the_argument():
    cnf = CNF(2)
    with pytest.raises(InvalidInputError, match="x: expected event shape"):
        cnf.log_prob(torch.randn(4, 3))
    with pytest.raises(InvalidInputError, match="divergence_method"):
        CNF(2, divergence_method="trace")
    with pytest.raises(InvalidInputError, match="divergence_method"):
        cnf.log_prob(torch.randn(4, 2), divergence_method="bogus")
    with pytest.raises(InvalidInputError, match="divergence_method.*hutch"):
        CNF(2, divergence_method="hutch++", jacobian=0.1)
    with pytest.raises(InvalidInputError, match="gradient"):
        CNF(2, gradient="adjoint")
    with pytest.raises(InvalidInputError, match="kinetic"):
        CNF(2, kinetic=-1.0)
    with pytest.raises(InvalidInputError, match="probe"):
        CNF(2, probe="uniform")
    with pytest.raises(InvalidInputError, match="n:"):
        cnf.sample(0)
    with pytest.raises(InvalidInputError, match=r"z: expected event shape \(2,\)"):
        cnf.sample(4, z=torch.randn(4, 3))
    with pytest.raises(InvalidInputError, match="divergence_method"):
        integrate_log_density(lambda x, t: x, torch.randn(4, 2), 0.0, 1.0,
                              divergence_method="trace")
    with pytest.raises(InvalidInputError, match="model"):
        make_ffjord_loss()(nn.Linear(2, 2), torch.randn(3, 2), None)


def test_train_loop_with_ffjord_closure_logs_nfe(tmp_path):
    from generative import TrainConfig, sample_toy, train
    torch.manual_seed(0)
    data = sample_toy("8gaussians", 256, torch.Generator().manual_seed(0))
    cnf = CNF(2, ODENet(2, hidden=(16, 16)), rtol=1e-3, atol=1e-3, kinetic=0.01, jacobian=0.01)
    logs = []
    train(cnf, make_ffjord_loss(), data,
          TrainConfig(steps=4, batch_size=64, lr=1e-3, log_every=2, progress=False),
          on_log=logs.append)
    assert len(logs) == 2
    for rec in logs:
        assert rec["nfe"] > 0 and math.isfinite(rec["nll"]) and "kinetic" in rec
    assert logs[-1]["nfe_backward"] > 0


def _nll_and_train(kinetic, jacobian, steps, seed=0):
    from generative import TrainConfig, sample_toy, train
    torch.manual_seed(seed)
    data = sample_toy("8gaussians", 2048, torch.Generator().manual_seed(0))
    test = sample_toy("8gaussians", 512, torch.Generator().manual_seed(1))
    cnf = CNF(2, ODENet(2, hidden=(32, 32)), rtol=1e-4, atol=1e-4, kinetic=kinetic,
              jacobian=jacobian, divergence_method="hutchinson")
    with torch.no_grad():
        nll0 = -float(cnf.log_prob(test, divergence_method="exact").mean())
    logs = []
    train(cnf, make_ffjord_loss(), data,
          TrainConfig(steps=steps, batch_size=128, lr=3e-3, log_every=steps // 4,
                      ema_decay=0.0, progress=False), on_log=logs.append)
    with torch.no_grad():
        nll1 = -float(cnf.log_prob(test, divergence_method="exact").mean())
    return nll0, nll1, logs, cnf


def _kinetic(cnf, x):
    lam, cnf.kinetic = cnf.kinetic, 1e-12  # switch the channel on to measure it
    with torch.no_grad():
        regs = cnf.density(x, divergence_method="exact").regs
    cnf.kinetic = lam
    return float(regs["kinetic"].mean())


@pytest.mark.slow
def test_training_improves_nll_and_rnode_lowers_kinetic_energy():
    """200 steps on 8 gaussians: test NLL improves by > 0.5 nats with and without RNODE and the
    RNODE model has lower kinetic energy. NFE fwd/bwd are printed only: 200 steps are too few
    for the NFE to differ (see test_rnode_training_uses_fewer_nfe_at_comparable_nll)."""
    from generative import sample_toy
    test = sample_toy("8gaussians", 512, torch.Generator().manual_seed(1))
    steps = 200
    n0, n1, logs_plain, m_plain = _nll_and_train(0.0, 0.0, steps)
    r0, r1, logs_rnode, m_rnode = _nll_and_train(0.05, 0.05, steps)
    assert n1 < n0 - 0.5, (n0, n1)
    assert r1 < r0 - 0.5, (r0, r1)
    k_plain, k_rnode = _kinetic(m_plain, test), _kinetic(m_rnode, test)
    print(f"plain NLL {n0:.3f}->{n1:.3f} kinetic {k_plain:.3f} nfe fwd/bwd "
          f"{logs_plain[-1]['nfe']:.0f}/{logs_plain[-1]['nfe_backward']:.0f}; RNODE NLL "
          f"{r0:.3f}->{r1:.3f} kinetic {k_rnode:.3f} nfe fwd/bwd "
          f"{logs_rnode[-1]['nfe']:.0f}/{logs_rnode[-1]['nfe_backward']:.0f}")
    assert k_rnode < k_plain


@pytest.mark.slow
def test_rnode_training_uses_fewer_nfe_at_comparable_nll():
    """600 steps on 8 gaussians (ODENet 32-32, batch 128, lr 3e-3, Hutchinson, dopri5 at 1e-5)
    without and with RNODE (λ_K = λ_J = 0.2). Measured on the trained models at fixed
    tolerances 1e-4, 1e-5, 1e-6 (the same for both): the forward density solve of 1000 test
    points (exact trace) and the backward (adjoint) pass of the loss on a fixed batch.

    Measured, seeds 0 / 1: forward NFE summed over the tolerances 216 / 234 (plain) vs
    156 / 156 (RNODE), backward 132 / 126 vs 102 / 114, test NLL 2.914 / 2.975 vs
    3.042 / 3.116. At this short budget RNODE needs λ = 0.2 to show and costs 0.13 nats;
    benchmarks/rnode_nfe.py (3000 steps, 64-64-64) gives -23% / -25% forward / backward NFE
    for +0.02 nats at λ = 0.05."""
    from benchmarks.rnode_nfe import measure
    from generative import TrainConfig, sample_toy, train
    data = sample_toy("8gaussians", 20000, torch.Generator().manual_seed(0))
    test = sample_toy("8gaussians", 1000, torch.Generator().manual_seed(1))
    res = {}
    for lam in (0.0, 0.2):
        torch.manual_seed(0)
        cnf = CNF(2, ODENet(2, hidden=(32, 32)), divergence_method="hutchinson", kinetic=lam,
                  jacobian=lam, rtol=1e-5, atol=1e-5)
        train(cnf, make_ffjord_loss(), data,
              TrainConfig(steps=600, batch_size=128, lr=3e-3, grad_clip=None, ema_decay=0.0,
                          log_every=600, progress=False))
        evals = [measure(cnf, test, data[:128], tol) for tol in (1e-4, 1e-5, 1e-6)]
        res[lam] = {k: sum(e[k] for e in evals) for k in ("nfe_fwd", "nfe_bwd")}
        res[lam]["nll"] = evals[-1]["nll"]
    print(res)
    plain, rnode = res[0.0], res[0.2]
    assert rnode["nfe_fwd"] <= 0.8 * plain["nfe_fwd"]
    assert rnode["nfe_bwd"] < plain["nfe_bwd"]
    assert rnode["nll"] < plain["nll"] + 0.2
