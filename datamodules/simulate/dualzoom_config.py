"""Configuration of the dual-camera (short-focus + telephoto) capture simulator (a plain dataclass, so
LightningCLI can fill it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

__all__ = ["DualZoomSimulation"]


@dataclass(frozen=True)
class DualZoomSimulation:
    """A phone-like dual camera shooting procedural scenes, written as a dual-zoom dataset or as captures.

    Both cameras have the same sensor size; the telephoto sees the central 1/r of the short-focus
    camera's field of view (r = the true focal ratio). Everything is drawn from generators seeded by
    ``seed`` and the pair index, so the same configuration always writes the same files.

    Args:
        layout: ``"nikon"`` (×4 names ``DSC_0001_x1.png``/``_x4.png``) or ``"camerafusion"`` (×2,
            ``IMG_0001.png`` in both folders); sets the scale s of the ``"layout"`` output.
        output: ``"layout"`` writes ``train_LR``/``train_HR``/``test_LR``/``test_HR`` directly (LR = the
            short-focus camera's centre crop, HR = the telephoto rendered on the LR's s× grid: aligned
            exactly); ``"captures"`` writes ``short/`` and ``tele/`` DNG + JPG pairs for ``prepare``
            (``train_pairs + test_pairs`` of them, not split).
        train_pairs, test_pairs: Number of pairs (scenes) per split.
        width, height: Sensor size of both cameras (even numbers).
        focal_ratio: Nominal ratio r of the 35 mm-equivalent focal lengths (EXIF), e.g. 2 or 4.
        seed: Base seed.
        trim: LR pixels cut from every side of the telephoto's nominal field of view (``"layout"``):
            the LR is (⌊H/r⌋ − 2·trim) × (⌊W/r⌋ − 2·trim).
        max_zoom_deviation: Largest relative deviation of the true focal ratio from the nominal one.
        max_rotation_deg: Largest rotation between the cameras (degrees).
        max_translation_px: Largest offset of the telephoto's optical axis (short-focus pixels).
        parallax_px: (min, max) amplitude of the smooth parallax-like displacement of the telephoto
            image (telephoto pixels).
        short_lens_blur, tele_lens_blur: σ (pixels of each camera) of the Gaussian lens PSF.
        short_gamma, tele_gamma: Tone curves x^(1/γ) of the two ISPs.
        tele_saturation: Saturation of the telephoto sensor's colour response relative to the
            short-focus one (1 = the same).
        tele_tint: Per-channel (R, G, B) gain of the telephoto sensor's colour response.
        max_wb_error: Largest relative error of each camera's auto white balance (R and B gains).
        max_exposure_drift: Largest relative exposure difference of each camera.
        shot_noise, read_noise: Poisson-Gaussian sensor noise (see :mod:`datamodules.simulate.camera`).
        jpeg_quality: Quality of the camera JPGs (and of the JPEG round trip of the ``"layout"`` images).
        orientations: EXIF orientation of pair i = ``orientations[i mod len]`` (1, 3, 6 or 8); the
            pixels are stored unrotated, as phones do.
        short_focal_mm, short_focal_35mm: EXIF focal length and 35 mm equivalent of the short-focus camera.
        tele_sensor_scale: Telephoto sensor size / short-focus sensor size, so that the EXIF
            FocalLength ratio differs from the field-of-view ratio, as on phones (only EXIF).
    """

    layout: Literal["nikon", "camerafusion"] = "nikon"
    output: Literal["layout", "captures"] = "layout"
    train_pairs: int = 10
    test_pairs: int = 2
    width: int = 768
    height: int = 512
    focal_ratio: float = 4.0
    seed: int = 0
    trim: int = 4
    max_zoom_deviation: float = 0.015
    max_rotation_deg: float = 0.5
    max_translation_px: float = 2.0
    parallax_px: tuple[float, float] = field(default=(1.0, 3.0))
    short_lens_blur: float = 0.6
    tele_lens_blur: float = 0.9
    short_gamma: float = 2.2
    tele_gamma: float = 1.9
    tele_saturation: float = 0.85
    tele_tint: tuple[float, float, float] = field(default=(1.05, 1.0, 0.93))
    max_wb_error: float = 0.03
    max_exposure_drift: float = 0.05
    shot_noise: float = 2e-4
    read_noise: float = 1e-3
    jpeg_quality: int = 92
    orientations: tuple[int, ...] = field(default=(1, 6, 1, 3))
    short_focal_mm: float = 4.25
    short_focal_35mm: int = 26
    tele_sensor_scale: float = 0.7

    def to_dict(self) -> dict:
        """JSON-friendly form, stored in ``simulation.json`` next to the generated data."""
        data = asdict(self)
        for key in ("parallax_px", "tele_tint", "orientations"):
            data[key] = list(data[key])
        return data
