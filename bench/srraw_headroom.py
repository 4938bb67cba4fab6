"""How much a zoom model can gain over bicubic on an SR-RAW root: PSNR bounds on training crops.

Run from the repository root (the demo's simulated data is made by its first ``lightning fit``)::

    uv run python -m bench.srraw_headroom --root data/srraw_simulated
    uv run python -m bench.srraw_headroom --root /data/SR-RAW --zoom 8 --crops 256

For ``--crops`` training crops of the 4X (or 8X) pairs, against the target window translation-searched
to each image (the ``…_aligned`` protocol of the metrics), it prints the mean PSNR (dB) of

* ``bicubic``: bicubic upsampling of the input shot's camera JPG (the baseline the demo prints);
* ``bicubic_subpixel``: the same, shifted by the best of 0, ±¼, ±½ pixel in x and y first: what an exact
  sub-pixel alignment of the target would add;
* ``jpg_vs_target_low_res``: the input JPG against the target box-downsampled to the input grid, i.e. the
  disagreement of the two shots at the input's own resolution (the input's lens blur and demosaicing,
  noise, drift, registration);
* ``oracle``: the target box-downsampled to the input grid and bicubic-upsampled again: the bound of any
  upsampler whose input agreed with the target at low resolution (detail finer than the input's pixels
  cannot be predicted from it).

A model can beat bicubic by at most what it recovers of ``oracle − bicubic``, and only through what it
learns to do better than the camera's ISP at low resolution.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from kornia.geometry.transform import translate

from datamodules import SRRAWDataModule
from ops import translation_search

SUBPIXEL_SHIFTS = (-0.5, -0.25, 0.0, 0.25, 0.5)
GAMMA = 2.2


def psnr_per_image(image: torch.Tensor, reference: torch.Tensor, border: int = 0) -> torch.Tensor:
    """PSNR (B,) of images in [0, 1] (B, C, H, W), ignoring ``border`` pixels on each side."""
    if border:
        image, reference = image[..., border:-border, border:-border], reference[..., border:-border, border:-border]
    return -10 * torch.log10(F.mse_loss(image, reference, reduction="none").mean(dim=(1, 2, 3)))


def input_jpg(batch: dict) -> torch.Tensor:
    """The input shot's camera JPG crop (B, 3, 2h, 2w) of a batch with ``input: png``, whose network input is that
    crop without its white balance, space-to-depth packed: x = unshuffle(jpg / wb^(1/2.2))."""
    gains = batch["wb_input"][..., None, None] ** (1.0 / GAMMA)
    return F.pixel_shuffle(batch["input"], 2) * gains


def crop_bounds(batch: dict, zoom: int) -> dict[str, torch.Tensor]:
    """The four PSNRs (B,) of the module docstring for one training batch (``input: png``)."""
    jpg = input_jpg(batch)
    bicubic = F.interpolate(jpg, scale_factor=zoom, mode="bicubic").clamp(0, 1)
    target = translation_search(bicubic, batch["target"])[0]
    best = torch.full((bicubic.shape[0],), -torch.inf)
    for dy in SUBPIXEL_SHIFTS:
        for dx in SUBPIXEL_SHIFTS:
            shift = torch.tensor([[dx, dy]], dtype=bicubic.dtype).expand(bicubic.shape[0], 2)
            shifted = translate(bicubic, shift, mode="bilinear", padding_mode="border")
            matched = translation_search(shifted, batch["target"])[0]
            best = torch.maximum(best, psnr_per_image(shifted, matched, border=zoom))
    low_res = F.avg_pool2d(target, zoom)
    oracle = F.interpolate(low_res, scale_factor=zoom, mode="bicubic").clamp(0, 1)
    return {
        "bicubic": psnr_per_image(bicubic, target),
        "bicubic_subpixel": best,
        "jpg_vs_target_low_res": psnr_per_image(jpg, low_res),
        "oracle": psnr_per_image(oracle, target),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="SR-RAW root (real or simulated, alignment cached)")
    parser.add_argument("--zoom", type=int, default=4, choices=(4, 8))
    parser.add_argument("--patch-size", type=int, default=24, help="packed-raw crop size (default %(default)s)")
    parser.add_argument("--crops", type=int, default=64, help="training crops to measure (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = SRRAWDataModule(
        args.root,
        zoom=args.zoom,
        input="png",
        patch_size=args.patch_size,
        target_margin=8,
        batch_size=8,
        num_workers=0,
        seed=args.seed,
        crops_per_pair=args.crops,
    )
    data.prepare_data()
    data.setup("fit")
    totals: dict[str, list[torch.Tensor]] = {}
    seen = 0
    with torch.no_grad():
        for batch in data.train_dataloader():
            for name, values in crop_bounds(batch, args.zoom).items():
                totals.setdefault(name, []).append(values)
            seen += len(batch["scene"])
            if seen >= args.crops:
                break
    print(f"{args.root}: {args.zoom}X, {seen} training crops of {args.patch_size}×{args.patch_size} packed pixels")
    for name, values in totals.items():
        print(f"  {name:<24} {torch.cat(values).mean():6.2f} dB")


if __name__ == "__main__":
    main()
