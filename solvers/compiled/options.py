"""`CompileOptions`: how the compiled path compiles, and the checks of what it supports.

``compile=True`` on `solve_ode` (``options={'compile': True}`` on `odeint`) and on
`compiled.solve_sde` means ``CompileOptions()``; a `CompileOptions` sets the backend, the
mode, the steps per compiled call of a fixed grid (``unroll``) and CUDA-graph capture.
Everything that cannot run inside a graph (per-step callbacks, dense records, the backsolve
adjoint, compaction, implicit methods, autograd-based SDE terms) is refused by name here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from ..errors import InvalidInputError, describe
from ..validation import check_bool, check_int

__all__ = ["CompileOptions", "as_compile_options", "refuse", "MODES"]

#: the modes `torch.compile` takes (None: its default)
MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_CO = "CompileOptions: "


@dataclass(frozen=True)
class CompileOptions:
    """Options of the compiled path.

    Attributes:
        backend: `torch.compile` backend (``'inductor'``; ``'aot_eager'`` or ``'eager'``
            trace without generating code: cheap checks that a step has no graph break).
        mode: `torch.compile` mode (one of `MODES`).
        fullgraph: refuse graph breaks (default True: a break is an error, not a slowdown).
        unroll: fixed-grid steps per compiled call (the loop runs ``unroll`` steps inside
            one graph; longer unrolling compiles for longer, see docs/compile.md).
        cuda_graphs: on CUDA, capture the fixed-grid ODE loop's chunks in CUDA graphs and
            replay them (values only: call under ``torch.no_grad()``).
    """

    backend: Union[str, Callable[..., Any]] = "inductor"
    mode: Optional[str] = None
    fullgraph: bool = True
    unroll: int = 8
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.backend, str) or callable(self.backend)):
            raise InvalidInputError(f"{_CO}`backend` must be a torch.compile backend name or "
                                    f"callable; got {describe(self.backend)}")
        if self.mode not in MODES:
            raise InvalidInputError(f"{_CO}`mode` must be one of {MODES}; got {self.mode!r}")
        check_bool("fullgraph", self.fullgraph, _CO)
        check_bool("cuda_graphs", self.cuda_graphs, _CO)
        object.__setattr__(self, "unroll", check_int("unroll", self.unroll, 1, _CO))

    def compile_kwargs(self) -> dict:
        """The keyword arguments of `torch.compile`. For inductor the mode becomes its
        options plus the `inductor.SplitAlphaAdds` pre-pass (inductor's add(x, mm) ->
        addmm fusion drops the add's ``alpha``, which the RK stage sums use)."""
        if self.backend != "inductor":
            return dict(backend=self.backend, mode=self.mode, fullgraph=self.fullgraph)
        import torch._inductor

        from .inductor import SplitAlphaAdds
        options = dict(torch._inductor.list_mode_options(self.mode or "default"))
        options["post_grad_custom_pre_pass"] = SplitAlphaAdds()
        return dict(backend="inductor", options=options, fullgraph=self.fullgraph)


def as_compile_options(compile: Any) -> Optional[CompileOptions]:
    """``None`` for ``False``/``None`` (eager), the options for ``True`` or a
    `CompileOptions`; anything else raises naming ``compile``."""
    if compile is None or compile is False:
        return None
    if compile is True:
        return CompileOptions()
    if isinstance(compile, CompileOptions):
        return compile
    raise InvalidInputError(f"`compile` must be a bool or a CompileOptions; got "
                            f"{describe(compile)}")


def refuse(name: str, value: Any, why: str) -> InvalidInputError:
    """The error for an option the compiled path does not take."""
    return InvalidInputError(f"`compile=True` does not support {name}={value!r}: {why}")
