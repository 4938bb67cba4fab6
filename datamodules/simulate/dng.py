"""Writing a Bayer mosaic as a DNG that LibRaw (rawpy) reads like a camera raw.

Tags (IFD0, tifffile ``photometric='cfa'``): DNGVersion 1.4, CFARepeatPatternDim (2, 2), CFAPattern
(0, 1, 1, 2) = RGGB, BlackLevelRepeatDim (2, 2) + four BlackLevel values, WhiteLevel, AsShotNeutral
= 1/gains, ColorMatrix1 (XYZ → camera) with CalibrationIlluminant1 = 21 (D65), UniqueCameraModel,
Make, Model, Orientation and FocalLength (tag 37386). rawpy then gives ``raw_image`` = the mosaic,
``raw_pattern`` [[0, 1], [3, 2]], ``camera_whitebalance`` = gains, ``other.focal_length`` = the focal.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import tifffile

from datamodules.simulate.camera import CAMERA_MAKE, CAMERA_MODEL

__all__ = ["rational", "write_dng"]

_CFA_CODES = {"R": 0, "G": 1, "B": 2}


def rational(value: float, max_denominator: int = 10000) -> tuple[int, int]:
    """(numerator, denominator) of the closest fraction with a bounded denominator."""
    fraction = Fraction(float(value)).limit_denominator(max_denominator)
    return fraction.numerator, fraction.denominator


def write_dng(
    path: str | Path,
    mosaic: np.ndarray,
    *,
    pattern: str,
    black_level: int,
    white_level: int,
    wb_gains: tuple[float, float, float],
    xyz_to_camera: np.ndarray,
    focal_length: float,
    orientation: int = 1,
) -> None:
    """Write a uint16 Bayer mosaic (H, W) to ``path`` as a DNG.

    ``wb_gains`` should be multiples of 1/10000 so that AsShotNeutral = 1/gains is stored exactly
    (as the rational 10000/(10000·g)). ``orientation`` is the TIFF/EXIF Orientation tag (1: as stored,
    6/8: shot in portrait); the mosaic stays in the sensor's order.
    """
    if mosaic.dtype != np.uint16 or mosaic.ndim != 2:
        raise ValueError(f"expected a uint16 mosaic (H, W), got {mosaic.dtype} of shape {mosaic.shape}")
    neutral = []
    for gain in wb_gains:
        numerator, denominator = rational(gain)
        neutral += [denominator, numerator]
    colour_matrix = [part for value in np.asarray(xyz_to_camera).ravel() for part in rational(value)]
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, f"{CAMERA_MAKE} {CAMERA_MODEL}", True),  # UniqueCameraModel
        (271, "s", 0, CAMERA_MAKE, True),  # Make
        (272, "s", 0, CAMERA_MODEL, True),  # Model
        (274, "H", 1, orientation, True),  # Orientation
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, tuple(_CFA_CODES[c] for c in pattern), True),  # CFAPattern
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50713, "H", 2, (2, 2), True),  # BlackLevelRepeatDim
        (50714, "I", 4, (black_level,) * 4, True),  # BlackLevel
        (50717, "I", 1, white_level, True),  # WhiteLevel
        (50728, "2I", 3, tuple(neutral), True),  # AsShotNeutral
        (50721, "2i", 9, tuple(colour_matrix), True),  # ColorMatrix1
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (37386, "2I", 1, rational(focal_length, 1000), True),  # FocalLength (mm)
    ]
    tifffile.imwrite(path, mosaic, photometric="cfa", extratags=tags, metadata=None)
