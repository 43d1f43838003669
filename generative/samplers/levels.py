"""The samplers' view in k-diffusion's variables: the scaled state ``x~ = x / alpha`` and the
scaled noise level ``sigma~ = sigma / alpha = exp(-log_snr / 2)``.

Every linear SDE has ``x_t = alpha (x0 + sigma~ z)``, so in ``(x~, sigma~)`` the probability
flow is the variance-exploding ODE ``dx~/dsigma~ = (x~ - D) / sigma~`` with the denoiser ``D``
(Tweedie's x0 estimate), whatever the SDE. The samplers written in these variables are
therefore k-diffusion's definitions literally (``EDMSDE`` / VE: ``alpha = 1``), and run on VP,
sub-VP and cosine SDEs unchanged. `Levels` gives such a sampler its grid of noise levels, the
denoiser at grid points and at other levels (mapped to times by ``t_from_log_snr``) and the
callback in the unscaled state.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .base import Hook, Model
from .grid import Grid

Tensor = torch.Tensor

__all__ = ["Levels", "ancestral_levels"]


class Levels:
    """The grid's noise levels ``sig`` (``sigma / alpha``) and the denoiser in ``x~``."""

    def __init__(self, model: Model, grid: Grid, x: Tensor) -> None:
        self.model, self.grid = model, grid
        self.ts, self.a, self.s = grid.ts, grid.alpha, grid.sigma
        self.sig = grid.sigma / grid.alpha
        self.n = len(grid.ts) - 1
        self.like = x

    def scale(self, x: Tensor) -> Tensor:
        """The initial state as ``x~``."""
        return x / self.a[0]

    def unscale(self, xt: Tensor) -> Tensor:
        """The final ``x~`` as the state at the last grid time."""
        return self.a[-1] * xt

    def denoise(self, xt: Tensor, i: int) -> Tensor:
        """``D(x~, sigma~_i)`` at grid point ``i`` (one score evaluation)."""
        a = self.a[i]
        return self.model.denoised(a * xt, self.ts[i], a, self.s[i])

    def time(self, sig: Tensor) -> Tuple[Tensor, Tensor]:
        """The time and alpha of noise level(s) ``sig`` (computed in float64)."""
        sde = self.model.sde
        t = sde.t_from_log_snr(-2.0 * torch.log(sig.double())).to(self.like)
        return t, sde.alpha(t).to(self.like)

    def denoise_level(self, xt: Tensor, sig: Tensor) -> Tensor:
        """``D(x~, sig)`` at any level ``sig`` between the grid's ends (one score evaluation)."""
        t, a = self.time(sig)
        return self.model.denoised(a * xt, t, a, a * sig)

    def done(self, callback: Hook, i: int, xt: Tensor, denoised: Optional[Tensor]) -> Tensor:
        """Call the hook on the unscaled state at grid point ``i``; returns ``x~`` (replaced
        when the callback replaced the state)."""
        x = self.a[i] * xt
        out = callback(i, self.ts[i], x, denoised)
        return xt if out is x else out / self.a[i]


def ancestral_levels(sig_from: Tensor, sig_to: Tensor, eta: float) -> Tuple[Tensor, Tensor]:
    """k-diffusion's ancestral split of the move ``sig_from -> sig_to``: the deterministic
    target ``sigma_down`` and the noise ``sigma_up`` with ``sigma_down^2 + sigma_up^2 =
    sig_to^2``, ``sigma_up = min(sig_to, eta sig_to sqrt(1 - sig_to^2 / sig_from^2))``."""
    up = torch.minimum(sig_to, eta * sig_to * torch.sqrt(torch.clamp(
        1.0 - sig_to ** 2 / sig_from ** 2, min=0.0)))
    return torch.sqrt(sig_to ** 2 - up ** 2), up
