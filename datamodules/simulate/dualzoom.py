"""A simulated phone dual camera (short-focus + telephoto), written as a dual-zoom dataset or as captures.

Geometry (x = column, y = row, pixel centres at integers, *stored* pixel order). World coordinates are
the telephoto's ideal pixel coordinates. Telephoto pixel q shows the world point u = q + d(q), d the
smooth parallax-like displacement (a sum of sinusoids, :func:`datamodules.simulate.geometry.warp_displacement`
over the telephoto frame); the short-focus camera shows u at

    x_s = A·u = c_s + (1/r)·R(θ)·(u − c_t) + t,

r the true focal ratio, θ the rotation, t the offset (short-focus pixels), c the frame centres. So
telephoto pixel q lands at x_s = A·(q + d(q)) in the short-focus frame (:func:`tele_to_short`). A pixel
renders the box-filtered scene over its footprint: 1 world unit for the telephoto, r for the
short-focus camera.

Cameras (:mod:`datamodules.simulate.camera`): lens blur → colour response → RGGB mosaic with
Poisson-Gaussian noise → ISP (demosaic, auto white balance, tone curve x^(1/γ)). The telephoto differs:
its own blur σ, a colour response C = diag(tint)·(sat·I + (1 − sat)·1·ℓᵀ) (ℓ = Rec. 709 luma weights),
its own γ and its own white-balance error, so its colours differ from the short-focus camera's.

Outputs (``DualZoomSimulation.output``)::

    "layout":   <out>/{train,test}_{LR,HR}/<names of the layout>.png
                LR = the short-focus camera's central (⌊H/r⌋ − 2·trim) × (⌊W/r⌋ − 2·trim) crop;
                HR = the telephoto camera rendered on the LR's s× grid (HR pixel h shows the scene at
                LR coordinates (h + 0.5)/s − 0.5): aligned exactly. Both through a JPEG round trip.
    "captures": <out>/short/IMG_0001.{DNG,JPG}, <out>/tele/IMG_0001.{DNG,JPG}, …  (for ``prepare``)
                EXIF Make, Model, Orientation (pixels not rotated), FocalLength, FocalLengthIn35mmFilm.
    both:       <out>/simulation.json        {"format", "dataset": "dualzoom", "config"}
                <out>/simulation_truth.json  {"format", "pairs": {name: truth}} (:meth:`SimulatedPair.truth`)
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image
from PIL.TiffImagePlugin import IFDRational
from tqdm import tqdm

from datamodules.common.atomic import atomic_directory
from datamodules.dualzoom.layout import LAYOUT_SCALES, pair_file_names, split_folders, write_png
from datamodules.simulate.camera import (
    BLACK_LEVEL,
    CFA_PATTERN,
    WHITE_LEVEL,
    XYZ_TO_CAMERA,
    ShotPhotometry,
    camera_isp,
    capture_mosaic,
    lens_blur,
)
from datamodules.simulate.dng import rational
from datamodules.simulate.dualzoom_config import DualZoomSimulation
from datamodules.simulate.geometry import WarpComponent, warp_displacement
from datamodules.simulate.scene import ProceduralScene
from datamodules.simulate.threads import single_torch_thread
from ops.geometry import scale_map

__all__ = [
    "FORMAT_VERSION",
    "CameraDraw",
    "SimulatedPair",
    "draw_pair",
    "lr_box",
    "tele_to_short",
    "short_to_tele",
    "orient_points",
    "simulate_dualzoom",
]

#: Bumped whenever the same configuration would write different data.
FORMAT_VERSION = 1
MAKE = "rawzoom"
MODELS = {"short": "dual-zoom simulator short-focus", "tele": "dual-zoom simulator telephoto"}
PARALLAX_COMPONENTS = 3
_LUMA = np.array([0.2126, 0.7152, 0.0722])
_EXIF_IFD = 0x8769


@dataclass(frozen=True)
class CameraDraw:
    """One camera of one pair: exposure, the illuminant cast it sees and its auto-white-balance gains."""

    exposure: float
    illuminant_gains: tuple[float, float, float]
    wb_gains: tuple[float, float, float]
    focal_mm: float
    focal_35mm: int


@dataclass(frozen=True)
class SimulatedPair:
    """Everything drawn for one pair (one scene shot by both cameras)."""

    name: str
    split: str
    zoom_true: float
    rotation_deg: float
    translation_px: tuple[float, float]
    parallax: tuple[WarpComponent, ...]
    orientation: int
    short: CameraDraw
    tele: CameraDraw

    def tele_to_short_matrix(self, width: int, height: int) -> np.ndarray:
        """A (3×3): world (ideal telephoto pixels) → short-focus pixels (module docstring)."""
        theta = math.radians(self.rotation_deg)
        linear = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]) / self.zoom_true
        centre = np.array([(width - 1) / 2, (height - 1) / 2])
        matrix = np.eye(3)
        matrix[:2, :2] = linear
        matrix[:2, 2] = centre - linear @ centre + np.array(self.translation_px)
        return matrix

    def truth(self, config: DualZoomSimulation) -> dict:
        """This pair's entry in ``simulation_truth.json`` (stored pixel order, both frames W × H)."""
        def camera(draw: CameraDraw, blur: float, gamma: float) -> dict:
            return {
                "exposure": draw.exposure, "illuminant_gains": list(draw.illuminant_gains),
                "wb_gains": list(draw.wb_gains), "focal_mm": draw.focal_mm, "focal_35mm": draw.focal_35mm,
                "lens_blur": blur, "gamma": gamma,
            }

        return {
            "split": self.split,
            "width": config.width,
            "height": config.height,
            "zoom_nominal": self.tele.focal_35mm / self.short.focal_35mm,
            "zoom_true": self.zoom_true,
            "rotation_deg": self.rotation_deg,
            "translation_px": list(self.translation_px),
            "tele_to_short": self.tele_to_short_matrix(config.width, config.height).tolist(),
            "parallax": {"model": "sum_of_sinusoids", "components": [c.to_dict() for c in self.parallax]},
            "orientation": self.orientation,
            "short": camera(self.short, config.short_lens_blur, config.short_gamma),
            "tele": camera(self.tele, config.tele_lens_blur, config.tele_gamma),
        }


# ------------------------------------------------------------------------------------ drawing


def _draw_parallax(rng: np.random.Generator, low: float, high: float) -> tuple[WarpComponent, ...]:
    """Three sinusoids of 0.5–2 cycles per frame whose amplitudes sum to U(low, high) pixels."""
    weights = rng.uniform(0.2, 1.0, size=PARALLAX_COMPONENTS)
    amplitudes = rng.uniform(low, high) * weights / weights.sum()
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


def _draw_camera(
    rng: np.random.Generator, config: DualZoomSimulation, illuminant: tuple[float, float, float], focal_mm: float,
    focal_35mm: int,
) -> CameraDraw:
    errors = 1 + rng.uniform(-1, 1, size=2) * config.max_wb_error
    return CameraDraw(
        exposure=float(1 + rng.uniform(-1, 1) * config.max_exposure_drift),
        illuminant_gains=illuminant,
        wb_gains=(round(illuminant[0] * errors[0], 4), 1.0, round(illuminant[2] * errors[1], 4)),
        focal_mm=focal_mm,
        focal_35mm=focal_35mm,
    )


def _pair_name(config: DualZoomSimulation, index: int) -> str:
    if config.output == "layout" and config.layout == "nikon":
        return f"DSC_{index:04d}"
    return f"IMG_{index:04d}"


def draw_pair(config: DualZoomSimulation, index: int) -> SimulatedPair:
    """The geometry and photometry of pair ``index`` (1-based; train pairs first), from seed (seed, index, 1)."""
    rng = np.random.default_rng([config.seed, index, 1])
    illuminant = (round(float(rng.uniform(1.7, 2.4)), 4), 1.0, round(float(rng.uniform(1.3, 2.0)), 4))
    radius = config.max_translation_px * math.sqrt(rng.uniform())
    angle = rng.uniform(0, 2 * math.pi)
    tele_35mm = round(config.short_focal_35mm * config.focal_ratio)
    tele_mm = round(config.short_focal_mm * config.focal_ratio * config.tele_sensor_scale, 2)
    return SimulatedPair(
        name=_pair_name(config, index),
        split="train" if index <= config.train_pairs else "test",
        zoom_true=float(config.focal_ratio * (1 + rng.uniform(-1, 1) * config.max_zoom_deviation)),
        rotation_deg=float(rng.uniform(-1, 1) * config.max_rotation_deg),
        translation_px=(radius * math.cos(angle), radius * math.sin(angle)),
        parallax=_draw_parallax(rng, *config.parallax_px),
        orientation=config.orientations[(index - 1) % len(config.orientations)],
        short=_draw_camera(rng, config, illuminant, config.short_focal_mm, config.short_focal_35mm),
        tele=_draw_camera(rng, config, illuminant, tele_mm, tele_35mm),
    )


# ------------------------------------------------------------------------------------ geometry


def _parallax(truth: dict, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d(q) at telephoto pixels ``points`` (..., 2)."""
    components = truth["parallax"]["components"]
    return warp_displacement(components, points[..., 0], points[..., 1], truth["width"], truth["height"])


def tele_to_short(truth: dict, points: np.ndarray) -> np.ndarray:
    """Where telephoto pixels ``points`` (..., 2) as (x, y) land in the short-focus frame: A·(q + d(q))."""
    points = np.asarray(points, dtype=np.float64)
    dx, dy = _parallax(truth, points)
    matrix = np.asarray(truth["tele_to_short"])
    world = np.stack([points[..., 0] + dx, points[..., 1] + dy], axis=-1)
    return world @ matrix[:2, :2].T + matrix[:2, 2]


def short_to_tele(truth: dict, points: np.ndarray, iterations: int = 8) -> np.ndarray:
    """Inverse of :func:`tele_to_short`: u = A⁻¹·x_s, then q = u − d(q) by fixed-point iteration."""
    points = np.asarray(points, dtype=np.float64)
    inverse = np.linalg.inv(np.asarray(truth["tele_to_short"]))
    world = points @ inverse[:2, :2].T + inverse[:2, 2]
    tele = world.copy()
    for _ in range(iterations):
        dx, dy = _parallax(truth, tele)
        tele = world - np.stack([dx, dy], axis=-1)
    return tele


def orient_points(points: np.ndarray, size: tuple[int, int], orientation: int, inverse: bool = False) -> np.ndarray:
    """Stored pixel coordinates (..., 2) of an image of ``size`` = (H, W) → coordinates after the EXIF
    ``orientation`` is applied (what ``PIL.ImageOps.exif_transpose`` and rawpy show); ``inverse``
    maps displayed coordinates back. Orientations 1, 3 (180°), 6 (90° clockwise), 8 (90° anticlockwise)."""
    points = np.asarray(points, dtype=np.float64)
    x, y = points[..., 0], points[..., 1]
    height, width = size
    if orientation == 1:
        return points.copy()
    if orientation == 3:
        return np.stack([width - 1 - x, height - 1 - y], axis=-1)
    if orientation not in (6, 8):
        raise ValueError(f"orientation must be 1, 3, 6 or 8, got {orientation}")
    clockwise = (orientation == 6) != inverse
    if inverse:  # displayed frame is W × H: its "height" is the stored width
        height, width = width, height
    if clockwise:
        return np.stack([height - 1 - y, x], axis=-1)
    return np.stack([y, width - 1 - x], axis=-1)


# ------------------------------------------------------------------------------------ cameras


def _colour_response(config: DualZoomSimulation, camera: str) -> torch.Tensor:
    """3×3 mixing of the scene's linear sRGB by the camera's sensor (identity for the short-focus one)."""
    if camera == "short":
        return torch.eye(3, dtype=torch.float64)
    mix = config.tele_saturation * np.eye(3) + (1 - config.tele_saturation) * np.ones((3, 1)) * _LUMA[None, :]
    return torch.from_numpy(np.diag(config.tele_tint) @ mix)


def _capture(
    scene: ProceduralScene, ux: torch.Tensor, uy: torch.Tensor, footprint: float, blur: float,
    config: DualZoomSimulation, camera: str, draw: CameraDraw, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(mosaic uint16 (H, W), camera rendering uint8 (H, W, 3)) of pixels seeing world points (ux, uy)."""
    linear = lens_blur(scene.render(ux, uy, footprint), blur)
    linear = torch.einsum("ij,jhw->ihw", _colour_response(config, camera).to(linear.dtype), linear).clamp_(0.0, 1.0)
    photometry = ShotPhotometry(exposure=draw.exposure, tint=(1.0, 1.0, 1.0), wb_gains=draw.illuminant_gains)
    mosaic = capture_mosaic(linear, photometry, config.shot_noise, config.read_noise, rng)
    gamma = config.short_gamma if camera == "short" else config.tele_gamma
    return mosaic, camera_isp(mosaic, draw.wb_gains, gamma=gamma)


def _world(matrix_to_world: np.ndarray, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World points of short-focus coordinates (xs, ys) through the affine ``matrix_to_world`` = A⁻¹."""
    m = matrix_to_world
    ux = xs * float(m[0, 0]) + ys * float(m[0, 1]) + float(m[0, 2])
    uy = xs * float(m[1, 0]) + ys * float(m[1, 1]) + float(m[1, 2])
    return ux, uy


def _grid(rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(xs, ys), each (len(rows), len(cols)), of the row and column coordinates."""
    ys, xs = torch.meshgrid(rows, cols, indexing="ij")
    return xs, ys


def _margin(sigma: float) -> int:
    """Even margin (pixels) rendered around a region so the blur and the demosaicing see real content."""
    return 2 * math.ceil((3 * sigma + 2) / 2)


def _jpeg_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """The camera's JPEG compression of a layout image (quality, 4:2:0), decoded again."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality, subsampling="4:2:0")
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.array(image.convert("RGB"))


def _region(
    scene: ProceduralScene, short_to_world: np.ndarray, origin: tuple[float, float], size: tuple[int, int],
    step: float, footprint: float, blur: float, config: DualZoomSimulation, camera: str, draw: CameraDraw,
    rng: np.random.Generator,
) -> np.ndarray:
    """Camera rendering (h, w, 3) of a grid of h × w pixels at short-focus coordinates origin + step·(j, i)."""
    margin = _margin(blur)
    height, width = size
    rows = torch.arange(-margin, height + margin + (height % 2), dtype=torch.float32)
    cols = torch.arange(-margin, width + margin + (width % 2), dtype=torch.float32)
    xs, ys = _grid(origin[1] + step * rows, origin[0] + step * cols)
    _, rgb = _capture(scene, *_world(short_to_world, xs, ys), footprint, blur, config, camera, draw, rng)
    inner = np.ascontiguousarray(rgb[margin : margin + height, margin : margin + width])
    return _jpeg_round_trip(inner, config.jpeg_quality)


def lr_box(config: DualZoomSimulation) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the LR in the short-focus frame (``"layout"`` output)."""
    height = math.floor(config.height / config.focal_ratio) - 2 * config.trim
    width = math.floor(config.width / config.focal_ratio) - 2 * config.trim
    return (config.height - height) // 2, (config.width - width) // 2, height, width


# ------------------------------------------------------------------------------------ writers


def _write_dng(path: Path, mosaic: np.ndarray, camera: str, draw: CameraDraw, orientation: int) -> None:
    """A Bayer DNG as :func:`datamodules.simulate.dng.write_dng` writes it, plus Orientation (274) and
    FocalLengthIn35mmFilm (41989) in IFD0."""
    neutral = [part for gain in draw.wb_gains for part in reversed(rational(gain))]
    colour_matrix = [part for value in XYZ_TO_CAMERA.ravel() for part in rational(value)]
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, f"{MAKE} {MODELS[camera]}", True),  # UniqueCameraModel
        (271, "s", 0, MAKE, True),  # Make
        (272, "s", 0, MODELS[camera], True),  # Model
        (274, "H", 1, orientation, True),  # Orientation
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, tuple({"R": 0, "G": 1, "B": 2}[c] for c in CFA_PATTERN), True),  # CFAPattern
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50713, "H", 2, (2, 2), True),  # BlackLevelRepeatDim
        (50714, "I", 4, (BLACK_LEVEL,) * 4, True),  # BlackLevel
        (50717, "I", 1, WHITE_LEVEL, True),  # WhiteLevel
        (50728, "2I", 3, tuple(neutral), True),  # AsShotNeutral = 1/gains
        (50721, "2i", 9, tuple(colour_matrix), True),  # ColorMatrix1 (XYZ → camera)
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (37386, "2I", 1, rational(draw.focal_mm, 1000), True),  # FocalLength (mm)
        (41989, "H", 1, draw.focal_35mm, True),  # FocalLengthIn35mmFilm
    ]
    tifffile.imwrite(path, mosaic, photometric="cfa", extratags=tags, metadata=None)


def _write_jpeg(path: Path, rgb: np.ndarray, camera: str, draw: CameraDraw, orientation: int, quality: int) -> None:
    """A phone JPG: Make, Model, Orientation in IFD0; FocalLength and FocalLengthIn35mmFilm in the Exif IFD."""
    exif = Image.Exif()
    exif[271], exif[272], exif[274] = MAKE, MODELS[camera], orientation
    exif_ifd = exif.get_ifd(_EXIF_IFD)
    exif_ifd[37386] = IFDRational(*rational(draw.focal_mm, 1000))
    exif_ifd[41989] = draw.focal_35mm
    Image.fromarray(rgb).save(path, format="JPEG", quality=quality, subsampling="4:2:0", exif=exif)


# ------------------------------------------------------------------------------------ pairs


def _write_layout_pair(out: Path, config: DualZoomSimulation, pair: SimulatedPair, scene: ProceduralScene,
                       rng: np.random.Generator) -> dict:
    """Render and write one LR/HR PNG pair of the layout; return its truth (with the LR box and HR → LR map)."""
    scale = LAYOUT_SCALES[config.layout]
    to_world = np.linalg.inv(pair.tele_to_short_matrix(config.width, config.height))
    top, left, height, width = lr_box(config)
    lr = _region(scene, to_world, (left, top), (height, width), 1.0, pair.zoom_true, config.short_lens_blur,
                 config, "short", pair.short, rng)
    first = ((left - 0.5 + 0.5 / scale), (top - 0.5 + 0.5 / scale))  # HR pixel 0 at LR coordinate (0.5)/s − 0.5
    hr_blur = config.tele_lens_blur * scale / pair.zoom_true  # telephoto pixels → HR pixels
    hr = _region(scene, to_world, first, (scale * height, scale * width), 1.0 / scale, pair.zoom_true / scale,
                 hr_blur, config, "tele", pair.tele, rng)
    lr_name, hr_name = pair_file_names(config.layout, pair.name, scale)
    lr_folder, hr_folder = split_folders(out, pair.split)
    write_png(lr_folder / lr_name, lr)
    write_png(hr_folder / hr_name, hr)
    truth = pair.truth(config)
    truth.update(
        lr_file=f"{lr_folder.name}/{lr_name}", hr_file=f"{hr_folder.name}/{hr_name}", scale=scale,
        lr_box=[top, left, height, width], hr_to_lr=scale_map((scale * height, scale * width), (height, width)).tolist(),
    )
    return truth


def _write_capture_pair(out: Path, config: DualZoomSimulation, pair: SimulatedPair, scene: ProceduralScene,
                        rng: np.random.Generator) -> dict:
    """Capture and write both cameras' DNG + JPG of one pair (full frames, stored pixel order); return its truth."""
    size = (config.height, config.width)
    xs, ys = _grid(torch.arange(size[0], dtype=torch.float32), torch.arange(size[1], dtype=torch.float32))
    to_world = np.linalg.inv(pair.tele_to_short_matrix(config.width, config.height))
    short = _capture(scene, *_world(to_world, xs, ys), pair.zoom_true, config.short_lens_blur, config, "short",
                     pair.short, rng)
    components = [c.to_dict() for c in pair.parallax]
    dx, dy = warp_displacement(components, xs, ys, config.width, config.height)
    tele = _capture(scene, xs + dx, ys + dy, 1.0, config.tele_lens_blur, config, "tele", pair.tele, rng)
    for camera, (mosaic, rgb), draw in (("short", short, pair.short), ("tele", tele, pair.tele)):
        _write_dng(out / camera / f"{pair.name}.DNG", mosaic, camera, draw, pair.orientation)
        _write_jpeg(out / camera / f"{pair.name}.JPG", rgb, camera, draw, pair.orientation, config.jpeg_quality)
    return pair.truth(config)


def _check_config(config: DualZoomSimulation) -> None:
    problems = []
    if config.layout not in LAYOUT_SCALES:
        problems.append(f"layout must be one of {tuple(LAYOUT_SCALES)}, got {config.layout!r}")
    if config.output not in ("layout", "captures"):
        problems.append(f"output must be 'layout' or 'captures', got {config.output!r}")
    if config.train_pairs < 0 or config.test_pairs < 0 or config.train_pairs + config.test_pairs < 1:
        problems.append(f"need ≥ 0 pairs per split and ≥ 1 in all, got {config.train_pairs} + {config.test_pairs}")
    if config.width % 2 or config.height % 2 or min(config.width, config.height) < 32:
        problems.append(f"width and height must be even and ≥ 32, got {config.width}×{config.height}")
    if not config.focal_ratio >= 1.2:
        problems.append(f"focal_ratio must be ≥ 1.2, got {config.focal_ratio}")
    elif config.trim < 0 or min(lr_box(config)[2:]) < 8:
        problems.append(f"trim must be ≥ 0 and leave an LR of ≥ 8×8 pixels, got {config.trim}: LR {lr_box(config)[2:]}")
    if not 0 <= config.max_zoom_deviation < 0.2 or not 0 <= config.max_wb_error < 0.5:
        problems.append("max_zoom_deviation must be in [0, 0.2) and max_wb_error in [0, 0.5)")
    if not 0 <= config.parallax_px[0] <= config.parallax_px[1]:
        problems.append(f"parallax_px must be (min, max) with 0 ≤ min ≤ max, got {config.parallax_px}")
    if min(config.short_lens_blur, config.tele_lens_blur) < 0 or min(config.short_gamma, config.tele_gamma) <= 0:
        problems.append("lens blurs must be ≥ 0 and gammas > 0")
    if not config.orientations or any(o not in (1, 3, 6, 8) for o in config.orientations):
        problems.append(f"orientations must be a non-empty list of 1, 3, 6 and 8, got {config.orientations}")
    if not 1 <= config.jpeg_quality <= 100:
        problems.append(f"jpeg_quality must be in 1…100, got {config.jpeg_quality}")
    if problems:
        raise ValueError("invalid DualZoomSimulation: " + "; ".join(problems))


def simulate_dualzoom(out: str | Path, config: DualZoomSimulation = DualZoomSimulation(), progress: bool = True) -> Path:
    """Write a simulated dual-zoom dataset or capture set to ``out`` (module docstring); return ``out``.

    ``out`` must not exist or be empty. Everything goes into a temporary sibling folder renamed to
    ``out`` at the end, so an interrupted run leaves nothing behind; a configuration always writes the
    same files.
    """
    _check_config(config)
    out = Path(out)
    if out.exists():
        if not out.is_dir() or any(out.iterdir()):
            raise FileExistsError(f"{out}: refusing to overwrite an existing non-empty path with simulated data")
        out.rmdir()
    total = config.train_pairs + config.test_pairs
    with atomic_directory(out) as tmp, single_torch_thread():
        if config.output == "layout":
            for split in ("train", "test"):
                for folder in split_folders(tmp, split):
                    folder.mkdir()
            write = _write_layout_pair
        else:
            (tmp / "short").mkdir()
            (tmp / "tele").mkdir()
            write = _write_capture_pair
        truths = {}
        for index in tqdm(range(1, total + 1), desc="simulating dual-zoom pairs", unit="pair", disable=not progress):
            pair = draw_pair(config, index)
            extent = config.width * config.focal_ratio * 1.1
            scene = ProceduralScene(np.random.default_rng([config.seed, index, 0]), extent)
            truths[pair.name] = write(tmp, config, pair, scene, np.random.default_rng([config.seed, index, 2]))
        manifest = {"format": FORMAT_VERSION, "dataset": "dualzoom", "config": config.to_dict()}
        (tmp / "simulation.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / "simulation_truth.json").write_text(json.dumps({"format": FORMAT_VERSION, "pairs": truths}, indent=2) + "\n")
    return out
