"""Deformable convolution benchmark: ``ops.deform`` grid_sample backend against torchvision, the AdaSTN case.

Run from the repository root::

    uv run python -m bench.deform                    # CPU, 2 threads
    uv run python -m bench.deform --device cuda

Depthwise 3×3 deformable convolution (one offset group) of a (4, 64, 48, 48) input with offsets drawn from
N(0, spread²) pixels, forward + backward with gradients w.r.t. input, offsets and weight (the bias-free
``adapt_conv`` of AdaSTN). After ``--warmup`` untimed steps, the backends take turns for ``--repeats`` timed
steps each; the median and minimum wall times are printed with the ratio to torchvision's median.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ops.deform import deform_conv2d

BACKENDS = ("grid_sample", "torchvision")


def _step(backend: str, args: argparse.Namespace):
    """A closure timing one forward + backward of ``backend`` on fixed random inputs (seed 0)."""
    device = torch.device(args.device)
    generator = torch.Generator(device=device).manual_seed(0)
    shape = (args.batch, args.channels, args.size, args.size)
    x = torch.randn(shape, generator=generator, device=device).requires_grad_()
    offset = torch.randn(args.batch, 18, args.size, args.size, generator=generator, device=device) * args.spread
    offset.requires_grad_()
    weight = (torch.randn(args.channels, 1, 3, 3, generator=generator, device=device) / 3).requires_grad_()
    cotangent = torch.randn(shape, generator=generator, device=device)

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = deform_conv2d(x, offset, weight, padding=1, backend=backend)
        torch.autograd.grad(out, (x, offset, weight), cotangent)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=48, help="feature map side")
    parser.add_argument("--spread", type=float, default=2.0, help="offset standard deviation in pixels")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    steps = {backend: _step(backend, args) for backend in BACKENDS}
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times = {backend: [] for backend in BACKENDS}
    for _ in range(args.repeats):  # interleaved, so a change in machine load hits both backends alike
        for backend, step in steps.items():
            times[backend].append(step())
    reference = statistics.median(times["torchvision"])
    print(
        f"device={args.device} threads={args.threads} input=({args.batch}, {args.channels}, {args.size}, {args.size}) "
        f"depthwise 3×3, offsets N(0, {args.spread:g}²) px, forward + backward, repeats={args.repeats}"
    )
    header = f"{'backend':12} | {'median ms':>9} | {'min ms':>8} | {'÷ torchvision':>13}"
    print(header)
    print("-" * len(header))
    for backend, values in times.items():
        median = statistics.median(values)
        print(f"{backend:12} | {median * 1e3:9.1f} | {min(values) * 1e3:8.1f} | {median / reference:13.3f}")


if __name__ == "__main__":
    main()
