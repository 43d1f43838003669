"""A workaround for an inductor miscompilation that the RK stage sums hit (torch 2.13).

Inductor's post-grad pattern that fuses ``add(x, mm(a, b))`` into ``addmm(x, a, b)`` matches
``aten.add.Tensor`` whatever its ``alpha``, and drops it: ``torch.add(k0, y @ A, alpha=1/3)``
compiles to ``k0 + y @ A``. The RK steps sum stages with ``alpha=`` and f is often a matmul,
so compiled steps of a linear f were wrong. `SplitAlphaAdds`, installed as inductor's
``post_grad_custom_pre_pass`` (it runs before the pattern passes), rewrites every
``add(x, y, alpha=c)`` with ``c != 1`` as ``add(x, mul(y, c))``; the fusion then applies
only where it is right, and the other patterns stay on.
"""
from __future__ import annotations

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass

__all__ = ["SplitAlphaAdds"]

_ADD = torch.ops.aten.add.Tensor
_MUL = torch.ops.aten.mul.Tensor


class SplitAlphaAdds(CustomGraphPass):
    """``add(x, y, alpha=c)`` -> ``add(x, mul(y, c))`` for tensor ``y`` and ``c != 1``."""

    def __call__(self, graph: torch.fx.Graph) -> None:
        for node in list(graph.nodes):
            if node.op != "call_function" or node.target is not _ADD:
                continue
            alpha = node.kwargs.get("alpha", 1)
            x, y = node.args[:2]
            if alpha == 1 or not isinstance(y, torch.fx.Node):
                continue
            with graph.inserting_before(node):
                scaled = graph.call_function(_MUL, (y, alpha))
                add = graph.call_function(_ADD, (x, scaled))
            if "val" in y.meta:   # y * c has y's shape, dtype and strides
                scaled.meta["val"] = y.meta["val"]
            add.meta = dict(node.meta)
            node.replace_all_uses_with(add)
            graph.erase_node(node)

    def uuid(self) -> str:
        return "sdeflow.compiled.SplitAlphaAdds/1"
