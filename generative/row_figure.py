"""A PNG of labelled image rows (e.g. original / measured / restored): the rows are one
exact-pixel grid (`generative.plots.image_grid`, one row of tiles each) right of a label
column of `LABEL_PX` pixels that names every row, under a title band of
`generative.plots.TITLE_PX` pixels when a ``title`` is given (`row_figure_size` computes the
size)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch

from .errors import InputError
from .plots import TITLE_PX, _agg, _title_fontsize, auto_scale, grid_size, image_grid

Tensor = torch.Tensor

__all__ = ["LABEL_PX", "row_figure_size", "save_row_figure"]

LABEL_PX = 88


def _label_fontsize(label: str, dpi: int) -> float:
    """The largest font (at most 10 pt, at least 5) that fits ``label`` in the label column
    (about 0.62 em per character of DejaVu Sans, 8 pixels of margin)."""
    fits = (LABEL_PX - 8) / (0.62 * max(len(label), 1)) * 72 / dpi
    return float(min(10.0, max(5.0, fits)))


def row_figure_size(n_rows: int, n_cols: int, height: int, width: int, *, pad: int = 1,
                    scale: Optional[int] = None, title: bool = True) -> Tuple[int, int]:
    """Pixel size (height, width) of the PNG `save_row_figure` writes for ``n_rows`` rows of
    ``n_cols`` images of ``height x width`` (``title`` False: without a title)."""
    h, w = grid_size(n_rows * n_cols, height, width, ncol=n_cols, pad=pad, scale=scale,
                     title=title)
    return h, w + LABEL_PX


def _stack(rows: Sequence[Tuple[str, Tensor]]) -> Tensor:
    """The rows' images as one ``(rows * N, C, H, W)`` batch (1-channel rows replicated to 3
    channels when another row has colour)."""
    if not rows:
        raise InputError("need at least one (label, images) row")
    shapes = {(x.shape[0], *x.shape[2:]) if isinstance(x, Tensor) and x.dim() == 4 else None
              for _, x in rows}
    channels = {x.shape[1] for _, x in rows if isinstance(x, Tensor) and x.dim() == 4}
    if None in shapes or len(shapes) != 1 or not channels <= {1, 3}:
        raise InputError(f"every row must be a (N, 1 or 3, H, W) tensor of one N, H and W; got "
                         f"{[tuple(getattr(x, 'shape', ())) for _, x in rows]}")
    c = max(channels)
    return torch.cat([x.detach().expand(-1, c, -1, -1) for _, x in rows])


def save_row_figure(rows: Sequence[Tuple[str, Tensor]], path: Union[str, Path], *,
                    title: Optional[str] = None, pad: int = 1,
                    scale: Optional[int] = None) -> Path:
    """Write ``rows`` (``(label, images (N, C, H, W) in [-1, 1])``, top to bottom) as one PNG,
    each row labelled on its left; returns the path."""
    x = _stack(rows)
    n, h, w = rows[0][1].shape[0], x.shape[-2], x.shape[-1]
    s = auto_scale(h, w) if scale is None else scale
    grid = image_grid(x, ncol=n, pad=pad, scale=s)
    plt = _agg()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dpi, top = 100, (TITLE_PX if title else 0)
    gh, gw = grid.shape[:2]
    height, width = gh + top, gw + LABEL_PX
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    try:
        gray = dict(cmap="gray", vmin=0.0, vmax=1.0) if grid.ndim == 2 else {}
        fig.figimage(grid, xo=LABEL_PX, yo=0, origin="upper", **gray)
        size = min(_label_fontsize(label, dpi) for label, _ in rows)
        for r, (label, _) in enumerate(rows):
            centre = top + (pad + r * (h + pad) + h / 2) * s     # pixels from the top
            fig.text((LABEL_PX - 4) / width, 1 - centre / height, label, ha="right",
                     va="center", fontsize=size)
        if title:
            fig.text(0.5, 1 - TITLE_PX / 2 / height, title, ha="center", va="center",
                     fontsize=_title_fontsize(title, width, dpi))
        fig.savefig(path, dpi=dpi, format="png", facecolor="white")
    finally:
        plt.close(fig)
    return path
