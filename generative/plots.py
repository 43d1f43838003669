"""PNG figures with matplotlib's Agg backend: image sample grids and 2-D scatter plots.

`save_image_grid` writes an exact-pixel grid (no axes): ``nrow x ncol`` tiles of ``H x W``
pixels, ``pad`` pixels apart, all scaled by ``scale``, so the PNG is
``(nrow * (H + pad) + pad) * scale`` pixels tall (`grid_size` computes it).
`save_scatter` writes a ``size_px x size_px`` scatter plot of 2-D points. `save_density`
writes a 2-D model's density on a grid (`density_grid`) beside the data's histogram.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch

Tensor = torch.Tensor
PathLike = Union[str, Path]

__all__ = ["grid_shape", "grid_size", "image_grid", "save_image_grid", "save_scatter",
           "save_samples", "density_grid", "save_density"]


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
        raise ValueError(f"need at least one image; got n={n}")
    cols = ncol if ncol is not None else int(math.ceil(math.sqrt(n)))
    return int(math.ceil(n / cols)), cols


def grid_size(n: int, height: int, width: int, *, ncol: Optional[int] = None, pad: int = 1,
              scale: int = 4) -> Tuple[int, int]:
    """Pixel size (height, width) of the PNG `save_image_grid` writes."""
    rows, cols = grid_shape(n, ncol)
    return (rows * (height + pad) + pad) * scale, (cols * (width + pad) + pad) * scale


def image_grid(x: Tensor, *, ncol: Optional[int] = None, pad: int = 1, scale: int = 4,
               value_range: Tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """``(N, C, H, W)`` images -> a ``(H', W')`` (C = 1) or ``(H', W', 3)`` array in [0, 1]."""
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be a (N, 1 or 3, H, W) tensor; got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    lo, hi = value_range
    a = ((x.detach().to("cpu", torch.float64) - lo) / (hi - lo)).clamp(0, 1).numpy()
    n, c, h, w = a.shape
    rows, cols = grid_shape(n, ncol)
    grid = np.ones((c, rows * (h + pad) + pad, cols * (w + pad) + pad))
    for i in range(n):
        r, k = divmod(i, cols)
        y0, x0 = pad + r * (h + pad), pad + k * (w + pad)
        grid[:, y0:y0 + h, x0:x0 + w] = a[i]
    grid = grid.repeat(scale, axis=1).repeat(scale, axis=2)
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def save_image_grid(x: Tensor, path: PathLike, **kwargs) -> Path:
    """Write images ``(N, C, H, W)`` in ``value_range`` as one PNG grid; returns the path."""
    plt = _agg()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(x, **kwargs)
    if grid.ndim == 2:
        plt.imsave(path, grid, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    else:
        plt.imsave(path, grid, format="png")
    return path


def save_scatter(points: Tensor, path: PathLike, *, reference: Optional[Tensor] = None,
                 size_px: int = 400, title: Optional[str] = None,
                 lim: Optional[Sequence[float]] = None) -> Path:
    """Scatter plot of ``(N, 2)`` points (optionally over reference points) as a PNG of
    ``size_px x size_px`` pixels."""
    if points.dim() != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2); got {tuple(points.shape)}")
    plt = _agg()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dpi = 100
    fig = plt.figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
    try:
        ax = fig.add_axes((0.08, 0.08, 0.88, 0.84 if title else 0.88))
        if reference is not None:
            r = reference.detach().cpu().numpy()
            ax.scatter(r[:, 0], r[:, 1], s=2, c="0.75", label="data")
        p = points.detach().cpu().numpy()
        ax.scatter(p[:, 0], p[:, 1], s=2, c="C0", label="samples")
        if lim is not None:
            ax.set_xlim(*lim)
            ax.set_ylim(*lim)
        if title:
            ax.set_title(title, fontsize=9)
        fig.savefig(path, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


def save_samples(x: Tensor, path: PathLike, *, reference: Optional[Tensor] = None,
                 title: Optional[str] = None) -> Path:
    """A PNG of samples: a scatter plot for vectors ``(N, d)`` (the first two coordinates;
    d = 1 is drawn on the x-axis), an image grid for images ``(N, C, H, W)`` (C = 1 or 3;
    other channel counts show the first channel)."""
    def _2d(v: Tensor) -> Tensor:
        v = v.reshape(v.shape[0], -1)
        return v[:, :2] if v.shape[1] >= 2 else torch.cat([v, torch.zeros_like(v)], dim=1)

    if x.dim() == 2:
        return save_scatter(_2d(x), path, reference=None if reference is None
                            else _2d(reference), title=title)
    if x.dim() == 4:
        return save_image_grid(x if x.shape[1] in (1, 3) else x[:, :1], path)
    raise ValueError(f"cannot plot samples of shape {tuple(x.shape)}: expected (N, d) vectors "
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
        raise ValueError(f"lim must be (low, high) with high > low and resolution an int >= 2; "
                         f"got lim={tuple(lim)!r}, resolution={resolution!r}")
    h = (hi - lo) / resolution
    centres = torch.linspace(lo + h / 2, hi - h / 2, resolution, dtype=dtype)
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    logp = log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1))
    return centres, logp.detach().cpu().reshape(resolution, resolution)


def save_density(log_prob: Callable[[Tensor], Tensor], data: Tensor, path: PathLike, *,
                 resolution: int = 100, lim: Optional[Sequence[float]] = None,
                 title: Optional[str] = None, size_px: int = 400) -> Path:
    """A ``2 size_px x size_px`` PNG of two panels over the same square ``lim`` (default: the
    data's range plus a 10% margin): the histogram of the ``(N, 2)`` points ``data``
    (``min(resolution, sqrt(N / 4))`` bins per axis, so bins are not mostly empty) and the
    model density ``exp(log_prob)`` on a ``resolution²`` grid (`density_grid`), each on its
    own linear colour scale from 0."""
    if not isinstance(data, Tensor) or data.dim() != 2 or data.shape[1] != 2:
        raise ValueError(f"data must have shape (N, 2); got "
                         f"{tuple(data.shape) if isinstance(data, Tensor) else type(data)}")
    d = data.detach().cpu().double()
    if lim is None:
        lo, hi = float(d.min()), float(d.max())
        margin = 0.1 * (hi - lo)
        lim = (lo - margin, hi + margin)
    _, logp = density_grid(log_prob, lim, resolution, dtype=data.dtype)
    bins = max(2, min(resolution, int(math.sqrt(len(d) / 4))))
    hist, _, _ = np.histogram2d(d[:, 1].numpy(), d[:, 0].numpy(), bins=bins,
                                range=[lim, lim], density=True)
    model = logp.double().exp().numpy()
    plt = _agg()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dpi = 100
    fig, axes = plt.subplots(1, 2, figsize=(2 * size_px / dpi, size_px / dpi), dpi=dpi)
    try:
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.86, wspace=0.05)
        extent = (lim[0], lim[1], lim[0], lim[1])
        for ax, img, name in ((axes[0], hist, "data (histogram)"),
                              (axes[1], model, "model density")):
            ax.imshow(img, origin="lower", extent=extent, vmin=0.0, cmap="viridis")
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        if title:
            fig.suptitle(title, fontsize=9)
        fig.savefig(path, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path
