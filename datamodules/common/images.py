"""Reading camera JPGs: the pixels as stored, and the EXIF focal length and orientation.

The JPG is read as stored (RGB uint8, (H, W, 3)). Its EXIF orientation is *not* applied: camera JPGs
keep the sensor's pixel order, like the raw, and only record the orientation. The focal length (mm)
comes from the EXIF sub-IFD (tag 37386), then IFD0.

Every problem raises :class:`datamodules.common.errors.DatasetError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from datamodules.common.errors import DatasetError

__all__ = ["JPG_EXTENSIONS", "JpgMetadata", "read_jpg", "read_jpg_metadata"]

#: File extensions (lower case) of camera JPGs.
JPG_EXTENSIONS = (".jpg", ".jpeg")

_FOCAL_LENGTH_TAG = ExifTags.Base.FocalLength  # 37386
_ORIENTATION_TAG = ExifTags.Base.Orientation  # 274
_MAKE_TAG, _MODEL_TAG = ExifTags.Base.Make, ExifTags.Base.Model  # 271, 272


@dataclass(frozen=True)
class JpgMetadata:
    """Size (H, W), EXIF focal length (mm, ``None`` when absent), EXIF orientation (1 when absent) and the
    camera (EXIF Make and Model, ``""`` when absent) of a JPG."""

    path: Path
    size: tuple[int, int]
    focal_length: float | None
    orientation: int
    camera: str = ""



def _open_jpg(path: Path) -> Image.Image:
    if not path.is_file():
        raise DatasetError(f"{path}: JPG does not exist")
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(f"{path}: cannot read JPG ({error})") from error


def read_jpg(path: str | Path) -> np.ndarray:
    """The pixels of the JPG at ``path`` as stored: RGB uint8 of shape (H, W, 3)."""
    path = Path(path)
    with _open_jpg(path) as image:
        try:
            return np.array(image.convert("RGB"))
        except OSError as error:
            raise DatasetError(f"{path}: cannot decode JPG ({error})") from error


def read_jpg_metadata(path: str | Path) -> JpgMetadata:
    """Size, EXIF focal length, orientation and camera of the JPG at ``path`` (pixels are not decoded)."""
    path = Path(path)
    with _open_jpg(path) as image:
        exif = image.getexif()
        width, height = image.size
    value = exif.get_ifd(ExifTags.IFD.Exif).get(_FOCAL_LENGTH_TAG, exif.get(_FOCAL_LENGTH_TAG))
    try:
        focal = float(value) if value is not None else None
    except (TypeError, ValueError, ZeroDivisionError):
        focal = None
    if focal is not None and not focal > 0:
        focal = None
    camera = " ".join(str(exif.get(tag, "")).strip("\x00 ") for tag in (_MAKE_TAG, _MODEL_TAG)).strip()
    return JpgMetadata(
        path=path, size=(height, width), focal_length=focal, orientation=int(exif.get(_ORIENTATION_TAG, 1)), camera=camera
    )
