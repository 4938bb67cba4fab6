"""Writing a camera JPG with the EXIF a real camera stores (FocalLength in the Exif sub-IFD)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from datamodules.simulate.camera import CAMERA_MAKE, CAMERA_MODEL
from datamodules.simulate.dng import rational

__all__ = ["EXIF_IFD", "FOCAL_LENGTH_TAG", "JPEG_SUBSAMPLINGS", "write_camera_jpeg"]

EXIF_IFD = 0x8769
FOCAL_LENGTH_TAG = 37386
JPEG_SUBSAMPLINGS = ("4:4:4", "4:2:2", "4:2:0")


def write_camera_jpeg(
    path: str | Path,
    rgb: np.ndarray,
    focal_length: float,
    quality: int,
    subsampling: str = "4:4:4",
    orientation: int = 1,
) -> None:
    """Save 8-bit RGB (H, W, 3) as a baseline JPEG with chroma ``subsampling`` "4:4:4", "4:2:2" or
    "4:2:0", with Make, Model, Orientation (pixels are stored as given) and FocalLength (mm) in the Exif
    sub-IFD, where real cameras store it (Pillow: ``getexif().get_ifd(0x8769)``)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 RGB (H, W, 3), got {rgb.dtype} of shape {rgb.shape}")
    if subsampling not in JPEG_SUBSAMPLINGS:
        raise ValueError(f"subsampling must be one of {JPEG_SUBSAMPLINGS}, got {subsampling!r}")
    exif = Image.Exif()
    exif[271] = CAMERA_MAKE
    exif[272] = CAMERA_MODEL
    exif[274] = orientation
    exif.get_ifd(EXIF_IFD)[FOCAL_LENGTH_TAG] = IFDRational(*rational(focal_length, 1000))
    Image.fromarray(rgb).save(path, format="JPEG", quality=quality, subsampling=subsampling, exif=exif)
