"""Correlation benchmark: ``ops.correlation`` against naive references, at PWC-Net's level sizes.

Run from the repository root::

    uv run python -m bench.correlation                  # CPU, the five levels of a 448² input
    uv run python -m bench.correlation --device cuda --input-size 448 1024

For an H×W input PWC-Net correlates features at levels 6 … 2: 196, 128, 96, 64, 32 channels at
H/64 … H/4 (for 448²: 7², 14², 28², 56², 112²), max displacement 4 (81 channels). Implementations:

* ``ops``: :func:`ops.correlation.correlation` (one displacement at a time);
* ``unfold``: the vectorised textbook version: ``F.unfold`` of the padded second map, i.e. all C·81
  shifted maps at once, times the first map, mean over channels;
* ``loop``: the naive reference, a Python loop over output pixels taking each pixel's 9×9
  neighbourhood at once; slow, so only run up to ``--loop-max-side``. Its process also checks that
  ``ops`` agrees with it (max |difference| of the output and of both gradients; otherwise the check
  is against ``unfold``).

Every measurement runs in a fresh subprocess: batch 1, random float32 features, forward + backward
w.r.t. both inputs, after a warm-up on a tiny input. Time: the median of ``--repeats`` runs. Peak
memory (a separate process, one run): the increase over the memory held once the inputs exist. On CPU
that is the peak RSS (``ru_maxrss``) with glibc told to map every block of 64 KiB or more on its own
(``MALLOC_MMAP_THRESHOLD_=65536``), so that freed tensors leave the RSS at once instead of staying in a
fragmented heap (that setting slows allocation down, hence the separate process); on CUDA it is
``max_memory_allocated``. One thread by default: the maps are small and the comparison is steadier on
a shared CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

LEVELS = ((6, 196), (5, 128), (4, 96), (3, 64), (2, 32))  # (pyramid level, channels)
IMPLEMENTATIONS = ("ops", "unfold", "loop")


def _loop_correlation(first, second, d: int = 4):
    """Per output pixel: mean over channels of first(y, x) times the (2d + 1)² neighbourhood of second."""
    import torch
    import torch.nn.functional as F

    batch, channels, height, width = first.shape
    padded = F.pad(second, (d, d, d, d))
    size = 2 * d + 1
    pixels = []
    for y in range(height):
        for x in range(width):
            window = padded[:, :, y : y + size, x : x + size].reshape(batch, channels, size * size)
            pixels.append((first[:, :, y, x, None] * window).mean(dim=1))
    return torch.stack(pixels, dim=-1).view(batch, size * size, height, width)


def _unfold_correlation(first, second, d: int = 4):
    """All (2d + 1)² shifted copies of second at once: (B, C·(2d + 1)², H·W), then the channel mean."""
    import torch.nn.functional as F

    batch, channels, height, width = first.shape
    size = 2 * d + 1
    shifted = F.unfold(second, size, padding=d).view(batch, channels, size * size, height, width)
    return (first.unsqueeze(2) * shifted).mean(dim=1)


def _worker(spec: dict) -> dict:
    """Run one measurement ("time" or "memory") of one case in this (fresh) process."""
    import torch

    from ops.correlation import correlation

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    function = {"ops": correlation, "unfold": _unfold_correlation, "loop": _loop_correlation}[spec["impl"]]

    def inputs(channels: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator(device=device).manual_seed(0)
        shape = (1, channels, side, side)
        return tuple(torch.randn(shape, generator=generator, device=device).requires_grad_() for _ in range(2))

    def step(first: torch.Tensor, second: torch.Tensor) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function(first, second).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        first.grad = second.grad = None
        return time.perf_counter() - start

    step(*inputs(4, 4))  # load the code paths before the baseline
    first, second = inputs(spec["channels"], spec["side"])
    if spec["measure"] == "memory":
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            baseline = torch.cuda.memory_allocated(device)
            step(first, second)
            return {"peak_bytes": torch.cuda.max_memory_allocated(device) - baseline}
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step(first, second)
        return {"peak_bytes": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) * 1024}  # KiB

    result = {"time_s": statistics.median(step(first, second) for _ in range(spec["repeats"]))}
    if spec["impl"] != "ops":
        outputs = []
        for implementation in (function, correlation):
            out = implementation(first, second)
            outputs.append((out.detach(), *torch.autograd.grad(out.square().sum(), (first, second))))
        result["max_diff"] = max(float((a - b).abs().max()) for a, b in zip(*outputs))
    return result


def _run(spec: dict) -> dict:
    environment = dict(os.environ)
    if spec["measure"] == "memory":
        environment["MALLOC_MMAP_THRESHOLD_"] = "65536"
    done = subprocess.run(
        [sys.executable, "-m", "bench.correlation", "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["killed"])[-1][:160]
        raise RuntimeError(f"case {spec} failed with exit {done.returncode}: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--input-size", type=int, nargs="+", default=[448], help="PWC-Net input sides (multiples of 64)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--loop-max-side", type=int, default=56, help="largest map side the pixel loop runs on")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return

    header = (
        f"{'input':>5} {'level':>5} {'features':>12} | {'ops s':>7} {'MiB':>6} | {'unfold s':>8} {'MiB':>6} | "
        f"{'loop s':>7} | {'unfold/ops':>10} {'loop/ops':>8} | {'max |diff|':>10}"
    )
    print(
        f"device={args.device} threads={args.threads or 'default'} batch=1 float32 max_displacement=4, "
        f"forward+backward; time = median of {args.repeats}, MiB = peak over the inputs"
    )
    print(header)
    print("-" * len(header))
    for input_size in args.input_size:
        if input_size % 64:
            raise SystemExit(f"--input-size must be a multiple of 64 (PWC-Net's protocol), got {input_size}")
        for level, channels in LEVELS:
            side = input_size // 2**level
            case = {"channels": channels, "side": side, "repeats": args.repeats, "threads": args.threads}
            case["device"] = args.device
            impls = [impl for impl in IMPLEMENTATIONS if impl != "loop" or side <= args.loop_max_side]
            timed = {impl: _run({**case, "impl": impl, "measure": "time"}) for impl in impls}
            memory = {impl: _run({**case, "impl": impl, "measure": "memory"}) for impl in ("ops", "unfold")}
            seconds = {impl: result["time_s"] for impl, result in timed.items()}
            loop = ("-", "-")
            if "loop" in seconds:
                loop = (f"{seconds['loop']:7.3f}", f"{seconds['loop'] / seconds['ops']:7.0f}×")
            print(
                f"{input_size:5d} {level:5d} {f'{channels}×{side}²':>12} | "
                f"{seconds['ops']:7.4f} {memory['ops']['peak_bytes'] / 2**20:6.1f} | "
                f"{seconds['unfold']:8.4f} {memory['unfold']['peak_bytes'] / 2**20:6.1f} | {loop[0]:>7} | "
                f"{seconds['unfold'] / seconds['ops']:9.1f}× {loop[1]:>8} | "
                f"{timed.get('loop', timed['unfold'])['max_diff']:10.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
