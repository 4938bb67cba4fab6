"""SR-RAW loading against training: DataLoader samples/s and the paper model's training steps/s.

Run from the repository root, after ``python -m bench.srraw_prepare`` (it prepares the root if needed)::

    uv run python -m bench.srraw_loader                              # the prepare bench's default root
    uv run python -m bench.srraw_loader --root /tmp/srraw_24mp --workers 0 2 --samples 300
    uv run python -m bench.srraw_loader --step-only --device cuda    # the training step alone (random batch)

Loader: :class:`~datamodules.srraw.datamodule.SRRAWDataModule` at the paper settings (zoom 4, patch 64,
target margin 16, raw input, batch ``--batch``; every scene in the training split and ``--crops-per-pair``
crops per pair, so that an epoch never ends during the measurement), through its ``train_dataloader``
with each ``--workers`` count: the first batch (worker start-up) is reported on its own, then
``--samples`` samples after ``--warmup`` are timed. Workers run torch on one thread each (PyTorch's
default); with 0 workers the samples are made in the main process on its torch threads (``--loader-threads``):
on cores that other programs keep busy, several OpenMP threads per sample are many times slower than one.

Training step: :class:`lightning_modules.ZoomLearnModule` with the model settings of
``configs/zoomlearn_4x.yaml`` (``pretrained: false``: random VGG19 weights, the same cost), on ``--device``
(default: CUDA when present), forward + backward + optimizer step on one batch (the loader's first batch,
or a random batch of the same shapes with ``--step-only``), median of ``--steps`` steps after ``--step-warmup``
untimed ones. On CPU one step of the paper model takes minutes (CoBi over 16 384 sampled positions of a
512 × 512 output), so the CPU default is a single step; ``--step-time`` takes a step time measured
elsewhere (e.g. ``--step-only --device cuda`` on a GPU machine) and ``--steps 0`` skips the step.

Printed: loader samples/s per worker count, step samples/s and their ratio (target ≥ 3×: the loader
must keep the training step fed with room to spare).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
import yaml

TARGET_RATIO = 3.0
CONFIG = Path(__file__).resolve().parent.parent / "configs" / "zoomlearn_4x.yaml"
PAPER_DATA = dict(zoom=4, patch_size=64, target_margin=16, input="raw")


def _data(root: str, workers: int, batch: int, crops_per_pair: int):
    from datamodules.srraw.datamodule import SRRAWDataModule

    return SRRAWDataModule(
        root, **PAPER_DATA, batch_size=batch, num_workers=workers, crops_per_pair=crops_per_pair,
        split_fractions=(1.0, 0.0, 0.0),
    )


def measure_loader(root: str, workers: int, batch: int, samples: int, warmup: int, crops_per_pair: int) -> dict:
    """First-batch seconds and samples/s of the training loader with ``workers`` processes."""
    data = _data(root, workers, batch, crops_per_pair)
    data.setup("fit")
    available = len(data.datasets["train"])
    if available < samples + warmup + 1:
        raise SystemExit(f"{root}: {available} training samples, fewer than --samples + --warmup; raise --crops-per-pair")
    start = time.perf_counter()
    iterator = iter(data.train_dataloader())
    first = next(iterator)
    first_seconds = time.perf_counter() - start
    for _ in range(warmup):
        next(iterator)
    seen = 0
    start = time.perf_counter()
    while seen < samples:
        seen += len(next(iterator)["scene"])
    seconds = time.perf_counter() - start
    del iterator  # stops the workers
    return {"first_s": first_seconds, "samples_per_s": seen / seconds, "batch": first, "pairs": len(data.pairs["train"])}


def _random_batch(batch: int) -> dict:
    zoom, patch, margin = PAPER_DATA["zoom"], PAPER_DATA["patch_size"], PAPER_DATA["target_margin"]
    generator = torch.Generator().manual_seed(0)
    side = 2 * zoom * patch + 2 * margin
    return {
        "input": torch.rand(batch, 4, patch, patch, generator=generator),
        "target": torch.rand(batch, 3, side, side, generator=generator),
        "wb_input": torch.tensor([[2.0, 1.0, 1.6]]).expand(batch, 3).clone(),
        "wb_target": torch.tensor([[2.0, 1.0, 1.6]]).expand(batch, 3).clone(),
        "wb_source": ["camera"] * batch,
    }


def build_model(device: torch.device):
    """The paper's ZoomLearnModule (configs/zoomlearn_4x.yaml model settings, random helper weights)."""
    from lightning_modules import ZoomLearnModule

    config = yaml.safe_load(CONFIG.read_text())
    settings = dict(config["model"]["init_args"], pretrained=False)
    model = ZoomLearnModule(
        zoom=PAPER_DATA["zoom"], in_channels=4, patch_size=PAPER_DATA["patch_size"], **settings
    ).to(device)
    model.setup("fit")
    return model


def measure_step(batch: dict, device: torch.device, steps: int, warmup: int) -> dict:
    """Median seconds of ``steps`` forward + backward + optimizer steps of the paper model on ``batch``,
    after ``warmup`` untimed ones."""
    model = build_model(device)
    model.train()
    optimizer = model.configure_optimizers()["optimizer"]
    tensors = {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}

    def step(index: int, label: str) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = model.training_step(tensors, index)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        print(f"  {label} step: {seconds:.3f} s", flush=True)
        return seconds

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer attached: logging is a no-op
        for index in range(warmup):
            step(index, "warm-up")
        times = [step(warmup + index, "timed") for index in range(steps)]
    batch_size = tensors["input"].shape[0]
    seconds = statistics.median(times)
    return {"step_s": seconds, "samples_per_s": batch_size / seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = Path(tempfile.gettempdir()) / "rawzoom_bench_srraw_6000x4000_2"
    parser.add_argument("--root", default=str(default_root), help="prepared SR-RAW root (default %(default)s)")
    parser.add_argument("--scenes", type=int, default=2, help="scenes to simulate when --root holds no data")
    parser.add_argument("--size", default="6000x4000", help="sensor size W×H to simulate when --root holds no data")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers to measure")
    parser.add_argument("--batch", type=int, default=1, help="batch size (paper: 1)")
    parser.add_argument("--samples", type=int, default=200, help="timed samples per worker count")
    parser.add_argument("--warmup", type=int, default=10, help="samples read before timing")
    parser.add_argument("--crops-per-pair", type=int, default=100_000, help="training samples per pair")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default: 3 on CUDA, 1 on CPU)")
    parser.add_argument(
        "--step-warmup", type=int, default=None,
        help="untimed steps before (default: 2 on CUDA, 0 on CPU, where one step takes minutes)",
    )
    parser.add_argument("--step-time", type=float, default=None, help="use this step time (s) instead of measuring one")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the step on CPU (0: torch's default)")
    parser.add_argument(
        "--loader-threads", type=int, default=0,
        help="torch threads of the main process while loading (0: as --threads; workers always use 1)",
    )
    parser.add_argument("--step-only", action="store_true", help="time the training step on a random batch only")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    steps = args.steps if args.steps is not None else (3 if gpu else 1)
    step_warmup = args.step_warmup if args.step_warmup is not None else (2 if gpu else 0)
    if args.threads:
        torch.set_num_threads(args.threads)
    import datamodules.srraw.datamodule  # noqa: F401  (imports are not part of any timing)
    import lightning_modules  # noqa: F401

    loaders: dict[int, dict] = {}
    batch = _random_batch(args.batch)
    if not args.step_only:
        root = Path(args.root)
        if not (root / "simulation.json").is_file():
            from bench.srraw_prepare import simulated_root

            width, _, height = args.size.lower().partition("x")
            simulated_root(root, args.scenes, int(width), int(height))
        start = time.perf_counter()
        _data(str(root), 0, args.batch, args.crops_per_pair).prepare_data()  # no-op when prepared
        print(f"{root}: prepared ({time.perf_counter() - start:.1f} s to check or prepare)")
        threads = torch.get_num_threads()
        if args.loader_threads:
            torch.set_num_threads(args.loader_threads)
        for workers in args.workers:
            loaders[workers] = measure_loader(
                str(root), workers, args.batch, args.samples, args.warmup, args.crops_per_pair
            )
            where = f"main process on {torch.get_num_threads()} threads" if workers == 0 else "1 thread each"
            print(
                f"loader, {workers} workers ({where}): {loaders[workers]['samples_per_s']:.1f} samples/s "
                f"(first batch {loaders[workers]['first_s']:.2f} s, {loaders[workers]['pairs']} pairs)", flush=True
            )
        torch.set_num_threads(threads)
        batch = loaders[args.workers[0]]["batch"]
    if args.step_time is not None:
        step = {"step_s": args.step_time, "samples_per_s": args.batch / args.step_time}
        print(f"training step: {args.step_time:.3f} s per batch of {args.batch} (given)")
    elif steps > 0:
        print(f"training step on {device}" + (f", {torch.get_num_threads()} threads" if not gpu else "") + ":", flush=True)
        step = measure_step(batch, device, steps, step_warmup)
        print(
            f"training step: {step['step_s']:.3f} s per batch of {args.batch} ({step['samples_per_s']:.3f} samples/s, "
            f"median of {steps})"
        )
    else:
        return
    print()
    print(f"{'loader':>16} {'samples/s':>10} | {'step samples/s':>14} | {'ratio':>8} (target ≥ {TARGET_RATIO:g}×)")
    for workers, result in loaders.items():
        ratio = result["samples_per_s"] / step["samples_per_s"]
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        print(
            f"{f'{workers} workers':>16} {result['samples_per_s']:10.1f} | {step['samples_per_s']:14.3f} | "
            f"{ratio:7.1f}× {verdict}"
        )


if __name__ == "__main__":
    main()
