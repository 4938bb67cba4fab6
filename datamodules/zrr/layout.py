"""Where the Zurich RAW-to-RGB (ZRR) pairs are on disk, and how a raw PNG becomes a packed raw
(reference ``raw_to_srgb.md`` §4.1).

Layout under ``root``::

    <root>/train/huawei_raw/<i>.png   <root>/train/canon/<i>.jpg     (46,839 pairs, i = 0 … 46838)
    <root>/test/huawei_raw/<i>.png    <root>/test/canon/<i>.jpg      (1,204 pairs)
    <root>/full_resolution/huawei_raw/<i>.png                        (optional, whole phone frames)

* The raw is a single-channel Bayer mosaic (RGGB, 448×448 in the released set) of 10-bit values with
  black level :data:`BLACK_LEVEL` = 63 and white level :data:`WHITE_LEVEL` = 4·255 = 1020, stored in an
  8- or a 16-bit PNG (the encoder chose 8 bits for raws whose values all fit, which is why some look
  black in viewers). It is read **as stored** (values are never rescaled by the bit depth), like the
  official ``cv2.imread(path, -1)``.
* The Canon JPG is the same scene (aligned only roughly) as RGB, the size of the raw: 2× the packed raw.
* Pairs are matched by file stem; names are sorted numerically when they are all integers. Names
  starting with ``.`` (temporary files of atomic writes) are ignored.

Normalisation and packing (official ``_process_raw``, ``util.py:L139-160``):

    x = max(raw − 63, 0) / (1020 − 63)          clamped at 0 only: 1023 gives 1.0031
    packed = (x[1::2, 1::2], x[0::2, 1::2], x[0::2, 0::2], x[1::2, 0::2])  = (B, G_R, R, G_B)

i.e. the **official order (B, G on the red rows, R, G on the blue rows)**, PyNET's order, not the
project's (R, G1, B, G2) of :func:`ops.bayer.pack_bayer`: packed pixel (0, 0) of ``arange(16).reshape(4, 4)``
is [5, 1, 0, 4]. :func:`pack_raw` also offers the project's order (``order="rggb"``).

Values: the released raws are 10-bit, so a value above :data:`MAX_RAW_VALUE` = 1023 is an error; values
1021 … 1023 (above the white level but inside 10 bits) are kept and normalise slightly above 1, as in the
official code. ``max_value`` = :data:`WHITE_LEVEL` makes everything above the white level an error.

Every problem raises :class:`~datamodules.common.errors.DatasetError` naming the file or folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from datamodules.common.errors import DatasetError
from datamodules.common.images import read_jpg
from ops.bayer import pack_bayer, unpack_bayer

__all__ = [
    "SPLITS",
    "RAW_FOLDER",
    "RGB_FOLDER",
    "FULL_RESOLUTION",
    "BLACK_LEVEL",
    "WHITE_LEVEL",
    "MAX_RAW_VALUE",
    "RAW_SIZE",
    "CFA_PATTERN",
    "PackingOrder",
    "ZRRPair",
    "split_folders",
    "find_pairs",
    "find_full_resolution",
    "read_raw_png",
    "write_raw_png",
    "read_pair",
    "normalize_raw",
    "pack_raw",
    "unpack_raw",
]

SPLITS = ("train", "test")
RAW_FOLDER = "huawei_raw"
RGB_FOLDER = "canon"
FULL_RESOLUTION = "full_resolution"
BLACK_LEVEL = 63
WHITE_LEVEL = 1020
#: Largest value a 10-bit raw can hold; larger values mean the file is not a ZRR raw.
MAX_RAW_VALUE = 1023
#: Side of the released raws (and JPGs): 448 → a 224×224 packed raw.
RAW_SIZE = 448
CFA_PATTERN = "RGGB"

PackingOrder = Literal["official", "rggb"]
#: Channels of the official order (B, G_R, R, G_B) within the project's (R, G1, B, G2) packing.
_OFFICIAL_FROM_RGGB = (2, 1, 0, 3)
#: PIL modes of single-channel PNGs: 8 bits, 16 bits (either byte order), 32-bit integers.
_RAW_MODES = ("L", "I;16", "I;16B", "I;16L", "I")


@dataclass(frozen=True)
class ZRRPair:
    """One raw PNG and its Canon JPG (``rgb_path`` is ``None`` for full-resolution raws without one)."""

    name: str
    raw_path: Path
    rgb_path: Path | None


def split_folders(root: str | Path, split: str) -> tuple[Path, Path]:
    """``(<root>/<split>/huawei_raw, <root>/<split>/canon)``; ``split`` is ``train``, ``test`` or
    ``full_resolution``."""
    if split not in (*SPLITS, FULL_RESOLUTION):
        raise ValueError(f"split must be one of {(*SPLITS, FULL_RESOLUTION)}, got {split!r}")
    folder = Path(root) / split
    return folder / RAW_FOLDER, folder / RGB_FOLDER


def _files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Files of ``folder`` with one of ``suffixes`` (lower case) by stem, hidden files ignored."""
    return {
        path.stem: path
        for path in folder.iterdir()
        if path.suffix.lower() in suffixes and not path.name.startswith(".") and path.is_file()
    }


def _sorted_names(names) -> list[str]:
    """Numerically when every name is an integer (ZRR's 0 … N − 1), else lexicographically."""
    names = list(names)
    if all(name.isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def find_pairs(root: str | Path, split: str) -> list[ZRRPair]:
    """The pairs of ``split`` (``train`` or ``test``) under ``root``, in numerical order.

    Only the folders are listed (no file is opened): sizes and values are checked when a pair is read.
    A raw without its JPG, or a JPG without its raw, is an error naming the file.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    raw_folder, rgb_folder = split_folders(root, split)
    for folder in (raw_folder, rgb_folder):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: folder does not exist (expected ZRR's {split}/{folder.name}/)")
    raws, rgbs = _files(raw_folder, (".png",)), _files(rgb_folder, (".jpg", ".jpeg"))
    if not raws:
        raise DatasetError(f"{raw_folder}: no raw PNG in the folder")
    for name in _sorted_names(raws):
        if name not in rgbs:
            raise DatasetError(f"{raws[name]}: its Canon JPG {rgb_folder / (name + '.jpg')} is missing")
    for name in _sorted_names(rgbs):
        if name not in raws:
            raise DatasetError(f"{rgbs[name]}: its raw {raw_folder / (name + '.png')} is missing")
    return [ZRRPair(name, raws[name], rgbs[name]) for name in _sorted_names(raws)]


def find_full_resolution(root: str | Path) -> list[ZRRPair]:
    """The whole-frame raws of ``<root>/full_resolution/huawei_raw`` (no JPG: the official code only
    renders them, ``--visual_full_imgs``)."""
    raw_folder, _ = split_folders(root, FULL_RESOLUTION)
    if not raw_folder.is_dir():
        raise DatasetError(f"{raw_folder}: folder does not exist (ZRR's optional full_resolution/huawei_raw/)")
    raws = _files(raw_folder, (".png",))
    if not raws:
        raise DatasetError(f"{raw_folder}: no raw PNG in the folder")
    return [ZRRPair(name, raws[name], None) for name in _sorted_names(raws)]


def read_raw_png(path: str | Path, max_value: int = MAX_RAW_VALUE) -> np.ndarray:
    """The mosaic of a raw PNG as stored: uint16 (H, W), H and W even, every value ≤ ``max_value``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: raw PNG does not exist")
    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise DatasetError(f"{path}: not a PNG (the file holds {image.format})")
            if image.mode not in _RAW_MODES:
                raise DatasetError(
                    f"{path}: PNG mode {image.mode!r} is not a single-channel 8- or 16-bit raw mosaic"
                )
            mosaic = np.array(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read raw PNG ({error})") from error
    if mosaic.ndim != 2:
        raise DatasetError(f"{path}: expected a single-channel mosaic, got an array of shape {mosaic.shape}")
    height, width = mosaic.shape
    if height % 2 or width % 2 or height < 2 or width < 2:
        raise DatasetError(f"{path}: a Bayer mosaic needs even height and width, got {height}×{width}")
    low, high = int(mosaic.min()), int(mosaic.max())
    if low < 0 or high > max_value:
        raise DatasetError(
            f"{path}: raw values {low} … {high} leave the range 0 … {max_value} (10-bit ZRR raw, black level "
            f"{BLACK_LEVEL}, white level {WHITE_LEVEL})"
        )
    return mosaic.astype(np.uint16, copy=False)


def write_raw_png(path: str | Path, mosaic: np.ndarray, allow_eight_bit: bool = True, compress_level: int = 1) -> None:
    """Save a uint16 mosaic (H, W) as a 16-bit greyscale PNG, or as an 8-bit one when every value fits
    and ``allow_eight_bit`` (as ZRR's encoder did), with zlib level ``compress_level``. Not atomic by itself
    (see :mod:`datamodules.common.atomic`)."""
    if mosaic.dtype != np.uint16 or mosaic.ndim != 2:
        raise ValueError(f"expected a uint16 mosaic (H, W), got {mosaic.dtype} of shape {mosaic.shape}")
    if allow_eight_bit and int(mosaic.max()) <= 255:
        Image.fromarray(mosaic.astype(np.uint8)).save(path, format="PNG", compress_level=compress_level)
    else:
        Image.fromarray(mosaic).save(path, format="PNG", compress_level=compress_level)


def read_pair(
    pair: ZRRPair, raw_size: int | None = RAW_SIZE, max_value: int = MAX_RAW_VALUE
) -> tuple[np.ndarray, np.ndarray | None]:
    """(mosaic uint16 (H, W), JPG uint8 (H, W, 3) or ``None``) of a pair, sizes checked.

    ``raw_size``: the side every raw must have (448 for the released patches; ``None`` accepts any even
    size). The JPG must always be exactly the raw's size (2× the packed raw).
    """
    mosaic = read_raw_png(pair.raw_path, max_value)
    height, width = mosaic.shape
    if raw_size is not None and (height, width) != (raw_size, raw_size):
        raise DatasetError(f"{pair.raw_path}: raw of {height}×{width} pixels, expected {raw_size}×{raw_size}")
    if pair.rgb_path is None:
        return mosaic, None
    rgb = read_jpg(pair.rgb_path)
    if rgb.shape[:2] != (height, width):
        raise DatasetError(
            f"{pair.rgb_path}: JPG of {rgb.shape[0]}×{rgb.shape[1]} pixels is not the size of its raw "
            f"{pair.raw_path.name} ({height}×{width}, i.e. 2× the packed {height // 2}×{width // 2})"
        )
    return mosaic, rgb


def normalize_raw(mosaic: np.ndarray | Tensor) -> Tensor:
    """max(raw − 63, 0) / (1020 − 63) as float32, not clipped at 1 (official ``_process_raw``)."""
    raw = torch.as_tensor(np.asarray(mosaic, dtype=np.float32) if isinstance(mosaic, np.ndarray) else mosaic)
    return (raw.float() - BLACK_LEVEL).clamp_(min=0.0) / (WHITE_LEVEL - BLACK_LEVEL)


def pack_raw(mosaic: Tensor, order: PackingOrder = "official") -> Tensor:
    """RGGB mosaic (..., H, W) → (..., 4, H/2, W/2): ``"official"`` (B, G_R, R, G_B) or ``"rggb"`` (R, G1, B, G2)."""
    packed = pack_bayer(mosaic, CFA_PATTERN)
    if order == "official":
        return packed[..., _OFFICIAL_FROM_RGGB, :, :]
    if order != "rggb":
        raise ValueError(f"packing order must be 'official' or 'rggb', got {order!r}")
    return packed


def unpack_raw(packed: Tensor, order: PackingOrder = "official") -> Tensor:
    """Inverse of :func:`pack_raw`: (..., 4, h, w) → RGGB mosaic (..., 2h, 2w)."""
    if order == "official":
        packed = packed[..., _OFFICIAL_FROM_RGGB, :, :]  # the permutation is its own inverse
    elif order != "rggb":
        raise ValueError(f"packing order must be 'official' or 'rggb', got {order!r}")
    return unpack_bayer(packed, CFA_PATTERN)
