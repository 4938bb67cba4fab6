"""A simulated SR-RAW capture session, written in SR-RAW's on-disk layout.

::

    <out>/simulation.json                 {"format": 3, "dataset": "srraw", "config": SRRAWSimulation.to_dict()}
    <out>/<scene>/<shot>.DNG              12- or 14-bit Bayer raw (any of the four CFA orders), EXIF
                                          FocalLength and Orientation; shot 00001 = longest focal
    <out>/<scene>/<shot>.JPG              the camera's rendering of the same capture: a centred crop of the
                                          sensor (``jpeg_border`` px cut from every side), same Orientation
    <out>/<scene>/simulation_truth.json   true geometry and photometry of every shot

``simulation_truth.json``::

    {"format": 3, "scene": "00001", "reference": "00001", "width": W, "height": H,
     "black_level": 512, "white_level": 16383, "cfa_pattern": "RGGB", "orientation": 1 | 6 | 8,
     "jpeg_box": [top, left, height, width] (the JPG's part of the sensor image),
     "camera_to_srgb": 3×3, "optical_centre": [(W−1)/2, (H−1)/2],
     "shots": {"00001": {"focal_exif", "focal_true", "scale_deviation", "ref_to_shot": 3×3,
                         "rotation_deg", "translation_px": [tx, ty], "perspective": [κx, κy],
                         "warp": {"model": "sum_of_sinusoids", "components": [...]},
                         "exposure", "tint": [r, g, b], "wb_gains": [r, 1, b]}, ...}}

All geometry (``ref_to_shot``, the warp, the optical centre) is in **sensor** pixels; a JPG pixel (x, y)
is the sensor pixel (x + left, y + top).

``focal_true = focal_exif·(1 + scale_deviation)``; ``ref_to_shot`` and ``warp`` follow
:mod:`datamodules.simulate.geometry` (evaluate them with
:func:`~datamodules.simulate.geometry.shot_mapping`); exposure, tint and gains follow
:mod:`datamodules.simulate.camera`. Shot 00001 is the reference: scale deviation 0, identity mapping,
no warp.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datamodules.common.atomic import atomic_directory
from datamodules.simulate.camera import (
    CAMERA_TO_SRGB,
    SENSOR_LEVELS,
    XYZ_TO_CAMERA,
    ShotPhotometry,
    camera_isp,
    capture_mosaic,
    lens_blur,
)
from datamodules.simulate.config import SRRAWSimulation
from datamodules.simulate.dng import write_dng
from datamodules.simulate.geometry import ShotGeometry, WarpComponent
from datamodules.simulate.jpeg import JPEG_SUBSAMPLINGS, write_camera_jpeg
from datamodules.simulate.scene import ProceduralScene
from datamodules.simulate.threads import single_torch_thread

__all__ = ["FORMAT_VERSION", "SimulatedShot", "draw_session", "simulate_srraw"]

#: Bumped whenever the same configuration would write different data (2: box-exact anti-aliasing, lens PSF;
#: 3: CFA orders, bit depths, JPG crop, orientation, perspective).
FORMAT_VERSION = 3
CFA_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
WARP_COMPONENTS = 3


@dataclass(frozen=True)
class SimulatedShot:
    """Everything drawn for one shot of a scene."""

    name: str
    focal_exif: float
    scale_deviation: float
    geometry: ShotGeometry
    photometry: ShotPhotometry

    @property
    def focal_true(self) -> float:
        return self.focal_exif * (1.0 + self.scale_deviation)

    def truth(self) -> dict:
        """This shot's entry in ``simulation_truth.json``."""
        return {
            "focal_exif": self.focal_exif,
            "focal_true": self.focal_true,
            "scale_deviation": self.scale_deviation,
            "ref_to_shot": self.geometry.ref_to_shot().tolist(),
            "rotation_deg": self.geometry.rotation_deg,
            "translation_px": list(self.geometry.translation_px),
            "perspective": list(self.geometry.perspective),
            "warp": {"model": "sum_of_sinusoids", "components": self.geometry.warp_dicts()},
            "exposure": self.photometry.exposure,
            "tint": list(self.photometry.tint),
            "wb_gains": list(self.photometry.wb_gains),
        }


def _draw_warp(rng: np.random.Generator, max_warp_px: float) -> tuple[WarpComponent, ...]:
    """Three sinusoids of 0.5–2 cycles per frame whose amplitudes sum to 50–100 % of ``max_warp_px``."""
    weights = rng.uniform(0.2, 1.0, size=WARP_COMPONENTS)
    amplitudes = max_warp_px * rng.uniform(0.5, 1.0) * weights / weights.sum()
    components = []
    for amplitude in amplitudes:
        direction, frequency_angle = rng.uniform(0, 2 * math.pi, size=2)
        cycles = rng.uniform(0.5, 2.0)
        components.append(
            WarpComponent(
                amplitude_px=float(amplitude),
                direction=(math.cos(direction), math.sin(direction)),
                frequency=(cycles * math.cos(frequency_angle), cycles * math.sin(frequency_angle)),
                phase=float(rng.uniform(0, 2 * math.pi)),
            )
        )
    return tuple(components)


def draw_session(config: SRRAWSimulation, rng: np.random.Generator) -> list[SimulatedShot]:
    """Draw the geometry and photometry of every shot of one scene, longest focal first.

    Scale deviation, rotation, translation (uniform in a disc) and perspective (moving the shot's own
    corners by up to ``max_perspective_px``) are bounded by the config's ``max_*`` values; shot 00001 has
    none of them (it defines the world frame). White-balance gains:
    one illuminant per scene (R in [1.7, 2.4], B in [1.3, 2.0]) with ±2 % per shot, rounded to 1e-4.
    """
    base_red, base_blue = rng.uniform(1.7, 2.4), rng.uniform(1.3, 2.0)
    shots: list[SimulatedShot] = []
    for index, focal in enumerate(config.focal_lengths):
        reference = index == 0
        deviation = 0.0 if reference else float(rng.uniform(-1, 1) * config.max_scale_deviation)
        rotation = 0.0 if reference else float(rng.uniform(-1, 1) * config.max_rotation_deg)
        radius = 0.0 if reference else config.max_translation_px * math.sqrt(rng.uniform())
        angle = rng.uniform(0, 2 * math.pi)
        warp = () if reference else _draw_warp(rng, config.max_warp_px)
        focal_true = focal * (1 + deviation)
        scale = focal_true / config.focal_lengths[0]
        # |κ|·d²/s px at the shot's corners (half-diagonal d, reference-to-shot scale s)
        tilt, strength = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 1.0) * config.max_perspective_px
        kappa = 0.0 if reference else strength * scale / (0.25 * (config.width**2 + config.height**2))
        geometry = ShotGeometry(
            width=config.width,
            height=config.height,
            scale=scale,
            rotation_deg=rotation,
            translation_px=(radius * math.cos(angle), radius * math.sin(angle)),
            perspective=(kappa * math.cos(tilt), kappa * math.sin(tilt)),
            warp=warp,
        )
        jitter = rng.uniform(0.98, 1.02, size=2)
        photometry = ShotPhotometry(
            exposure=float(1 + rng.uniform(-1, 1) * config.max_exposure_drift),
            tint=tuple(float(t) for t in 1 + rng.uniform(-1, 1, size=3) * config.max_tint_drift),
            wb_gains=(round(base_red * jitter[0], 4), 1.0, round(base_blue * jitter[1], 4)),
        )
        shots.append(SimulatedShot(f"{index + 1:05d}", float(focal), deviation, geometry, photometry))
    return shots


def _check_config(config: SRRAWSimulation) -> None:
    problems = []
    if config.scenes < 1:
        problems.append(f"scenes must be ≥ 1, got {config.scenes}")
    if config.width % 2 or config.height % 2 or min(config.width, config.height) < 16:
        problems.append(f"width and height must be even and ≥ 16, got {config.width}×{config.height}")
    focals = list(config.focal_lengths)
    if not focals or min(focals) <= 0 or any(a <= b for a, b in itertools.pairwise(focals)):
        problems.append(f"focal_lengths must be positive and strictly decreasing (longest first), got {focals}")
    if not 1 <= config.jpeg_quality <= 100:
        problems.append(f"jpeg_quality must be in 1…100, got {config.jpeg_quality}")
    if config.jpeg_subsampling not in JPEG_SUBSAMPLINGS:
        problems.append(f"jpeg_subsampling must be one of {JPEG_SUBSAMPLINGS}, got {config.jpeg_subsampling!r}")
    if config.lens_blur < 0:
        problems.append(f"lens_blur must be ≥ 0, got {config.lens_blur}")
    if config.luma_denoise < 0 or config.chroma_denoise < 0:
        problems.append(f"luma_denoise and chroma_denoise must be ≥ 0, got {config.luma_denoise}, {config.chroma_denoise}")
    if not 0 <= config.max_scale_deviation < 0.5:
        problems.append(f"max_scale_deviation must be in [0, 0.5), got {config.max_scale_deviation}")
    if config.cfa_pattern not in CFA_PATTERNS:
        problems.append(f"cfa_pattern must be one of {CFA_PATTERNS}, got {config.cfa_pattern!r}")
    if config.bit_depth not in SENSOR_LEVELS:
        problems.append(f"bit_depth must be one of {tuple(SENSOR_LEVELS)}, got {config.bit_depth}")
    if not 0 <= config.jpeg_border < min(config.width, config.height) // 4:
        problems.append(f"jpeg_border must be in [0, min(width, height)/4), got {config.jpeg_border}")
    if not 0 <= config.portrait_fraction <= 1 or config.max_perspective_px < 0:
        problems.append(
            f"portrait_fraction must be in [0, 1] and max_perspective_px ≥ 0, got {config.portrait_fraction}, "
            f"{config.max_perspective_px}"
        )
    if problems:
        raise ValueError("invalid SRRAWSimulation: " + "; ".join(problems))


def _write_scene(folder: Path, name: str, config: SRRAWSimulation, index: int, bar: tqdm) -> None:
    """Render, capture and write every shot of scene ``index`` (1-based) into ``folder``."""
    folder.mkdir()
    extent = config.width * config.focal_lengths[0] / config.focal_lengths[-1]
    scene = ProceduralScene(np.random.default_rng([config.seed, index, 0]), extent)
    shots = draw_session(config, np.random.default_rng([config.seed, index, 1]))
    noise_rng = np.random.default_rng([config.seed, index, 2])
    pose = np.random.default_rng([config.seed, index, 3])
    orientation = (6 if pose.uniform() < 0.5 else 8) if pose.uniform() < config.portrait_fraction else 1
    black, white = SENSOR_LEVELS[config.bit_depth]
    border = config.jpeg_border
    for shot in shots:
        x, y = shot.geometry.world_grid()
        linear = lens_blur(scene.render(x, y, shot.geometry.footprint), config.lens_blur)
        mosaic = capture_mosaic(
            linear, shot.photometry, config.shot_noise, config.read_noise, noise_rng, config.cfa_pattern, black, white
        )
        write_dng(
            folder / f"{shot.name}.DNG",
            mosaic,
            pattern=config.cfa_pattern,
            black_level=black,
            white_level=white,
            wb_gains=shot.photometry.wb_gains,
            xyz_to_camera=XYZ_TO_CAMERA,
            focal_length=shot.focal_exif,
            orientation=orientation,
        )
        jpg = camera_isp(
            mosaic,
            shot.photometry.wb_gains,
            luma_denoise=config.luma_denoise,
            chroma_denoise=config.chroma_denoise,
            pattern=config.cfa_pattern,
            black_level=black,
            white_level=white,
        )
        jpg = jpg[border : config.height - border, border : config.width - border]
        write_camera_jpeg(
            folder / f"{shot.name}.JPG",
            np.ascontiguousarray(jpg),
            shot.focal_exif,
            config.jpeg_quality,
            config.jpeg_subsampling,
            orientation=orientation,
        )
        bar.update()
    truth = {
        "format": FORMAT_VERSION,
        "scene": name,
        "reference": shots[0].name,
        "width": config.width,
        "height": config.height,
        "black_level": black,
        "white_level": white,
        "cfa_pattern": config.cfa_pattern,
        "orientation": orientation,
        "jpeg_box": [border, border, config.height - 2 * border, config.width - 2 * border],
        "camera_to_srgb": CAMERA_TO_SRGB.tolist(),
        "optical_centre": list(shots[0].geometry.centre),
        "shots": {shot.name: shot.truth() for shot in shots},
    }
    (folder / "simulation_truth.json").write_text(json.dumps(truth, indent=2) + "\n")


def simulate_srraw(out: str | Path, config: SRRAWSimulation = SRRAWSimulation(), progress: bool = True) -> Path:
    """Write a simulated SR-RAW dataset to ``out`` (see the module docstring) and return ``out``.

    ``out`` must not exist or be an empty folder. Everything is written into a temporary sibling
    folder that is renamed to ``out`` only when complete, so an interrupted run leaves nothing behind.
    The same ``config`` always writes byte-identical files.
    """
    _check_config(config)
    out = Path(out)
    if out.exists():
        if not out.is_dir() or any(out.iterdir()):
            raise FileExistsError(f"{out}: refusing to overwrite an existing non-empty path with simulated data")
        out.rmdir()
    with atomic_directory(out) as tmp, single_torch_thread():
        manifest = {"format": FORMAT_VERSION, "dataset": "srraw", "config": config.to_dict()}
        (tmp / "simulation.json").write_text(json.dumps(manifest, indent=2) + "\n")
        total = config.scenes * len(config.focal_lengths)
        with tqdm(total=total, desc="simulating SR-RAW", unit="shot", disable=not progress) as bar:
            for index in range(1, config.scenes + 1):
                name = f"{index:05d}"
                _write_scene(tmp / name, name, config, index, bar)
    return out
