"""Prepare an SR-RAW root before training: ``uv run python -m datamodules.srraw.prepare ROOT --workers N``.

Does what :meth:`SRRAWDataModule.prepare_data <datamodules.srraw.datamodule.SRRAWDataModule.prepare_data>`
does, in ``--workers`` processes, with a progress bar and a report: estimates the raw → JPG map of every
camera, aligns every scene (each scene's cache written atomically on its own, so an interrupted run resumes
where it stopped), lists the scenes it skipped (a single shot, no focal length; ``--strict`` makes them an
error), and decodes the parts of the files the pairs of each ``--zoom`` use. Run it once for a large set
(the full SR-RAW: 500 scenes × 7 shots × 24 MP) before training, in particular before a multi-GPU run.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from datamodules.srraw.alignment import prepare_alignments
from datamodules.srraw.datamodule import SRRAWDataModule
from datamodules.srraw.layout import find_scenes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datamodules.srraw.prepare", description=__doc__)
    parser.add_argument("root", help="the SR-RAW folder (scene folders, or train/ and test/)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default %(default)s)")
    parser.add_argument("--cache-dir", default=None, help="where the caches go (default: next to the data)")
    parser.add_argument("--zoom", type=int, nargs="+", default=[4], help="zoom factors to decode pairs for (default 4)")
    parser.add_argument("--target-margin", type=int, default=16, help="as the DataModule's (default %(default)s)")
    parser.add_argument("--input", choices=("raw", "png", "synthetic_raw"), default="raw", help="training input")
    parser.add_argument("--strict", action="store_true", help="a scene that is no zoom sequence is an error")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    start = time.perf_counter()
    scenes = find_scenes(args.root)
    report = prepare_alignments(
        scenes, args.cache_dir, workers=args.workers, strict=args.strict, progress=not args.no_progress
    )
    print(
        f"aligned {len(report.computed)} scenes, {len(report.current)} were already aligned, "
        f"{len(report.skipped)} skipped ({time.perf_counter() - start:.1f} s)"
    )
    for name, reason in sorted(report.skipped.items()):
        print(f"  skipped {name}: {reason}")
    for zoom in args.zoom:
        data = SRRAWDataModule(
            args.root, zoom=zoom, target_margin=args.target_margin, input=args.input, cache_dir=args.cache_dir,
            prepare_workers=args.workers, strict=args.strict,
        )
        data.prepare_data()
    cache = Path(args.cache_dir or args.root)
    size = sum(path.stat().st_size for path in cache.rglob("rawzoom_decoded/*.npy"))
    print(f"done in {time.perf_counter() - start:.1f} s; decoded windows: {size / 2**30:.2f} GiB under {cache}")


if __name__ == "__main__":
    main()
