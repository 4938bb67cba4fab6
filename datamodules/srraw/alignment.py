"""Per-scene preprocessing of an SR-RAW zoom sequence (reference §3), cached as JSON.

For every shot k of a scene the result (:class:`ShotAlignment`) holds ``ref_to_shot``: a 3×3 matrix
mapping homogeneous pixel coordinates of the reference shot (the first shot in name order, ``00001``,
the longest focal length) to pixel coordinates of shot k (x = column, y = row, pixel centres at
integers, full-resolution **JPG** pixels). It includes the true scale offset between the shots.

How ``ref_to_shot`` is obtained:

* ``tform.txt`` next to the data (the official ECC result): converted by
  :func:`datamodules.srraw.official.tform_to_ref_to_shot`;
* otherwise computed: FOV matching by the EXIF focal ratio r = f(ref)/f(k) gives the initial guess
  x_k = c_k + (x_ref − c_ref)/r (optical centre at the image centre, c = ((W−1)/2, (H−1)/2)); the shot is
  resampled with it onto the reference's grid at a working resolution (longer side of the reference
  ≤ ``registration_size``) and :func:`ops.registration.register_similarity` estimates the
  remaining similarity, robust to exposure and colour drift. ``score`` is the correlation coefficient
  of the grey reference and the aligned shot over their overlap (also computed for ``tform.txt``).

White balance comes from ``wb.txt`` when it lists the shot, else from the raw's as-shot gains.

The cache ``<scene>/rawzoom_alignment.json`` (or ``<cache_dir>/<scene name>/rawzoom_alignment.json``)
stores a format version, the registration parameters and the size and modification time of every
source file (raws, JPGs, ``tform.txt``, ``wb.txt``); any change makes it stale. It is written
atomically, and a scene whose preprocessing fails keeps no cache.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from datamodules.common.atomic import write_json_atomic
from datamodules.common.capture import Capture, find_jpg, read_capture
from datamodules.common.errors import DatasetError
from datamodules.common.images import read_jpg
from datamodules.srraw.layout import SceneLocation, list_shots
from datamodules.srraw.official import read_tform_file, read_wb_file, tform_to_ref_to_shot
from ops.geometry import downscale, warp_image
from ops.registration import masked_correlation, register_similarity

__all__ = [
    "ALIGNMENT_FORMAT_VERSION",
    "ALIGNMENT_CACHE_NAME",
    "ShotAlignment",
    "SceneAlignment",
    "alignment_cache_path",
    "align_scene",
    "prepare_alignments",
    "load_alignment",
]

log = logging.getLogger(__name__)

ALIGNMENT_FORMAT_VERSION = 1
ALIGNMENT_CACHE_NAME = "rawzoom_alignment.json"
TFORM_FILE, WB_FILE = "tform.txt", "wb.txt"
#: Below this registration score a shot is reported as probably misaligned.
LOW_SCORE = 0.5


@dataclass(frozen=True)
class ShotAlignment:
    """Everything the pair sampler needs about one shot (paths are absolute, sizes are (H, W))."""

    name: str
    raw_path: Path
    jpg_path: Path
    focal_length: float
    ref_to_shot: tuple[tuple[float, float, float], ...]
    alignment_source: Literal["reference", "registration", "tform.txt"]
    score: float
    white_balance: tuple[float, float, float]
    white_balance_source: Literal["raw", "wb.txt"]
    pattern: str
    black_levels: tuple[float, float, float, float]
    white_level: float
    raw_size: tuple[int, int]
    jpg_size: tuple[int, int]

    @property
    def matrix(self) -> np.ndarray:
        """``ref_to_shot`` as a (3, 3) float64 array."""
        return np.array(self.ref_to_shot, dtype=np.float64)


@dataclass(frozen=True)
class SceneAlignment:
    """The aligned shots of one scene, by name; ``reference`` is the shot all matrices start from."""

    name: str
    directory: Path
    reference: str
    shots: dict[str, ShotAlignment]


def alignment_cache_path(scene: SceneLocation, cache_dir: str | Path | None = None) -> Path:
    """Where the cache of ``scene`` lives: next to the data, or under ``cache_dir``/<scene name>."""
    folder = scene.directory if cache_dir is None else Path(cache_dir) / scene.name
    return folder / ALIGNMENT_CACHE_NAME


def _fingerprint(directory: Path) -> dict[str, list[int]]:
    """(size, mtime in ns) of every source file of the scene, by file name."""
    files = []
    for raw in list_shots(directory).values():
        files.append(raw)
        try:
            files.append(find_jpg(raw))
        except DatasetError:
            pass  # reported by align_scene
    files += [directory / name for name in (TFORM_FILE, WB_FILE) if (directory / name).is_file()]
    return {path.name: [path.stat().st_size, path.stat().st_mtime_ns] for path in files}


def _grey(path: Path) -> torch.Tensor:
    """Luma (ITU-R BT.601 weights) of a JPG in [0, 1], (H, W)."""
    rgb = torch.from_numpy(read_jpg(path)).to(torch.float32)
    return (rgb @ torch.tensor([0.299, 0.587, 0.114])) / 255.0


def _fov_guess(reference: Capture, shot: Capture) -> np.ndarray:
    """ref → shot pixel coords from the focal ratio r, optical centres at the image centres: x_k = c_k + (x − c)/r."""
    ratio = reference.focal_length / shot.focal_length
    (rh, rw), (sh, sw) = reference.jpg.size, shot.jpg.size
    return np.array(
        [[1 / ratio, 0.0, (sw - 1) / 2 - (rw - 1) / 2 / ratio], [0.0, 1 / ratio, (sh - 1) / 2 - (rh - 1) / 2 / ratio], [0.0, 0.0, 1.0]]
    )


class _Registrar:
    """Registers shots against one reference at a working resolution (see the module docstring).

    The reference is worked on at scale σ = min(1, registration_size / its longer side), shot k at
    min(1, σ·r_k), so that the reference's field of view has about the same number of pixels in both.
    """

    def __init__(self, reference: Capture, registration_size: int) -> None:
        self.reference = reference
        self.scale = min(1.0, registration_size / max(reference.jpg.size))
        self.fixed, self.to_fixed = downscale(_grey(reference.jpg.path), self.scale)

    def _moving(self, shot: Capture) -> tuple[torch.Tensor, np.ndarray]:
        scale = min(1.0, self.scale * self.reference.focal_length / shot.focal_length)
        return downscale(_grey(shot.jpg.path), scale)

    def _correlation(self, moving: torch.Tensor, to_moving: np.ndarray, ref_to_shot: np.ndarray) -> float:
        resampled, inside = warp_image(moving, to_moving @ ref_to_shot @ np.linalg.inv(self.to_fixed), tuple(self.fixed.shape))
        return masked_correlation(self.fixed, resampled, inside)

    def register(self, shot: Capture) -> tuple[np.ndarray, float]:
        """``ref_to_shot`` of ``shot`` and its score."""
        moving, to_moving = self._moving(shot)
        guess = to_moving @ _fov_guess(self.reference, shot) @ np.linalg.inv(self.to_fixed)
        resampled, _ = warp_image(moving, guess, tuple(self.fixed.shape))
        residual = register_similarity(self.fixed, resampled).matrix.numpy()  # fixed → resampled
        ref_to_shot = np.linalg.inv(to_moving) @ guess @ residual @ self.to_fixed
        return ref_to_shot, self._correlation(moving, to_moving, ref_to_shot)

    def score(self, shot: Capture, ref_to_shot: np.ndarray) -> float:
        """Correlation coefficient of the grey reference and ``shot`` aligned by ``ref_to_shot``."""
        return self._correlation(*self._moving(shot), ref_to_shot)


def align_scene(scene: SceneLocation, registration_size: int = 768) -> SceneAlignment:
    """Compute the alignment of every shot of ``scene`` to its reference shot (no caching)."""
    raws = list_shots(scene.directory)
    if len(raws) < 2:
        raise DatasetError(f"{scene.directory}: scene {scene.name!r} has {len(raws)} shot; a zoom scene needs ≥ 2 focal lengths")
    captures = {name: read_capture(path) for name, path in raws.items()}
    reference_name = next(iter(captures))
    reference = captures[reference_name]
    tform_path, wb_path = scene.directory / TFORM_FILE, scene.directory / WB_FILE
    tforms = read_tform_file(tform_path) if tform_path.is_file() else {}
    wb_gains = read_wb_file(wb_path) if wb_path.is_file() else {}
    rotated = reference.jpg.orientation == 3
    registrar = _Registrar(reference, registration_size)
    shots = {}
    for position, (name, capture) in enumerate(captures.items(), 1):
        ratio = reference.focal_length / capture.focal_length
        if name == reference_name:
            matrix, source, score = np.eye(3), "reference", 1.0
        elif position in tforms:
            try:
                matrix = tform_to_ref_to_shot(tforms[position], reference.jpg.size, capture.jpg.size, ratio, rotated)
            except ValueError as error:
                raise DatasetError(f"{tform_path}: entry {position} ({name}): {error}") from error
            source, score = "tform.txt", registrar.score(capture, matrix)
        else:
            matrix, score = registrar.register(capture)
            source = "registration"
        if score < LOW_SCORE:
            log.warning("%s: alignment of %s to %s is doubtful (score %.3f)", scene.directory, name, reference_name, score)
        shots[name] = ShotAlignment(
            name=name,
            raw_path=capture.raw.path,
            jpg_path=capture.jpg.path,
            focal_length=capture.focal_length,
            ref_to_shot=tuple(tuple(float(v) for v in row) for row in matrix),
            alignment_source=source,  # type: ignore[arg-type]
            score=float(score),
            white_balance=wb_gains.get(name, capture.raw.white_balance),
            white_balance_source="wb.txt" if name in wb_gains else "raw",
            pattern=capture.raw.pattern,
            black_levels=capture.raw.black_levels,
            white_level=capture.raw.white_level,
            raw_size=capture.raw.size,
            jpg_size=capture.jpg.size,
        )
    return SceneAlignment(name=scene.name, directory=scene.directory, reference=reference_name, shots=shots)


def _to_json(alignment: SceneAlignment, fingerprint: dict, registration_size: int) -> dict:
    shots = {}
    for name, shot in alignment.shots.items():
        entry = {key: getattr(shot, key) for key in ShotAlignment.__dataclass_fields__}
        entry["raw_path"], entry["jpg_path"] = shot.raw_path.name, shot.jpg_path.name
        shots[name] = entry
    return {
        "format_version": ALIGNMENT_FORMAT_VERSION,
        "registration_size": registration_size,
        "scene": alignment.name,
        "reference": alignment.reference,
        "sources": fingerprint,
        "shots": shots,
    }


def _from_json(data: dict, scene: SceneLocation) -> SceneAlignment:
    shots = {}
    for name, entry in data["shots"].items():
        shots[name] = ShotAlignment(
            name=name,
            raw_path=scene.directory / entry["raw_path"],
            jpg_path=scene.directory / entry["jpg_path"],
            focal_length=float(entry["focal_length"]),
            ref_to_shot=tuple(tuple(float(v) for v in row) for row in entry["ref_to_shot"]),
            alignment_source=entry["alignment_source"],
            score=float(entry["score"]),
            white_balance=tuple(entry["white_balance"]),
            white_balance_source=entry["white_balance_source"],
            pattern=entry["pattern"],
            black_levels=tuple(entry["black_levels"]),
            white_level=float(entry["white_level"]),
            raw_size=tuple(entry["raw_size"]),
            jpg_size=tuple(entry["jpg_size"]),
        )
    return SceneAlignment(name=data["scene"], directory=scene.directory, reference=data["reference"], shots=shots)


def _read_cache(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _is_current(data: dict | None, scene: SceneLocation, registration_size: int) -> bool:
    return (
        isinstance(data, dict)
        and data.get("format_version") == ALIGNMENT_FORMAT_VERSION
        and data.get("registration_size") == registration_size
        and data.get("sources") == _fingerprint(scene.directory)
    )


def prepare_alignments(
    scenes: list[SceneLocation],
    cache_dir: str | Path | None = None,
    registration_size: int = 768,
    progress: bool = True,
) -> list[str]:
    """Compute and cache the alignment of every scene whose cache is missing or stale.

    Returns the names of the scenes that were (re)computed. A scene that fails raises
    :class:`DatasetError` naming the file, after removing its stale cache.
    """
    computed = []
    for scene in tqdm(scenes, desc="SR-RAW alignment", unit="scene", disable=not progress):
        path = alignment_cache_path(scene, cache_dir)
        if _is_current(_read_cache(path), scene, registration_size):
            continue
        try:
            fingerprint = _fingerprint(scene.directory)
            alignment = align_scene(scene, registration_size)
        except Exception:
            path.unlink(missing_ok=True)
            raise
        write_json_atomic(path, _to_json(alignment, fingerprint, registration_size))
        computed.append(scene.name)
    return computed


def load_alignment(scene: SceneLocation, cache_dir: str | Path | None = None, registration_size: int = 768) -> SceneAlignment:
    """Read the cached alignment of ``scene``; raise :class:`DatasetError` if it is missing or stale."""
    path = alignment_cache_path(scene, cache_dir)
    data = _read_cache(path)
    if not _is_current(data, scene, registration_size):
        state = "missing" if data is None else "stale (a source file changed)"
        raise DatasetError(f"{path}: alignment cache of scene {scene.name!r} is {state}; run prepare_data() first")
    return _from_json(data, scene)  # type: ignore[arg-type]
