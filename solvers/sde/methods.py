"""One step of each SDE method, and the method registry.

Every step has the signature ``step(terms, t, h, y, noise, extra) -> (y1, extra1)``:
``terms`` an `SDETerms` (or the adjoint's augmented terms), ``t`` a 0-dim tensor, ``h`` the
signed step as a Python float, ``noise = (dW, L)`` the Brownian increment and its Lévy
area: the space-time area ``H`` for SRK, the (Davie/Foster approximate) Lévy area ``A`` of
shape (B, m, m) for the log-ODE method with general noise, None otherwise; ``extra`` the
method's carried state (``()`` for all but reversible Heun). Backward steps (``h < 0``) use
Brownian variance ``|h|``: drift terms scale with ``h`` and every noise moment with ``|h|``.

Stochastic Runge–Kutta is one generic engine over `SRKTableau` data (`sde.srk`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..errors import InvalidInputError
from .srk import block_noise, compile_srk, srk_step
from .tableaus import SRA1, SRI2

Tensor = torch.Tensor
Noise = Tuple[Tensor, Optional[Tensor]]
StepFn = Callable[[Any, Tensor, float, Tensor, Noise, Tuple], Tuple[Tensor, Tuple]]
BlockNoise = Callable[[Tensor, Optional[Tensor], Sequence[float]], List[Any]]

__all__ = ["SDEMethod", "METHODS", "default_method", "resolve_method", "euler_step",
           "milstein_step", "heun_step", "midpoint_step", "srk_step", "reversible_heun_step",
           "reversible_heun_inverse", "reversible_heun_init", "euler_heun_step", "log_ode_step"]


# -- steps ---------------------------------------------------------------------------------------
def euler_step(terms, t: Tensor, h: float, y: Tensor, noise: Noise, extra: Tuple):
    """Euler–Maruyama: ``y + f h + g ΔW``."""
    return terms.advance(y, t, y, h, noise[0]), extra


def milstein_step(terms, t: Tensor, h: float, y: Tensor, noise: Noise, extra: Tuple, *,
                  ito: bool = True, grad_free: bool = False):
    """Milstein: ``y + f h + g ΔW + ½ (∂g g)(ΔW² - |h|)`` (Stratonovich: ``ΔW²``).

    ``grad_free`` replaces ∂g g by the difference ``(g(ỹ) - g(y))/√|h|`` with
    ``ỹ = y + g √|h|`` (plus ``f h`` for Itô), avoiding autograd.
    """
    dw = noise[0]
    ah = abs(h)
    v = dw * dw - ah if ito else dw * dw
    if grad_free:
        f, g = terms.f_and_g(t, y)
        sq = math.sqrt(ah)
        yp = torch.add(y, terms.gvec(g), alpha=sq)
        if ito:
            yp = torch.add(yp, f, alpha=h)
        gp = terms.g(t, yp)
        y1 = terms.add_prod(torch.add(y, f, alpha=h), g, dw)
        return terms.add_prod(y1, gp - g, v, 0.5 / sq), extra
    f = terms.f(t, y)
    gdw, gdg = terms.g_and_gdg_prod(t, y, dw, 0.5 * v)
    return torch.add(y + gdw + gdg, f, alpha=h), extra


def heun_step(terms, t: Tensor, h: float, y: Tensor, noise: Noise, extra: Tuple):
    """Stratonovich Heun: predictor ``y + D(y)``, corrector ``y + (D(y) + D(ỹ))/2``."""
    dw = noise[0]
    d0 = terms.incr(t, y, h, dw)
    return terms.advance(torch.add(y, d0, alpha=0.5), t + h, y + d0, h, dw, 0.5), extra


def midpoint_step(terms, t: Tensor, h: float, y: Tensor, noise: Noise, extra: Tuple):
    """Stratonovich midpoint: ``y + D(t + h/2, y + D(t, y)/2)``."""
    dw = noise[0]
    d0 = terms.incr(t, y, h, dw)
    return terms.advance(y, t + 0.5 * h, torch.add(y, d0, alpha=0.5), h, dw), extra


def euler_heun_step(terms, t: Tensor, h: float, y: Tensor, noise: Noise, extra: Tuple):
    """Euler–Heun (Stratonovich): ``y + f h + (g(y) + g(y + g(y) ΔW)) ΔW / 2``."""
    dw = noise[0]
    f, gv = terms.f_and_g_prod(t, y, dw)
    gv1 = terms.g_prod(t + h, y + gv, dw)
    return torch.add(torch.add(y, f, alpha=h), gv + gv1, alpha=0.5), extra


def log_ode_step(terms, t: Tensor, h: float, y: Tensor, noise: Noise, extra: Tuple):
    """Log-ODE midpoint (Stratonovich): the midpoint rule on the flow of
    ``f dt + g dW + [g, g] A`` over the step, with the Lévy area ``A`` from the noise."""
    dw, area = noise
    f, gv = terms.f_and_g_prod(t, y, dw)
    tm = t + 0.5 * h
    ym = torch.add(torch.add(y, f, alpha=0.5 * h), gv, alpha=0.5)
    fm, gvm = terms.f_and_g_prod(tm, ym, dw)
    y1 = torch.add(y, fm, alpha=h) + gvm
    # A is None for commutative noise (diagonal, scalar, additive), where the term vanishes
    return (y1 if area is None else y1 + terms.dg_ga(tm, ym, area)), extra


def reversible_heun_init(terms, t0: Tensor, y0: Tensor) -> Tuple:
    """Reversible Heun's carried state ``(z, f(z), g(z))`` with ``z0 = y0``."""
    f0, g0 = terms.f_and_g(t0, y0)
    return (y0, f0, g0)


def reversible_heun_step(terms, t: Tensor, h: float, y: Tensor, noise: Noise, extra: Tuple):
    """Reversible Heun (Kidger et al. 2021), algebraically invertible by
    `reversible_heun_inverse`."""
    z, f0, g0 = extra
    dw = noise[0]
    z1 = terms.add_prod(torch.add(2 * y - z, f0, alpha=h), g0, dw)
    f1, g1 = terms.f_and_g(t + h, z1)
    y1 = terms.add_prod(torch.add(y, f0 + f1, alpha=0.5 * h), g0 + g1, dw, 0.5)
    return y1, (z1, f1, g1)


def reversible_heun_inverse(terms, t: Tensor, h: float, y1: Tensor, noise: Noise,
                            extra1: Tuple) -> Tuple[Tensor, Tuple]:
    """Recover ``(y0, (z0, f0, g0))`` from the output of the step from ``t`` to ``t + h``."""
    z1, f1, g1 = extra1
    dw = noise[0]
    z0 = terms.add_prod(torch.add(2 * y1 - z1, f1, alpha=-h), g1, dw, -1.0)
    f0, g0 = terms.f_and_g(t, z0)
    y0 = terms.add_prod(torch.add(y1, f0 + f1, alpha=-0.5 * h), g0 + g1, dw, -0.5)
    return y0, (z0, f0, g0)


# -- registry ------------------------------------------------------------------------------------
ALL_NOISE = ("diagonal", "scalar", "additive", "general")
_NOT_GENERAL = ("diagonal", "scalar", "additive")


@dataclass(frozen=True)
class SDEMethod:
    """A method: its step, where it applies and its strong order per noise type."""

    name: str
    sde_types: Tuple[str, ...]
    noise_types: Tuple[str, ...]
    orders: Dict[str, float] = field(default_factory=dict)   # strong order per noise type
    needs_levy: bool = False          # the space-time Lévy area H
    needs_area: bool = False          # the Lévy area A (Davie or Foster approximation)
    has_extra: bool = False          # carries state between steps (not step-doubling adaptive)
    options: Tuple[str, ...] = ()

    def strong_order(self, noise_type: str) -> float:
        return self.orders.get(noise_type, self.orders.get("*", 0.5))

    def build(self, sde_type: str, noise_type: str, options: Dict[str, Any]) -> StepFn:
        """The step function for this SDE, with method options bound."""
        if self.name == "euler":
            return euler_step
        if self.name == "milstein":
            grad_free = bool(options.get("grad_free", False)) and noise_type != "additive"
            return functools.partial(milstein_step, ito=sde_type == "ito", grad_free=grad_free)
        if self.name == "heun":
            return heun_step
        if self.name == "midpoint":
            return midpoint_step
        if self.name == "srk":
            return functools.partial(srk_step, ct=compile_srk(_srk_tableau(noise_type)))
        if self.name == "reversible_heun":
            return reversible_heun_step
        if self.name == "euler_heun":
            return euler_heun_step
        if self.name == "log_ode":
            return log_ode_step
        raise AssertionError(self.name)

    def block_noise(self, noise_type: str) -> Optional[BlockNoise]:
        """On a fixed grid: what forms the noise terms of a block of steps at once from
        their ``(ΔW, H)`` and step sizes (srk's `SRKNoise`), or None (steps take the
        increments as they are)."""
        if self.name == "srk":
            return functools.partial(block_noise, compile_srk(_srk_tableau(noise_type)))
        return None


def _srk_tableau(noise_type: str):
    return SRA1 if noise_type == "additive" else SRI2


METHODS: Dict[str, SDEMethod] = {m.name: m for m in (
    SDEMethod("euler", ("ito",), ALL_NOISE, {"additive": 1.0, "*": 0.5}),
    SDEMethod("milstein", ("ito", "stratonovich"), _NOT_GENERAL, {"*": 1.0},
              options=("grad_free",)),
    SDEMethod("srk", ("ito",), _NOT_GENERAL, {"*": 1.5}, needs_levy=True),
    SDEMethod("heun", ("stratonovich",), ALL_NOISE, {"general": 0.5, "*": 1.0}),
    SDEMethod("midpoint", ("stratonovich",), ALL_NOISE, {"general": 0.5, "*": 1.0}),
    SDEMethod("reversible_heun", ("stratonovich",), ALL_NOISE, {"additive": 1.0, "*": 0.5},
              has_extra=True),
    SDEMethod("euler_heun", ("stratonovich",), ALL_NOISE, {"general": 0.5, "*": 1.0}),
    SDEMethod("log_ode", ("stratonovich",), ALL_NOISE, {"general": 0.5, "*": 1.0},
              needs_area=True),
)}


def default_method(sde_type: str, noise_type: str) -> str:
    """torchsde's defaults: srk for Itô (euler for general noise), midpoint for Stratonovich."""
    if sde_type == "ito":
        return "euler" if noise_type == "general" else "srk"
    return "midpoint"


def valid_methods(sde_type: str, noise_type: str) -> List[str]:
    """Names of the methods applicable to this SDE type and noise type."""
    return [n for n, m in METHODS.items()
            if sde_type in m.sde_types and noise_type in m.noise_types]


def resolve_method(method: Optional[str], sde_type: str, noise_type: str) -> SDEMethod:
    """The `SDEMethod` for ``method`` (None: the default), or an error listing valid ones."""
    name = default_method(sde_type, noise_type) if method is None else method
    valid = valid_methods(sde_type, noise_type)
    if name not in METHODS or name not in valid:
        what = "unknown method" if name not in METHODS else "method not applicable"
        raise InvalidInputError(
            f"`method` ({what}): for sde_type={sde_type!r} and noise_type={noise_type!r} "
            f"valid methods are {valid}; got {name!r}")
    return METHODS[name]
