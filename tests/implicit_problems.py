"""Test problems of the implicit-method tests (test_implicit, test_implicit_gradients):
a non-stiff oscillator, a stiff linear system with a closed form, Van der Pol rows."""
from __future__ import annotations

import torch

DT = torch.float64


def oscillator(t, y):
    """A non-stiff, nonlinear, non-autonomous field (Duffing-like)."""
    return torch.stack([y[..., 1], -y[..., 0] + 0.1 * torch.sin(t) * y[..., 1]
                        - 0.5 * y[..., 0] ** 3], -1)


Y_OSC = torch.tensor([1.0, 0.5], dtype=DT)
T_OSC = torch.tensor([0.0, 2.0], dtype=DT)


LAM = torch.tensor([-1.0, -1e2, -1e4, -1e6], dtype=DT)
_Q = torch.linalg.qr(torch.randn(4, 4, dtype=DT, generator=torch.Generator().manual_seed(0)))[0]
A_STIFF = _Q @ torch.diag(LAM) @ _Q.T


def _g(t):
    return torch.stack([torch.cos(t), torch.sin(t), torch.cos(2 * t), 1 + 0 * t], -1)


def _dg(t):
    return torch.stack([-torch.sin(t), torch.cos(t), -2 * torch.sin(2 * t), 0 * t], -1)


def stiff_linear(t, y):
    """y' = A (y - g(t)) + g'(t): y(t) = g(t) + exp(A t)(y0 - g(0)), eigenvalues of A from
    -1 to -1e6 (a non-normal-free, rotated diagonal A)."""
    return (y - _g(t)) @ A_STIFF.T + _dg(t)


Y_STIFF = torch.tensor([2.0, -1.0, 0.5, 3.0], dtype=DT)
T_STIFF = torch.linspace(0, 1, 6, dtype=DT)


def stiff_exact(t, y0=Y_STIFF):
    return _g(t) + torch.stack([torch.linalg.matrix_exp(A_STIFF * ti) @ (y0 - _g(t[0]))
                                for ti in t])


MU = torch.tensor([1.0, 30.0, 1e3, 1e4], dtype=DT)


def vdp_rows(mu):
    def f(t, y):
        return torch.stack([y[:, 1], mu * ((1 - y[:, 0] ** 2) * y[:, 1]) - y[:, 0]], -1)
    return f


P0 = torch.tensor([0.7, -3.0], dtype=DT)


def vdp_p(p):
    def f(t, y):
        return torch.stack([y[..., 1], p[0] * (1 - y[..., 0] ** 2) * y[..., 1]
                            + p[1] * y[..., 0]], -1)
    return f
