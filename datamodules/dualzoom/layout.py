"""Where the LR/HR pairs of a dual-zoom dataset are on disk (reference selfdzsr.md §4.1).

One layout serves DRealSR-Nikon (×4) and CameraFusion (×2)::

    <root>/train_LR/  <root>/train_HR/  <root>/test_LR/  <root>/test_HR/

* **Nikon**: only LR files whose names start with ``DSC`` are used (like the official reader); the HR
  name is the LR name with its last ``x1`` replaced by ``x<s>`` (``DSC_0988_x1.png`` ↔
  ``DSC_0988_x4.png`` for the released ×4 data).
* **CameraFusion**: every LR PNG; the HR has the same file name (``IMG_17.png`` in both folders).

Both are 8-bit PNGs, RGB, with HR exactly s× the LR in both dimensions. Names starting with ``.``
(temporary files of atomic writes) are ignored. Every problem raises
:class:`~datamodules.common.errors.DatasetError` naming the file or folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from datamodules.common.errors import DatasetError

__all__ = [
    "Layout",
    "LAYOUTS",
    "LAYOUT_SCALES",
    "SPLITS",
    "DualZoomPair",
    "split_folders",
    "pair_file_names",
    "find_pairs",
    "png_size",
    "read_png",
    "write_png",
]

Layout = Literal["nikon", "camerafusion"]
LAYOUTS: tuple[Layout, ...] = ("nikon", "camerafusion")
#: The scale s of each released dataset: HR = s × LR.
LAYOUT_SCALES: dict[str, int] = {"nikon": 4, "camerafusion": 2}
SPLITS = ("train", "test")
#: PIL modes accepted as 8-bit images (converted to RGB).
_EIGHT_BIT_MODES = ("RGB", "RGBA", "L", "LA", "P")


@dataclass(frozen=True)
class DualZoomPair:
    """One LR/HR pair: ``name`` is the LR file name; ``lr_size`` = (H, W), the HR is (s·H, s·W)."""

    name: str
    lr_path: Path
    hr_path: Path
    lr_size: tuple[int, int]


def split_folders(root: str | Path, split: str) -> tuple[Path, Path]:
    """``(<root>/<split>_LR, <root>/<split>_HR)``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    return root / f"{split}_LR", root / f"{split}_HR"


def _hr_name(layout: str, lr_name: str, scale: int, lr_path: Path) -> str:
    if layout == "camerafusion":
        return lr_name
    head, found, tail = lr_name.rpartition("x1")
    if not found:
        raise DatasetError(f"{lr_path}: a Nikon LR name must contain 'x1' (the HR name replaces it by 'x{scale}')")
    return f"{head}x{scale}{tail}"


def pair_file_names(layout: str, stem: str, scale: int) -> tuple[str, str]:
    """(LR, HR) file names of a pair called ``stem``, as this layout's reader expects them.

    Nikon: ``DSC…_x1.png`` / ``DSC…_x<s>.png``, with a ``DSC_`` prefix added when ``stem`` lacks the
    ``DSC`` start the reader filters on; CameraFusion: ``<stem>.png`` in both folders.
    """
    if layout == "camerafusion":
        return f"{stem}.png", f"{stem}.png"
    if layout != "nikon":
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    stem = stem if stem.startswith("DSC") else f"DSC_{stem}"
    return f"{stem}_x1.png", f"{stem}_x{scale}.png"


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise DatasetError(f"{path}: PNG does not exist")
    try:
        image = Image.open(path)
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(f"{path}: cannot read PNG ({error})") from error
    if image.format != "PNG":
        image.close()
        raise DatasetError(f"{path}: not a PNG (the file holds {image.format})")
    if image.mode not in _EIGHT_BIT_MODES:
        image.close()
        raise DatasetError(f"{path}: PNG mode {image.mode!r} is not an 8-bit image ({', '.join(_EIGHT_BIT_MODES)})")
    return image


def png_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of a PNG from its header (pixels are not decoded)."""
    with _open(Path(path)) as image:
        width, height = image.size
    return height, width


def read_png(path: str | Path) -> np.ndarray:
    """The pixels of an 8-bit PNG as RGB uint8 (H, W, 3)."""
    path = Path(path)
    with _open(path) as image:
        try:
            return np.array(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as error:
            raise DatasetError(f"{path}: cannot decode PNG ({error})") from error


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Save RGB uint8 (H, W, 3) as a PNG (not atomic by itself: see :mod:`datamodules.common.atomic`)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 RGB (H, W, 3), got {rgb.dtype} of shape {rgb.shape}")
    Image.fromarray(rgb).save(path, format="PNG")


def _lr_files(folder: Path, layout: str) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder does not exist")
    files = [
        path
        for path in sorted(folder.iterdir())
        if path.is_file()
        and path.suffix.lower() == ".png"
        and not path.name.startswith(".")
        and (layout == "camerafusion" or path.name.startswith("DSC"))
    ]
    if not files:
        wanted = "PNG" if layout == "camerafusion" else "PNG whose name starts with 'DSC'"
        raise DatasetError(f"{folder}: no LR {wanted} in the folder")
    return files


def find_pairs(root: str | Path, split: str, layout: str, scale: int) -> list[DualZoomPair]:
    """The pairs of ``split`` under ``root``, sorted by LR name, with their sizes checked (headers only)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    lr_folder, hr_folder = split_folders(root, split)
    lr_files = _lr_files(lr_folder, layout)
    if not hr_folder.is_dir():
        raise DatasetError(f"{hr_folder}: folder does not exist")
    pairs = []
    for lr_path in lr_files:
        hr_path = hr_folder / _hr_name(layout, lr_path.name, scale, lr_path)
        if not hr_path.is_file():
            raise DatasetError(f"{lr_path}: HR image {hr_path} is missing")
        lr_size, hr_size = png_size(lr_path), png_size(hr_path)
        if hr_size != (scale * lr_size[0], scale * lr_size[1]):
            raise DatasetError(
                f"{hr_path}: HR of {hr_size[0]}×{hr_size[1]} is not exactly {scale}× its LR {lr_path.name} "
                f"of {lr_size[0]}×{lr_size[1]} (expected {scale * lr_size[0]}×{scale * lr_size[1]})"
            )
        pairs.append(DualZoomPair(lr_path.name, lr_path, hr_path, lr_size))
    return pairs
