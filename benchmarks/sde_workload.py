"""The OU workload of the SDE benchmarks and its hand-written torch loops (the references
that `sde_speed`, `sde_sizes` and `step_overhead` time sdeflow and torchsde against)."""
from __future__ import annotations

import math

import torch

THETA, SIGMA = 0.5, 0.3


class OU(torch.nn.Module):
    """OU with diagonal (or additive) noise; the same object is given to every solver."""

    sde_type = "ito"

    def __init__(self, noise_type: str, d: int, sde_type: str = "ito") -> None:
        super().__init__()
        self.noise_type = noise_type
        self.sde_type = sde_type
        self.register_buffer("sig_mat", SIGMA * torch.eye(d))

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -THETA * y

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.noise_type == "diagonal":
            return torch.full_like(y, SIGMA)
        return self.sig_mat.expand(y.shape[0], -1, -1)


def raw_em(sde: OU, y0: torch.Tensor, dt: float, n: int) -> torch.Tensor:
    """The hand-written reference loop: y += f dt + g * sqrt(dt) * N(0, 1)."""
    y, sq = y0, math.sqrt(dt)
    t = torch.zeros((), dtype=y0.dtype)
    for _ in range(n):
        y = y + sde.f(t, y) * dt + sde.g(t, y) * torch.randn_like(y) * sq
    return y


def raw_sra1(sde: OU, y0: torch.Tensor, dt: float, n: int) -> torch.Tensor:
    """A hand-written SRA1 loop (Rößler's srk for additive noise, as sdeflow's and torchsde's
    srk): ΔW and the space-time Lévy area H drawn per step, g one (d, m) matrix for all
    rows (``sde.g(t, y)[0]``), the stage sums fused into ``alpha=`` / ``addmm``."""
    y, sq = y0, math.sqrt(dt)
    t = torch.zeros((), dtype=y0.dtype)
    for _ in range(n):
        z = torch.randn((2,) + tuple(y.shape), dtype=y.dtype)
        dw = z[0] * sq
        i10h = torch.add(z[1] * (sq / math.sqrt(12.0)), dw, alpha=0.5)   # ΔW/2 + H
        g_end, g_start = sde.g(t + dt, y)[0], sde.g(t, y)[0]
        f0 = sde.f(t, y)
        x = torch.addmm(torch.add(y, f0, alpha=0.75 * dt), i10h, g_end.T, alpha=1.5)
        f1 = sde.f(t + 0.75 * dt, x)
        y = torch.add(torch.add(y, f0, alpha=dt / 3), f1, alpha=2 * dt / 3)
        y = torch.addmm(torch.addmm(y, dw - i10h, g_end.T), i10h, g_start.T)
        t = t + dt
    return y
