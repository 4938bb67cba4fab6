"""Where a raw file's pixels land in the camera's own JPG: one map per camera model.

Cameras do not write their whole sensor image into the JPG: a Sony A7R II records 7968×5320 sensor pixels
and writes a 7952×5304 JPG, a centred crop; others also rescale or correct lens distortion. The map from
Bayer pixel coordinates to JPG pixel coordinates (x = column, y = row, pixel centres at integers) is
estimated once per camera — EXIF make and model, raw size, JPG size — by registering a quick rendering of
one raw against its JPG:

* the raw's preview: the mosaic normalised by its black and white levels, white-balanced by the as-shot
  gains, demosaiced (bilinear), the mean of its channels, gamma 1/2.2, on the sensor's own pixel grid;
* the initial guess: the JPG is the centred, uniformly scaled sensor image, x_jpg = c_jpg + σ·(x − c_raw),
  σ = the mean of the width and height ratios (σ ≈ 1 for a crop);
* :func:`ops.registration.register_similarity` between the preview and the grey JPG at a working
  resolution (longer side ≤ ``registration_size``, 2048 by default: it runs once per camera) refines it
  to a similarity.

Checks, each an error naming the JPG: its aspect ratio must be the raw's (within 5 %; pixels stored rotated
by the camera are named as such), and after registration the correlation of the two renderings must be at
least :data:`MIN_CORRELATION` — else the JPG does not show the raw's picture. The results are cached in
``rawzoom_cameras.json`` under the dataset root (or ``cache_dir``), written atomically.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datamodules.common.atomic import write_json_atomic
from datamodules.common.errors import DatasetError
from datamodules.common.images import JpgMetadata, read_jpg, read_jpg_metadata
from datamodules.common.raw import RawMetadata, read_raw_mosaic
from ops.bayer import demosaic, normalize_levels
from ops.geometry import downscale, warp_image
from ops.registration import masked_correlation, register_similarity

__all__ = [
    "CAMERAS_FILE",
    "MIN_CORRELATION",
    "RawToJpg",
    "camera_key",
    "estimate_raw_to_jpg",
    "check_raw_and_jpg",
    "CameraGeometries",
]

CAMERAS_FILE = "rawzoom_cameras.json"
#: Correlation of the raw's preview and the registered JPG below which the JPG is not the raw's.
MIN_CORRELATION = 0.5
_ASPECT_TOLERANCE = 0.05


@dataclass(frozen=True)
class RawToJpg:
    """The raw → JPG map of one camera (sizes are (H, W)).

    Attributes:
        camera: :func:`camera_key` of the camera.
        matrix: 3×3 float64, Bayer pixel coordinates → JPG pixel coordinates.
        correlation: Correlation of the raw's preview and the JPG after registration.
        raw_size, jpg_size: The sizes this map is for.
        estimated_from: The raw file the map was estimated on.
    """

    camera: str
    matrix: tuple[tuple[float, float, float], ...]
    correlation: float
    raw_size: tuple[int, int]
    jpg_size: tuple[int, int]
    estimated_from: str

    def array(self) -> np.ndarray:
        return np.array(self.matrix, dtype=np.float64)


def camera_key(raw: RawMetadata, jpg: JpgMetadata) -> str:
    """``"<make> <model> | raw H×W | jpg H×W"``: shots with the same key share one raw → JPG map."""
    name = jpg.camera or "unknown camera"
    return f"{name} | raw {raw.size[0]}×{raw.size[1]} | jpg {jpg.size[0]}×{jpg.size[1]}"


def _check_aspect(raw: RawMetadata, jpg: JpgMetadata) -> None:
    raw_aspect = raw.size[1] / raw.size[0]
    jpg_aspect = jpg.size[1] / jpg.size[0]
    if abs(jpg_aspect / raw_aspect - 1) <= _ASPECT_TOLERANCE:
        return
    if abs(jpg_aspect * raw_aspect - 1) <= _ASPECT_TOLERANCE:
        raise DatasetError(
            f"{jpg.path}: the JPG's pixels are rotated by 90° against the raw {raw.path.name} (the camera applied "
            f"the EXIF orientation {jpg.orientation}); rawzoom needs JPGs stored in the sensor's orientation"
        )
    raise DatasetError(
        f"{jpg.path}: a {jpg.size[1]}×{jpg.size[0]} JPG cannot be the camera's rendering of the "
        f"{raw.size[1]}×{raw.size[0]} raw {raw.path.name} (aspect ratio {jpg_aspect:.3f} vs {raw_aspect:.3f})"
    )


def _preview(raw: RawMetadata, mosaic: np.ndarray) -> torch.Tensor:
    """Grey preview (H, W) of a raw mosaic: levels, as-shot white balance, bilinear demosaic, mean, gamma 1/2.2."""
    black = torch.tensor(raw.black_levels, dtype=torch.float32).view(2, 2).repeat(raw.size[0] // 2, raw.size[1] // 2)
    linear = normalize_levels(torch.from_numpy(mosaic.astype(np.float32)), black, raw.white_level).clamp_(0.0, 1.0)
    rgb = demosaic(linear[None, None], raw.pattern)[0]
    gains = torch.tensor(raw.white_balance, dtype=torch.float32)
    return (rgb * gains[:, None, None]).mean(dim=0).clamp_(0.0, 1.0) ** (1 / 2.2)


def _grey(rgb: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(rgb).to(torch.float32) @ torch.tensor([0.299, 0.587, 0.114])) / 255.0


def estimate_raw_to_jpg(raw_path: str | Path, jpg_path: str | Path, registration_size: int = 2048) -> RawToJpg:
    """Register the raw at ``raw_path`` against its camera JPG (see the module docstring)."""
    jpg = read_jpg_metadata(jpg_path)
    raw, mosaic = read_raw_mosaic(raw_path)
    _check_aspect(raw, jpg)
    preview = _preview(raw, mosaic)
    fixed_scale = min(1.0, registration_size / max(preview.shape))
    fixed, fixed_from_bayer = downscale(preview, fixed_scale)
    image = _grey(read_jpg(jpg.path))
    moving, to_moving = downscale(image, min(1.0, fixed_scale * max(preview.shape) / max(image.shape)))
    sigma = 0.5 * (jpg.size[0] / raw.size[0] + jpg.size[1] / raw.size[1])
    guess = np.array(
        [
            [sigma, 0.0, (jpg.size[1] - 1) / 2 - sigma * (raw.size[1] - 1) / 2],
            [0.0, sigma, (jpg.size[0] - 1) / 2 - sigma * (raw.size[0] - 1) / 2],
            [0.0, 0.0, 1.0],
        ]
    )
    start = to_moving @ guess @ np.linalg.inv(fixed_from_bayer)  # fixed working px → moving working px
    resampled, _ = warp_image(moving, start, tuple(fixed.shape))
    registration = register_similarity(fixed, resampled)
    matrix = np.linalg.inv(to_moving) @ start @ registration.matrix.numpy() @ fixed_from_bayer
    if not registration.correlation >= MIN_CORRELATION:
        raise DatasetError(
            f"{jpg.path}: does not show the picture of the raw {raw.path.name} (correlation "
            f"{registration.correlation:.3f} after registration, at least {MIN_CORRELATION} expected)"
        )
    return RawToJpg(
        camera=camera_key(raw, jpg),
        matrix=tuple(tuple(float(v) for v in row) for row in matrix),
        correlation=float(registration.correlation),
        raw_size=raw.size,
        jpg_size=jpg.size,
        estimated_from=raw.path.name,
    )


def check_raw_and_jpg(
    raw: RawMetadata, mosaic: np.ndarray, jpg_path: Path, raw_to_jpg: np.ndarray, working_size: int = 512
) -> float:
    """Check that the JPG at ``jpg_path`` shows the raw's picture where its camera's map says; returns the
    correlation of the two renderings at a working resolution, and raises :class:`DatasetError` naming the JPG
    below :data:`MIN_CORRELATION` (e.g. a JPG of another shot next to the raw)."""
    preview = _preview(raw, mosaic)
    fixed, fixed_from_bayer = downscale(preview, min(1.0, working_size / max(preview.shape)))
    image = _grey(read_jpg(jpg_path))
    moving, to_moving = downscale(image, min(1.0, working_size / max(image.shape)))
    resampled, inside = warp_image(moving, to_moving @ raw_to_jpg @ np.linalg.inv(fixed_from_bayer), tuple(fixed.shape))
    correlation = masked_correlation(fixed, resampled, inside)
    if not correlation >= MIN_CORRELATION:
        raise DatasetError(
            f"{jpg_path}: does not show the picture of the raw {raw.path.name} (correlation {correlation:.3f} where "
            f"the camera's raw → JPG map puts it, at least {MIN_CORRELATION} expected)"
        )
    return correlation


class CameraGeometries:
    """The raw → JPG maps of a dataset's cameras, estimated on first need and cached in ``folder``/rawzoom_cameras.json."""

    def __init__(self, folder: str | Path, registration_size: int = 2048) -> None:
        self.path = Path(folder) / CAMERAS_FILE
        self.registration_size = registration_size
        try:
            records = json.loads(self.path.read_text())
        except (OSError, ValueError):
            records = {}
        self._maps = {key: _from_json(record) for key, record in records.items() if _is_record(record)}

    def get(self, raw: RawMetadata, jpg: JpgMetadata) -> RawToJpg:
        """The map of the camera of (``raw``, ``jpg``), estimated on this pair if the camera is new."""
        key = camera_key(raw, jpg)
        if key not in self._maps:
            self._maps[key] = estimate_raw_to_jpg(raw.path, jpg.path, self.registration_size)
            write_json_atomic(self.path, {name: _to_json(value) for name, value in self._maps.items()})
        return self._maps[key]


def _to_json(value: RawToJpg) -> dict:
    return {
        "camera": value.camera,
        "matrix": [list(row) for row in value.matrix],
        "correlation": value.correlation,
        "raw_size": list(value.raw_size),
        "jpg_size": list(value.jpg_size),
        "estimated_from": value.estimated_from,
    }


def _is_record(record: object) -> bool:
    return isinstance(record, dict) and {"camera", "matrix", "correlation", "raw_size", "jpg_size"} <= set(record)


def _from_json(record: dict) -> RawToJpg:
    return RawToJpg(
        camera=record["camera"],
        matrix=tuple(tuple(float(v) for v in row) for row in record["matrix"]),
        correlation=float(record["correlation"]),
        raw_size=tuple(record["raw_size"]),
        jpg_size=tuple(record["jpg_size"]),
        estimated_from=str(record.get("estimated_from", "")),
    )
