"""SelfDZSR whole-image inference: ``super_resolve`` untiled, with exact decoder tiles, ``auto``, and the
official 3×3 (×4) / 6×6 (×2) tiling, on one DRealSR-sized image.

Run from the repository root::

    uv run python -m bench.selfdzsr_inference                  # CPU, 2 threads, LR 1111×687, ×4
    uv run python -m bench.selfdzsr_inference --device cuda
    uv run python -m bench.selfdzsr_inference --modes none official --width 555 --height 343

The network has the official size (64 channels, 16 blocks, random weights: the time does not depend on them).
The LR is a smooth random image and the Ref the bicubic ×s view of its central box (:func:`ops.geometry.
central_box`), so the Ref has the LR's pixel size as in the dataset. Each mode runs in its own process, so its
peak memory is its own: the peak resident set size on the CPU (:func:`bench.memory.peak_rss_bytes`, the whole
process: Python, torch, weights, images), ``torch.cuda.max_memory_allocated`` on CUDA. Printed per mode: wall
time of one pass after ``--warmup`` passes, peak memory, the speed-up over the two official rows (their time ÷
the mode's; ``official-tv`` also uses the official code's deformable convolution, torchvision's), and max
|SR − SR(none)| over the image and away from a 64-pixel border.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.memory import peak_memory_bytes
from lightning_modules.selfdzsr import SelfDZSRModule
from ops.geometry import central_box

# mode → (tile, deform backend); "official-tv" is the official tiling with the official code's deformable
# convolution (torchvision's ``deform_conv2d``, reference §1.1), i.e. what the official test graph costs here.
MODES = {
    "none": (None, "auto"),
    "tile256": (256, "auto"),
    "auto": ("auto", "auto"),
    "official": ("official", "auto"),
    "official-tv": ("official", "torchvision"),
}
BORDER = 64  # output pixels left out of the "interior" difference


def inputs(height: int, width: int, scale: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth random LR (1, 3, H, W) in [0, 1] and the bicubic ×s Ref of its central box."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, height // 8 + 2, width // 8 + 2, generator=generator)
    lr = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    lr = (lr + 0.05 * torch.rand(lr.shape, generator=generator)).clamp(0, 1)
    top, left, box_h, box_w = central_box(height, width, scale)
    box = lr[..., top : top + box_h, left : left + box_w]
    ref = F.interpolate(box, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    return lr.to(device), ref.to(device)


def run_mode(args: argparse.Namespace) -> None:
    """One mode in this process: time, peak memory, the output saved for the comparison."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    tile, backend = MODES[args.only]
    module = SelfDZSRModule(zoom=args.scale, pretrained=False, deform_backend=backend).to(device).eval()
    lr, ref = inputs(args.height, args.width, args.scale, device)
    times = []
    with torch.inference_mode():
        for _ in range(args.warmup + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            sr = module.super_resolve(lr, ref, tile=tile)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    peak = peak_memory_bytes(device)
    np.save(args.output, sr[0].float().cpu().numpy())
    print(json.dumps({"seconds": times[-1], "peak_bytes": peak, "shape": list(sr.shape)}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--width", type=int, default=1111, help="LR width (DRealSR-Nikon: about 1111)")
    parser.add_argument("--height", type=int, default=687, help="LR height (about 687)")
    parser.add_argument("--scale", type=int, choices=(2, 4), default=4)
    parser.add_argument("--warmup", type=int, default=0, help="untimed passes first (use 1–2 on CUDA)")
    parser.add_argument("--modes", nargs="+", choices=tuple(MODES), default=list(MODES))
    parser.add_argument("--only", choices=tuple(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        run_mode(args)
        return

    print(
        f"SelfDZSR ×{args.scale} super_resolve, LR {args.width}×{args.height} → SR {args.scale * args.width}×"
        f"{args.scale * args.height}, device={args.device} threads={args.threads}, official network size, "
        f"one pass after {args.warmup} warm-up"
    )
    header = (
        f"{'mode':11} | {'seconds':>8} | {'peak GiB':>8} | {'official ÷':>10} | {'official-tv ÷':>13} | "
        f"{'max|Δ| vs none':>14} | {'interior':>9}"
    )
    print(header)
    print("-" * len(header))
    results, outputs = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for mode in args.modes:
            output = Path(folder) / f"{mode}.npy"
            command = [sys.executable, "-m", "bench.selfdzsr_inference", *(argv or sys.argv[1:]), "--only", mode,
                       "--output", str(output)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                print(f"{mode:11} | failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
                continue
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            outputs[mode] = np.load(output)
        reference = outputs.get("none")
        baselines = [results.get(name, {}).get("seconds") for name in ("official", "official-tv")]
        for mode, result in results.items():
            seconds, peak = result["seconds"], result["peak_bytes"] / 2**30
            speedups = [f"{baseline / seconds:{width}.2f}" if baseline else f"{'–':>{width}}"
                        for baseline, width in zip(baselines, (10, 13))]
            if reference is not None:
                difference = np.abs(outputs[mode] - reference)
                whole, inner = difference.max(), difference[:, BORDER:-BORDER, BORDER:-BORDER].max()
                compared = f"{whole:14.2e} | {inner:9.2e}"
            else:
                compared = f"{'–':>14} | {'–':>9}"
            print(f"{mode:11} | {seconds:8.2f} | {peak:8.2f} | {' | '.join(speedups)} | {compared}")


if __name__ == "__main__":
    main()
