"""The SDE protocol adapter: validation, noise-type products and evaluation counting.

An SDE is any object with ``noise_type`` and ``sde_type`` and its drift and diffusion as
``f(t, y)`` and ``g(t, y)``, or as ``f_and_g(t, y)``, ``g_prod(t, y, v)`` (diffusion times
noise) or ``f_and_g_prod(t, y, v)`` instead (the torchsde protocol: any combination that
defines both). `SDETerms` wraps it once per solve so the steppers see one interface:

* ``prod(g, v)`` — diffusion times noise for the noise type (diagonal: ``g * v``; scalar:
  ``g[..., 0] * v``; additive/general: matrix-vector product);
* ``incr(t, y, h, v) = f h + g v`` and ``advance(base, t, y, h, v, scale)`` =
  ``base + scale (f h + g v)`` with fused ops (the adjoint's augmented SDE implements the
  same two methods, so Heun/midpoint/Euler serve both);
* ``gdg_prod`` — the Milstein correction ``Σ_j (∂g/∂y) g_j v_j`` through autograd;
* ``nfe_f`` / ``nfe_g`` counters (plain Python ints, no sync).

Shapes (DESIGN.md): diagonal — y any ``(B, *event)``, g like y; scalar — y ``(B, d)``,
g ``(B, d, 1)``, noise ``(B, 1)``; additive/general — y ``(B, d)``, g ``(B, d, m)``,
noise ``(B, m)``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch

from ..errors import FunctionOutputError, InvalidInputError, describe

Tensor = torch.Tensor

__all__ = ["SDETerms", "NOISE_TYPES", "SDE_TYPES", "ito_correction"]

NOISE_TYPES = ("diagonal", "scalar", "additive", "general")
SDE_TYPES = ("ito", "stratonovich")
_NAME_KEYS = ("drift", "diffusion", "drift_and_diffusion", "diffusion_prod",
              "drift_and_diffusion_prod")


class SDETerms:
    """Uniform, counted access to an SDE's drift and diffusion for one solve."""

    def __init__(self, sde: Any, names: Optional[Dict[str, str]] = None) -> None:
        names = dict(names or {})
        unknown = set(names) - set(_NAME_KEYS)
        if unknown:
            raise InvalidInputError(
                f"`names` keys must be among {_NAME_KEYS}; got {sorted(unknown)}")
        self.noise_type = getattr(sde, "noise_type", None)
        self.sde_type = getattr(sde, "sde_type", None)
        if self.noise_type not in NOISE_TYPES:
            raise InvalidInputError(
                f"`sde.noise_type` must be one of {NOISE_TYPES}; got {self.noise_type!r}")
        if self.sde_type not in SDE_TYPES:
            raise InvalidInputError(
                f"`sde.sde_type` must be one of {SDE_TYPES}; got {self.sde_type!r}")
        self.sde = sde
        self._f = self._method(names.get("drift", "f"))
        self._g = self._method(names.get("diffusion", "g"))
        self._fg = self._method(names.get("drift_and_diffusion", "f_and_g"))
        self._gp = self._method(names.get("diffusion_prod", "g_prod"))
        self._fgp = self._method(names.get("drift_and_diffusion_prod", "f_and_g_prod"))
        if self._f is None and self._fg is None and self._fgp is None:
            raise InvalidInputError(
                f"`sde` must define its drift: one of `f`, `f_and_g` or `f_and_g_prod`; got "
                f"{type(sde).__name__} without them")
        if self._g is None and self._fg is None and self._gp is None and self._fgp is None:
            raise InvalidInputError(
                f"`sde` must define its diffusion: one of `g`, `f_and_g`, `g_prod` or "
                f"`f_and_g_prod`; got {type(sde).__name__} without them")
        # the diffusion matrix itself (Milstein, SRK, the adjoint...) needs `g` or `f_and_g`
        self.has_g = self._g is not None or self._fg is not None
        self.nfe_f = 0
        self.nfe_g = 0
        self.diagonal = self.noise_type == "diagonal"
        self.scalar = self.noise_type == "scalar"

    def _method(self, name: str) -> Optional[Callable]:
        fn = getattr(self.sde, name, None)
        if fn is not None and not callable(fn):
            raise InvalidInputError(f"`sde.{name}` must be callable; got {describe(fn)}")
        return fn

    def _missing(self, what: str) -> InvalidInputError:
        return InvalidInputError(
            f"this method needs the SDE's {what}; {type(self.sde).__name__} defines only "
            f"products with the noise: add `g` or `f_and_g`")

    @property
    def calls(self) -> int:
        """Drift evaluations so far (the engine's count of calls)."""
        return self.nfe_f

    # -- evaluations ---------------------------------------------------------------------------
    def f(self, t: Tensor, y: Tensor) -> Tensor:
        self.nfe_f += 1
        if self._f is not None:
            return self._f(t, y)
        if self._fg is not None:
            return self._fg(t, y)[0]
        raise self._missing("drift alone (`f` or `f_and_g`)")

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        self.nfe_g += 1
        if self._g is not None:
            return self._g(t, y)
        if self._fg is not None:
            return self._fg(t, y)[1]
        raise self._missing("diffusion matrix (`g` or `f_and_g`)")

    def f_and_g(self, t: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
        if self._fg is not None:
            self.nfe_f += 1
            self.nfe_g += 1
            return self._fg(t, y)
        return self.f(t, y), self.g(t, y)

    # -- noise products ------------------------------------------------------------------------
    def prod(self, g: Tensor, v: Tensor) -> Tensor:
        if self.diagonal:
            return g * v
        if self.scalar:
            return g[..., 0] * v
        return _matvec(g, v)

    def add_prod(self, base: Tensor, g: Tensor, v: Tensor, scale: float = 1.0,
                 fused: bool = False) -> Tensor:
        """``base + scale * prod(g, v)`` in one fused op where possible; ``fused`` also fuses
        the matrix product of a batch-shared g (``torch.addmm``, which rounds differently
        from the product and then the sum; srk uses it, the other methods keep theirs)."""
        if self.diagonal:
            return torch.addcmul(base, g, v, value=scale)
        if self.scalar:
            return torch.addcmul(base, g[..., 0], v, value=scale)
        if fused and g.dim() == 3 and g.stride(0) == 0:
            return torch.addmm(base, v, g[0].transpose(0, 1), alpha=scale)
        return torch.add(base, _matvec(g, v), alpha=scale)

    def gvec(self, g: Tensor) -> Tensor:
        """The diffusion as a state-shaped vector (diagonal and scalar noise)."""
        return g[..., 0] if self.scalar else g

    def g_prod(self, t: Tensor, y: Tensor, v: Tensor) -> Tensor:
        if self._gp is not None:
            self.nfe_g += 1
            return self._gp(t, y, v)
        if self._fgp is not None and not self.has_g:
            self.nfe_g += 1
            return self._fgp(t, y, v)[1]
        return self.prod(self.g(t, y), v)

    def f_and_g_prod(self, t: Tensor, y: Tensor, v: Tensor) -> Tuple[Tensor, Tensor]:
        """``(f(t, y), g(t, y) v)`` from whichever of the SDE's functions gives it cheapest."""
        if self._fgp is not None:
            self.nfe_f += 1
            self.nfe_g += 1
            return self._fgp(t, y, v)
        if self._gp is not None:
            return self.f(t, y), self.g_prod(t, y, v)
        f, g = self.f_and_g(t, y)
        return f, self.prod(g, v)

    @property
    def _by_product(self) -> bool:
        return self._gp is not None or self._fgp is not None

    def incr(self, t: Tensor, y: Tensor, h: float, v: Tensor) -> Tensor:
        """``f(t, y) h + g(t, y) v``."""
        if self._by_product:   # same operations as add_prod below, so the forms agree exactly
            f, gv = self.f_and_g_prod(t, y, v)
            return torch.add(f * h, gv, alpha=1.0)
        f, g = self.f_and_g(t, y)
        return self.add_prod(f * h, g, v)

    def advance(self, base: Tensor, t: Tensor, y: Tensor, h: float, v: Tensor,
                scale: float = 1.0) -> Tensor:
        """``base + scale (f(t, y) h + g(t, y) v)``."""
        if self._by_product:
            f, gv = self.f_and_g_prod(t, y, v)
            return torch.add(torch.add(base, f, alpha=scale * h), gv, alpha=scale)
        f, g = self.f_and_g(t, y)
        return self.add_prod(torch.add(base, f, alpha=scale * h), g, v, scale)

    def g_and_gdg_prod(self, t: Tensor, y: Tensor, v1: Tensor, v2: Tensor
                       ) -> Tuple[Tensor, Tensor]:
        """``(g v1, Σ_j (∂g_j/∂y · g_j) v2_j)``: the Milstein terms, one g evaluation."""
        if self.noise_type == "additive":
            return self.g_prod(t, y, v1), torch.zeros_like(y)
        create = torch.is_grad_enabled()
        with torch.enable_grad():
            y_ = y if y.requires_grad else y.detach().requires_grad_(True)
            g = self.g(t, y_)
            corr = ito_correction(g, y_, self.noise_type, create_graph=create, weight=v2)
        if not create:
            g, corr = g.detach(), corr.detach()
        return self.prod(g, v1), corr

    def dg_ga(self, t: Tensor, y: Tensor, a: Tensor) -> Tensor:
        """``Σ_l (∂g_l/∂y) (g A)_l`` for the Lévy area ``A`` (B, m, m): the log-ODE term; zero
        for commutative noise (diagonal, scalar, additive)."""
        if self.noise_type != "general":
            return torch.zeros_like(y)
        create = torch.is_grad_enabled()
        with torch.enable_grad():
            y_ = y if y.requires_grad else y.detach().requires_grad_(True)
            g = self.g(t, y_)
            ga = torch.bmm(g, a)
            total = torch.zeros_like(y)
            for j in range(g.shape[-1]):
                total = total + _jvp(g[..., j], y_, ga[..., j], create)
        return total if create else total.detach()

    # -- validation ----------------------------------------------------------------------------
    def noise_shape(self, y0: Tensor, g0: Tensor) -> Tuple[int, ...]:
        """Check ``g``'s shape against the noise type and return the Brownian shape."""
        ys = tuple(y0.shape)
        gs = tuple(g0.shape)
        nt = self.noise_type
        if nt == "diagonal":
            if gs != ys:
                raise FunctionOutputError(
                    f"`sde.g` must return y's shape {ys} for noise_type='diagonal'; got "
                    f"{describe(g0)}")
            return ys
        if y0.dim() != 2:
            raise InvalidInputError(
                f"`y0` must have shape (B, d) for noise_type={nt!r}; got {describe(y0)}")
        if nt == "scalar":
            if gs != ys + (1,):
                raise FunctionOutputError(
                    f"`sde.g` must return shape {ys + (1,)} (B, d, 1) for noise_type='scalar'; "
                    f"got {describe(g0)}")
            return (ys[0], 1)
        if len(gs) != 3 or gs[:2] != ys:
            raise FunctionOutputError(
                f"`sde.g` must return shape ({ys[0]}, {ys[1]}, m) for noise_type={nt!r}; got "
                f"{describe(g0)}")
        return (ys[0], gs[2])


def _matvec(g: Tensor, v: Tensor) -> Tensor:
    """Row-wise ``g[b] @ v[b]``; a ``g`` broadcast over the batch (stride 0, e.g. from
    ``expand``) becomes one matrix product instead of B small ones."""
    if g.dim() == 3 and g.stride(0) == 0:
        return v @ g[0].transpose(0, 1)
    return torch.matmul(g, v.unsqueeze(-1))[..., 0]


def ito_correction(g: Tensor, y: Tensor, noise_type: str, create_graph: bool,
                   weight: Optional[Tensor] = None) -> Tensor:
    """``Σ_j (∂g_j/∂y) g_j w_j`` (w = 1 if ``weight`` is None) for ``g = g(y)`` built with
    grad enabled.

    Half of it (with w = 1) is the Itô-to-Stratonovich drift correction; with w = v it is
    the Milstein term. Diagonal noise uses one vector-Jacobian product (g_i depends on
    y_i only); scalar and general noise use Jacobian-vector products per Brownian
    dimension (double-backward trick).
    """
    if noise_type == "additive" or not g.requires_grad:
        return torch.zeros_like(y)
    if noise_type == "diagonal":
        w = g if weight is None else g * weight
        (out,) = torch.autograd.grad(g, y, w, create_graph=create_graph, allow_unused=True)
        return torch.zeros_like(y) if out is None else out
    total = torch.zeros_like(y)
    for j in range(g.shape[-1]):
        gj = g[..., j]
        jv = _jvp(gj, y, gj, create_graph)
        total = total + (jv if weight is None else jv * weight[..., j:j + 1])
    return total


def _jvp(out: Tensor, inp: Tensor, v: Tensor, create_graph: bool) -> Tensor:
    """(∂out/∂inp) v by differentiating a vector-Jacobian product (double backward)."""
    u = torch.zeros_like(out, requires_grad=True)
    (vjp,) = torch.autograd.grad(out, inp, u, create_graph=True, allow_unused=True)
    if vjp is None:
        return torch.zeros_like(inp)
    (jv,) = torch.autograd.grad(vjp, u, v, create_graph=create_graph, allow_unused=True)
    return torch.zeros_like(out) if jv is None else jv
