"""Zero-terminal-SNR rescaling of a VP schedule (Lin et al. 2024, "Common Diffusion Noise
Schedules and Sample Steps are Flawed", Algorithm 1), as a `dynamics.LinearSDE`.

The mean coefficient is shifted and rescaled linearly so that it keeps its value at ``t_ref``
and reaches ``terminal_alpha`` at ``T``,

    alpha'(t) = a_end + (alpha(t) - alpha(T)) (alpha(t_ref) - a_end) / (alpha(t_ref) - alpha(T))

and ``sigma' = sqrt(1 - alpha'^2)`` (variance preserving). ``terminal_alpha = 0`` is Lin et
al.'s schedule exactly (log-SNR(T) = -inf; with ``t_ref`` the first training time it equals
their Algorithm 1 on a discrete schedule). The score-based samplers need the denoiser at every
grid time, which a score model cannot give where ``alpha = 0``, so the default keeps
``alpha'(T)^2 = 2^-24``, as diffusers does for its eps-prediction schedulers; with
``terminal_alpha = 0`` give a grid that starts below T (``times=``). Models must be trained
on the rescaled schedule (pair it with ``schedule='trailing'``, which starts at T).
"""
from __future__ import annotations

import torch

from dynamics import VPSDE, CosineVPSDE, LinearSDE
from solvers.errors import describe

from ..errors import InputError

Tensor = torch.Tensor

__all__ = ["ZeroTerminalSNR"]


class ZeroTerminalSNR(LinearSDE):
    """``base`` (a VP SDE: `VPSDE` or `CosineVPSDE`) rescaled to (near-)zero terminal SNR."""

    def __init__(self, base: LinearSDE, terminal_alpha: float = 2.0 ** -12,
                 t_ref: float = 0.0) -> None:
        if not isinstance(base, (VPSDE, CosineVPSDE)):
            raise InputError(f"`base` must be a variance-preserving SDE (VPSDE, CosineVPSDE); "
                             f"got {describe(base)}")
        if isinstance(terminal_alpha, bool) or not isinstance(terminal_alpha, (int, float)) \
                or not 0 <= terminal_alpha < 1:
            raise InputError(f"`terminal_alpha` must be a number in [0, 1); got "
                             f"{terminal_alpha!r}")
        if not (isinstance(t_ref, (int, float)) and 0 <= t_ref < base.T):
            raise InputError(f"`t_ref` must be a time in [0, T = {base.T:g}); got {t_ref!r}")
        super().__init__(base.T, base.t_min)
        self.base, self.terminal_alpha, self.t_ref = base, float(terminal_alpha), float(t_ref)
        f64 = dict(dtype=torch.float64)
        a_ref = float(base.alpha(torch.tensor(self.t_ref, **f64)))
        a_T = float(base.alpha(torch.tensor(base.T, **f64)))
        if not a_ref > max(a_T, self.terminal_alpha):
            raise InputError(f"`terminal_alpha` = {terminal_alpha!r} must be below alpha(t_ref) "
                             f"= {a_ref:g}")
        self.a_T, self.scale = a_T, (a_ref - self.terminal_alpha) / (a_ref - a_T)

    def _alpha(self, t: Tensor) -> Tensor:
        return self.terminal_alpha + (torch.exp(self.base._log_alpha(t)) - self.a_T) * self.scale

    def _log_alpha(self, t: Tensor) -> Tensor:
        return torch.log(self._alpha(t))

    def _log_sigma(self, t: Tensor) -> Tensor:
        return 0.5 * torch.log1p(-self._alpha(t) ** 2)

    def _d_alpha(self, t: Tensor) -> Tensor:
        return self.scale * self.base._d_log_alpha(t) * torch.exp(self.base._log_alpha(t))

    def _d_log_alpha(self, t: Tensor) -> Tensor:
        return self._d_alpha(t) / self._alpha(t)

    def _d_sigma_sq(self, t: Tensor) -> Tensor:
        return -2.0 * self._alpha(t) * self._d_alpha(t)

    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        a_new = torch.sqrt(torch.sigmoid(log_snr))                  # VP: alpha^2 = sigmoid
        a = ((a_new - self.terminal_alpha) / self.scale + self.a_T).clamp(max=1.0)
        return self.base.t_from_log_snr(torch.log(a ** 2) - torch.log1p(-a ** 2))

    @property
    def prior_std(self) -> float:
        return 1.0

    def _params(self) -> dict:
        return {"base": self.base, "terminal_alpha": self.terminal_alpha, "t_ref": self.t_ref}
