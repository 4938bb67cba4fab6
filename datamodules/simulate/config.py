"""Configuration of the SR-RAW capture simulator (a plain dataclass, so LightningCLI can fill it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

__all__ = ["SRRAWSimulation"]


@dataclass(frozen=True)
class SRRAWSimulation:
    """An optical-zoom capture session in SR-RAW's layout.

    Every scene is shot at each of ``focal_lengths`` (mm, longest first: file ``00001`` is the longest,
    as in SR-RAW). All values are drawn from a generator seeded by ``seed`` and the scene index, so
    the same configuration always writes the same files.

    Args:
        scenes: Number of scene folders (``00001`` … ``%05d``).
        width, height: Sensor size in Bayer pixels (even numbers).
        cfa_pattern: The sensor's 2×2 colour filter order (raster order), one of RGGB, BGGR, GRBG, GBRG.
        bit_depth: 12 (levels 128…4095) or 14 (512…16383) bit raws.
        jpeg_border: Pixels the camera cuts from every side of the sensor image for its JPG, as real
            cameras do (e.g. a 6048×4024 sensor and a 6000×4000 JPG): the JPG is a centred crop of the
            sensor, (W − 2b) × (H − 2b), not a rescaled copy.
        portrait_fraction: Share of the scenes shot in portrait: raw and JPG keep the sensor's pixel order
            and record EXIF/DNG Orientation 6 (or 8), as cameras do.
        seed: Base seed of the whole session.
        focal_lengths: Nominal focal lengths written to EXIF, longest first.
        max_scale_deviation: Largest relative deviation of the true magnification from the nominal
            (EXIF) focal length, the source of the paper's "scale offset".
        max_rotation_deg, max_translation_px: Largest per-shot rotation (degrees) and translation
            (pixels of that shot) of the camera between shots.
        max_perspective_px: Largest displacement (pixels, at the frame's corners) of the perspective
            change of a camera that turned between shots: a homography a similarity cannot fit.
        max_warp_px: Largest amplitude of the smooth, spatially varying warp per shot (pixels).
        max_exposure_drift, max_tint_drift: Largest relative per-shot exposure and per-channel
            colour drift.
        lens_blur: σ (pixels) of the Gaussian point-spread function of the lens and the sensor's
            anti-aliasing filter, applied to the scene before the mosaic (0 = a perfectly sharp lens).
            The default leaves 17 % contrast at the Nyquist frequency, as on real cameras; without it the
            finest detail aliases into every shot and the camera's bilinear demosaicing.
        shot_noise, read_noise: Poisson-Gaussian sensor noise: variance = shot_noise·x + read_noise²
            for a normalised signal x in [0, 1].
        luma_denoise, chroma_denoise: In-camera noise reduction of the JPGs (spatial σ in pixels of a
            bilateral luma filter and a Gaussian chroma blur; 0 = off), see
            :mod:`datamodules.simulate.camera`. Real cameras always apply some, more at high ISO.
        jpeg_quality: Quality of the camera JPGs.
        jpeg_subsampling: Chroma subsampling of the JPGs, ``"4:4:4"``, ``"4:2:2"`` (common in system
            cameras) or ``"4:2:0"`` (common in phones).
    """

    scenes: int = 10
    width: int = 1024
    height: int = 768
    cfa_pattern: Literal["RGGB", "BGGR", "GRBG", "GBRG"] = "RGGB"
    bit_depth: Literal[12, 14] = 14
    jpeg_border: int = 8
    portrait_fraction: float = 0.2
    seed: int = 0
    focal_lengths: tuple[float, ...] = field(default=(240.0, 150.0, 100.0, 70.0, 50.0, 35.0, 24.0))
    max_scale_deviation: float = 0.03
    max_rotation_deg: float = 0.5
    max_translation_px: float = 6.0
    max_perspective_px: float = 2.0
    max_warp_px: float = 0.4
    max_exposure_drift: float = 0.06
    max_tint_drift: float = 0.03
    lens_blur: float = 0.6
    shot_noise: float = 2e-4
    read_noise: float = 1e-3
    luma_denoise: float = 0.0
    chroma_denoise: float = 0.0
    jpeg_quality: int = 95
    jpeg_subsampling: Literal["4:4:4", "4:2:2", "4:2:0"] = "4:4:4"

    def to_dict(self) -> dict:
        """JSON-friendly form, stored as ``simulation.json`` next to the generated data."""
        data = asdict(self)
        data["focal_lengths"] = list(self.focal_lengths)
        return data
