"""Divergence (Jacobian trace) of a batched map: exact, Hutchinson and Hutch++.

``fn`` maps ``x`` of shape ``(B, *event)`` to the same shape with rows independent, so the
Jacobian is block diagonal and ``div[b] = tr(∂fn(x)_b / ∂x_b)``. Every method is built from
vector–Jacobian products (VJPs) ``vᵀJ``: one VJP with a cotangent of shape ``(B, *event)``
gives one product per row at once, and ``vᵀJv = vᵀJᵀv`` so VJPs serve the trace as well as
Jacobian-vector products would.

Cost in Jacobian products (per row, all rows in parallel), with ``D = prod(event)``:

- ``exact``: ``D`` products (one per dimension).
- ``hutchinson``: ``n_probes`` products, ``div ≈ mean_i ε_iᵀ J ε_i``.
- ``hutch++`` (Meyer, Musco, Musco & Woodruff 2021): ``n_probes = m`` products split in thirds:
  ``k = m // 3`` for the sketch ``Y = JᵀS``, ``min(k, D)`` for ``JᵀQ`` with ``Q = orth(Y)``
  (a per-row QR), and ``g = m - 2k`` for Hutchinson on the deflated remainder:
  ``div ≈ tr(QᵀJQ) + (1/g) Σ_i ε_iᵀ (I-QQᵀ) J (I-QQᵀ) ε_i``. It pays off when J's spectrum
  decays and ``n_probes`` is not tiny: on ``diag(0.5^i)`` (d=40) its variance relative to
  Hutchinson's is 1.37 / 0.56 / 0.06 at 3 / 6 / 12 products (benchmarks/divergence_speed.py).

Products are stacked and computed by ``torch.func.vmap`` over one ``torch.func.vjp`` when the
problem is small (measured faster there), else by ``autograd.grad`` calls on one retained
graph; if torch.func cannot handle ``fn`` a ``RuntimeWarning`` is issued and the loop is used
(``fn`` is then evaluated a second time).

Probe convention (``probes``; ``eps`` is its deprecated name): a tensor of x's shape
``(B, *event)`` (one probe) or ``(n, B, *event)`` (``n`` probes, row ``b`` of probe ``i`` is
``probes[i, b]``); the probe count is
then ``n`` and ``n_probes`` must be left at 1 or equal ``n``. For ``hutch++`` the first
``k = n // 3`` probes form the sketch ``S``, the next ``n - 2k`` the residual probes, and the
last ``k`` are unused (those products go to ``JᵀQ``), so a caller can draw ``n`` probes with
:func:`sample_probes` for any method. ``exact`` ignores ``n_probes``, ``probe`` and ``probes``.

Gradients: with ``create_graph=True`` both returned tensors carry the graph (to ``x`` when
``x`` requires grad, and to ``fn``'s parameters). In ``hutch++`` the basis ``Q`` is a constant
of that graph: the estimator is unbiased for every fixed orthonormal ``Q``, so its gradient
with ``Q`` fixed is an unbiased estimate of ``∇ tr J``; this is cheaper than differentiating
through the QR and avoids its backward, which is singular for rank-deficient sketches (e.g. a
zero-initialised last layer). Hence gradcheck of hutch++ holds only when ``n_probes // 3 >= D``.
With ``create_graph=False`` both outputs are detached. Calls inside ``torch.no_grad()`` /
``torch.inference_mode()`` work (grad is enabled locally).

``return_vjp=True`` (``exact`` and ``hutchinson``) also returns the products themselves, a
``(n, B, *event)`` stack ``v_iᵀJ``: the ``D`` rows of J for ``exact`` (so
``Σ_i ‖v_iᵀJ‖² = ‖J‖²_F``), the probe products ``ε_iᵀJ`` for ``hutchinson`` (so
``mean_i ‖ε_iᵀJ‖²`` is an unbiased estimate of ``‖J‖²_F`` for probes with ``E[εεᵀ] = I``;
RNODE's Jacobian regulariser). They follow ``create_graph`` like the other outputs.

No host syncs: only Python-side shape checks.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import Callable, Optional, Tuple, Union

import torch

from .errors import InvalidInputError, SolverError, describe

Tensor = torch.Tensor
DivergenceResult = Union[Tuple[Tensor, Tensor], Tuple[Tensor, Tensor, Tensor]]

__all__ = ["divergence", "sample_probes", "DIVERGENCE_METHODS", "PROBE_TYPES"]

DIVERGENCE_METHODS = ("exact", "hutchinson", "hutch++")
PROBE_TYPES = ("rademacher", "gaussian")

# Vectorise the stacked VJPs with torch.func (vmap over one vjp) when
# n_products >= _VMAP_MIN_PRODUCTS and n_products * x.numel() <= _VMAP_MAX_ELEMENTS, else loop
# over autograd.grad on one retained graph. Measured on CPU (benchmarks/divergence_speed.py,
# float32, 1 thread, exact method): vmap is 2-5x faster for small, overhead-bound problems
# (MLP d=8..32, B=16); the loop wins for D <= 2 and for larger per-product work (MLP d=8,
# B=512: loop 4.2 ms vs vmap 5.2 ms, 7.5 vs 12.5 ms with create_graph; conv 1x8x8, B=32: 26 vs
# 39 ms), where vmap's stacked intermediates cost more than the per-call overhead it saves.
# Not yet measured on CUDA, where vmap is expected to pay off over a wider range.
_VMAP_MIN_PRODUCTS = 4
_VMAP_MAX_ELEMENTS = 1 << 14


def sample_probes(x: Tensor, n_probes: int = 1, probe: str = "rademacher",
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """Draw ``n_probes`` probe vectors of shape ``(n_probes, *x.shape)``, x's dtype and device.

    Rademacher entries are ±1, Gaussian entries standard normal. ``generator`` (on x's device)
    makes the draw reproducible; pass the result as ``divergence(..., probes=...)``.
    """
    _check_tensor("x", x)
    _check_n_probes(n_probes, minimum=1)
    _check_choice("probe", probe, PROBE_TYPES)
    shape = (n_probes, *x.shape)
    if probe == "gaussian":
        return torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)
    signs = torch.randint(0, 2, shape, generator=generator, dtype=x.dtype, device=x.device)
    return signs.mul_(2).sub_(1)


def divergence(fn: Callable[[Tensor], Tensor], x: Tensor, *, method: str = "exact",
               n_probes: int = 1, probe: str = "rademacher", probes: Optional[Tensor] = None,
               create_graph: bool = False, return_vjp: bool = False,
               eps: Optional[Tensor] = None) -> DivergenceResult:
    """Return ``(fn(x), div)`` with ``div[b] = tr(∂fn(x)_b/∂x_b)``, shape ``(B,)``.

    Args:
        fn: maps ``(B, *event)`` to ``(B, *event)``, rows independent.
        x: input of shape ``(B, *event)``, ``B >= 1`` and at least one event dimension.
        method: ``'exact'`` (``D`` VJPs), ``'hutchinson'`` or ``'hutch++'``.
        n_probes: total Jacobian products of the estimators (``>= 1``; ``>= 3`` for hutch++).
        probe: ``'rademacher'`` or ``'gaussian'`` (used when ``probes`` is None).
        probes: fixed probe vectors, ``(B, *event)`` or ``(n, B, *event)`` (module docstring;
            ``eps``: the deprecated name, with a ``DeprecationWarning``).
        create_graph: keep the graph so ``fn(x)`` and ``div`` can be differentiated.
        return_vjp: also return the ``(n, B, *event)`` stack of products ``v_iᵀJ`` (``exact``:
            the rows of J; ``hutchinson``: ``ε_iᵀJ``) as a third output; not for ``hutch++``.
    """
    _check_tensor("x", x)
    if x.dim() < 2:
        raise InvalidInputError(
            f"x: expected a tensor of shape (B, *event) with at least one event dimension, "
            f"got {describe(x)}")
    _check_choice("method", method, DIVERGENCE_METHODS)
    _check_choice("probe", probe, PROBE_TYPES)
    if not isinstance(create_graph, bool):
        raise InvalidInputError(f"create_graph: expected a bool, got {describe(create_graph)}")
    if not isinstance(return_vjp, bool):
        raise InvalidInputError(f"return_vjp: expected a bool, got {describe(return_vjp)}")
    if return_vjp and method == "hutch++":
        raise InvalidInputError("return_vjp: the products of method='hutch++' are not probe "
                                "VJPs; expected method='exact' or 'hutchinson' with "
                                "return_vjp=True, got method='hutch++'")
    probes = _renamed_probes(probes, eps)
    if method != "exact":
        probes = _resolve_probes(x, method, n_probes, probe, probes)

    def run(vectorize: Optional[bool]) -> DivergenceResult:
        if method == "exact":
            out, div, vjp = _exact(fn, x, create_graph, vectorize, return_vjp)
        elif method == "hutchinson":
            out, div, vjp = _hutchinson(fn, x, probes, create_graph, vectorize)
        else:
            out, div = _hutchpp(fn, x, probes, create_graph, vectorize)
        return (out, div, vjp) if return_vjp else (out, div)

    inference = torch.is_inference_mode_enabled() or x.is_inference()
    with torch.inference_mode(False) if inference else contextlib.nullcontext(), \
            torch.enable_grad() if create_graph else contextlib.nullcontext():
        try:
            return run(None)
        except _VmapFailed as err:
            warnings.warn(f"divergence: torch.func could not vectorise fn ({err.__cause__!r}); "
                          f"falling back to one autograd.grad call per product (fn is called "
                          f"again)", RuntimeWarning, stacklevel=2)
            return run(False)


# --------------------------------------------------------------------------- estimators

def _exact(fn: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool,
           vectorize: Optional[bool], keep_rows: bool
           ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """``(fn(x), tr J, rows of J as (D, B, *event) when keep_rows else None)``."""
    B, D = x.shape[0], math.prod(x.shape[1:])
    lin = _Linearized(fn, x, create_graph, _use_vmap(vectorize, D, x))
    if lin.vmap:
        eye = torch.eye(D, dtype=lin.out.dtype, device=x.device)
        cot = eye.unsqueeze(1).expand(D, B, D).reshape(D, *x.shape)
        rows = lin.vjp(cot, create_graph, last=True)
        div = torch.diagonal(rows.reshape(D, B, D), dim1=0, dim2=2).sum(-1)
    else:
        div = x.new_zeros(B, dtype=lin.out.dtype)
        kept = []
        for i in range(D):
            cot = torch.zeros(B, D, dtype=lin.out.dtype, device=x.device)
            cot[:, i] = 1
            g = lin.vjp(cot.view(1, *x.shape), create_graph, last=i == D - 1)
            div = div + g.reshape(B, D)[:, i]
            if keep_rows:
                kept.append(g[0])
        rows = torch.stack(kept) if keep_rows else None
    return lin.result(div, rows if keep_rows else None)


def _hutchinson(fn: Callable[[Tensor], Tensor], x: Tensor, probes: Tensor, create_graph: bool,
                vectorize: Optional[bool]) -> Tuple[Tensor, Tensor, Tensor]:
    n = probes.shape[0]
    lin = _Linearized(fn, x, create_graph, _use_vmap(vectorize, n, x))
    probes = probes.to(lin.out.dtype)
    g = lin.vjp(probes, create_graph, last=True)
    div = (g * probes).flatten(2).sum(-1).mean(0)
    return lin.result(div, g)


def _hutchpp(fn: Callable[[Tensor], Tensor], x: Tensor, probes: Tensor, create_graph: bool,
             vectorize: Optional[bool]) -> Tuple[Tensor, Tensor]:
    n = probes.shape[0]
    B, D = x.shape[0], math.prod(x.shape[1:])
    k = n // 3
    n_res = n - 2 * k
    lin = _Linearized(fn, x, create_graph, _use_vmap(vectorize, n, x))
    probes = probes.to(lin.out.dtype)
    # Sketch Y = JᵀS (k products; constant of the graph), per-row orthonormal basis Q.
    y = lin.vjp(probes[:k], False, last=False).detach()
    q, _ = torch.linalg.qr(y.reshape(k, B, D).permute(1, 2, 0))           # (B, D, min(k, D))
    # Residual probes deflated per row: (I - QQᵀ) G.
    gm = probes[k:k + n_res].reshape(n_res, B, D).permute(1, 2, 0)           # (B, D, n_res)
    gm = gm - q @ (q.transpose(1, 2) @ gm)
    # JᵀQ and Jᵀ(I-QQᵀ)G together: min(k, D) + n_res products.
    cot = torch.cat([q, gm], dim=2).permute(2, 0, 1)                       # (kq + n_res, B, D)
    z = lin.vjp(cot.reshape(cot.shape[0], *x.shape), create_graph, last=True).reshape(cot.shape)
    quad = (z * cot).sum(-1)                                               # (kq + n_res, B)
    kq = q.shape[2]
    div = quad[:kq].sum(0) + quad[kq:].mean(0)
    out, div, _ = lin.result(div)
    return out, div


# --------------------------------------------------------------------------- VJP engine

class _VmapFailed(RuntimeError):
    """torch.func could not trace or vectorise ``fn``; retry with the autograd loop."""


class _Linearized:
    """``fn`` evaluated at ``x`` with its VJP available for stacks of cotangents.

    ``vmap=True``: ``torch.func.vjp`` once, ``vmap`` of the pullback over the stack.
    ``vmap=False``: one retained autograd graph, one ``autograd.grad`` per cotangent.
    """

    def __init__(self, fn: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool,
                 vmap: bool) -> None:
        self.vmap, self.create_graph = vmap, create_graph
        if create_graph and x.requires_grad:
            xin = x if not x.is_inference() else x.clone()
        else:
            xin = (x.clone() if x.is_inference() else x).detach()
        self.x = xin
        if vmap:
            def checked(z: Tensor) -> Tensor:  # shape errors surface before torch.func's own
                y = fn(z)
                _check_output(y, x)
                if not y.requires_grad:  # inside torch.func: y has no graph to z
                    raise _detached(y)
                return y

            grad_ctx = torch.enable_grad() if create_graph else torch.no_grad()
            try:
                with grad_ctx:
                    out, self._pullback = torch.func.vjp(checked, xin)
            except SolverError:
                raise
            except Exception as err:  # noqa: BLE001 - anything torch.func cannot trace
                raise _VmapFailed(str(err)) from err
        else:
            if not xin.requires_grad:
                xin = xin.requires_grad_(True)
            with torch.enable_grad():
                out = fn(xin)
            _check_output(out, x)
            if not out.requires_grad:
                raise _detached(out)
        self.out = out

    def vjp(self, cot: Tensor, create_graph: bool, last: bool) -> Tensor:
        """``Jᵀ v`` for each ``v`` in the stack ``cot`` of shape ``(n, B, *event)``."""
        if self.vmap:
            grad_ctx = torch.enable_grad() if create_graph else torch.no_grad()
            try:
                with grad_ctx:
                    return torch.func.vmap(self._pullback)(cot)[0]
            except SolverError:
                raise
            except Exception as err:  # noqa: BLE001
                raise _VmapFailed(str(err)) from err
        grads = []
        with torch.enable_grad():
            for i in range(cot.shape[0]):
                retain = self.create_graph or not (last and i == cot.shape[0] - 1)
                (g,) = torch.autograd.grad(self.out, self.x, cot[i], retain_graph=retain,
                                           create_graph=create_graph, allow_unused=True)
                if g is None:
                    raise _detached(self.out)
                grads.append(g)
        return torch.stack(grads)

    def result(self, div: Tensor, vjp: Optional[Tensor] = None
               ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """``(fn(x), div, vjp)``, detached unless ``create_graph``."""
        if self.create_graph:
            return self.out, div, vjp
        return self.out.detach(), div.detach(), None if vjp is None else vjp.detach()


def _use_vmap(vectorize: Optional[bool], n_products: int, x: Tensor) -> bool:
    if vectorize is not None:
        return vectorize
    return n_products >= _VMAP_MIN_PRODUCTS and n_products * x.numel() <= _VMAP_MAX_ELEMENTS


# --------------------------------------------------------------------------- validation

def _check_tensor(name: str, value: object) -> None:
    if not isinstance(value, torch.Tensor):
        raise InvalidInputError(f"{name}: expected a torch.Tensor, got {describe(value)}")
    if not value.is_floating_point():
        raise InvalidInputError(
            f"{name}: expected a floating-point tensor, got {describe(value)}")


def _check_choice(name: str, value: object, valid: Tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in valid:
        raise InvalidInputError(
            f"{name}: expected one of {', '.join(repr(v) for v in valid)}, got {value!r}")


def _check_n_probes(n_probes: object, minimum: int, method: str = "") -> None:
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < minimum:
        why = f" for method={method!r}" if method else ""
        raise InvalidInputError(
            f"n_probes: expected an int >= {minimum}{why}, got {n_probes!r}")


def _renamed_probes(probes: Optional[Tensor], eps: Optional[Tensor]) -> Optional[Tensor]:
    """``probes``, or the probes passed by their deprecated name ``eps`` (with a warning)."""
    if eps is None:
        return probes
    if probes is not None:
        raise InvalidInputError("probes: pass `probes` only (`eps` is its deprecated old name); "
                                "got both")
    warnings.warn("divergence(eps=...) is deprecated: pass the probe vectors as probes=...",
                  DeprecationWarning, stacklevel=3)
    return eps


def _resolve_probes(x: Tensor, method: str, n_probes: int, probe: str,
                    probes: Optional[Tensor]) -> Tensor:
    minimum = 3 if method == "hutch++" else 1
    _check_n_probes(n_probes, 1, method)
    if probes is None:
        _check_n_probes(n_probes, minimum, method)
        return sample_probes(x, n_probes, probe)
    expected = (f"a tensor of shape {tuple(x.shape)} (one probe) or (n, "
                f"{', '.join(str(s) for s in x.shape)}) (n probes)")
    if not isinstance(probes, torch.Tensor):
        raise InvalidInputError(f"probes: expected {expected}, got {describe(probes)}")
    if probes.shape == x.shape:
        probes = probes.unsqueeze(0)
    elif not (probes.dim() == x.dim() + 1 and probes.shape[1:] == x.shape and probes.shape[0] >= 1):
        raise InvalidInputError(f"probes: expected {expected}, got {describe(probes)}")
    if probes.device != x.device:
        raise InvalidInputError(
            f"probes: expected a tensor on x's device {x.device}, got one on {probes.device}")
    if not probes.is_floating_point():
        raise InvalidInputError(f"probes: expected a floating-point tensor, got {describe(probes)}")
    n = probes.shape[0]
    if n_probes not in (1, n):
        raise InvalidInputError(
            f"n_probes: expected 1 (the default) or the probe count of probes ({n}), "
            f"got {n_probes!r}")
    if n < minimum:
        raise InvalidInputError(
            f"probes: method={method!r} needs at least {minimum} probes (sketch, projection and "
            f"residual thirds), got {describe(probes)}")
    return probes


def _detached(out: Tensor) -> InvalidInputError:
    return InvalidInputError(
        "fn: expected fn(x) to depend on x through autograd (its divergence is computed from "
        "vector-Jacobian products), got an output with no autograd graph to x: fn detaches "
        "x, goes through NumPy, or ignores x (for a constant fn the divergence is 0)")


def _check_output(out: object, x: Tensor) -> None:
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise InvalidInputError(
            f"fn: expected fn(x) to return a tensor of x's shape {tuple(x.shape)}, "
            f"got {describe(out)}")
