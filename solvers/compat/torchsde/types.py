"""torchsde's type aliases (``torchsde.types``), with the `typing` names it re-exports."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union  # noqa: F401

import torch

Tensor = torch.Tensor
Tensors = Sequence[Tensor]
TensorOrTensors = Union[Tensor, Tensors]
Scalar = Union[float, Tensor]
Vector = Union[Sequence[float], Tensor]
Module = torch.nn.Module
Modules = Sequence[Module]
ModuleOrModules = Union[Module, Modules]
Size = torch.Size
Sizes = Sequence[Size]
