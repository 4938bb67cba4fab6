"""SR-RAW's official per-scene files ``tform.txt`` and ``wb.txt`` (reference §3.2–§3.4).

``tform.txt`` holds, for the i-th image of the scene in sorted order (1-based), a header ``00001-%05d:``
and a 2×3 affine matrix (two lines of three numbers), then ``corner:`` and the common valid rectangle,
which we do not need. The matrix A_i comes from OpenCV's ECC with image 00001 as template, so it maps
pixel coordinates of ``cropped/00001`` to those of ``cropped/<i>``. The ``cropped/`` images are the
FOV-matched shots of ``main_crop.py``: shot k (size H×W, ratio r = f(00001)/f(k)) is centre-cropped to
rows [⌈(H − H/r)/2⌉, ⌊(H + H/r)/2⌋) and columns [⌈(W − W/r)/2⌉, ⌊(W + W/r)/2⌋), then resized (PIL,
pixel-centre aligned) to ⌊w_c·r⌋ × ⌊h_c·r⌋ pixels; 00001 is kept as is. When 00001's EXIF orientation
is 3, every image was first rotated by 180°. :func:`tform_to_ref_to_shot` undoes all of this.

``wb.txt`` holds lines ``<key>:`` followed (on the same or the next line) by 4 numbers for R, G, G, B;
the key is the raw file's path up to its first ``.``, so we match the shot by the key's last path
component. Indices 0, 1, 3 are R, G, B; we normalise them to G = 1.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from datamodules.common.errors import DatasetError

__all__ = ["read_tform_file", "read_wb_file", "fov_crop_to_shot", "tform_to_ref_to_shot"]

_TFORM_HEADER = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*:\s*$")


def _numbers(path: Path, number: int, text: str) -> list[float]:
    try:
        values = [float(token) for token in text.replace(",", " ").split()]
    except ValueError as error:
        raise DatasetError(f"{path}: line {number} is not a list of numbers: {text.strip()!r}") from error
    if not all(math.isfinite(value) for value in values):
        raise DatasetError(f"{path}: line {number} holds a non-finite number: {text.strip()!r}")
    return values


def read_tform_file(path: str | Path) -> dict[int, np.ndarray]:
    """The affine matrices of ``tform.txt`` as 3×3 float64 arrays, keyed by 1-based image position."""
    path = Path(path)
    lines = [(number, line) for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if line.strip()]
    matrices: dict[int, np.ndarray] = {}
    index = 0
    while index < len(lines):
        number, line = lines[index]
        header = _TFORM_HEADER.match(line)
        if header is None:
            if line.strip().lower().startswith("corner"):
                break
            raise DatasetError(f"{path}: line {number} is not a '00001-%05d:' header: {line.strip()!r}")
        rows = [_numbers(path, n, text) for n, text in lines[index + 1 : index + 3]]
        if len(rows) != 2 or any(len(row) != 3 for row in rows):
            raise DatasetError(f"{path}: the matrix after line {number} must be two lines of three numbers")
        matrices[int(header.group(2))] = np.array([*rows, [0.0, 0.0, 1.0]], dtype=np.float64)
        index += 3
    return matrices


def read_wb_file(path: str | Path) -> dict[str, tuple[float, float, float]]:
    """White-balance gains (R, G, B), G = 1, of ``wb.txt`` keyed by shot name (the key's last component)."""
    path = Path(path)
    gains: dict[str, tuple[float, float, float]] = {}
    pending: str | None = None
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if ":" in line:
            key, _, rest = line.rpartition(":")
            pending = re.split(r"[\\/]", key.strip())[-1]
            if not rest.strip():
                continue
            line = rest
        elif pending is None or not line.strip():
            continue  # the "WB" header line, blank lines
        values = _numbers(path, number, line)
        if len(values) != 4 or not (values[0] > 0 and values[1] > 0 and values[3] > 0):
            raise DatasetError(f"{path}: line {number} must hold four positive gains R G G B, got {line.strip()!r}")
        if pending:
            gains[pending] = (values[0] / values[1], 1.0, values[3] / values[1])
        pending = None
    return gains


def fov_crop_to_shot(size: tuple[int, int], ratio: float) -> np.ndarray:
    """3×3 map from pixel coordinates of ``main_crop.py``'s FOV-matched image to the shot's (size = (H, W))."""
    height, width = size
    top, bottom = math.ceil((height - height / ratio) / 2), math.floor((height + height / ratio) / 2)
    left, right = math.ceil((width - width / ratio) / 2), math.floor((width + width / ratio) / 2)
    crop_h, crop_w = bottom - top, right - left
    out_h, out_w = int(crop_h * ratio), int(crop_w * ratio)
    if min(crop_h, crop_w, out_h, out_w) < 1:
        raise ValueError(f"FOV ratio {ratio} leaves no crop of a {height}×{width} image")
    sx, sy = crop_w / out_w, crop_h / out_h
    # x_shot = left + (x + 0.5)·sx − 0.5 (PIL resizes with pixel-centre alignment).
    return np.array([[sx, 0.0, left + 0.5 * sx - 0.5], [0.0, sy, top + 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def _rotation_180(size: tuple[int, int]) -> np.ndarray:
    height, width = size
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, -1.0, height - 1.0], [0.0, 0.0, 1.0]])


def tform_to_ref_to_shot(
    tform: np.ndarray, reference_size: tuple[int, int], shot_size: tuple[int, int], ratio: float, rotated: bool
) -> np.ndarray:
    """Our ``ref_to_shot`` (reference pixel coords → shot pixel coords) from a ``tform.txt`` matrix.

    ref_to_shot = R_k · C_k · A · R_ref, with A the official matrix (cropped reference → cropped shot),
    C_k = :func:`fov_crop_to_shot` for the shot's JPG size and ``ratio`` = f(00001)/f(k), and R the 180°
    rotation of ``main_crop.py`` (identity unless ``rotated``).
    """
    rotate_ref = _rotation_180(reference_size) if rotated else np.eye(3)
    rotate_shot = _rotation_180(shot_size) if rotated else np.eye(3)
    return rotate_shot @ fov_crop_to_shot(shot_size, ratio) @ tform @ rotate_ref
