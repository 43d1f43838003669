"""`SDESolver`: a validated SDE problem and its stepping loop, for every method of
`sde.methods`, in two drivers:

* fixed grid (default): every output interval is split into equal steps of size <= ``dt``;
  step times and sizes are known on the host before the loop, Brownian increments come
  chunk by chunk from `GridIncrements` (or from a user ``bm``), and the only host sync is
  one finiteness poll every ``poll_every`` steps;
* adaptive (``adaptive=True``): step doubling (one full step against two half steps) with
  the shared `PIDController`, on a Brownian tree so rejected steps re-query the same path.
  The accept/reject decision reads one scalar per attempted step on the host (the tree
  descent is host logic).

Time grids may decrease (integration backwards in time; increments have variance |h|).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..brownian.grid import GridIncrements
from ..brownian.seeds import fresh_entropy
from ..brownian.tree import BrownianInterval
from ..engine.adaptive import solve_adaptive
from ..engine.controller import ErrorNorm, PIDController
from ..engine.fixed import GridWriter, run_grid
from ..engine.solution import Stats
from ..errors import (FunctionOutputError, InvalidInputError, MaxStepsExceededError,
                      NonFiniteError, SolverError, describe)
from ..validation import (check_adaptive_dtype, check_bool, check_int, check_mapping,
                          check_positive, check_seed, check_times, check_tolerances)
from .methods import SDEMethod, resolve_method
from .steppers import SDEStepper, StepDoubling
from .terms import SDETerms

Tensor = torch.Tensor

__all__ = ["SDESolver", "SDEPath", "query_bm", "fixed_grid"]

_OPTIONS = ("grad_free", "chunk_size", "poll_every", "max_steps", "seed", "controller", "tol",
            "save_steps")


# -- noise sources: get(k) -> (dW_k, H_k) on a grid ---------------------------------------------
def query_bm(bm: Any, ta: float, tb: float, levy: Union[bool, str]
             ) -> Tuple[Tensor, Optional[Tensor]]:
    """``(W(tb) - W(ta), L)`` from our `BrownianInterval` or any torchsde-style ``bm(ta, tb,
    return_U=..., return_A=...)`` (which needs ``ta <= tb``: a reversed query negates W and
    A and keeps H). ``levy``: False (L None), True (L the space-time Lévy area H) or
    ``'A'`` (L the Lévy area A)."""
    if isinstance(bm, BrownianInterval):
        return bm.increment_area(ta, tb) if levy == "A" else bm.increment(ta, tb, bool(levy))
    lo, hi = (ta, tb) if ta <= tb else (tb, ta)
    sign = 1.0 if ta <= tb else -1.0
    if levy == "A":
        w, a = bm(lo, hi, return_A=True)
        return (w, a) if sign > 0 else (-w, -a)
    if levy:
        w, u = bm(lo, hi, return_U=True)
        h = u / (hi - lo) - 0.5 * w
    else:
        w, h = bm(lo, hi), None
    return (w if sign > 0 else -w), h


class _QueryNoise:
    """Increments of a user (or tree) Brownian motion on a known grid."""

    def __init__(self, bm: Any, times: Sequence[float], levy: Union[bool, str]) -> None:
        self.bm, self.times, self.levy = bm, times, levy

    def get(self, k: int) -> Tuple[Tensor, Optional[Tensor]]:
        return query_bm(self.bm, self.times[k], self.times[k + 1], self.levy)


def fixed_grid(ts: Sequence[float], dt: float) -> Tuple[List[float], List[bool]]:
    """Step times splitting each output interval into equal steps of size <= dt, and per step
    whether it ends on an output time."""
    times, save = [ts[0]], []
    for a, b in zip(ts[:-1], ts[1:]):
        n = max(1, math.ceil(abs(b - a) / dt - 1e-6))
        h = (b - a) / n
        times.extend(a + j * h for j in range(1, n))
        times.append(b)
        save.extend([False] * (n - 1) + [True])
    return times, save


def parse_sde_options(options: Any) -> Dict[str, Any]:
    """Validate `sdeint` ``options`` once; returns a dict with ``poll_every`` filled in."""
    opts = check_mapping("options", options)
    unknown = set(opts) - set(_OPTIONS)
    if unknown:
        raise InvalidInputError(
            f"`options` keys must be among {_OPTIONS}; got {sorted(unknown)}")
    opts["poll_every"] = check_int("options['poll_every']", opts.get("poll_every", 64))
    for key, check in (("max_steps", check_int), ("chunk_size", check_int),
                       ("seed", check_seed), ("tol", check_positive),
                       ("grad_free", check_bool), ("save_steps", check_bool)):
        if opts.get(key) is not None:
            opts[key] = check(f"options['{key}']", opts[key])
    ctrl = opts.get("controller")
    if ctrl is not None and not isinstance(ctrl, PIDController):
        raise InvalidInputError(
            f"`options['controller']` must be a PIDController; got {describe(ctrl)}")
    return opts


@dataclass
class SDEPath:
    """The path a solve took, which the stochastic adjoint replays: step times (host
    floats and a tensor), whether each step ends on an output time, the noise source
    (``get(k)`` gives step k's increments) and the method's final carried state."""

    times: List[float]
    save: List[bool]
    tgrid: Tensor
    noise: Any
    final_extra: Tuple = ()


# -- the solver ------------------------------------------------------------------------------------
class SDESolver:
    """Validated problem + the two stepping drivers (shared by `solve_sde` and the adjoint)."""

    def __init__(self, sde: Any, y0: Tensor, ts: Union[Tensor, Sequence[float]], *,
                 bm: Any = None, method: Optional[str] = None, dt: float = 1e-3,
                 adaptive: bool = False, rtol: float = 1e-5, atol: float = 1e-4,
                 dt_min: float = 1e-5, names: Optional[Dict[str, str]] = None,
                 options: Optional[Dict[str, Any]] = None, checkpoint: bool = False) -> None:
        self.terms = SDETerms(sde, check_mapping("names", names))
        if not isinstance(y0, torch.Tensor) or not y0.is_floating_point() or y0.dim() < 1:
            raise InvalidInputError(
                f"`y0` must be a floating-point tensor of shape (B, *event); got {describe(y0)}")
        self.y0 = y0
        self.dtype, self.device = y0.dtype, y0.device
        self.ts, self.ts_list, self.direction = check_times(ts, self.dtype, self.device, "ts")
        self.dt, self.dt_min = check_positive("dt", dt), check_positive("dt_min", dt_min)
        self.adaptive = check_bool("adaptive", adaptive)
        self.options = options = parse_sde_options(options)
        ctrl = options.get("controller")
        if ctrl is not None and ctrl.rtol is not None:
            rtol, atol = ctrl.rtol, ctrl.atol
        if self.adaptive:
            rtol, atol = check_tolerances(rtol, atol)
            check_adaptive_dtype(self.dtype, "`adaptive=True`")
        self.rtol, self.atol = rtol, atol
        nt, st = self.terms.noise_type, self.terms.sde_type
        self.method: SDEMethod = resolve_method(method, st, nt)
        self.step = self.method.build(st, nt, options)
        self.stepper = SDEStepper(self.method, self.step, nt, checkpoint)
        self.t0 = torch.tensor(self.ts_list[0], dtype=self.dtype, device=self.device)
        # nothing to integrate (one output time, or an empty state): f and g are not called
        self.trivial = len(self.ts_list) == 1 or y0.numel() == 0
        self._bm_arg = bm
        self.noise_shape = self._check_functions() if y0.numel() else tuple(y0.shape)
        # the Lévy area A matters for non-commutative (general) noise only: elsewhere the
        # method's area term vanishes and the increments come from the fast grid sampler
        area = self.method.needs_area and nt == "general"
        self.levy: Union[bool, str] = "A" if area else self.method.needs_levy
        self.extra0: Optional[Tuple] = None      # a given initial carried state (torchsde's)
        self.bm = bm
        if bm is not None:
            self._check_bm(bm)
        self.poll_every = options["poll_every"]
        self.max_steps = options.get("max_steps", None)
        self.step_record: Optional[Tuple[Tensor, Tensor]] = None  # options['save_steps']
        self.stats = {"nfe_f": 0, "nfe_g": 0, "n_steps": 0, "n_accepted": 0, "n_rejected": 0}

    # -- validation --------------------------------------------------------------------------------
    def _check_functions(self) -> Tuple[int, ...]:
        if not self.terms.has_g:            # only products g·v: the noise shape from `bm`
            return self._check_product_functions()
        f0, g0 = self.terms.f_and_g(self.t0, self.y0)
        if not isinstance(f0, torch.Tensor) or f0.shape != self.y0.shape:
            raise FunctionOutputError(
                f"`sde.f` must return a tensor of y0's shape {tuple(self.y0.shape)}; got "
                f"{describe(f0)}")
        if not isinstance(g0, torch.Tensor):
            raise FunctionOutputError(f"`sde.g` must return a tensor; got {describe(g0)}")
        for name, out in (("f", f0), ("g", g0)):
            if out.dtype != self.y0.dtype:
                raise FunctionOutputError(
                    f"`sde.{name}` returned dtype {out.dtype} but the state has dtype "
                    f"{self.y0.dtype}")
        return self.terms.noise_shape(self.y0, g0)

    def _check_product_functions(self) -> Tuple[int, ...]:
        shape = getattr(self._bm_arg, "shape", None)
        if self.terms.diagonal:
            shape = tuple(self.y0.shape)
        elif self.terms.scalar:
            shape = (self.y0.shape[0], 1)
        if shape is None:
            raise InvalidInputError(
                "the noise size cannot be inferred from an SDE that defines only `g_prod` / "
                "`f_and_g_prod`: pass `bm`, or define `g` or `f_and_g`")
        v = torch.zeros(tuple(shape), dtype=self.dtype, device=self.device)
        f0, gv = self.terms.f_and_g_prod(self.t0, self.y0, v)
        for name, out in (("drift", f0), ("diffusion-noise product", gv)):
            if not isinstance(out, torch.Tensor) or out.shape != self.y0.shape:
                raise FunctionOutputError(
                    f"the SDE's {name} must be a tensor of y0's shape {tuple(self.y0.shape)}; "
                    f"got {describe(out)}")
        return tuple(shape)

    def _check_bm(self, bm: Any) -> None:
        if not callable(bm):
            raise InvalidInputError(
                "`bm` must be a Brownian motion called as bm(ta, tb) (e.g. BrownianInterval); "
                f"got {describe(bm)}")
        shape = getattr(bm, "shape", None)
        if shape is None:
            w = query_bm(bm, self.ts_list[0], self.ts_list[-1], False)[0]
            shape = getattr(w, "shape", None)
        if shape is None or tuple(shape) != tuple(self.noise_shape):
            raise InvalidInputError(
                f"`bm` must produce increments of shape {tuple(self.noise_shape)} for "
                f"noise_type={self.terms.noise_type!r} and y0 of shape {tuple(self.y0.shape)}; "
                f"got {tuple(shape) if shape is not None else describe(bm)}")
        lev = getattr(bm, "levy_area_approximation", "none")
        if self.method.needs_area and lev not in ("davie", "foster"):
            raise InvalidInputError(
                f"`bm` must provide the Lévy area for method {self.method.name!r}: build it "
                f"with levy_area_approximation='davie' or 'foster'; got "
                f"levy_area_approximation={lev!r}")
        if self.levy is True and lev in (None, "none"):
            raise InvalidInputError(
                f"`bm` must provide the space-time Lévy area for method "
                f"{self.method.name!r}: build it with levy_area_approximation='space-time' "
                f"(or 'davie' / 'foster'); got levy_area_approximation={lev!r}")

    # -- helpers -----------------------------------------------------------------------------------
    def _entropy(self) -> int:
        seed = self.options.get("seed", None)
        return fresh_entropy() if seed is None else seed

    def _default_tree(self) -> BrownianInterval:
        """The Brownian tree of a solve without ``bm`` that needs one (adaptive steps, or the
        Lévy area A: Foster's approximation, as torchsde)."""
        ts = self.ts_list
        lo, hi = min(ts[0], ts[-1]), max(ts[0], ts[-1])
        tol = self.options.get("tol", min(self.dt_min, self.dt) / 16)
        lev = {"A": "foster", True: "space-time"}.get(self.levy, "none")
        return BrownianInterval(lo, hi, self.noise_shape, dtype=self.dtype, device=self.device,
                                entropy=self._entropy(), levy_area_approximation=lev, tol=tol)

    def _chunk_size(self) -> int:
        if "chunk_size" in self.options:
            return self.options["chunk_size"]
        numel = max(1, math.prod(self.noise_shape)) * (2 if self.levy else 1)
        return int(min(256, max(1, (1 << 21) // numel)))

    def _fail(self, err: type, msg: str, t: float, outs: List[Tensor]) -> Exception:
        ys = torch.full((len(self.ts_list), *self.y0.shape), math.nan, dtype=self.dtype,
                        device=self.device)
        if outs:
            ys[:len(outs)] = torch.stack([o.detach() for o in outs])
        self._collect_stats()
        return err(msg, t=torch.tensor(t, dtype=self.dtype), ys=ys, stats=self.result_stats())

    def result_stats(self) -> Stats:
        """The solve's `Stats` (tensors, as an ODE solve's)."""
        self._collect_stats()
        return Stats.of_sde(self.stats, self.device)

    def _collect_stats(self) -> None:
        self.stats["nfe_f"] = self.terms.nfe_f
        self.stats["nfe_g"] = self.terms.nfe_g

    # -- drivers -----------------------------------------------------------------------------------
    def run(self, y0: Tensor) -> Tuple[Tensor, Optional["SDEPath"]]:
        """Integrate from ``y0``; returns ys ``(len(ts), *y0.shape)`` and the path taken
        (None when nothing was integrated)."""
        self.last_path: Optional[SDEPath] = None
        if self.trivial:
            n = len(self.ts_list)
            ys = y0.unsqueeze(0) if n == 1 else y0.unsqueeze(0).expand(n, *y0.shape).clone()
            return ys, None
        ys, path = self._run_adaptive(y0) if self.adaptive else self._run_fixed(y0)
        self._collect_stats()
        self.last_path = path
        return ys, path

    def fixed_plan(self, y0: Tensor) -> Tuple[List[float], List[bool], List[float]]:
        """The fixed grid's times, which of them are saved, and the step sizes; raises when
        the grid needs more than ``options['max_steps']`` steps."""
        times, save = fixed_grid(self.ts_list, self.dt)
        n = len(times) - 1
        if self.max_steps is not None and n > int(self.max_steps):
            raise self._fail(MaxStepsExceededError,
                             f"the fixed grid needs {n} steps, more than options['max_steps']="
                             f"{self.max_steps}; increase `dt` or `max_steps`",
                             self.ts_list[0], [y0])
        return times, save, [b - a for a, b in zip(times[:-1], times[1:])]

    def _run_fixed(self, y0: Tensor) -> Tuple[Tensor, "SDEPath"]:
        times, save, hs = self.fixed_plan(y0)
        n = len(hs)
        tgrid = torch.tensor(times, dtype=self.dtype, device=self.device)
        if self.bm is None and self.levy == "A":      # the Lévy area comes from a tree
            self.bm = self._default_tree()
        prepare = self.method.block_noise(self.terms.noise_type)
        if self.bm is None:
            noise = GridIncrements(hs, self.noise_shape, self.dtype, self.device,
                                   self._entropy(), self.levy, self._chunk_size(), prepare)
        else:
            noise = _QueryNoise(self.bm, times, self.levy)
        control = noise.get if prepare is None or self.bm is not None else noise.prepared
        writer = GridWriter(y0, save, self.options.get("save_steps", False))
        state = self.extra0 if self.extra0 is not None else \
            self.stepper.init(self.terms, self.t0, y0)

        def nonfinite(k: int) -> None:
            self.stats.update(n_steps=k + 1, n_accepted=k + 1)
            raise self._fail(NonFiniteError,
                             f"the SDE state became non-finite by t={times[k + 1]:.6g} "
                             f"(method {self.method.name!r}, dt={self.dt:g})",
                             times[k + 1], writer.written(k))

        _, extra = run_grid(self.stepper, self.terms, y0, state, tgrid.unbind(0), hs, writer,
                            self.poll_every, control=control, on_nonfinite=nonfinite)
        self.stats.update(n_steps=n, n_accepted=n, n_rejected=0)
        if writer.steps is not None:
            self.step_record = (tgrid[1:], torch.stack(writer.steps))
        return writer.result(), SDEPath(times, save, tgrid, noise, extra)

    def _run_adaptive(self, y0: Tensor) -> Tuple[Tensor, "SDEPath"]:
        if self.options.get("save_steps"):
            raise InvalidInputError("`options['save_steps']` (SaveAt(steps=True)) needs a "
                                    "fixed-grid SDE solve; got adaptive=True")
        ts = self.ts_list
        bm = self.bm if self.bm is not None else self._default_tree()
        self.bm = bm
        user = self.options.get("controller", PIDController(factor_max=1.5))
        controller = dataclasses.replace(user, dt_min=max(self.dt_min, user.dt_min),
                                         force_dt_min=True)  # steps are accepted there
        levy = self.levy
        doubling = StepDoubling(self.stepper, lambda a, b: query_bm(bm, a, b, levy))
        max_steps = int(self.max_steps) if self.max_steps is not None else 1_000_000
        state = self.extra0 if self.extra0 is not None else \
            doubling.init(self.terms, self.t0, y0)
        try:
            ys, stats, records = solve_adaptive(
                self.terms, doubling, y0, state, self.ts, self.direction, self.rtol, self.atol,
                controller.norm or ErrorNorm(per_sample=False), controller, False, 1, False,
                max_steps, self.dt, 1, steps=True)
        except SolverError as err:
            self._collect_stats()
            if err.stats is not None:
                self.stats.update(self._sde_stats(err.stats))
                err.stats = self.result_stats()
            raise
        self.stats.update(self._sde_stats(stats))
        times, save = _accepted_path(doubling.attempts, records, ts)
        tgrid = torch.tensor(times, dtype=self.dtype, device=self.device)
        return ys, SDEPath(times, save, tgrid, _QueryNoise(bm, times, levy),
                           doubling.last_state or ())

    def _sde_stats(self, stats: Dict[str, Any]) -> Dict[str, Any]:
        self._collect_stats()
        return {"nfe_f": self.stats["nfe_f"], "nfe_g": self.stats["nfe_g"],
                "n_steps": int(stats["n_steps"]), "n_accepted": int(stats["n_accepted"]),
                "n_rejected": int(stats["n_rejected"])}


def _accepted_path(attempts: List[Tuple[float, float, float]], records: List[tuple],
                   ts: Sequence[float]) -> Tuple[List[float], List[bool]]:
    """The grid two half steps per accepted attempt walked, and whether each grid step ends
    on an output time (read once, after the solve)."""
    accepted = torch.stack([r[4] for r in records]).tolist() if records else []
    times, save, j = [ts[0]], [], 1
    for (_, tm, tb), acc in zip(attempts, accepted):
        if not acc:
            continue
        lands = j < len(ts) and tb == ts[j]
        j += lands
        times.extend([tm, tb])
        save.extend([False, lands])
    return times, save
