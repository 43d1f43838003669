"""Optional TensorBoard logging of a training run (when the ``tensorboard`` package is
installed; nothing otherwise).

`TensorBoardLog` is an ``on_log`` callback for `generative.train.train`: every metrics record
becomes scalars (``train/loss``, ``train/grad_norm``, ``train/lr``, ...), and whenever a newer
checkpoint than the last grid's is on disk, a grid of samples of its EMA model is added as an
image (the checkpoint of step s is written right after step s's record, so a grid shows the
model one checkpoint back; `close` adds the final model's).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

import torch

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = ["TensorBoardLog", "summary_writer_class", "TENSORBOARD_DIR"]

TENSORBOARD_DIR = "tensorboard"
GRID_SAMPLES = 64
GRID_NFE = 50


def summary_writer_class() -> Optional[Callable[..., Any]]:
    """torch's ``SummaryWriter`` when the ``tensorboard`` package is installed, else None."""
    if importlib.util.find_spec("tensorboard") is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # a broken or incompatible tensorboard install
        return None
    return SummaryWriter


def _grid_options(spec: ModelSpec) -> Dict[str, Any]:
    """Cheap sampling options for a progress grid of any model kind."""
    if spec.kind == "score":
        return {"sampler": "ddim", "nfe": GRID_NFE}
    return {"method": "rk4", "nfe": 4 * (GRID_NFE // 4)}


class TensorBoardLog:
    """Scalars of every record and sample grids of each new checkpoint under
    ``out/tensorboard`` (``writer_class`` default: `summary_writer_class`)."""

    def __init__(self, out: Path, checkpoint: Path, writer_class: Callable[..., Any],
                 seed: int = 0) -> None:
        self.dir = Path(out) / TENSORBOARD_DIR
        self.writer = writer_class(log_dir=str(self.dir))
        self.checkpoint = Path(checkpoint)
        self.seed = seed
        self._grid_step: Optional[int] = None

    def __call__(self, record: Dict[str, float]) -> None:
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"train/{key}", value, step)
        self._grid()
        self.writer.flush()

    def _grid(self) -> None:
        """A sample grid of the checkpoint on disk if it is newer than the last grid's."""
        from .checkpoint import CheckpointError
        from .generate import generate
        from .models import ModelError, load_model
        from .plots import image_grid
        if not self.checkpoint.is_file():
            return
        try:
            loaded = load_model(self.checkpoint)
        except (ModelError, CheckpointError, OSError):  # mid-replace: the next record tries
            return
        model, spec, step = loaded.model, loaded.spec, int(loaded.state.get("step", 0))
        if step == self._grid_step:
            return
        self._grid_step = step
        try:
            x, _ = generate(model, spec, GRID_SAMPLES, seed=self.seed, batch_size=GRID_SAMPLES,
                            **_grid_options(spec))
        except Exception:  # a progress picture must never stop training
            return
        if x.dim() == 4 and x.shape[1] in (1, 3):
            grid = torch.as_tensor(image_grid(x.clamp(-1, 1)))
            grid = grid[None] if grid.dim() == 2 else grid.permute(2, 0, 1)
            self.writer.add_image("samples", grid, step)
        elif x.dim() == 2 and x.shape[1] >= 2:
            self.writer.add_histogram("samples/x0", x[:, 0], step)
            self.writer.add_histogram("samples/x1", x[:, 1], step)

    def close(self) -> None:
        self._grid()
        self.writer.close()
