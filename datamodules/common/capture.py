"""One shot of a camera: a raw file and the camera JPG next to it, with the focal length used for pairing.

The focal length (mm) comes from the JPG's EXIF, then from the raw's metadata
(``raw.other.focal_length``), as the official SR-RAW code reads it from the JPG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datamodules.common.errors import DatasetError
from datamodules.common.images import JPG_EXTENSIONS, JpgMetadata, read_jpg_metadata
from datamodules.common.raw import RawMetadata, read_raw_metadata

__all__ = ["Capture", "find_jpg", "read_capture"]


@dataclass(frozen=True)
class Capture:
    """One shot: raw metadata, JPG metadata and the focal length used for pairing (mm)."""

    raw: RawMetadata
    jpg: JpgMetadata
    focal_length: float


def find_jpg(raw_path: str | Path) -> Path:
    """The camera JPG next to ``raw_path``: same stem, extension .jpg/.jpeg in any case."""
    raw_path = Path(raw_path)
    for candidate in sorted(raw_path.parent.iterdir()):
        if candidate.stem == raw_path.stem and candidate.suffix.lower() in JPG_EXTENSIONS and candidate.is_file():
            return candidate
    raise DatasetError(f"{raw_path.with_suffix('.JPG')}: camera JPG of {raw_path.name} is missing")


def read_capture(raw_path: str | Path) -> Capture:
    """Metadata of one shot: the raw at ``raw_path`` and its camera JPG, with the focal length."""
    raw = read_raw_metadata(raw_path)
    jpg = read_jpg_metadata(find_jpg(raw.path))
    focal = jpg.focal_length if jpg.focal_length is not None else raw.focal_length
    if focal is None:
        raise DatasetError(f"{raw.path}: no EXIF focal length (tag 37386) in it or in {jpg.path.name}")
    return Capture(raw=raw, jpg=jpg, focal_length=focal)
