"""PNG figures with matplotlib's Agg backend: image sample grids, 2-D scatter plots and
density plots, drawn to be read by a person.

`save_image_grid` writes an exact-pixel grid: ``nrow x ncol`` tiles of ``H x W`` pixels,
``pad`` pixels apart, each pixel drawn as ``scale x scale`` (default `auto_scale`: at least
64 screen pixels per tile, 8 per pixel of an 8x8 digit), under a title band of `TITLE_PX`
pixels when a ``title`` is given (the sampler and its NFE, what the rows are), so the PNG is
``(nrow * (H + pad) + pad) * scale (+ TITLE_PX)`` pixels tall (`grid_size` computes it).
`save_scatter` plots 2-D samples over the data with a legend, axis labels and an axis range
from the points' quantiles (a few outliers do not squash the plot). `save_density` writes a
2-D model's density on a grid (`density_grid`) beside the data's histogram, each with a
colour bar.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .errors import InputError

Tensor = torch.Tensor
PathLike = Union[str, Path]

__all__ = ["grid_shape", "grid_size", "auto_scale", "image_grid", "save_image_grid",
           "save_scatter", "save_samples", "density_grid", "save_density", "robust_limits",
           "TITLE_PX"]

TITLE_PX = 28
# a tile is drawn at least this many screen pixels wide
_MIN_TILE_PX = 64
# the axis range of scatter and density plots covers these quantiles of the points
_QUANTILES = (0.005, 0.995)


def _agg():
    import matplotlib
    matplotlib.use("Agg", force=False)
    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def grid_shape(n: int, ncol: Optional[int] = None) -> Tuple[int, int]:
    """(rows, cols) of a grid holding ``n`` tiles (square-ish by default)."""
    if n < 1:
        raise InputError(f"need at least one image; got n={n}")
    cols = ncol if ncol is not None else int(math.ceil(math.sqrt(n)))
    return int(math.ceil(n / cols)), cols


def auto_scale(height: int, width: int) -> int:
    """Screen pixels per image pixel: enough for a tile of at least 64 pixels (8x8 digits: 8)."""
    return max(1, math.ceil(_MIN_TILE_PX / max(height, width)))


def grid_size(n: int, height: int, width: int, *, ncol: Optional[int] = None, pad: int = 1,
              scale: Optional[int] = None, title: bool = True) -> Tuple[int, int]:
    """Pixel size (height, width) of the PNG `save_image_grid` writes with a title (``title``
    False: without one)."""
    scale = auto_scale(height, width) if scale is None else scale
    rows, cols = grid_shape(n, ncol)
    return ((rows * (height + pad) + pad) * scale + (TITLE_PX if title else 0),
            (cols * (width + pad) + pad) * scale)


def image_grid(x: Tensor, *, ncol: Optional[int] = None, pad: int = 1,
               scale: Optional[int] = None,
               value_range: Tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """``(N, C, H, W)`` images -> a ``(H', W')`` (C = 1) or ``(H', W', 3)`` array in [0, 1]
    (``scale`` default `auto_scale`)."""
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3):
        raise InputError(f"images must be a (N, 1 or 3, H, W) tensor; got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    lo, hi = value_range
    a = ((x.detach().to("cpu", torch.float64) - lo) / (hi - lo)).clamp(0, 1).numpy()
    n, c, h, w = a.shape
    scale = auto_scale(h, w) if scale is None else scale
    rows, cols = grid_shape(n, ncol)
    grid = np.ones((c, rows * (h + pad) + pad, cols * (w + pad) + pad))
    for i in range(n):
        r, k = divmod(i, cols)
        y0, x0 = pad + r * (h + pad), pad + k * (w + pad)
        grid[:, y0:y0 + h, x0:x0 + w] = a[i]
    grid = grid.repeat(scale, axis=1).repeat(scale, axis=2)
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def _title_fontsize(title: str, width_px: int, dpi: int) -> float:
    """The largest font (at most 10 pt, at least 5) that fits ``title`` in ``width_px``."""
    fits = (width_px - 8) / (0.55 * max(len(title), 1)) * 72 / dpi  # ~0.55 em per character
    return float(min(10.0, max(5.0, fits)))


def save_image_grid(x: Tensor, path: PathLike, *, title: Optional[str] = None,
                    **kwargs) -> Path:
    """Write images ``(N, C, H, W)`` in ``value_range`` as one PNG grid, pixel for pixel,
    under ``title`` if given (see the module docstring for the size); returns the path."""
    plt = _agg()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(x, **kwargs)
    gray = dict(cmap="gray", vmin=0.0, vmax=1.0) if grid.ndim == 2 else {}
    if not title:
        plt.imsave(path, grid, format="png", **gray)
        return path
    dpi = 100
    h, w = grid.shape[:2]
    fig = plt.figure(figsize=(w / dpi, (h + TITLE_PX) / dpi), dpi=dpi, facecolor="white")
    try:
        fig.figimage(grid, xo=0, yo=0, origin="upper", **gray)
        fig.text(0.5, 1 - TITLE_PX / 2 / (h + TITLE_PX), title, ha="center", va="center",
                 fontsize=_title_fontsize(title, w, dpi))
        fig.savefig(path, dpi=dpi, format="png", facecolor="white")
    finally:
        plt.close(fig)
    return path


def robust_limits(*points: Optional[Tensor], margin: float = 0.1,
                  quantiles: Tuple[float, float] = _QUANTILES) -> Tuple[float, float]:
    """A square axis range ``(lo, hi)`` for 2-D point sets: the 0.5% and 99.5% quantiles of
    all their coordinates together, widened by ``margin`` of the span, so that a few outliers
    do not set the range."""
    parts = [p.detach().cpu().double().reshape(-1) for p in points if p is not None]
    v = torch.cat(parts)
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        return -1.0, 1.0
    lo, hi = (float(q) for q in torch.quantile(v, torch.tensor(quantiles, dtype=v.dtype)))
    span = hi - lo if hi > lo else 1.0
    return lo - margin * span, hi + margin * span


def save_scatter(points: Tensor, path: PathLike, *, reference: Optional[Tensor] = None,
                 size_px: int = 400, title: Optional[str] = None,
                 lim: Optional[Sequence[float]] = None,
                 labels: Tuple[str, str] = ("samples", "data")) -> Path:
    """Scatter plot of ``(N, 2)`` points (optionally over ``reference`` points, in grey) as a
    PNG of ``size_px x size_px`` pixels: a legend naming both (``labels``), axis labels
    x1 / x2, equal axes over ``lim`` (default `robust_limits` of both sets)."""
    if points.dim() != 2 or points.shape[1] != 2:
        raise InputError(f"points must have shape (N, 2); got {tuple(points.shape)}")
    plt = _agg()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dpi = 100
    fig = plt.figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi, layout="constrained")
    try:
        ax = fig.add_subplot()
        p = points.detach().cpu().numpy()
        if reference is not None:
            r = reference.detach().cpu().numpy()
            ax.scatter(r[:, 0], r[:, 1], s=3, c="0.7", linewidths=0,
                       label=f"{labels[1]} ({len(r)})")
        ax.scatter(p[:, 0], p[:, 1], s=3, c="C0", linewidths=0, alpha=0.7,
                   label=f"{labels[0]} ({len(p)})")
        lo, hi = robust_limits(points, reference) if lim is None else lim
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.tick_params(labelsize=8)
        ax.legend(loc="best", fontsize=8, markerscale=3, framealpha=0.9)
        if title:
            ax.set_title(title, fontsize=9)
        fig.savefig(path, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


def save_samples(x: Tensor, path: PathLike, *, reference: Optional[Tensor] = None,
                 title: Optional[str] = None) -> Path:
    """A PNG of samples under ``title``: a scatter plot for vectors ``(N, d)`` (the first two
    coordinates; d = 1 is drawn on the x-axis) over ``reference`` points, an image grid for
    images ``(N, C, H, W)`` (C = 1 or 3; other channel counts show the first channel)."""
    def _2d(v: Tensor) -> Tensor:
        v = v.reshape(v.shape[0], -1)
        return v[:, :2] if v.shape[1] >= 2 else torch.cat([v, torch.zeros_like(v)], dim=1)

    if x.dim() == 2:
        return save_scatter(_2d(x), path, reference=None if reference is None
                            else _2d(reference), title=title)
    if x.dim() == 4:
        return save_image_grid(x if x.shape[1] in (1, 3) else x[:, :1], path, title=title)
    raise InputError(f"cannot plot samples of shape {tuple(x.shape)}: expected (N, d) vectors "
                     "or (N, C, H, W) images")


def density_grid(log_prob: Callable[[Tensor], Tensor], lim: Sequence[float], resolution: int,
                 *, dtype: torch.dtype = torch.float32) -> Tuple[Tensor, Tensor]:
    """``(centres, log_p)``: the ``resolution`` cell centres per axis of the square
    ``[lim[0], lim[1]]²`` and ``log_prob`` at every cell centre, ``(resolution, resolution)``
    with rows along the second coordinate (``log_p[i, j]`` at ``(centres[j], centres[i])``).
    ``log_prob`` maps ``(N, 2)`` points to ``(N,)`` log-densities; it gets all cells at once."""
    lo, hi = float(lim[0]), float(lim[1])
    if not (hi > lo) or isinstance(resolution, bool) or not isinstance(resolution, int) \
            or resolution < 2:
        raise InputError(f"lim must be (low, high) with high > low and resolution an int >= 2; "
                         f"got lim={tuple(lim)!r}, resolution={resolution!r}")
    h = (hi - lo) / resolution
    centres = torch.linspace(lo + h / 2, hi - h / 2, resolution, dtype=dtype)
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    logp = log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1))
    return centres, logp.detach().cpu().reshape(resolution, resolution)


def save_density(log_prob: Callable[[Tensor], Tensor], data: Tensor, path: PathLike, *,
                 resolution: int = 100, lim: Optional[Sequence[float]] = None,
                 title: Optional[str] = None, size_px: int = 400) -> Path:
    """A ``2 size_px x size_px`` PNG of two panels over the same square ``lim`` (default:
    `robust_limits` of the data, so outliers do not shrink the picture): the histogram of the
    ``(N, 2)`` points ``data`` (``min(resolution, sqrt(N / 4))`` bins per axis, so bins are
    not mostly empty) and the model density ``exp(log_prob)`` on a ``resolution²`` grid
    (`density_grid`), each on its own linear colour scale from 0 with a colour bar, axes
    labelled x1 / x2."""
    if not isinstance(data, Tensor) or data.dim() != 2 or data.shape[1] != 2:
        raise InputError(f"data must have shape (N, 2); got "
                         f"{tuple(data.shape) if isinstance(data, Tensor) else type(data)}")
    d = data.detach().cpu().double()
    if lim is None:
        lim = robust_limits(d)
    _, logp = density_grid(log_prob, lim, resolution, dtype=data.dtype)
    bins = max(2, min(resolution, int(math.sqrt(len(d) / 4))))
    hist, _, _ = np.histogram2d(d[:, 1].numpy(), d[:, 0].numpy(), bins=bins,
                                range=[lim, lim], density=True)
    model = logp.double().exp().numpy()
    plt = _agg()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dpi = 100
    fig, axes = plt.subplots(1, 2, figsize=(2 * size_px / dpi, size_px / dpi), dpi=dpi,
                             layout="constrained")
    try:
        extent = (lim[0], lim[1], lim[0], lim[1])
        for ax, img, name in ((axes[0], hist, f"data histogram ({len(d)} points)"),
                              (axes[1], model, "model density")):
            im = ax.imshow(img, origin="lower", extent=extent, vmin=0.0, cmap="viridis")
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
            ax.tick_params(labelsize=8)
            bar = fig.colorbar(im, ax=ax, shrink=0.85)
            bar.set_label("density", fontsize=8)
            bar.ax.tick_params(labelsize=7)
        if title:
            fig.suptitle(title, fontsize=10)
        fig.savefig(path, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path
