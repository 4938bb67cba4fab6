"""Reading a Bayer raw file (any format rawpy reads): its visible mosaic and what it says about it.

* The visible mosaic is uint16 (H, W), trimmed to even H and W; its 2×2 CFA pattern is given in raster
  order (e.g. ``"RGGB"``, see :data:`ops.bayer.BAYER_PATTERNS`), the black level per raster position
  (top-left, top-right, bottom-left, bottom-right), the white level and the camera's as-shot
  white-balance gains (R, G, B) normalised to G = 1.
* rawpy quirks handled here: ``black_level_per_channel`` and ``camera_whitebalance`` are indexed by
  colour index (R, G, B, G2), not by raster position; ``camera_whitebalance`` is 1/AsShotNeutral.

Every problem raises :class:`datamodules.common.errors.DatasetError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rawpy

from datamodules.common.errors import DatasetError
from ops.bayer import BAYER_PATTERNS

__all__ = ["RAW_EXTENSIONS", "RawMetadata", "is_raw_file", "read_raw_metadata", "read_raw_mosaic"]

#: File extensions (lower case) treated as raw captures.
RAW_EXTENSIONS = frozenset(
    {".arw", ".srf", ".sr2", ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".orf", ".rw2", ".raf",
     ".pef", ".srw", ".rwl", ".3fr", ".erf", ".kdc", ".mrw", ".mos", ".iiq", ".raw"}
)


@dataclass(frozen=True)
class RawMetadata:
    """What a raw file says about its mosaic, without the pixels.

    Attributes:
        path: The raw file.
        pattern: 2×2 CFA pattern in raster order, one of :data:`ops.bayer.BAYER_PATTERNS`.
        black_levels: Black level per raster position (top-left, top-right, bottom-left, bottom-right).
        white_level: Saturation level.
        white_balance: As-shot gains (R, G, B) with G = 1.
        size: (height, width) of the visible mosaic, trimmed to even numbers.
        focal_length: Focal length (mm) from the raw's metadata, ``None`` when absent.
    """

    path: Path
    pattern: str
    black_levels: tuple[float, float, float, float]
    white_level: float
    white_balance: tuple[float, float, float]
    size: tuple[int, int]
    focal_length: float | None



def is_raw_file(path: Path) -> bool:
    """Whether ``path`` has a raw extension (case-insensitive)."""
    return path.suffix.lower() in RAW_EXTENSIONS


def _libraw_message(error: Exception) -> str:
    message = error.args[0] if error.args else error
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


def _open_raw(path: Path, unpack: bool = True) -> rawpy.RawPy:
    if not path.is_file():
        raise DatasetError(f"{path}: raw file does not exist")
    raw = rawpy.RawPy()
    try:
        raw.open_file(str(path))
        if unpack:
            raw.unpack()
    except rawpy.LibRawError as error:
        raw.close()
        raise DatasetError(f"{path}: cannot read raw file ({_libraw_message(error)})") from error
    return raw


def _metadata(raw: rawpy.RawPy, path: Path) -> RawMetadata:
    if raw.raw_type != rawpy.RawType.Flat:
        raise DatasetError(f"{path}: not a Bayer mosaic (linear or demosaiced raw with {raw.num_colors} colours)")
    tile = raw.raw_pattern
    if tile is None or tile.shape != (2, 2):
        shape = "no" if tile is None else "×".join(map(str, tile.shape))
        raise DatasetError(f"{path}: not a 2×2 Bayer mosaic ({shape} CFA pattern, e.g. X-Trans)")
    colours = raw.color_desc.decode(errors="replace")
    try:
        pattern = "".join(colours[index] for index in tile.ravel())
    except IndexError:
        pattern = "?"
    if pattern not in BAYER_PATTERNS:
        raise DatasetError(f"{path}: CFA pattern {pattern!r} (colours {colours!r}) is not one of {BAYER_PATTERNS}")
    per_colour = raw.black_level_per_channel
    black_levels = tuple(float(per_colour[index]) for index in tile.ravel())
    white_level = float(raw.white_level)
    if white_level <= max(black_levels):
        raise DatasetError(f"{path}: white level {white_level} does not exceed the black levels {black_levels}")
    gains = raw.camera_whitebalance
    if not (gains[0] > 0 and gains[1] > 0 and gains[2] > 0):
        raise DatasetError(f"{path}: no usable camera white balance (rawpy gives {list(gains)})")
    white_balance = (gains[0] / gains[1], 1.0, gains[2] / gains[1])
    height, width = raw.sizes.height // 2 * 2, raw.sizes.width // 2 * 2
    if height < 2 or width < 2:
        raise DatasetError(f"{path}: visible mosaic of {raw.sizes.height}×{raw.sizes.width} pixels is too small")
    focal = float(raw.other.focal_length)
    return RawMetadata(
        path=path,
        pattern=pattern,
        black_levels=black_levels,  # type: ignore[arg-type]
        white_level=white_level,
        white_balance=white_balance,
        size=(height, width),
        focal_length=focal if focal > 0 else None,
    )


def read_raw_metadata(path: str | Path) -> RawMetadata:
    """Metadata of the raw file at ``path`` (see :class:`RawMetadata`), read without decoding the pixels.

    LibRaw knows most of it from the file's header; for formats whose black levels are only set while
    the pixels are unpacked (they read 0 before), the file is opened again and unpacked.
    """
    path = Path(path)
    for unpack in (False, True):
        raw = _open_raw(path, unpack=unpack)
        try:
            if unpack or any(raw.black_level_per_channel):
                return _metadata(raw, path)
        except rawpy.LibRawError as error:  # rawpy unpacks on demand when a property needs the pixels
            raise DatasetError(f"{path}: cannot read raw file ({_libraw_message(error)})") from error
        finally:
            raw.close()
    raise AssertionError("the unpacked pass returns")


def read_raw_mosaic(path: str | Path) -> tuple[RawMetadata, np.ndarray]:
    """Metadata and the visible mosaic (uint16, (H, W) with even H, W) of the raw file at ``path``."""
    path = Path(path)
    raw = _open_raw(path)
    try:
        metadata = _metadata(raw, path)
        height, width = metadata.size
        try:
            mosaic = np.array(raw.raw_image_visible[:height, :width], dtype=np.uint16, copy=True)
        except rawpy.LibRawError as error:
            raise DatasetError(f"{path}: cannot decode raw pixels ({_libraw_message(error)})") from error
    finally:
        raw.close()
    return metadata, mosaic
