"""Colour image patches cut from the sample photographs inside scikit-image's wheel.

scikit-image ships a few colour photographs as package files (``skimage/data/*.png|jpg``,
the same bytes from 0.22 to 0.26 at least; `COLOUR_SOURCES` records their SHA-256), so this
data set installs from PyPI with the ``generative`` extra and never downloads anything: the
files are read from the installed package (not through `skimage.data`'s fetcher).

Each photograph is resized (Lanczos) so that its shorter side is ``16 * patch`` pixels, and
every ``patch x patch`` window at a stride of ``patch // 2`` is cut out, so a patch covers
1/16 of the shorter side. The split is by source photograph, never inside one: the test
split is every patch of ``COLOUR_SOURCES[seed % 6]`` (``seed`` 0: the cat, ``chelsea``) and
the train split those of the other five. Values follow the 256-level image convention of
`generative.data` (level k -> ``2 k / 255 - 1`` in [-1, 1]).
"""
from __future__ import annotations

import functools
import hashlib
import io
from importlib import resources
from typing import Dict, Tuple

import numpy as np
import torch

from .dataset import Dataset
from .errors import InputError

Tensor = torch.Tensor

__all__ = ["COLOUR_SOURCES", "COLOUR_NAMES", "COLOUR_LEVELS", "source_image", "cut_patches",
           "colour_patches", "held_out_source", "load_colour"]

# name -> (file in skimage/data, the first 16 hex digits of its SHA-256)
COLOUR_SOURCES: Dict[str, Tuple[str, str]] = {
    "chelsea": ("chelsea.png", "596aa1e7cb875eb7"),
    "astronaut": ("astronaut.png", "88431cd9653ccd53"),
    "coffee": ("coffee.png", "cc02f8ca188b167c"),
    "rocket": ("rocket.jpg", "c2dd0de7c538df8d"),
    "motorcycle": ("motorcycle_left.png", "db18e9c415761740"),
    "immunohistochemistry": ("ihc.png", "f8dd1aa387ddd1f4"),
}
# data set name -> patch side
COLOUR_NAMES: Dict[str, int] = {"colour": 8, "colour16": 16}
COLOUR_LEVELS = 256
_INSTALL = "pip install 'sdeflow[generative]' (scikit-image >= 0.22)"


def source_image(name: str) -> np.ndarray:
    """The photograph ``name`` of `COLOUR_SOURCES` as ``(H, W, 3)`` uint8, read from the
    installed scikit-image package (checked against its recorded SHA-256)."""
    if name not in COLOUR_SOURCES:
        raise InputError(f"unknown colour source {name!r}; expected one of "
                         f"{list(COLOUR_SOURCES)}")
    from PIL import Image
    filename, digest = COLOUR_SOURCES[name]
    try:
        data = (resources.files("skimage.data") / filename).read_bytes()
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(f"the colour data needs scikit-image: {_INSTALL}",
                                  name="skimage") from err
    except OSError as err:
        raise InputError(f"scikit-image's sample image {filename!r} is not in the installed "
                         f"package ({err}); reinstall it: {_INSTALL}") from err
    if hashlib.sha256(data).hexdigest()[:16] != digest:
        raise InputError(f"scikit-image's sample image {filename!r} differs from the one the "
                         f"colour data is cut from (SHA-256 {digest}...); install "
                         f"scikit-image 0.22 to 0.26")
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def cut_patches(image: np.ndarray, patch: int) -> np.ndarray:
    """``image`` ``(H, W, 3)`` uint8 resized so its shorter side is ``16 * patch``, cut into
    every ``patch x patch`` window at stride ``patch // 2``: ``(N, 3, patch, patch)`` uint8
    (row-major window order)."""
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 2:
        raise InputError(f"`patch` must be an integer >= 2; got {patch!r}")
    from PIL import Image
    h, w = image.shape[:2]
    scale = 16 * patch / min(h, w)
    size = (max(16 * patch, round(w * scale)), max(16 * patch, round(h * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
    stride = patch // 2
    windows = np.lib.stride_tricks.sliding_window_view(small, (patch, patch), axis=(0, 1))
    return np.ascontiguousarray(windows[::stride, ::stride].reshape(-1, 3, patch, patch))


def held_out_source(seed: int) -> str:
    """The photograph whose patches form the test split for ``seed``."""
    return list(COLOUR_SOURCES)[int(seed) % len(COLOUR_SOURCES)]


@functools.lru_cache(maxsize=4)
def _split_patches(patch: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` uint8 patches (cached per process: decoding the photographs takes
    most of a second; the arrays are read-only)."""
    held_out = held_out_source(seed)
    parts: Dict[bool, list] = {True: [], False: []}
    for name in COLOUR_SOURCES:
        parts[name == held_out].append(cut_patches(source_image(name), patch))
    train, test = np.concatenate(parts[False]), np.concatenate(parts[True])
    train.flags.writeable = test.flags.writeable = False
    return train, test


def colour_patches(patch: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32
                   ) -> Tuple[Tensor, Tensor]:
    """``(train, test)`` patches ``(N, 3, patch, patch)`` in [-1, 1] (256 levels): the test
    split every patch of `held_out_source` ``(seed)``, the train split those of the others
    (new tensors on every call)."""
    def to_tensor(x: np.ndarray) -> Tensor:
        return torch.as_tensor(x.astype(np.float64) * (2.0 / (COLOUR_LEVELS - 1)) - 1.0,
                               dtype=dtype)
    train, test = _split_patches(patch, int(seed) % len(COLOUR_SOURCES))
    return to_tensor(train), to_tensor(test)


def load_colour(name: str = "colour", *, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> Dataset:
    """The `Dataset` ``name``: ``colour`` (8x8 patches) or ``colour16`` (16x16), see
    `colour_patches`; 256 levels, no labels."""
    if name not in COLOUR_NAMES:
        raise InputError(f"unknown colour data set {name!r}; expected one of "
                         f"{list(COLOUR_NAMES)}")
    train, test = colour_patches(COLOUR_NAMES[name], seed=seed, dtype=dtype)
    return Dataset(name, train, test, levels=COLOUR_LEVELS)
