"""Command line: ``python -m datamodules.simulate srraw --out DIR --scenes N [--size WxH] [--seed S]``
``[--lens-blur σ]`` (the optics) ``[--luma-denoise σ] [--chroma-denoise σ] [--jpeg-subsampling 4:2:2]`` (the
camera JPG's processing);
``python -m datamodules.simulate dualzoom --out DIR [--layout nikon|camerafusion] [--output layout|captures]``
``[--pairs TRAIN TEST] [--size WxH] [--focal-ratio R] [--seed S]`` (a phone dual camera);
``python -m datamodules.simulate zrr --out DIR [--images TRAIN TEST] [--size N] [--seed S]`` (phone raws and
DSLR JPGs in Zurich RAW-to-RGB's layout)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import time

from datamodules.simulate.config import SRRAWSimulation
from datamodules.simulate.dualzoom import simulate_dualzoom
from datamodules.simulate.dualzoom_config import DualZoomSimulation
from datamodules.simulate.jpeg import JPEG_SUBSAMPLINGS
from datamodules.simulate.srraw import CFA_PATTERNS, simulate_srraw
from datamodules.simulate.zrr import simulate_zrr
from datamodules.simulate.zrr_config import ZRRSimulation


def parse_size(text: str) -> tuple[int, int]:
    """``"1024x768"`` → (1024, 768)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a size like 1024x768, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datamodules.simulate", description=__doc__)
    datasets = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    defaults = SRRAWSimulation()
    srraw = datasets.add_parser("srraw", help="an SR-RAW optical-zoom capture session (DNG + JPG per focal length)")
    srraw.add_argument("--out", required=True, help="dataset root to create (must not exist or be empty)")
    srraw.add_argument("--scenes", type=int, default=defaults.scenes, help="number of scenes (default %(default)s)")
    srraw.add_argument(
        "--size", type=parse_size, default=(defaults.width, defaults.height), metavar="WxH",
        help=f"sensor size in pixels (default {defaults.width}x{defaults.height})",
    )
    srraw.add_argument("--seed", type=int, default=defaults.seed, help="base seed (default %(default)s)")
    srraw.add_argument(
        "--lens-blur", type=float, default=defaults.lens_blur, metavar="SIGMA",
        help="Gaussian PSF of lens and anti-aliasing filter, σ in pixels (default %(default)s; 0: perfectly sharp)",
    )
    srraw.add_argument(
        "--luma-denoise", type=float, default=defaults.luma_denoise, metavar="SIGMA",
        help="in-camera luma noise reduction, bilateral σ in pixels (default %(default)s: off)",
    )
    srraw.add_argument(
        "--chroma-denoise", type=float, default=defaults.chroma_denoise, metavar="SIGMA",
        help="in-camera chroma noise reduction, Gaussian σ in pixels (default %(default)s: off)",
    )
    srraw.add_argument(
        "--cfa-pattern", choices=CFA_PATTERNS, default=defaults.cfa_pattern,
        help="colour filter order of the sensor, raster order (default %(default)s)",
    )
    srraw.add_argument(
        "--bit-depth", type=int, choices=(12, 14), default=defaults.bit_depth, help="raw bit depth (default %(default)s)"
    )
    srraw.add_argument(
        "--jpeg-border", type=int, default=defaults.jpeg_border, metavar="PX",
        help="pixels the camera cuts from every side of the sensor image for its JPG (default %(default)s)",
    )
    srraw.add_argument(
        "--portrait-fraction", type=float, default=defaults.portrait_fraction, metavar="SHARE",
        help="share of the scenes shot in portrait, with EXIF orientation (default %(default)s)",
    )
    srraw.add_argument(
        "--jpeg-subsampling", choices=JPEG_SUBSAMPLINGS, default=defaults.jpeg_subsampling,
        help="chroma subsampling of the camera JPGs (default %(default)s)",
    )
    srraw.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_dualzoom_parser(datasets)
    add_zrr_parser(datasets)
    return parser


def add_dualzoom_parser(datasets: argparse._SubParsersAction) -> None:
    defaults = DualZoomSimulation()
    dualzoom = datasets.add_parser(
        "dualzoom", help="a phone dual camera: DRealSR-Nikon / CameraFusion PNG pairs, or DNG + JPG captures for prepare"
    )
    dualzoom.add_argument("--out", required=True, help="folder to create (must not exist or be empty)")
    dualzoom.add_argument("--layout", choices=("nikon", "camerafusion"), default=defaults.layout,
                          help="dataset layout and its scale: nikon ×4, camerafusion ×2 (default %(default)s)")
    dualzoom.add_argument("--output", choices=("layout", "captures"), default=defaults.output,
                          help="PNG pairs in the layout, or short/ + tele/ captures (default %(default)s)")
    dualzoom.add_argument("--pairs", type=int, nargs=2, default=(defaults.train_pairs, defaults.test_pairs),
                          metavar=("TRAIN", "TEST"), help="pairs per split (default %(default)s)")
    dualzoom.add_argument("--size", type=parse_size, default=(defaults.width, defaults.height), metavar="WxH",
                          help=f"sensor size of both cameras (default {defaults.width}x{defaults.height})")
    dualzoom.add_argument("--focal-ratio", type=float, default=defaults.focal_ratio,
                          help="35 mm-equivalent focal ratio tele/short (default %(default)s)")
    dualzoom.add_argument("--seed", type=int, default=defaults.seed, help="base seed (default %(default)s)")
    dualzoom.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main_dualzoom(args: argparse.Namespace) -> None:
    width, height = args.size
    config = dataclasses.replace(
        DualZoomSimulation(), layout=args.layout, output=args.output, train_pairs=args.pairs[0],
        test_pairs=args.pairs[1], width=width, height=height, focal_ratio=args.focal_ratio, seed=args.seed,
    )
    start = time.perf_counter()
    out = simulate_dualzoom(args.out, config, progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    pairs = sum(args.pairs)
    print(f"wrote {pairs} {args.layout} {args.output} pairs ({width}x{height} sensors) to {out} in {elapsed:.1f} s")


def add_zrr_parser(datasets: argparse._SubParsersAction) -> None:
    defaults = ZRRSimulation()
    zrr = datasets.add_parser("zrr", help="Zurich RAW-to-RGB: phone raw PNGs and DSLR JPGs with a known misalignment")
    zrr.add_argument("--out", required=True, help="dataset root to create (must not exist or be empty)")
    zrr.add_argument("--images", type=int, nargs=2, default=(defaults.train_images, defaults.test_images),
                     metavar=("TRAIN", "TEST"), help="pairs per split (default %(default)s)")
    zrr.add_argument("--size", type=int, default=defaults.size,
                     help="side of the raw and the JPG, even (default %(default)s, ZRR's)")
    zrr.add_argument("--seed", type=int, default=defaults.seed, help="base seed (default %(default)s)")
    zrr.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main_zrr(args: argparse.Namespace) -> None:
    config = dataclasses.replace(
        ZRRSimulation(), train_images=args.images[0], test_images=args.images[1], size=args.size, seed=args.seed
    )
    start = time.perf_counter()
    out = simulate_zrr(args.out, config, progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    print(f"wrote {sum(args.images)} ZRR pairs ({args.size}x{args.size}) to {out} in {elapsed:.1f} s")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.dataset == "dualzoom":
        main_dualzoom(args)
        return
    if args.dataset == "zrr":
        main_zrr(args)
        return
    width, height = args.size
    config = dataclasses.replace(
        SRRAWSimulation(),
        scenes=args.scenes,
        width=width,
        height=height,
        seed=args.seed,
        lens_blur=args.lens_blur,
        luma_denoise=args.luma_denoise,
        chroma_denoise=args.chroma_denoise,
        jpeg_subsampling=args.jpeg_subsampling,
        cfa_pattern=args.cfa_pattern,
        bit_depth=args.bit_depth,
        jpeg_border=args.jpeg_border,
        portrait_fraction=args.portrait_fraction,
    )
    start = time.perf_counter()
    out = simulate_srraw(args.out, config, progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    shots = len(config.focal_lengths)
    print(f"wrote {config.scenes} scenes × {shots} shots ({width}x{height}) to {out} in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
