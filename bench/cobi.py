"""CoBi benchmark: ``ops.cobi`` dense (the whole P×P matrix as one chunk) against chunked (the default).

Run from the repository root::

    uv run python -m bench.cobi                      # CPU, 64×64 and 128×128 maps (N = 4 096, 16 384)
    uv run python -m bench.cobi --device cuda --sizes 64 128 256

Each case (implementation × variant × distance × size) runs in a fresh subprocess: 64-channel random
features, batch 1, forward + backward w.r.t. the prediction (the target features carry no gradient, as in
training), median wall time of ``--repeats`` runs after a warm-up on a tiny input. Peak memory on CPU is
the increase of the process's peak RSS (``ru_maxrss``) over its value after the inputs exist; on CUDA it is
``max_memory_allocated`` over the allocation after the inputs exist. The dense run holds every P×P
matrix at once (``chunk_size = P``), as a plain implementation does; it runs under a memory cap
(``--dense-cap-gib``; on CPU an address-space limit): if it needs more it reports "does not fit".
The official variant runs dense (``max_positions=None``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CASES = (("official", "cosine"), ("paper", "cosine"), ("paper", "l2"))
_GIB = 1024**3


def _worker(spec: dict) -> dict:
    """Run one case in this (fresh) process and return its measurements."""
    import torch

    from ops.cobi import cobi_loss

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    variant, distance, dense = spec["variant"], spec["distance"], spec["impl"] == "dense"

    def loss_of(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        chunk = pred.shape[-2] * pred.shape[-1] if dense else None
        return cobi_loss(
            pred, target, w_spatial=spec["w_spatial"], distance=distance, variant=variant, max_positions=None,
            chunk_size=chunk,
        )

    def inputs(side: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator(device=device).manual_seed(0)
        shape = (1, spec["channels"], side, side)
        pred = torch.randn(shape, generator=generator, device=device).requires_grad_()
        return pred, torch.randn(shape, generator=generator, device=device)

    def step(pred: torch.Tensor, target: torch.Tensor) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss_of(pred, target).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        pred.grad = None
        return time.perf_counter() - start

    step(*inputs(8))  # load the code paths (allocator pools, thread pools) before the baseline
    pred, target = inputs(spec["side"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        if dense:
            total = torch.cuda.get_device_properties(device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, (baseline + spec["cap_gib"] * _GIB) / total), device)
    else:
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        if dense:
            with open("/proc/self/statm") as statm:  # virtual size in pages (Linux)
                virtual = int(statm.read().split()[0]) * resource.getpagesize()
            limit = virtual + int(spec["cap_gib"] * _GIB)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        times = [step(pred, target) for _ in range(spec["repeats"])]
    except (RuntimeError, MemoryError) as error:  # torch.cuda.OutOfMemoryError is a RuntimeError
        return {"fits": False, "error": str(error).splitlines()[0][:200]}
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {"fits": True, "time_s": statistics.median(times), "peak_bytes": peak}


def _run_case(spec: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.cobi", "--worker", json.dumps(spec)], capture_output=True, text=True
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["killed"])[-1][:120]
        return {"fits": False, "error": f"exit {done.returncode}: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="feature map sides (N = side²)")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--w-spatial", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--dense-cap-gib", type=float, default=8.0, help="memory the dense run may use")
    parser.add_argument("--skip-l2", action="store_true", help="only the cosine cases")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return

    cases = [case for case in CASES if not (args.skip_l2 and case[1] == "l2")]
    cap = f"> {args.dense_cap_gib:g} GiB"
    header = (
        f"{'variant':9} {'distance':8} {'N':>6} | {'dense s':>8} {'dense MiB':>10} | "
        f"{'chunked s':>9} {'chunked MiB':>11} | {'time ×':>6} {'memory ÷':>8}"
    )
    print(f"device={args.device} channels={args.channels} batch=1 w_spatial={args.w_spatial} repeats={args.repeats}")
    print(header)
    print("-" * len(header))
    for side in args.sizes:
        for variant, distance in cases:
            spec = dict(
                variant=variant, distance=distance, side=side, channels=args.channels, w_spatial=args.w_spatial,
                repeats=args.repeats, threads=args.threads, device=args.device, cap_gib=args.dense_cap_gib,
            )
            dense, chunked = (_run_case({**spec, "impl": impl}) for impl in ("dense", "chunked"))
            cells = []
            for result, width in ((dense, 19), (chunked, 21)):
                if result["fits"]:
                    cells.append(f"{result['time_s']:{width - 11}.3f} {result['peak_bytes'] / 2**20:10.1f}")
                else:
                    cells.append(f"{'does not fit (' + cap + ')':>{width}}")
            if dense["fits"] and chunked["fits"]:
                ratio = dense["peak_bytes"] / max(chunked["peak_bytes"], 1)
                cells.append(f"{chunked['time_s'] / dense['time_s']:6.2f} {ratio:8.1f}")
            elif chunked["fits"]:
                lower_bound = args.dense_cap_gib * _GIB / max(chunked["peak_bytes"], 1)
                cells.append(f"{'-':>6} {'>' + format(lower_bound, '.0f'):>8}")
            else:
                cells.append(f"{'-':>6} {'-':>8}")
            print(f"{variant:9} {distance:8} {side * side:6d} | " + " | ".join(cells), flush=True)
            for impl, result in (("dense", dense), ("chunked", chunked)):
                if not result["fits"]:
                    print(f"    {impl}: {result['error']}")


if __name__ == "__main__":
    main()
