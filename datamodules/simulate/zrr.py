"""A simulated phone + DSLR pair set in Zurich RAW-to-RGB's layout: noisy phone raws and DSLR JPGs of the
same procedural scenes, with another colour rendition and a small, known, spatially varying misalignment.

Geometry (x = column, y = row, pixel centres at integers). World coordinates are the raw's pixel
coordinates: raw pixel x shows the world point x. DSLR (target) pixel q shows the world point
u = q + d(q), d = t + Σ_j a_j·dir_j·sin(2π(f_j·q/size) + φ_j) (a constant offset t plus three sinusoids of
0.5–2 cycles per frame, :func:`datamodules.simulate.geometry.warp_displacement`), a few pixels.

True flow (the convention of :mod:`ops.flow`, first = the raw-derived image, second = the target): on
the raw's grid, ``flow(x) = q(x) − x`` where q(x) is the target pixel showing world point x, i.e.
q + d(q) = x, solved by the fixed-point iteration q ← x − d(q). So

    target(x + flow(x)) ≈ raw view(x),    ``ops.warp.backward_warp(target, flow)`` aligns the target to the raw.

Cameras:

* phone: scene → Gaussian lens blur σ = ``phone_lens_blur`` → :func:`~datamodules.simulate.camera.capture_mosaic`
  (the sensor's colour mixing, exposure, the illuminant cast, RGGB, Poisson-Gaussian noise) with ZRR's
  10-bit levels, black 63, white 1020 → a 16-bit PNG (8-bit when every value fits, as in ZRR);
* DSLR: scene at u(q) → blur σ = ``dslr_lens_blur`` → colour rendition diag(tint)·(sat·I + (1 − sat)·1·ℓᵀ)
  (ℓ = Rec. 709 luma) × exposure × its own white-balance error (R, B) × vignetting 1 − v·(r/r_corner)² →
  clip → x^(1/γ) → S-curve → 8 bit → JPEG (no sensor noise: the DSLR's image is the clean one).

Output::

    <out>/train/huawei_raw/<i>.png   <out>/train/canon/<i>.jpg    i = 0 … train_images − 1
    <out>/test/huawei_raw/<i>.png    <out>/test/canon/<i>.jpg     i = 0 … test_images − 1
    <out>/simulation.json            {"format", "dataset": "zrr", "config"}
    <out>/simulation_truth.json      {"format", "flow": {...}, "images": {"<split>/<i>": parameters}}
    <out>/simulation_truth/<split>/<i>.npy   the true flow (2, size, size) float16 (u, v) on the raw's grid

The flow is stored as float16 (error ≤ 0.002 px at 3 px) to keep it small; :func:`read_true_flow` returns
float32, and :func:`true_flow` recomputes it exactly from the parameters.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from datamodules.common.atomic import atomic_directory
from datamodules.common.errors import DatasetError
from datamodules.simulate.camera import ShotPhotometry, capture_mosaic, lens_blur
from datamodules.simulate.geometry import WarpComponent, warp_displacement
from datamodules.simulate.scene import ProceduralScene
from datamodules.simulate.threads import single_torch_thread
from datamodules.simulate.zrr_config import ZRRSimulation
from datamodules.zrr.layout import BLACK_LEVEL, CFA_PATTERN, SPLITS, WHITE_LEVEL, split_folders, write_raw_png

__all__ = [
    "FORMAT_VERSION",
    "DATASET",
    "TRUTH_FOLDER",
    "SimulatedImage",
    "draw_image",
    "image_scene",
    "dslr_displacement",
    "render_raw",
    "render_target",
    "true_flow",
    "truth_path",
    "read_true_flow",
    "simulate_zrr",
]

#: Bumped whenever the same configuration would write different data.
FORMAT_VERSION = 1
DATASET = "zrr"
TRUTH_FOLDER = "simulation_truth"
DISPLACEMENT_COMPONENTS = 3
#: Largest cycles per frame of a displacement sinusoid.
MAX_CYCLES = 2.0
_SPLIT_CODES = {"train": 0, "test": 1}
_LUMA = np.array([0.2126, 0.7152, 0.0722])
_FIXED_POINT_ITERATIONS = 60


@dataclass(frozen=True)
class SimulatedImage:
    """Everything drawn for one pair: the phone's exposure and illuminant cast, the DSLR's exposure and
    white-balance error, and the misalignment d (offset + sinusoids)."""

    split: str
    index: int
    phone_exposure: float
    illuminant_gains: tuple[float, float, float]
    dslr_exposure: float
    dslr_wb_error: tuple[float, float, float]
    translation_px: tuple[float, float]
    displacement: tuple[WarpComponent, ...]

    @property
    def name(self) -> str:
        return str(self.index)

    def truth(self) -> dict:
        """This pair's entry in ``simulation_truth.json``."""
        return {
            "split": self.split,
            "raw_file": f"{self.split}/huawei_raw/{self.name}.png",
            "rgb_file": f"{self.split}/canon/{self.name}.jpg",
            "flow_file": f"{TRUTH_FOLDER}/{self.split}/{self.name}.npy",
            "phone_exposure": self.phone_exposure,
            "illuminant_gains": list(self.illuminant_gains),
            "dslr_exposure": self.dslr_exposure,
            "dslr_wb_error": list(self.dslr_wb_error),
            "displacement": {
                "model": "translation_plus_sum_of_sinusoids",
                "translation_px": list(self.translation_px),
                "components": [component.to_dict() for component in self.displacement],
            },
        }


def _rng(config: ZRRSimulation, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, _SPLIT_CODES[split], index, stream])


def draw_image(config: ZRRSimulation, split: str, index: int) -> SimulatedImage:
    """The parameters of pair ``index`` (0-based) of ``split``, from the seed (seed, split, index, 1)."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = _rng(config, split, index, 1)
    illuminant = (round(float(rng.uniform(1.6, 2.4)), 4), 1.0, round(float(rng.uniform(1.3, 2.0)), 4))
    phone_exposure = float(rng.uniform(*config.phone_exposure))
    dslr_exposure = float(rng.uniform(*config.dslr_exposure))
    errors = 1 + rng.uniform(-1, 1, size=2) * config.max_wb_error
    radius = config.max_translation_px * math.sqrt(rng.uniform())
    angle = rng.uniform(0, 2 * math.pi)
    weights = rng.uniform(0.2, 1.0, size=DISPLACEMENT_COMPONENTS)
    amplitudes = rng.uniform(*config.displacement_px) * weights / weights.sum()
    components = []
    for amplitude in amplitudes:
        direction, frequency_angle = rng.uniform(0, 2 * math.pi, size=2)
        cycles = rng.uniform(0.5, MAX_CYCLES)
        components.append(
            WarpComponent(
                amplitude_px=float(amplitude),
                direction=(math.cos(direction), math.sin(direction)),
                frequency=(cycles * math.cos(frequency_angle), cycles * math.sin(frequency_angle)),
                phase=float(rng.uniform(0, 2 * math.pi)),
            )
        )
    return SimulatedImage(
        split=split,
        index=index,
        phone_exposure=phone_exposure,
        illuminant_gains=illuminant,
        dslr_exposure=dslr_exposure,
        dslr_wb_error=(float(errors[0]), 1.0, float(errors[1])),
        translation_px=(radius * math.cos(angle), radius * math.sin(angle)),
        displacement=tuple(components),
    )


def image_scene(config: ZRRSimulation, image: SimulatedImage) -> ProceduralScene:
    """The scene of a pair, from the seed (seed, split, index, 0)."""
    return ProceduralScene(_rng(config, image.split, image.index, 0), 1.1 * config.size)


def dslr_displacement(config: ZRRSimulation, image: SimulatedImage, x, y):
    """d(q) = t + Σ sinusoids at target pixels (x, y) (arrays or tensors) → (d_x, d_y)."""
    components = [component.to_dict() for component in image.displacement]
    dx, dy = warp_displacement(components, x, y, config.size, config.size)
    return dx + image.translation_px[0], dy + image.translation_px[1]


def _margin(sigma: float) -> int:
    """Even margin (pixels) rendered around the frame so the lens blur sees real content at the border."""
    return 2 * math.ceil((3 * sigma + 2) / 2)


def _grid(size: int, margin: int) -> tuple[Tensor, Tensor]:
    """(x, y), each (size + 2m)², of the pixel coordinates −m … size + m − 1."""
    coordinates = torch.arange(-margin, size + margin, dtype=torch.float32)
    ys, xs = torch.meshgrid(coordinates, coordinates, indexing="ij")
    return xs, ys


def _blurred_view(scene: ProceduralScene, x: Tensor, y: Tensor, sigma: float, margin: int) -> Tensor:
    """Linear RGB (3, size, size) of the scene at world points (x, y) (with a margin), blurred, margin cut."""
    linear = lens_blur(scene.render(x, y, 1.0), sigma)
    return linear[:, margin : linear.shape[1] - margin, margin : linear.shape[2] - margin]


def render_raw(config: ZRRSimulation, image: SimulatedImage, scene: ProceduralScene | None = None) -> np.ndarray:
    """The phone's raw mosaic (size, size) uint16 (RGGB, 63 … 1020); noise from the seed (seed, split, index, 2)."""
    scene = scene if scene is not None else image_scene(config, image)
    margin = _margin(config.phone_lens_blur)
    linear = _blurred_view(scene, *_grid(config.size, margin), config.phone_lens_blur, margin)
    photometry = ShotPhotometry(exposure=image.phone_exposure, tint=(1.0, 1.0, 1.0), wb_gains=image.illuminant_gains)
    return capture_mosaic(
        linear, photometry, config.shot_noise, config.read_noise, _rng(config, image.split, image.index, 2),
        pattern=CFA_PATTERN, black_level=BLACK_LEVEL, white_level=WHITE_LEVEL,
    )


def _dslr_colour(config: ZRRSimulation) -> Tensor:
    """diag(tint)·(sat·I + (1 − sat)·1·ℓᵀ): the DSLR's rendition of the scene's linear sRGB."""
    mix = config.dslr_saturation * np.eye(3) + (1 - config.dslr_saturation) * np.ones((3, 1)) * _LUMA[None, :]
    return torch.from_numpy(np.diag(config.dslr_tint) @ mix).float()


def render_target(
    config: ZRRSimulation, image: SimulatedImage, aligned: bool = False, scene: ProceduralScene | None = None
) -> np.ndarray:
    """The DSLR's rendering (size, size, 3) uint8 before JPEG compression.

    ``aligned`` renders pixel q at world point q (the raw's view, in the DSLR's colours, vignetting
    included) instead of q + d(q): what the target warped by the true flow should look like.
    """
    scene = scene if scene is not None else image_scene(config, image)
    margin = _margin(config.dslr_lens_blur)
    xs, ys = _grid(config.size, margin)
    if not aligned:
        dx, dy = dslr_displacement(config, image, xs.double(), ys.double())
        xs, ys = (xs.double() + dx).float(), (ys.double() + dy).float()
    linear = _blurred_view(scene, xs, ys, config.dslr_lens_blur, margin)
    gains = torch.tensor(image.dslr_wb_error, dtype=torch.float32).view(3, 1, 1) * image.dslr_exposure
    rgb = torch.einsum("ij,jhw->ihw", _dslr_colour(config), linear) * gains
    centre = (config.size - 1) / 2
    coordinates = (torch.arange(config.size, dtype=torch.float32) - centre) / centre
    radius2 = (coordinates.view(1, -1) ** 2 + coordinates.view(-1, 1) ** 2) / 2  # 1 in the corners
    rgb = (rgb * (1 - config.vignetting * radius2)).clamp_(0.0, 1.0)
    encoded = rgb ** (1 / config.dslr_gamma)
    encoded = (1 - config.dslr_contrast) * encoded + config.dslr_contrast * encoded**2 * (3 - 2 * encoded)
    return encoded.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def true_flow(config: ZRRSimulation, image: SimulatedImage) -> np.ndarray:
    """The flow (2, size, size) float64 on the raw's grid: q(x) − x with q + d(q) = x (module docstring)."""
    coordinates = np.arange(config.size, dtype=np.float64)
    x, y = np.meshgrid(coordinates, coordinates)
    qx, qy = x.copy(), y.copy()
    for _ in range(_FIXED_POINT_ITERATIONS):  # a contraction: stops once q + d(q) is within 1e-7 px of x
        dx, dy = dslr_displacement(config, image, qx, qy)
        residual = max(np.abs(qx + dx - x).max(), np.abs(qy + dy - y).max())
        if residual < 1e-7:
            break
        qx, qy = x - dx, y - dy
    if residual > 1e-6:
        raise RuntimeError(f"the true flow of {image.split}/{image.name} did not converge (residual {residual:.2g} px)")
    return np.stack([qx - x, qy - y])


def truth_path(root: str | Path, split: str, name: str) -> Path:
    """``<root>/simulation_truth/<split>/<name>.npy``."""
    return Path(root) / TRUTH_FOLDER / split / f"{name}.npy"


def read_true_flow(root: str | Path, split: str, name: str) -> Tensor:
    """The stored true flow of pair ``name`` of ``split``: float32 (2, H, W), (u, v) in pixels (module docstring)."""
    path = truth_path(root, split, name)
    try:
        flow = np.load(path)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read the true flow ({error})") from error
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise DatasetError(f"{path}: expected a flow of shape (2, H, W), got {flow.shape}")
    return torch.from_numpy(flow.astype(np.float32))


def _check_config(config: ZRRSimulation) -> None:
    problems = []
    if config.train_images < 0 or config.test_images < 0 or config.train_images + config.test_images < 1:
        problems.append(f"need ≥ 0 images per split and ≥ 1 in all, got {config.train_images} + {config.test_images}")
    if config.size % 2 or config.size < 32:
        problems.append(f"size must be even and ≥ 32, got {config.size}")
    low, high = config.displacement_px
    if not 0 <= low <= high or config.max_translation_px < 0:
        problems.append(f"displacement_px must be (min, max) with 0 ≤ min ≤ max and max_translation_px ≥ 0, got "
                        f"{config.displacement_px}, {config.max_translation_px}")
    elif config.size >= 32 and 2 * math.pi * MAX_CYCLES * high / config.size >= 0.8:
        problems.append(f"a displacement of up to {high} px is not smooth on a {config.size}² frame (its gradient may "
                        f"reach {2 * math.pi * MAX_CYCLES * high / config.size:.2f}; keep it below 0.8)")
    for key in ("phone_exposure", "dslr_exposure"):
        low, high = getattr(config, key)
        if not 0 < low <= high:
            problems.append(f"{key} must be (min, max) with 0 < min ≤ max, got {(low, high)}")
    if min(config.phone_lens_blur, config.dslr_lens_blur) < 0 or config.dslr_gamma <= 0:
        problems.append("lens blurs must be ≥ 0 and dslr_gamma > 0")
    if not 0 <= config.dslr_contrast <= 1 or not 0 <= config.vignetting < 1 or not 0 <= config.max_wb_error < 0.5:
        problems.append("need 0 ≤ dslr_contrast ≤ 1, 0 ≤ vignetting < 1 and 0 ≤ max_wb_error < 0.5")
    if config.shot_noise < 0 or config.read_noise < 0:
        problems.append("noise levels must be ≥ 0")
    if not 1 <= config.jpeg_quality <= 100:
        problems.append(f"jpeg_quality must be in 1…100, got {config.jpeg_quality}")
    if problems:
        raise ValueError("invalid ZRRSimulation: " + "; ".join(problems))


def _write_pair(out: Path, config: ZRRSimulation, image: SimulatedImage) -> None:
    scene = image_scene(config, image)
    raw_folder, rgb_folder = split_folders(out, image.split)
    write_raw_png(raw_folder / f"{image.name}.png", render_raw(config, image, scene))
    rgb = render_target(config, image, scene=scene)
    Image.fromarray(rgb).save(rgb_folder / f"{image.name}.jpg", format="JPEG", quality=config.jpeg_quality,
                              subsampling="4:2:0")
    np.save(truth_path(out, image.split, image.name), true_flow(config, image).astype(np.float16))


def simulate_zrr(out: str | Path, config: ZRRSimulation = ZRRSimulation(), progress: bool = True) -> Path:
    """Write a simulated ZRR-style set to ``out`` (module docstring); return ``out``.

    ``out`` must not exist or be empty. Everything goes into a temporary sibling folder renamed to ``out``
    at the end, so an interrupted run leaves nothing behind; a configuration always writes the same files.
    """
    _check_config(config)
    out = Path(out)
    if out.exists():
        if not out.is_dir() or any(out.iterdir()):
            raise FileExistsError(f"{out}: refusing to overwrite an existing non-empty path with simulated data")
        out.rmdir()
    jobs = [("train", i) for i in range(config.train_images)] + [("test", i) for i in range(config.test_images)]
    with atomic_directory(out) as tmp, single_torch_thread():
        for split in SPLITS:
            for folder in split_folders(tmp, split):
                folder.mkdir(parents=True)
            (tmp / TRUTH_FOLDER / split).mkdir(parents=True)
        truths = {}
        for split, index in tqdm(jobs, desc="simulating ZRR pairs", unit="pair", disable=not progress):
            image = draw_image(config, split, index)
            _write_pair(tmp, config, image)
            truths[f"{split}/{image.name}"] = image.truth()
        manifest = {"format": FORMAT_VERSION, "dataset": DATASET, "config": config.to_dict()}
        (tmp / "simulation.json").write_text(json.dumps(manifest, indent=2) + "\n")
        flow = {
            "folder": TRUTH_FOLDER, "shape": [2, config.size, config.size], "dtype": "float16",
            "convention": "target(x + flow(x)) = raw view(x) on the raw's grid; channel 0 = x (column), 1 = y (row), "
                          "pixels; ops.warp.backward_warp(target, flow) aligns the target to the raw",
        }
        truth = {"format": FORMAT_VERSION, "flow": flow, "images": truths}
        (tmp / "simulation_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return out
