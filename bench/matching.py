"""Ref↔LR patch matching (``ops.matching.match_offsets``) on whole-image features: time and peak memory
per ``chunk_size``, next to the memory one dense score matrix would take.

Run from the repository root::

    uv run python -m bench.matching                       # CPU, 2 threads, DRealSR-Nikon size
    uv run python -m bench.matching --device cuda --chunk-sizes 16777216 33554432 134217728

The features are those of SelfDZSR's feature extractor on a 1111×687 LR and its equally sized Ref: 256
channels at 1/4 resolution, 171×277 positions each (``--height``/``--width`` set the LR size), random values,
batch 1. Every chunk size runs in a fresh process after one warm-up call; peak memory is the process's peak
resident set (:func:`bench.memory.peak_rss_bytes`) on the CPU, ``torch.cuda.max_memory_allocated`` on CUDA, minus
the same measure once the inputs exist.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from bench.memory import peak_memory_bytes
from ops.matching import DEFAULT_CHUNK_SIZE, match_offsets

FEATURE_STRIDE = 4
CHANNELS = 256


def run_case(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    h, w = args.height // FEATURE_STRIDE, args.width // FEATURE_STRIDE
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, CHANNELS, h, w, generator=generator).to(device)
    ref_features = torch.randn(1, CHANNELS, h, w, generator=generator).to(device)
    with torch.inference_mode():
        match_offsets(features[..., :16, :16], ref_features[..., :16, :16], chunk_size=args.only)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        baseline = peak_memory_bytes(device)
        start = time.perf_counter()
        offsets = match_offsets(features, ref_features, chunk_size=args.only)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    extra = peak_memory_bytes(device) - baseline
    print(json.dumps({"seconds": seconds, "extra_bytes": extra, "offsets": list(offsets.shape)}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--width", type=int, default=1111, help="LR width")
    parser.add_argument("--height", type=int, default=687, help="LR height")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[2**23, DEFAULT_CHUNK_SIZE, 2**27])
    parser.add_argument("--only", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        run_case(args)
        return
    h, w = args.height // FEATURE_STRIDE, args.width // FEATURE_STRIDE
    dense = (h * w) ** 2 * 4
    print(
        f"match_offsets, features (1, {CHANNELS}, {h}, {w}) against the same size, 3×3 patches, device={args.device} "
        f"threads={args.threads}; one dense float32 score matrix would take {dense / 2**30:.1f} GiB"
    )
    header = f"{'chunk_size':>11} | {'seconds':>8} | {'extra peak MiB':>14}"
    print(header)
    print("-" * len(header))
    for chunk in args.chunk_sizes:
        command = [sys.executable, "-m", "bench.matching", *(argv or sys.argv[1:]), "--only", str(chunk)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(f"{chunk:>11} | failed: {(done.stderr.strip().splitlines() or [done.returncode])[-1]}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{chunk:>11} | {result['seconds']:8.2f} | {result['extra_bytes'] / 2**20:14.0f}")


if __name__ == "__main__":
    main()
