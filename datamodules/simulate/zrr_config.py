"""Configuration of the ZRR-style (phone raw + DSLR JPG) simulator (a plain dataclass, so LightningCLI can fill it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["ZRRSimulation"]


@dataclass(frozen=True)
class ZRRSimulation:
    """Phone raws and DSLR JPGs of the same procedural scenes, in ZRR's layout (see :mod:`datamodules.simulate.zrr`).

    Everything is drawn from generators seeded by ``seed``, the split and the image index, so the same
    configuration always writes the same files.

    Args:
        train_images, test_images: Pairs per split (named ``0`` … ``N − 1`` in each, as in ZRR).
        size: Side of the raw and of the JPG (even; ZRR's 448 → a 224² packed raw).
        seed: Base seed.
        phone_lens_blur, dslr_lens_blur: σ (pixels) of each camera's Gaussian lens PSF.
        phone_exposure: (min, max) exposure of the phone raw (phones expose to keep highlights).
        shot_noise, read_noise: Poisson-Gaussian noise of the phone sensor (normalised signal).
        dslr_exposure: (min, max) exposure of the DSLR rendition.
        dslr_saturation: Saturation of the DSLR's colour rendition (1 = the scene's colours).
        dslr_tint: Per-channel (R, G, B) gain of the DSLR's colour rendition.
        max_wb_error: Largest relative error of the DSLR's auto white balance (R and B).
        dslr_gamma: Tone curve x^(1/γ) of the DSLR, followed by an S-curve of weight ``dslr_contrast``:
            y ↦ (1 − c)·y + c·(3y² − 2y³).
        vignetting: Relative brightness lost in the corners of the DSLR frame: 1 − v·(r/r_corner)².
        displacement_px: (min, max) amplitude of the smooth misalignment (sum of three sinusoids of
            0.5–2 cycles per frame) of the DSLR frame against the raw (pixels).
        max_translation_px: Largest constant offset added to that displacement (pixels).
        jpeg_quality: Quality of the DSLR JPGs (4:2:0 chroma subsampling).
    """

    train_images: int = 64
    test_images: int = 8
    size: int = 448
    seed: int = 0
    phone_lens_blur: float = 0.7
    dslr_lens_blur: float = 0.5
    phone_exposure: tuple[float, float] = field(default=(0.55, 0.85))
    shot_noise: float = 1e-3
    read_noise: float = 2e-3
    dslr_exposure: tuple[float, float] = field(default=(0.9, 1.1))
    dslr_saturation: float = 1.25
    dslr_tint: tuple[float, float, float] = field(default=(1.04, 1.0, 0.94))
    max_wb_error: float = 0.05
    dslr_gamma: float = 2.2
    dslr_contrast: float = 0.3
    vignetting: float = 0.25
    displacement_px: tuple[float, float] = field(default=(1.0, 3.0))
    max_translation_px: float = 0.5
    jpeg_quality: int = 95

    def to_dict(self) -> dict:
        """JSON-friendly form, stored in ``simulation.json`` next to the generated data."""
        data = asdict(self)
        for key in ("phone_exposure", "dslr_exposure", "dslr_tint", "displacement_px"):
            data[key] = list(data[key])
        return data
