"""Where a raw file's pixels land in the camera's own JPG: one map per camera model.

Cameras do not write their whole sensor image into the JPG: a Sony A7R II records 7968×5320 sensor pixels
and writes a 7952×5304 JPG, a centred crop; others also rescale or correct lens distortion. The map from
Bayer pixel coordinates to JPG pixel coordinates (x = column, y = row, pixel centres at integers) is
estimated once per camera — EXIF make and model, raw size, JPG size — by registering a quick rendering of
one raw against its JPG:

* the raw's preview: the mosaic normalised by its black and white levels, white-balanced by the as-shot
  gains, the mean of its colours, gamma 1/2.2 (:func:`_preview`: demosaiced on the sensor's own pixel
  grid, or, for work at half the sensor's resolution or less, averaged over blocks of Bayer tiles, so that
  a 24-megapixel mosaic is never turned into full-resolution float images);
* the JPG in grey at the working resolution (:func:`grey_jpg`: its luma only, decoded at a reduced size
  by the JPEG decoder where the working resolution allows);
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
from PIL import Image, UnidentifiedImageError

from datamodules.common.atomic import write_json_atomic
from datamodules.common.errors import DatasetError
from datamodules.common.images import JpgMetadata, read_jpg_metadata
from datamodules.common.raw import RawMetadata, read_raw_mosaic
from ops.bayer import demosaic, normalize_levels
from ops.geometry import downscale, scale_map, warp_image
from ops.registration import masked_correlation, register_similarity

__all__ = [
    "CAMERAS_FILE",
    "MIN_CORRELATION",
    "RawToJpg",
    "camera_key",
    "grey_jpg",
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


def _preview(raw: RawMetadata, mosaic: np.ndarray, scale: float = 1.0) -> tuple[torch.Tensor, np.ndarray]:
    """Grey preview of a raw mosaic for work at ``scale`` of its Bayer grid, and the 3×3 map Bayer → preview pixels.

    Levels (clipped to [0, 1]), as-shot white balance, the mean of R, G and B, clipped, gamma 1/2.2:

    * ``scale`` > 1/2: on the sensor's own pixel grid after bilinear demosaicing (the map is the identity);
    * ``scale`` ≤ 1/2: one value per Bayer tile, (g_R·R + g_G·(G1 + G2)/2 + g_B·B)/3 at the tile's centre
      (R and B interpolated there from the neighbouring tiles, bilinear weights ¾ and ¼ per axis),
      gamma-encoded, then averaged over blocks of b × b tiles, b = ⌊1/(2·scale)⌋: pixel (i, j) is the block
      of Bayer pixels [2b·i, 2b·i + 2b) × [2b·j, 2b·j + 2b) (rows and columns beyond the last whole block
      are left out). The mosaic is read one CFA position at a time and never turned into full-resolution
      float images (a 24-megapixel raw would need gigabytes).
    """
    if scale > 0.5:
        tile = torch.tensor(raw.black_levels, dtype=torch.float32).view(2, 2)
        black = tile.repeat(raw.size[0] // 2, raw.size[1] // 2)
        linear = normalize_levels(torch.from_numpy(mosaic.astype(np.float32)), black, raw.white_level).clamp_(0.0, 1.0)
        rgb = demosaic(linear[None, None], raw.pattern)[0]
        gains = torch.tensor(raw.white_balance, dtype=torch.float32)
        return (rgb * gains[:, None, None]).mean(dim=0).clamp_(0.0, 1.0) ** (1 / 2.2), np.eye(3)
    block = max(1, math.floor(1 / (2 * scale)))
    step = 2 * block
    height, width = raw.size[0] // step * step, raw.size[1] // step * step
    if height == 0 or width == 0:
        raise DatasetError(
            f"{raw.path}: a {raw.size[1]}×{raw.size[0]} mosaic is too small for a preview at scale {scale:g}"
        )
    colour_weights = {"R": raw.white_balance[0] / 3, "G": raw.white_balance[1] / 6, "B": raw.white_balance[2] / 3}
    tiles = np.zeros((height // 2, width // 2), dtype=np.float32)
    for position, colour in enumerate(raw.pattern):
        row, col = divmod(position, 2)
        plane = mosaic[row:height:2, col:width:2].astype(np.float32)
        black = raw.black_levels[position]
        plane -= black
        plane *= 1.0 / (raw.white_level - black)
        np.clip(plane, 0.0, 1.0, out=plane)
        if colour != "G":  # the tile's one R (B) sample sits half a pixel off its centre in x and y
            plane = _to_tile_centre(_to_tile_centre(plane, 0, row), 1, col)
        plane *= colour_weights[colour]
        tiles += plane
    np.clip(tiles, 0.0, 1.0, out=tiles)
    np.power(tiles, 1 / 2.2, out=tiles)
    rows, cols = tiles.shape[0] // block, tiles.shape[1] // block
    preview = tiles.reshape(rows, block, cols, block).mean(axis=(1, 3), dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(preview)), scale_map((height, width), (rows, cols))


def _to_tile_centre(plane: np.ndarray, axis: int, parity: int) -> np.ndarray:
    """Linear interpolation of one CFA colour's samples (one per tile, at offset parity − 1/2 from the tile's
    centre along ``axis``) to the tile centres: ¾ of the tile's sample + ¼ of its neighbour on the other side
    (the edge repeated)."""
    out = plane * 0.75
    head, tail = [slice(None)] * 2, [slice(None)] * 2
    head[axis], tail[axis] = slice(None, -1), slice(1, None)
    if parity == 0:  # the sample is before the centre: the neighbour after it
        out[tuple(head)] += 0.25 * plane[tuple(tail)]
    else:
        out[tuple(tail)] += 0.25 * plane[tuple(head)]
    edge = [slice(None)] * 2
    edge[axis] = slice(-1, None) if parity == 0 else slice(None, 1)
    out[tuple(edge)] += 0.25 * plane[tuple(edge)]
    return out


def _reduced(preview: torch.Tensor, to_preview: np.ndarray, scale: float) -> tuple[torch.Tensor, np.ndarray]:
    """The preview downscaled to ``scale`` of the Bayer grid, and the map Bayer → result."""
    small, to_small = downscale(preview, min(1.0, scale / to_preview[0, 0]))
    return small, to_small @ to_preview


def grey_jpg(
    path: str | Path, scale: float = 1.0, box: tuple[int, int, int, int] | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """The JPG at ``path`` in grey (ITU-R BT.601 luma, float32 in [0, 1]) at ``scale`` ≤ 1 of its pixel grid,
    and the 3×3 map from the JPG's pixel coordinates to the result's.

    ``box`` = (top, left, bottom, right) in the JPG's pixels keeps only that part (with ``scale``, the
    map includes the shift). Only the luma is decoded (the Y channel of a YCbCr JPG: the BT.601 luma of
    its RGB pixels), and for ``scale`` ≤ 1/4 the decoder itself reduces the image by the largest s of 2, 4
    and 8 with 1/s ≥ 2·``scale`` (libjpeg's DCT scaling, block by block: pixel i of the reduced image
    stands for pixels [s·i, s·i + s)); an anti-aliased downscale (:func:`ops.geometry.downscale`) of at
    least 2× does the rest, so the reduction's 8×8 blocks hardly show. Only the pixels kept become float:
    a 24-megapixel JPG is never turned into a float image as a whole.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: JPG does not exist")
    try:
        with Image.open(path) as image:
            width, height = image.size
            least = 2 * scale  # the decoder reduces no further than to twice the working scale
            request = (max(1, math.ceil(width * least)), max(1, math.ceil(height * least))) if least <= 0.5 else None
            drafted = image.draft("L", request)
            reduction = 1 if drafted is None else max(1, round(width / drafted[1][2]))
            pixels = np.array(image if image.mode == "L" else image.convert("L"))
    except UnidentifiedImageError as error:
        raise DatasetError(f"{path}: cannot read JPG ({error})") from error
    except OSError as error:
        raise DatasetError(f"{path}: cannot decode JPG ({error})") from error
    offset = 0.5 / reduction - 0.5
    to_pixels = np.array([[1 / reduction, 0.0, offset], [0.0, 1 / reduction, offset], [0.0, 0.0, 1.0]])
    if box is not None:
        top, left = box[0] // reduction, box[1] // reduction
        bottom, right = -(-box[2] // reduction), -(-box[3] // reduction)
        pixels = pixels[top:bottom, left:right]
        to_pixels = np.array([[1.0, 0.0, -left], [0.0, 1.0, -top], [0.0, 0.0, 1.0]]) @ to_pixels
    if pixels.size == 0:
        raise DatasetError(f"{path}: the part {box} of the {width}×{height} JPG is empty")
    grey = torch.from_numpy(np.ascontiguousarray(pixels)).to(torch.float32).div_(255.0)
    small, to_small = downscale(grey, min(1.0, scale * reduction))
    return small, to_small @ to_pixels


def estimate_raw_to_jpg(raw_path: str | Path, jpg_path: str | Path, registration_size: int = 2048) -> RawToJpg:
    """Register the raw at ``raw_path`` against its camera JPG (see the module docstring)."""
    jpg = read_jpg_metadata(jpg_path)
    raw, mosaic = read_raw_mosaic(raw_path)
    _check_aspect(raw, jpg)
    fixed_scale = min(1.0, registration_size / max(raw.size))
    fixed, fixed_from_bayer = _reduced(*_preview(raw, mosaic, fixed_scale), fixed_scale)
    del mosaic
    moving, to_moving = grey_jpg(jpg.path, min(1.0, fixed_scale * max(raw.size) / max(jpg.size)))
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
    scale = min(1.0, working_size / max(raw.size))
    fixed, fixed_from_bayer = _reduced(*_preview(raw, mosaic, scale), scale)
    jpg = read_jpg_metadata(jpg_path)
    moving, to_moving = grey_jpg(jpg.path, min(1.0, working_size / max(jpg.size)))
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
