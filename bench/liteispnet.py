"""LiteISPNet inference benchmark: forward time of the released configuration on a 1×4×224×224 packed raw
(a 448×448 sRGB output), the setting of reference ``raw_to_srgb.md`` §2 (official code: 73.2 GMAC, median
1,616 ms on 2 CPU threads of an AMD EPYC; the paper: 23.3 ms on an RTX 2080 Ti).

Run from the repository root::

    uv run python -m bench.liteispnet                          # CPU, 2 threads, fp32
    uv run python -m bench.liteispnet --channels-last          # CPU, NHWC activations
    uv run python -m bench.liteispnet --device cuda --precision bf16 --cuda-graph

The network is in eval mode, random weights, under ``torch.inference_mode``; ``--warmup`` runs first, then
the median (and min / max) of ``--repeats`` timed forwards. On CUDA each timed forward ends with a
synchronisation; ``--precision`` picks fp32 (TF32 off), tf32, or bf16 / fp16 autocast, cuDNN autotuning is on,
and ``--cuda-graph`` replays one captured graph (no per-kernel launch cost).

Time is wall time, so on a shared CPU other processes inflate it. On Linux the CPU run also reports, per
forward, the share of all CPUs that *other* processes kept busy (``/proc/stat`` minus this process), and the
median over the "quiet" forwards, those with less than ``--quiet`` of it (the reference's 5 % rule). It also
prints the CPU time this process spent per forward divided by ``--threads``: what the wall time would be with
perfect scaling and no competition (an estimate for a busy machine; OpenMP spin-waiting inflates it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable


def _busy_seconds() -> float | None:
    """CPU seconds all CPUs spent busy since boot (``/proc/stat``), or None where it cannot be read."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds (user + system) this process has used."""
    times = os.times()
    return times.user + times.system


def _measure(run: Callable[[], object], repeats: int, cuda: bool) -> tuple[list[float], list[float], list[float]]:
    """Wall seconds, this process's CPU seconds and other processes' share of all CPUs, per call of ``run``."""
    import torch

    walls, owns, others = [], [], []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        busy, own, start = _busy_seconds(), _own_seconds(), time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - start)
        owns.append(_own_seconds() - own)
        if busy is not None and not cuda:
            others.append(max((_busy_seconds() - busy) - owns[-1], 0.0) / (walls[-1] * os.cpu_count()))
    return walls, owns, others


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--size", type=int, default=224, help="side of the packed raw (multiple of 8)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--channels-last", action="store_true", help="NHWC weights and input")
    parser.add_argument("--precision", choices=("fp32", "tf32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--cuda-graph", action="store_true", help="capture the forward once, replay it")
    parser.add_argument("--quiet", type=float, default=0.05, help="CPU: max share of other processes' load")
    args = parser.parse_args(argv)

    import torch

    from lightning_modules.networks import LiteISPNet

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.cuda_graph and not cuda:
        raise SystemExit("--cuda-graph needs --device cuda")
    if not cuda and args.precision != "fp32":
        raise SystemExit("on the CPU only --precision fp32 is measured")
    torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.precision == "tf32"

    torch.manual_seed(0)
    net = LiteISPNet().to(args.device).eval()
    packed = torch.rand(1, 4, args.size, args.size, device=args.device)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
        packed = packed.contiguous(memory_format=torch.channels_last)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)

    def forward() -> torch.Tensor:
        if half is None:
            return net(packed)
        with torch.autocast(args.device, dtype=half, cache_enabled=False):
            return net(packed)

    with torch.inference_mode():
        run = forward
        if args.cuda_graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(max(args.warmup, 1)):
                    forward()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                output = forward()
            run = graph.replay
        else:
            output = forward()
        for _ in range(args.warmup):
            run()
        walls, owns, others = _measure(run, args.repeats, cuda)

    setting = torch.cuda.get_device_name() if cuda else f"cpu, {args.threads} threads"
    options = ", ".join([args.precision, "channels-last" if args.channels_last else "contiguous"])
    options += ", CUDA graph" if args.cuda_graph else ""
    print(
        f"LiteISPNet forward 1x4x{args.size}x{args.size} -> {tuple(output.shape)} ({setting}, {options}): "
        f"median {1e3 * statistics.median(walls):.2f} ms  (min {1e3 * min(walls):.2f}, "
        f"max {1e3 * max(walls):.2f}, n = {args.repeats}, after {args.warmup} warm-up)"
    )
    if not cuda:
        cpu = statistics.median(owns)
        print(
            f"  CPU time of this process per forward: median {1e3 * cpu:.0f} ms, / {args.threads} threads = "
            f"{1e3 * cpu / args.threads:.0f} ms"
        )
    if others:
        quiet = [wall for wall, other in zip(walls, others) if other < args.quiet]
        summary = f"median {1e3 * statistics.median(quiet):.2f} ms" if quiet else "none"
        print(
            f"  other processes' load per forward: {', '.join(f'{100 * o:.0f}%' for o in others)} of "
            f"{os.cpu_count()} CPUs; quiet forwards (< {100 * args.quiet:.0f}%): {len(quiet)}, {summary}"
        )


if __name__ == "__main__":
    main()
