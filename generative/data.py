"""Built-in data: sklearn's 8x8 digits, colour patches of scikit-image's sample photographs
(`generative.colour_data`), 2-D toy sets, user ``.npy`` / ``.npz`` arrays and folders of
images.

Every loader returns a `Dataset` (`generative.dataset`: train / test tensors, batch-first,
plus labels and the number of discrete levels when the data is quantised; its module states
the quantised-data convention: level k -> ``2 k / (L - 1) - 1`` in [-1, 1]). Nothing is
downloaded.

User data: arrays ``(N, d)``, images ``(N, C, H, W)`` or ``(N, H, W, C)`` (NHWC is detected
when the channel axis is unambiguous); an image folder (PNG /
JPEG, any size; `load_image_folder`) is resized and centre-cropped to a square resolution,
grayscale or RGB. A folder's data name records both (``FOLDER?size=32&mode=rgb``), so a model's
``meta['data']`` reloads the same tensors.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch

from .colour_data import COLOUR_NAMES, load_colour
from .dataset import Dataset, dequantize, dequantize_transform, quantize, split_indices
from .errors import InputError

Tensor = torch.Tensor

__all__ = [
    "Dataset", "load_data", "load_digits", "load_colour", "load_array", "load_image_folder",
    "sample_toy", "dequantize", "quantize", "dequantize_transform", "split_indices",
    "DATA_NAMES", "TOY_NAMES", "DIGITS_LEVELS", "image_layout", "IMAGE_SUFFIXES", "IMAGE_MODES",
    "DEFAULT_IMAGE_SIZE",
]

DIGITS_LEVELS = 17
DIGITS_TEST_FRACTION = 0.2
TOY_NAMES = ("moons", "circles", "8gaussians", "checkerboard", "swissroll")
DATA_NAMES = ("digits", *COLOUR_NAMES) + TOY_NAMES


# --------------------------------------------------------------------------- digits

def load_digits(*, test_fraction: float = DIGITS_TEST_FRACTION, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> Dataset:
    """sklearn's 8x8 digits (1,797 images, levels 0..16) as ``(N, 1, 8, 8)`` in [-1, 1].

    The train / test split is a fixed function of ``(test_fraction, seed)``.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)  # (N, 8, 8), values 0..16
    x = torch.as_tensor(images * (2.0 / (DIGITS_LEVELS - 1)) - 1.0, dtype=dtype)[:, None]
    y = torch.as_tensor(np.asarray(bunch.target), dtype=torch.int64)
    tr, te = split_indices(len(x), test_fraction, seed)
    tr, te = torch.as_tensor(tr), torch.as_tensor(te)
    return Dataset("digits", x[tr], x[te], y[tr], y[te], num_classes=10,
                   levels=DIGITS_LEVELS)


# --------------------------------------------------------------------------- 2-D toys

def _np_seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def _moons(n: int, g: torch.Generator) -> Tensor:
    from sklearn.datasets import make_moons
    x, _ = make_moons(n, noise=0.1, random_state=_np_seed(g))
    return torch.as_tensor(x) * 2 + torch.tensor([-1.0, -0.2], dtype=torch.float64)


def _circles(n: int, g: torch.Generator) -> Tensor:
    from sklearn.datasets import make_circles
    x, _ = make_circles(n, factor=0.5, noise=0.08, random_state=_np_seed(g))
    return torch.as_tensor(x) * 3


def _swissroll(n: int, g: torch.Generator) -> Tensor:
    from sklearn.datasets import make_swiss_roll
    x, _ = make_swiss_roll(n, noise=1.0, random_state=_np_seed(g))
    return torch.as_tensor(x[:, [0, 2]]) / 5


def _eight_gaussians(n: int, g: torch.Generator) -> Tensor:
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    centres = 2 * math.sqrt(2) * torch.stack([angles.cos(), angles.sin()], dim=1)
    which = torch.randint(0, 8, (n,), generator=g)
    noise = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return centres[which] + 0.5 / math.sqrt(2) * noise


def _checkerboard(n: int, g: torch.Generator) -> Tensor:
    x1 = torch.rand(n, generator=g, dtype=torch.float64) * 4 - 2
    x2 = (torch.rand(n, generator=g, dtype=torch.float64)
          - 2 * torch.randint(0, 2, (n,), generator=g).to(torch.float64))
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], dim=1) * 2


_TOYS: Dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "moons": _moons, "circles": _circles, "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard, "swissroll": _swissroll,
}


def sample_toy(name: str, n: int, generator: Optional[torch.Generator] = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """``n`` samples ``(n, 2)`` of a 2-D toy set, reproducible from ``generator``."""
    if name not in _TOYS:
        raise InputError(f"unknown toy data set {name!r}; expected one of {list(TOY_NAMES)}")
    if not isinstance(n, int) or n < 1:
        raise InputError(f"n must be a positive int; got {n!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    return _TOYS[name](n, g).to(dtype)


# --------------------------------------------------------------------------- user arrays

def _read_array(path: Path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for unreadable files
        raise InputError(f"could not read data file {str(path)!r} as .npy/.npz "
                         f"({type(exc).__name__}: {exc})") from exc
    if isinstance(loaded, np.ndarray):
        return loaded, None
    with loaded:
        keys = list(loaded.keys())
        if "x" in keys:
            key = "x"
        elif len(keys) == 1:
            key = keys[0]
        else:
            raise InputError(f"data file {str(path)!r} holds arrays {keys}; expected a single "
                             "array or one named 'x' (optionally with labels 'y')")
        labels = loaded["y"] if "y" in keys and key == "x" else None
        return loaded[key], labels


_CHANNELS = (1, 3)


def image_layout(shape: Tuple[int, ...]) -> str:
    """``'NCHW'`` or ``'NHWC'`` for a 4-D array shape: the axis of size 1 or 3 (the other
    candidate not), else the square pair of axes; `ValueError` naming the layouts expected
    when neither tells."""
    _, a, b, c = shape
    if (a in _CHANNELS) != (c in _CHANNELS):
        return "NCHW" if a in _CHANNELS else "NHWC"
    if (b == c) != (a == b):
        return "NCHW" if b == c else "NHWC"
    raise InputError(f"cannot tell the layout of images of shape {tuple(shape)}: expected "
                     "(N, C, H, W) or (N, H, W, C) with C = 1 or 3 channels (transpose the "
                     "array to (N, C, H, W))")


def _to_nchw(x: np.ndarray, path: Path) -> np.ndarray:
    """``x`` with images as ``(N, C, H, W)`` (NHWC transposed)."""
    if x.ndim == 4:
        try:
            layout = image_layout(x.shape)
        except ValueError as err:
            raise InputError(f"data array in {str(path)!r}: {err}") from None
        return x.transpose(0, 3, 1, 2) if layout == "NHWC" else x
    return x


def _check_array(x: np.ndarray, path: Path) -> None:
    where = f"data array in {str(path)!r}"
    if x.dtype.kind not in "biuf":
        raise InputError(f"{where} must be numeric; got dtype {x.dtype}")
    if x.ndim not in (2, 4):
        raise InputError(f"{where} must have shape (N, d) or (N, C, H, W) (images may also be "
                         f"(N, H, W, C)); got {x.shape}")
    if x.shape[0] < 2 or any(s < 1 for s in x.shape[1:]):
        raise InputError(f"{where} needs at least 2 samples of non-empty shape; got {x.shape}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise InputError(f"{where} contains NaN or infinite values")


def load_array(path: Union[str, Path], *, test_fraction: float = 0.1, seed: int = 0,
               dtype: torch.dtype = torch.float32) -> Dataset:
    """A user array from ``.npy`` or ``.npz`` (key ``x``, optional labels ``y``).

    Shape ``(N, d)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` (detected by `image_layout`,
    transposed). ``uint8`` data is treated as 256-level images and
    mapped to [-1, 1]; any other dtype is used as given (continuous). The split is a fixed
    function of ``(test_fraction, seed)``.
    """
    path = Path(path)
    if path.suffix not in (".npy", ".npz"):
        raise InputError(f"data file must end in .npy or .npz; got {str(path)!r}")
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    x, y = _read_array(path)
    _check_array(x, path)
    x = np.ascontiguousarray(_to_nchw(x, path))
    levels = None
    if x.dtype == np.uint8:
        levels = 256
        xt = torch.as_tensor(x.astype(np.float64) * (2.0 / 255) - 1.0, dtype=dtype)
    else:
        xt = torch.as_tensor(x.astype(np.float64), dtype=dtype)
    labels, num_classes = None, None
    if y is not None:
        if y.shape != (x.shape[0],) or y.dtype.kind not in "iu" or (y < 0).any():
            raise InputError(f"labels 'y' in {str(path)!r} must be non-negative ints of shape "
                             f"({x.shape[0]},); got dtype {y.dtype}, shape {y.shape}")
        labels = torch.as_tensor(y.astype(np.int64))
        num_classes = int(labels.max()) + 1
    tr, te = (torch.as_tensor(i) for i in split_indices(len(xt), test_fraction, seed))
    return Dataset(str(path), xt[tr], xt[te],
                   None if labels is None else labels[tr],
                   None if labels is None else labels[te], num_classes, levels)


# --------------------------------------------------------------------------- image folders

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_MODES = ("gray", "rgb")
DEFAULT_IMAGE_SIZE = 32
_PIL_MODES = {"gray": "L", "rgb": "RGB"}


def _folder_spec(name: str) -> Tuple[Path, Dict[str, str]]:
    """``FOLDER?size=32&mode=rgb`` -> (folder, {'size': '32', 'mode': 'rgb'})."""
    folder, _, query = name.partition("?")
    options: Dict[str, str] = {}
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if key not in ("size", "mode") or not value:
            raise InputError(f"image folder {name!r}: expected FOLDER?size=N&mode=gray|rgb; "
                             f"got the option {part!r}")
        options[key] = value
    return Path(folder), options


def _square(image: Any, size: int) -> Any:
    """Resize the shorter side to ``size`` (Lanczos) and crop the centre ``size x size``."""
    from PIL import Image
    w, h = image.size
    scale = size / min(w, h)
    w2, h2 = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((w2, h2), Image.Resampling.LANCZOS)
    left, top = (w2 - size) // 2, (h2 - size) // 2
    return image.crop((left, top, left + size, top + size))


def load_image_folder(folder: Union[str, Path], *, size: int = DEFAULT_IMAGE_SIZE,
                      mode: Optional[str] = None, test_fraction: float = 0.1, seed: int = 0,
                      dtype: torch.dtype = torch.float32) -> Dataset:
    """The PNG / JPEG images in ``folder`` (sorted by name, not recursive), each resized so its
    shorter side is ``size`` and centre-cropped to ``size x size``, as 256-level images
    ``(N, C, size, size)`` in [-1, 1]. ``mode`` ``'gray'`` (C = 1) or ``'rgb'`` (C = 3);
    ``None``: gray when every image is, else rgb. The split is a fixed function of
    ``(test_fraction, seed)``; the data name is ``FOLDER?size=SIZE&mode=MODE``."""
    try:
        from PIL import Image
    except ImportError as err:  # pillow comes with matplotlib (the generative extra)
        raise ModuleNotFoundError("image folders need pillow (pip install "
                                  "'sdeflow[generative]')", name="PIL") from err
    folder = Path(folder)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"image size must be an int >= 1; got {size!r}")
    if mode is not None and mode not in IMAGE_MODES:
        raise InputError(f"image mode must be one of {list(IMAGE_MODES)}; got {mode!r}")
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                   and p.is_file())
    if len(files) < 2:
        raise InputError(f"image folder {str(folder)!r} needs at least 2 images "
                         f"({', '.join(IMAGE_SUFFIXES)}); found {len(files)}")
    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                images.append(im.copy())
        except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
            raise InputError(f"cannot read the image {str(f)!r}: {err}") from err
    if mode is None:
        mode = "gray" if all(im.mode in ("1", "L", "LA", "I", "I;16", "F") for im in images) \
            else "rgb"
    arrays = [np.asarray(_square(im.convert(_PIL_MODES[mode]), size), dtype=np.uint8)
              for im in images]
    x = np.stack(arrays)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    xt = torch.as_tensor(x.astype(np.float64) * (2.0 / 255) - 1.0, dtype=dtype)
    tr, te = (torch.as_tensor(i) for i in split_indices(len(xt), test_fraction, seed))
    return Dataset(f"{folder}?size={size}&mode={mode}", xt[tr], xt[te], levels=256)


# --------------------------------------------------------------------------- entry point

def load_data(name: Union[str, Path], *, n_train: int = 20_000, n_test: int = 5_000,
              seed: int = 0, dtype: torch.dtype = torch.float32,
              image_size: Optional[int] = None, image_mode: Optional[str] = None) -> Dataset:
    """Load a data set by name (``digits``, ``colour`` / ``colour16``, a 2-D toy), from a
    ``.npy`` / ``.npz`` path or from a folder of images (``FOLDER`` or
    ``FOLDER?size=N&mode=gray|rgb``; ``image_size`` / ``image_mode`` override those, default
    32 and auto, see `load_image_folder`).

    ``n_train`` / ``n_test`` apply to toy sets only (drawn from one generator seeded with
    ``seed``, so the sets are disjoint draws and reproducible).
    """
    key = str(name)
    if key == "digits":
        return load_digits(seed=seed, dtype=dtype)
    if key in COLOUR_NAMES:
        return load_colour(key, seed=seed, dtype=dtype)
    if key in _TOYS:
        g = torch.Generator().manual_seed(seed)
        train = sample_toy(key, n_train, g, dtype)
        return Dataset(key, train, sample_toy(key, n_test, g, dtype))
    if key.endswith((".npy", ".npz")):
        return load_array(key, seed=seed, dtype=dtype)
    folder, options = _folder_spec(key)
    if folder.is_dir():
        size = options.get("size", DEFAULT_IMAGE_SIZE) if image_size is None else image_size
        try:
            size = int(size)
        except ValueError:
            raise InputError(f"image folder {key!r}: size must be an int; got {size!r}") \
                from None
        return load_image_folder(folder, size=size, seed=seed, dtype=dtype,
                                 mode=image_mode if image_mode is not None
                                 else options.get("mode"))
    raise InputError(f"unknown data set {key!r}; expected one of {list(DATA_NAMES)}, a path "
                     "to a .npy / .npz file or a folder of PNG / JPEG images")
