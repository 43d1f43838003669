"""`BrownianInterval`: a virtual Brownian tree (the fixed-grid sampler is `grid.py`).

Two sources of Brownian increments, both reproducible from an integer seed (``entropy``):

* `BrownianInterval` — a *virtual Brownian tree* on ``[t0, t1]``. ``W(t)`` is a deterministic
  function of ``(entropy, t)``: the interval is bisected down to width ``tol`` with a
  Brownian bridge at every node, each node drawing its noise from its own counter-based
  seed, so any query ``bm(ta, tb) = W(tb) - W(ta)`` is exactly reproducible whatever the
  order of queries, increments are additive up to rounding, and the adjoint can walk the
  path backwards. Inside a leaf of width < ``tol`` the path is one bridge sample (the only
  approximation). Optionally it also returns the space-time Lévy area (needed by ``srk``).
* `GridIncrements` — the fast path for a fixed step grid: increments of ``chunk_size``
  consecutive steps are drawn in one ``randn`` call whose seed is a hash of
  ``(entropy, chunk index)``, so the backward pass regenerates any chunk without storing
  the path.

Conventions. Increments over ``[ta, tb]`` have variance ``|tb - ta|``; a reversed query
(``ta > tb``) returns ``W(tb) - W(ta)`` (the negated forward increment) and the *same*
space-time Lévy area ``H`` (time-reversal leaves ``H`` unchanged). ``U`` (torchsde's
``return_U``) is ``∫_ta^tb (W_s - W_ta) ds = |h| (W/2 + H)``.
"""
from __future__ import annotations

import functools
import math
from collections import OrderedDict
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch

from ..errors import InvalidInputError
from ..validation import check_float_dtype, check_positive, check_seed, check_size, is_real
from .levy import AREA_APPROXIMATIONS, area_seed, levy_area
from .seeds import fresh_entropy, randn_seeded, seed_for

Tensor = torch.Tensor
Size = Union[int, Sequence[int], torch.Size]

__all__ = ["BrownianInterval", "LEVY_AREA_APPROXIMATIONS"]

LEVY_AREA_APPROXIMATIONS = ("none", "space-time") + AREA_APPROXIMATIONS
_MAX_DEPTH = 40     # tol=0: leaves of width 2**-40 of the span
_BI = "BrownianInterval: "


def _time(name: str, v: object, owner: str) -> float:
    """A finite time as a float (numbers and one-element tensors; not strings)."""
    if isinstance(v, torch.Tensor) and v.numel() == 1 and v.dtype != torch.bool:
        v = float(v)
    if not is_real(v) or not math.isfinite(v):
        raise InvalidInputError(f"{owner}`{name}` must be a finite number; got {v!r}")
    return float(v)


@functools.lru_cache(maxsize=4096)
def _levy_split(left: float, right: float) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Gaussian conditioning of (W_left, H_left) on (W, H) for a split of [0, l+r] at l.

    Over [0, h] with h = l + r, (W_1, H_1, W_2, H_2) are independent with variances
    (l, l/12, r, r/12); the constraints are W = W_1 + W_2 and
    H = (U_1 + U_2 + r W_1)/h - W/2 with U_i = len_i (W_i/2 + H_i). Returns the 2x2
    conditional-mean matrix M (row-major) and the lower Cholesky factor L of the
    conditional covariance, so (W_1, H_1) = M (W, H) + L (z_1, z_2).
    """
    h = left + right
    d = (left, left / 12.0, right, right / 12.0)
    a = ((1.0, 0.0, 1.0, 0.0),
         (left / (2 * h) + right / h - 0.5, left / h, right / (2 * h) - 0.5, right / h))
    syy = [[sum(a[i][k] * d[k] * a[j][k] for k in range(4)) for j in range(2)] for i in range(2)]
    spy = [[d[i] * a[j][i] for j in range(2)] for i in range(2)]  # P = first two coordinates
    det = syy[0][0] * syy[1][1] - syy[0][1] * syy[1][0]
    inv = [[syy[1][1] / det, -syy[0][1] / det], [-syy[1][0] / det, syy[0][0] / det]]
    m = [[sum(spy[i][k] * inv[k][j] for k in range(2)) for j in range(2)] for i in range(2)]
    cov = [[(d[i] if i == j else 0.0) - sum(m[i][k] * spy[j][k] for k in range(2))
            for j in range(2)] for i in range(2)]
    l00 = math.sqrt(max(cov[0][0], 0.0))
    l10 = cov[1][0] / l00 if l00 > 0 else 0.0
    l11 = math.sqrt(max(cov[1][1] - l10 * l10, 0.0))
    return (m[0][0], m[0][1], m[1][0], m[1][1]), (l00, l10, l11)


def _given(W: Optional[Tensor], H: Optional[Tensor], size: Optional[Size],
           dtype: Optional[torch.dtype], device: Any) -> Tuple[Any, torch.dtype, torch.device]:
    """(size, dtype, device) from the arguments and the given W / H, which must agree."""
    given = [x for x in (W, H) if x is not None]
    for name, x in (("W", W), ("H", H)):
        if x is not None and not (isinstance(x, torch.Tensor) and x.is_floating_point()):
            raise InvalidInputError(f"{_BI}`{name}` must be a floating-point tensor; got "
                                    f"{type(x).__name__}")
    sizes = ([] if size is None else [tuple(check_size("size", size, _BI))]) + \
        [tuple(x.shape) for x in given]
    dtypes = ([] if dtype is None else [check_float_dtype("dtype", dtype, _BI)]) + \
        [x.dtype for x in given]
    devices = ([] if device is None else [torch.device(device)]) + [x.device for x in given]
    if not sizes:
        raise InvalidInputError(f"{_BI}pass `size`, or `W` or `H` to give the shape")
    for what, vals in (("size", sizes), ("dtype", dtypes), ("device", devices)):
        if any(v != vals[0] for v in vals):
            raise InvalidInputError(f"{_BI}`{what}` and the {what}s of `W` / `H` must agree; "
                                    f"got {vals}")
    return (sizes[0], dtypes[0] if dtypes else torch.get_default_dtype(),
            devices[0] if devices else torch.device("cpu"))


class _Node:
    """A tree node [s, u]: absolute W(s) and Z(s) = ∫_t0^s W, and the increment (W, H) over it."""

    __slots__ = ("level", "index", "s", "u", "w_s", "z_s", "dw", "dh")

    def __init__(self, level: int, index: int, s: float, u: float, w_s: Tensor,
                 z_s: Optional[Tensor], dw: Tensor, dh: Optional[Tensor]) -> None:
        self.level, self.index, self.s, self.u = level, index, s, u
        self.w_s, self.z_s, self.dw, self.dh = w_s, z_s, dw, dh


class BrownianInterval:
    """Virtual Brownian tree on ``[t0, t1]`` with deterministic per-node seeds.

    ``bm(ta, tb)`` returns ``W(tb) - W(ta)`` of shape ``size`` for any ``ta, tb`` in
    ``[t0, t1]``; ``bm(ta, tb, return_U=True)`` also returns the space-time Lévy integral
    ``U = ∫_ta^tb (W_s - W_ta) ds`` (torchsde's convention) when built with
    ``levy_area_approximation`` other than ``'none'``, and ``return_A=True`` the Lévy area
    ``A`` (shape ``(*size, size[-1])``) approximated by ``'davie'`` or ``'foster'``
    (`brownian.levy`).

    Args:
        t0, t1: the time span (``t0 < t1``).
        size: shape of one increment, e.g. ``(B, m)``.
        dtype, device: of the returned tensors (the tree itself is kept in float64).
        entropy: integer seed; ``None`` draws one from torch's global generator.
        levy_area_approximation: ``'none'``, ``'space-time'`` (H), ``'davie'`` or
            ``'foster'`` (H and an approximate Lévy area A).
        tol: leaf width. Points closer than ``tol`` share one bridge sample, so increments
            over intervals shorter than ``tol`` are approximate; everything else (query-order
            independence, reproducibility, additivity) is exact up to rounding. Defaults to
            ``2**-24 * (t1 - t0)``; ``0`` means ``2**-40 * (t1 - t0)``.
        W, H: the increment and space-time Lévy area over ``[t0, t1]`` (default: drawn);
            ``size`` may then be omitted.
    """

    def __init__(self, t0: float, t1: float, size: Optional[Size] = None,
                 dtype: Optional[torch.dtype] = None,
                 device: Optional[Union[str, torch.device]] = None,
                 entropy: Optional[int] = None, levy_area_approximation: str = "none",
                 tol: Optional[float] = None, W: Optional[Tensor] = None,
                 H: Optional[Tensor] = None) -> None:
        t0, t1 = _time("t0", t0, _BI), _time("t1", t1, _BI)
        if not t0 < t1:
            raise InvalidInputError(
                f"BrownianInterval: need finite `t0` < `t1`; got t0={t0!r}, t1={t1!r}")
        if levy_area_approximation not in LEVY_AREA_APPROXIMATIONS:
            raise InvalidInputError(
                f"BrownianInterval: `levy_area_approximation` must be one of "
                f"{LEVY_AREA_APPROXIMATIONS}; got {levy_area_approximation!r}")
        given = _given(W, H, size, dtype, device)
        if tol is None:
            tol = (t1 - t0) * 2.0 ** -24
        elif not (is_real(tol) and tol == 0):
            tol = check_positive("tol", tol, _BI)
        self.t0, self.t1 = t0, t1
        self.size = check_size("size", given[0], _BI)
        self.shape = torch.Size(self.size)
        self.dtype = given[1]
        self.device = given[2]
        self.entropy = fresh_entropy() if entropy is None else \
            check_seed("entropy", entropy, _BI)
        self.levy_area_approximation = levy_area_approximation
        self.have_levy = levy_area_approximation != "none"
        self.have_area = levy_area_approximation in AREA_APPROXIMATIONS
        self.tol = float(tol)
        self.depth = _MAX_DEPTH if tol == 0 else \
            min(_MAX_DEPTH, max(0, math.ceil(math.log2((t1 - t0) / tol))))
        self._gen = torch.Generator(device=self.device)
        f64 = torch.float64
        z = self._noise(0, 0, 0)
        zero = torch.zeros(self.size, dtype=f64, device=self.device)
        span = t1 - t0
        dw = z[0] * math.sqrt(span) if W is None else W.detach().to(f64).clone()
        dh = None
        if self.have_levy:
            dh = z[1] * math.sqrt(span / 12.0) if H is None else H.detach().to(f64).clone()
        self._root = _Node(0, 0, t0, t1, zero, zero if self.have_levy else None, dw, dh)
        self._path: List[_Node] = [self._root]          # last descent, one node per level
        self._points: "OrderedDict[float, Tuple[Tensor, Optional[Tensor]]]" = OrderedDict()

    def __repr__(self) -> str:
        return (f"BrownianInterval(t0={self.t0}, t1={self.t1}, size={self.size}, "
                f"dtype={self.dtype}, levy_area_approximation={self.levy_area_approximation!r},"
                f" tol={self.tol:g})")

    # -- randomness -------------------------------------------------------------------------
    def _noise(self, level: int, index: int, tag: int) -> Tensor:
        # Normals are drawn in float32 (7x cheaper on CPU) and the tree is kept in float64, so
        # additivity holds to float64 rounding and float32/float64 trees share one path.
        n = 2 if self.have_levy else 1
        return randn_seeded(self._gen, seed_for(self.entropy, level, index, tag),
                            (n, *self.size), torch.float32, self.device).double()

    # -- splitting ----------------------------------------------------------------------------
    def _split(self, node: _Node, m: float, tag: int) -> Tuple[Tensor, Optional[Tensor]]:
        """(W, H) over [s, m] for a split point m inside the node, from the node's noise."""
        left, right = m - node.s, node.u - m
        z = self._noise(node.level, node.index, tag)
        if not self.have_levy:
            span = left + right
            return node.dw * (left / span) + z[0] * math.sqrt(left * right / span), None
        (m00, m01, m10, m11), (l00, l10, l11) = _levy_split(left, right)
        w1 = node.dw * m00 + node.dh * m01 + z[0] * l00
        h1 = node.dw * m10 + node.dh * m11 + z[0] * l10 + z[1] * l11
        return w1, h1

    def _children(self, node: _Node, go_right: bool) -> _Node:
        m = 0.5 * (node.s + node.u)
        w1, h1 = self._split(node, m, 1)
        level, index = node.level + 1, 2 * node.index + int(go_right)
        if not go_right:
            z_s = node.z_s
            return _Node(level, index, node.s, m, node.w_s, z_s, w1, h1)
        w_m = node.w_s + w1
        z_m, h2 = None, None
        if self.have_levy:
            left, right = m - node.s, node.u - m
            u_all = (node.u - node.s) * (0.5 * node.dw + node.dh)
            u1 = left * (0.5 * w1 + h1)
            w2 = node.dw - w1
            h2 = (u_all - u1 - right * w1) / right - 0.5 * w2
            z_m = node.z_s + left * (node.w_s + 0.5 * w1 + h1)
        return _Node(level, index, m, node.u, w_m, z_m, node.dw - w1, h2)

    def _point(self, t: float) -> Tuple[Tensor, Optional[Tensor]]:
        """(W(t), Z(t)) with Z(t) = ∫_t0^t W (None without Lévy area), float64."""
        hit = self._points.get(t)
        if hit is not None:
            self._points.move_to_end(t)
            return hit
        out = self._descend(t)
        self._points[t] = out
        if len(self._points) > 16:
            self._points.popitem(last=False)
        return out

    def _descend(self, t: float) -> Tuple[Tensor, Optional[Tensor]]:
        path = self._path
        lvl = 0  # deepest cached node containing t in [s, u): values then never depend on the
        while lvl + 1 < len(path) and path[lvl + 1].s <= t < path[lvl + 1].u:
            lvl += 1
        del path[lvl + 1:]
        node = path[-1]
        while True:
            if t == node.s:
                return node.w_s, node.z_s
            if t == node.u:
                z_u = None
                if self.have_levy:
                    z_u = node.z_s + (node.u - node.s) * (node.w_s + 0.5 * node.dw + node.dh)
                return node.w_s + node.dw, z_u
            if node.level >= self.depth:
                w1, h1 = self._split(node, t, 2)     # leaf: one bridge sample at t
                z_t = None
                if self.have_levy:
                    z_t = node.z_s + (t - node.s) * (node.w_s + 0.5 * w1 + h1)
                return node.w_s + w1, z_t
            node = self._children(node, t >= 0.5 * (node.s + node.u))
            path.append(node)

    # -- queries ------------------------------------------------------------------------------
    def _interval(self, ta: Any, tb: Any, levy: bool) -> Tuple[float, float, float, float]:
        """Validated query times: (ta, tb) as floats and the ordered (lo, hi) clamped to
        [t0, t1]."""
        ta, tb = _time("ta", ta, _BI), _time("tb", tb, _BI)
        lo, hi = (ta, tb) if ta <= tb else (tb, ta)
        eps = 1e-12 * (self.t1 - self.t0)
        if lo < self.t0 - eps or hi > self.t1 + eps:
            raise InvalidInputError(
                f"BrownianInterval: query times must lie in [t0, t1] = [{self.t0}, {self.t1}]; "
                f"got ta={ta!r}, tb={tb!r}")
        if levy and not self.have_levy:
            raise InvalidInputError(
                "BrownianInterval: the space-time Lévy area was requested but this Brownian "
                "motion was built with levy_area_approximation='none'; pass "
                "levy_area_approximation='space-time'")
        return ta, tb, min(max(lo, self.t0), self.t1), min(max(hi, self.t0), self.t1)

    def _increment64(self, lo: float, hi: float, levy: bool
                     ) -> Tuple[Tensor, Optional[Tensor]]:
        """(W(hi) - W(lo), H) in float64 for t0 <= lo < hi <= t1."""
        w_a, z_a = self._point(lo)
        w_b, z_b = self._point(hi)
        dw = w_b - w_a
        if not levy:
            return dw, None
        span = hi - lo
        return dw, (z_b - z_a - span * w_a) / span - 0.5 * dw

    # -- queries ------------------------------------------------------------------------------
    def increment(self, ta: float, tb: float, levy: bool = False
                  ) -> Tuple[Tensor, Optional[Tensor]]:
        """``(W(tb) - W(ta), H)`` in ``dtype``; H (space-time Lévy area, variance |tb-ta|/12)
        only when ``levy`` is true. A reversed query returns the negated increment and the
        same H."""
        ta, tb, lo, hi = self._interval(ta, tb, levy)
        if lo == hi:
            zero = torch.zeros(self.size, dtype=self.dtype, device=self.device)
            return zero, (zero if levy else None)
        dw, h = self._increment64(lo, hi, levy)
        dw = dw.to(self.dtype)
        return (dw if ta <= tb else -dw), (None if h is None else h.to(self.dtype))

    def increment_area(self, ta: float, tb: float) -> Tuple[Tensor, Tensor]:
        """``(W(tb) - W(ta), A)`` with the Lévy area ``A`` of shape ``(*size, size[-1])``
        (Davie's or Foster's approximation; one draw per interval, so repeated queries
        agree). A reversed query negates both."""
        if not self.have_area:
            raise InvalidInputError(
                f"BrownianInterval: the Lévy area was requested but this Brownian motion was "
                f"built with levy_area_approximation={self.levy_area_approximation!r}; pass "
                f"'davie' or 'foster'")
        ta, tb, lo, hi = self._interval(ta, tb, True)
        if lo == hi:
            a_size = self.size + self.size[-1:] if len(self.size) >= 2 else self.size
            return (torch.zeros(self.size, dtype=self.dtype, device=self.device),
                    torch.zeros(a_size, dtype=self.dtype, device=self.device))
        dw, h = self._increment64(lo, hi, True)
        a = levy_area(dw, h, hi - lo, self.levy_area_approximation, self._gen,
                      area_seed(self.entropy, lo, hi))
        dw, a = dw.to(self.dtype), a.to(self.dtype)
        return (dw, a) if ta <= tb else (-dw, -a)

    def __call__(self, ta: float, tb: Optional[float] = None, return_U: bool = False,
                 return_A: bool = False) -> Union[Tensor, Tuple[Tensor, ...]]:
        """``W(tb) - W(ta)`` (``tb=None``: ``W(ta) - W(t0)``), then ``U`` if ``return_U`` and
        the Lévy area ``A`` if ``return_A`` (torchsde's order)."""
        if tb is None:
            ta, tb = self.t0, ta
        if return_A:
            dw, a = self.increment_area(ta, tb)
        dw_, h = self.increment(ta, tb, levy=return_U)
        dw = dw_ if not return_A else dw
        out: Tuple[Tensor, ...] = (dw,)
        if return_U:
            out += (abs(float(tb) - float(ta)) * (0.5 * dw + h),)
        if return_A:
            out += (a,)
        return out[0] if len(out) == 1 else out
