"""Per-scene preprocessing of an SR-RAW zoom sequence (reference §3), cached as JSON.

For every shot k of a scene the result (:class:`ShotAlignment`) holds ``ref_to_shot``: a 3×3 matrix
mapping homogeneous pixel coordinates of the reference shot (the first shot in name order, ``00001``,
the longest focal length) to pixel coordinates of shot k (x = column, y = row, pixel centres at
integers, full-resolution **JPG** pixels). It includes the true scale offset between the shots. It also
holds ``raw_to_jpg``, the shot's Bayer → JPG map (a camera's JPG is a crop of its sensor image; estimated
once per camera, :mod:`datamodules.srraw.camera_geometry`).

How ``ref_to_shot`` is obtained:

* ``tform.txt`` next to the data (the official ECC result): converted by
  :func:`datamodules.srraw.official.tform_to_ref_to_shot`;
* otherwise computed: FOV matching by the EXIF focal ratio r = f(ref)/f(k) gives the initial guess
  x_k = c_k + (x_ref − c_ref)/r (optical centre at the image centre, c = ((W−1)/2, (H−1)/2)); the
  reference's footprint in the shot is cut out and resampled with it onto the reference's grid at a
  working resolution (longer side of the reference ≤ ``registration_size``) and
  :func:`ops.registration.register_similarity` estimates the remaining similarity, robust to exposure and
  colour drift. ``score`` is the correlation coefficient of the grey reference and the aligned shot
  over their overlap (also computed for ``tform.txt``).

What a similarity cannot fit (parallax, a perspective change between shots, lens distortion) is measured
and reported: ``residual_px`` is the 90th percentile of the local shifts left after alignment
(:func:`ops.local_shifts.local_shifts` on 64-pixel tiles, half overlapping), measured at the resolution the shot itself has
over the reference's footprint (never on an upsampled shot) and given in the shot's pixels; shots above
:data:`LARGE_RESIDUAL_PX` are logged.

The raw's metadata is read without demosaicing or copying its pixels (rawpy, up to 0.28 at least, still
unpacks a raw's pixels into LibRaw's buffer when its CFA pattern, levels or white balance are first read:
about 0.1 s per 24-megapixel DNG). A scene with a single shot or a shot without a
focal length is skipped (:class:`SceneSkipped`) and reported. The cache
``<scene>/rawzoom_alignment.json`` (or ``<cache_dir>/<scene name>/rawzoom_alignment.json``) stores a format
version, the registration parameters and the size and modification time of every source file (raws,
JPGs, ``tform.txt``, ``wb.txt``); any change makes it stale. It is written atomically, one scene at a
time, so an interrupted preparation resumes; a scene whose preprocessing fails keeps no cache.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from datamodules.common.atomic import write_json_atomic
from datamodules.common.capture import Capture, find_jpg
from datamodules.common.errors import DatasetError
from datamodules.common.images import read_jpg_metadata
from datamodules.common.raw import read_raw_metadata
from datamodules.srraw.camera_geometry import CameraGeometries, grey_jpg
from datamodules.srraw.layout import SceneLocation, list_shots
from datamodules.srraw.official import read_tform_file, read_wb_file, tform_to_ref_to_shot
from ops.geometry import downscale, map_points, warp_image
from ops.local_shifts import local_shifts
from ops.registration import masked_correlation, register_similarity

__all__ = [
    "ALIGNMENT_FORMAT_VERSION",
    "ALIGNMENT_CACHE_NAME",
    "SceneSkipped",
    "ShotAlignment",
    "SceneAlignment",
    "PrepareReport",
    "alignment_cache_path",
    "align_scene",
    "prepare_alignments",
    "load_alignment",
]

log = logging.getLogger(__name__)

ALIGNMENT_FORMAT_VERSION = 2
ALIGNMENT_CACHE_NAME = "rawzoom_alignment.json"
TFORM_FILE, WB_FILE = "tform.txt", "wb.txt"
#: Below this registration score a shot is reported as probably misaligned.
LOW_SCORE = 0.5
#: Above this residual misalignment (the shot's pixels, 90th percentile over tiles) a shot is reported.
LARGE_RESIDUAL_PX = 1.0
_RESIDUAL_TILE = 64


class SceneSkipped(DatasetError):
    """A scene that is no zoom sequence (a single shot, a shot without a focal length): it is skipped and
    listed in the preparation report, or with ``strict`` an error."""


@dataclass(frozen=True)
class ShotAlignment:
    """Everything the pair sampler needs about one shot (paths are absolute, sizes are (H, W)).

    ``ref_to_shot`` maps reference JPG pixels to this shot's JPG pixels, ``raw_to_jpg`` this shot's Bayer
    pixels to its JPG pixels (its camera's map, :mod:`datamodules.srraw.camera_geometry`). ``residual_px``
    is what the similarity could not fit: the 90th percentile over tiles of the local misalignment left
    after alignment, in this shot's pixels (tile averages over 64 pixels: it reads lower than the worst
    point; NaN where it cannot be measured: no texture, or a footprint
    of the reference too small for two tiles in a wide shot). The two white balances are
    different quantities, kept apart: ``camera_white_balance`` the raw's as-shot multipliers (R, G, B),
    G = 1; ``official_white_balance`` the ratio of two rawpy renders that SR-RAW's ``wb.txt`` holds (None
    when the scene has no ``wb.txt`` entry for the shot).
    """

    name: str
    raw_path: Path
    jpg_path: Path
    focal_length: float
    ref_to_shot: tuple[tuple[float, float, float], ...]
    alignment_source: Literal["reference", "registration", "tform.txt"]
    score: float
    residual_px: float
    raw_to_jpg: tuple[tuple[float, float, float], ...]
    camera: str
    camera_white_balance: tuple[float, float, float]
    official_white_balance: tuple[float, float, float] | None
    pattern: str
    black_levels: tuple[float, float, float, float]
    white_level: float
    raw_size: tuple[int, int]
    jpg_size: tuple[int, int]

    @property
    def matrix(self) -> np.ndarray:
        """``ref_to_shot`` as a (3, 3) float64 array."""
        return np.array(self.ref_to_shot, dtype=np.float64)

    @property
    def bayer_to_jpg(self) -> np.ndarray:
        """``raw_to_jpg`` as a (3, 3) float64 array."""
        return np.array(self.raw_to_jpg, dtype=np.float64)


@dataclass(frozen=True)
class SceneAlignment:
    """The aligned shots of one scene, by name; ``reference`` is the shot all matrices start from."""

    name: str
    directory: Path
    reference: str
    shots: dict[str, ShotAlignment]


@dataclass
class PrepareReport:
    """What :func:`prepare_alignments` did: scenes computed now, scenes already current, scenes skipped (reason)."""

    computed: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


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


def _fov_guess(reference: Capture, shot: Capture) -> np.ndarray:
    """ref → shot pixel coords from the focal ratio r, optical centres at the image centres: x_k = c_k + (x − c)/r."""
    ratio = reference.focal_length / shot.focal_length
    (rh, rw), (sh, sw) = reference.jpg.size, shot.jpg.size
    return np.array(
        [[1 / ratio, 0.0, (sw - 1) / 2 - (rw - 1) / 2 / ratio], [0.0, 1 / ratio, (sh - 1) / 2 - (rh - 1) / 2 / ratio], [0.0, 0.0, 1.0]]
    )


class _Registrar:
    """Registers shots against one reference at a working resolution (see the module docstring).

    The reference is worked on at scale σ = min(1, registration_size / its longer side). Of shot k only the
    reference's footprint (by the focal ratio r_k, with a 10 % margin) is cut out, then worked on at
    min(1, σ·r_k), so that the reference's field of view has about the same number of pixels in both.
    Both are grey JPGs read at that scale (:func:`~datamodules.srraw.camera_geometry.grey_jpg`: the luma
    only, reduced by the JPEG decoder where the scale allows; only the footprint becomes float).
    """

    def __init__(self, reference: Capture, registration_size: int) -> None:
        self.reference = reference
        self.scale = min(1.0, registration_size / max(reference.jpg.size))
        self.fixed, self.to_fixed = grey_jpg(reference.jpg.path, self.scale)

    def _moving(self, shot: Capture) -> tuple[torch.Tensor, np.ndarray]:
        """The shot's grey footprint of the reference at working scale, and its map from shot pixels."""
        height, width = self.reference.jpg.size
        corners = torch.tensor([[-0.1 * width, 1.1 * width]], dtype=torch.float64).expand(2, 2)
        rows = torch.tensor([[-0.1 * height], [1.1 * height]], dtype=torch.float64).expand(2, 2)
        xs, ys = map_points(_fov_guess(self.reference, shot), corners, rows)
        top, left = max(0, int(ys.min())), max(0, int(xs.min()))
        bottom, right = min(shot.jpg.size[0], int(ys.max()) + 2), min(shot.jpg.size[1], int(xs.max()) + 2)
        scale = min(1.0, self.scale * self.reference.focal_length / shot.focal_length)
        return grey_jpg(shot.jpg.path, scale, (top, left, bottom, right))

    def _aligned(self, moving: torch.Tensor, to_moving: np.ndarray, ref_to_shot: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return warp_image(moving, to_moving @ ref_to_shot @ np.linalg.inv(self.to_fixed), tuple(self.fixed.shape))

    def _measure(self, moving: torch.Tensor, to_moving: np.ndarray, ref_to_shot: np.ndarray) -> tuple[float, float]:
        """(score, residual_px): correlation with the reference, and the local misalignment left (shot px)."""
        aligned, inside = self._aligned(moving, to_moving, ref_to_shot)
        score = masked_correlation(self.fixed, aligned, inside)
        # shot pixels per working pixel: 1/σ reference px, each ‖A‖ shot px; measure where the shot is not upsampled
        shot_per_working = float(np.sqrt(abs(np.linalg.det(ref_to_shot[:2, :2])))) / self.scale
        factor = min(1.0, shot_per_working)
        fixed, _ = downscale(self.fixed, factor)
        aligned, _ = downscale(torch.where(inside, aligned, self.fixed), factor)
        if min(fixed.shape) < 2 * _RESIDUAL_TILE:
            return score, float("nan")
        _, shifts = local_shifts(fixed, aligned, tile=_RESIDUAL_TILE)
        lengths = shifts.norm(dim=1)
        lengths = lengths[torch.isfinite(lengths)]
        if not lengths.numel():
            return score, float("nan")
        return score, float(torch.quantile(lengths, 0.9)) * shot_per_working / factor

    def register(self, shot: Capture) -> tuple[np.ndarray, float, float]:
        """``ref_to_shot`` of ``shot``, its score and residual."""
        moving, to_moving = self._moving(shot)
        guess = to_moving @ _fov_guess(self.reference, shot) @ np.linalg.inv(self.to_fixed)
        resampled, _ = warp_image(moving, guess, tuple(self.fixed.shape))
        residual = register_similarity(self.fixed, resampled).matrix.numpy()  # fixed → resampled
        ref_to_shot = np.linalg.inv(to_moving) @ guess @ residual @ self.to_fixed
        return (ref_to_shot, *self._measure(moving, to_moving, ref_to_shot))

    def measure(self, shot: Capture, ref_to_shot: np.ndarray) -> tuple[float, float]:
        """Score and residual of ``shot`` aligned by a given ``ref_to_shot``."""
        return self._measure(*self._moving(shot), ref_to_shot)


def _capture(raw_path: Path, scene: SceneLocation) -> Capture:
    """Metadata of one shot (the pixels are not decoded); a missing focal length skips the scene."""
    raw = read_raw_metadata(raw_path)
    jpg = read_jpg_metadata(find_jpg(raw.path))
    focal = jpg.focal_length if jpg.focal_length is not None else raw.focal_length
    if focal is None:
        raise SceneSkipped(f"{jpg.path}: no EXIF focal length (tag 37386) in it or in {raw.path.name}; scene {scene.name!r} skipped")
    return Capture(raw=raw, jpg=jpg, focal_length=focal)


def align_scene(
    scene: SceneLocation, registration_size: int = 768, cameras: CameraGeometries | None = None
) -> SceneAlignment:
    """Compute the alignment of every shot of ``scene`` to its reference shot (no caching).

    Raises :class:`SceneSkipped` for a scene with fewer than two shots or a shot without a focal length,
    :class:`DatasetError` for bad files. ``cameras`` holds the raw → JPG maps (default: estimated and
    cached next to the scene folder).
    """
    raws = list_shots(scene.directory)
    if len(raws) < 2:
        raise SceneSkipped(f"{scene.directory}: scene {scene.name!r} has {len(raws)} shot; a zoom scene needs ≥ 2 focal lengths")
    cameras = cameras if cameras is not None else CameraGeometries(scene.directory.parent)
    captures = {name: _capture(path, scene) for name, path in raws.items()}
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
            matrix, source, score, residual = np.eye(3), "reference", 1.0, 0.0
        elif position in tforms:
            try:
                matrix = tform_to_ref_to_shot(tforms[position], reference.jpg.size, capture.jpg.size, ratio, rotated)
            except ValueError as error:
                raise DatasetError(f"{tform_path}: entry {position} ({name}): {error}") from error
            source = "tform.txt"
            score, residual = registrar.measure(capture, matrix)
        else:
            matrix, score, residual = registrar.register(capture)
            source = "registration"
        if score < LOW_SCORE:
            log.warning("%s: alignment of %s to %s is doubtful (score %.3f)", scene.directory, name, reference_name, score)
        if residual > LARGE_RESIDUAL_PX:
            log.warning(
                "%s: %s keeps a local misalignment of %.1f px after alignment to %s (parallax, perspective)",
                scene.directory, name, residual, reference_name,
            )
        camera = cameras.get(capture.raw, capture.jpg)
        shots[name] = ShotAlignment(
            name=name,
            raw_path=capture.raw.path,
            jpg_path=capture.jpg.path,
            focal_length=capture.focal_length,
            ref_to_shot=tuple(tuple(float(v) for v in row) for row in matrix),
            alignment_source=source,  # type: ignore[arg-type]
            score=float(score),
            residual_px=float(residual),
            raw_to_jpg=camera.matrix,
            camera=camera.camera,
            camera_white_balance=capture.raw.white_balance,
            official_white_balance=wb_gains.get(name),
            pattern=capture.raw.pattern,
            black_levels=capture.raw.black_levels,
            white_level=capture.raw.white_level,
            raw_size=capture.raw.size,
            jpg_size=capture.jpg.size,
        )
    return SceneAlignment(name=scene.name, directory=scene.directory, reference=reference_name, shots=shots)


_PATH_FIELDS = ("raw_path", "jpg_path")


def _to_json(alignment: SceneAlignment) -> dict:
    shots = {}
    for name, shot in alignment.shots.items():
        entry = {key: getattr(shot, key) for key in ShotAlignment.__dataclass_fields__}
        entry.update({key: getattr(shot, key).name for key in _PATH_FIELDS})
        shots[name] = entry
    return {"scene": alignment.name, "reference": alignment.reference, "shots": shots}


def _from_json(data: dict, scene: SceneLocation) -> SceneAlignment:
    shots = {}
    for name, entry in data["shots"].items():
        values = dict(entry)
        values.update({key: scene.directory / entry[key] for key in _PATH_FIELDS})
        for key in ("ref_to_shot", "raw_to_jpg"):
            values[key] = tuple(tuple(float(v) for v in row) for row in entry[key])
        for key in ("camera_white_balance", "official_white_balance", "black_levels", "raw_size", "jpg_size"):
            values[key] = None if entry[key] is None else tuple(entry[key])
        shots[name] = ShotAlignment(**values)
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


def _prepare_scene(
    scene: SceneLocation, path: Path, cameras_folder: Path, registration_size: int
) -> tuple[str, str | None]:
    """Align one scene and write its cache (a record of the skip for a skipped scene); (name, skip reason)."""
    torch.set_num_threads(1)
    header = {"format_version": ALIGNMENT_FORMAT_VERSION, "registration_size": registration_size}
    try:
        fingerprint = _fingerprint(scene.directory)
        alignment = align_scene(scene, registration_size, CameraGeometries(cameras_folder))
    except SceneSkipped as skipped:
        write_json_atomic(path, {**header, "sources": _fingerprint(scene.directory), "skipped": str(skipped)})
        return scene.name, str(skipped)
    except Exception:
        path.unlink(missing_ok=True)
        raise
    write_json_atomic(path, {**header, "sources": fingerprint, **_to_json(alignment)})
    return scene.name, None


def prepare_alignments(
    scenes: list[SceneLocation],
    cache_dir: str | Path | None = None,
    registration_size: int = 768,
    *,
    workers: int = 1,
    strict: bool = False,
    progress: bool = True,
    cameras_folder: str | Path | None = None,
) -> PrepareReport:
    """Compute and cache the alignment of every scene whose cache is missing or stale.

    Each scene is written atomically on its own, so an interrupted run resumes where it stopped. Scenes
    that are no zoom sequence are skipped (their cache records why) and listed in the report; with
    ``strict`` the first of them raises :class:`SceneSkipped`. A scene whose files are bad raises
    :class:`DatasetError` naming the file, after removing its stale cache. ``workers`` > 1 aligns scenes in
    that many processes. The raw → JPG maps of the cameras go to ``cameras_folder`` (default: ``cache_dir``,
    else the folder above the first scene).
    """
    report = PrepareReport()
    todo = []
    for scene in scenes:
        path = alignment_cache_path(scene, cache_dir)
        data = _read_cache(path)
        if not _is_current(data, scene, registration_size):
            todo.append((scene, path))
        elif "skipped" in data:
            report.skipped[scene.name] = data["skipped"]
        else:
            report.current.append(scene.name)
    if not todo:
        return report
    folder = Path(cameras_folder if cameras_folder is not None else cache_dir if cache_dir is not None else todo[0][0].directory.parent)
    bar = tqdm(total=len(todo), desc="SR-RAW alignment", unit="scene", disable=not progress)
    jobs = [(scene, path, folder, registration_size) for scene, path in todo]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for outcome in pool.map(_prepare_scene, *zip(*jobs)):
                _record(report, outcome, strict, bar)
    else:
        threads = torch.get_num_threads()
        try:
            for job in jobs:
                _record(report, _prepare_scene(*job), strict, bar)
        finally:
            torch.set_num_threads(threads)
    bar.close()
    return report


def _record(report: PrepareReport, outcome: tuple[str, str | None], strict: bool, bar: tqdm) -> None:
    name, skipped = outcome
    bar.update()
    if skipped is None:
        report.computed.append(name)
        return
    if strict:
        raise SceneSkipped(skipped)
    log.warning("SR-RAW scene skipped: %s", skipped)
    report.skipped[name] = skipped


def load_alignment(
    scene: SceneLocation, cache_dir: str | Path | None = None, registration_size: int = 768
) -> SceneAlignment | None:
    """Read the cached alignment of ``scene`` (None for a skipped scene); :class:`DatasetError` if it is missing or stale."""
    path = alignment_cache_path(scene, cache_dir)
    data = _read_cache(path)
    if not _is_current(data, scene, registration_size):
        state = "missing" if data is None else "stale (a source file changed)"
        raise DatasetError(f"{path}: alignment cache of scene {scene.name!r} is {state}; run prepare_data() first")
    if "skipped" in data:  # type: ignore[operator]
        return None
    return _from_json(data, scene)  # type: ignore[arg-type]
