"""SR-RAW preparation at full size: seconds and peak memory per 24-megapixel scene.

Run from the repository root::

    uv run python -m bench.srraw_prepare                          # 2 scenes of 6000×4000, 1 process
    uv run python -m bench.srraw_prepare --scenes 4 --workers 2 --out /tmp/srraw_24mp

The simulated scenes (:func:`datamodules.simulate.simulate_srraw`, 7 shots each, DNG raws and camera JPGs)
are written to ``--out`` once; a folder that already holds the same simulation is reused (the simulation
is not timed: at 24 MP it takes about 2 minutes per shot on one core). Then every scene is prepared as
:meth:`SRRAWDataModule.prepare_data <datamodules.srraw.datamodule.SRRAWDataModule.prepare_data>` and
``python -m datamodules.srraw.prepare`` do it, one phase at a time, each phase in a fresh process with torch
on one thread (the figures are per core):

* ``camera``: the raw → JPG map of the camera, estimated on the first scene's reference shot (once per
  camera for the whole dataset, :mod:`datamodules.srraw.camera_geometry`);
* ``align``: the alignment of the scene's 7 shots to its reference, written to its cache
  (:mod:`datamodules.srraw.alignment`);
* ``decode``: the decoded windows of the scene's 4X pairs (``zoom 4``, ``target_margin 16``, raw input:
  the packed raw window with the check of its JPG, the target JPG window; ``--eval-windows`` adds the
  input JPG window that validation and test scenes also keep, :mod:`datamodules.srraw.decoded`).

Each phase starts from a removed cache. Reported per scene: the wall seconds of each phase's work (imports
excluded), the CPU seconds of align + decode (less sensitive to other programs on a shared machine), and
the peak resident memory of each process (``VmHWM``: ``ru_maxrss`` without what the forking parent held;
the imports, about 0.85 GiB, included). With ``--workers`` > 1 the scenes after the first run in that
many processes at once, each still on one thread. Targets: ≤ 10 s per scene per core and ≤ 2 GB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TARGET_SECONDS = 10.0
TARGET_BYTES = 2 * 10**9
PHASES = ("camera", "align", "decode")
_MARK = "RESULT "


def _single_thread_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


# ---------------------------------------------------------------------------------------------- worker


def _worker(spec: dict) -> dict:
    """Run one phase of one scene in this (fresh) process; returns its seconds and peak RSS."""
    import torch

    torch.set_num_threads(1)
    from datamodules.common.capture import find_jpg
    from datamodules.common.images import read_jpg_metadata
    from datamodules.common.raw import read_raw_metadata
    from datamodules.srraw.alignment import prepare_alignments
    from datamodules.srraw.camera_geometry import CameraGeometries
    from datamodules.srraw.datamodule import SRRAWDataModule
    from datamodules.srraw.decoded import write_decoded
    from datamodules.srraw.layout import find_scenes, list_shots

    root = Path(spec["root"])
    scene = next(scene for scene in find_scenes(root) if scene.name == spec["scene"])
    details: dict = {"baseline_bytes": _status_bytes("VmRSS")}
    start, cpu_start = time.perf_counter(), time.process_time()
    if spec["phase"] == "camera":
        raw_path = next(iter(list_shots(scene.directory).values()))
        estimate = CameraGeometries(root).get(read_raw_metadata(raw_path), read_jpg_metadata(find_jpg(raw_path)))
        details["correlation"] = estimate.correlation
    elif spec["phase"] == "align":
        report = prepare_alignments([scene], progress=False, cameras_folder=root)
        if report.computed != [scene.name]:
            raise RuntimeError(f"{scene.directory}: scene was not aligned ({report})")
    else:
        data = SRRAWDataModule(str(root), zoom=4, target_margin=16, input="raw", num_workers=0)
        pairs = data._pairs_of(scene)  # the pairs and windows prepare_data decodes for this scene
        arrays = [array for pair in pairs for array in (pair.raw, pair.target_jpg)]
        if spec["eval_windows"]:
            arrays += [pair.input_jpg for pair in pairs]
        details["pairs"] = len(pairs)
        details["arrays"] = write_decoded(arrays, workers=1, progress=False)
        details["files_decoded"] = len({(array.source, array.kind == "raw") for array in arrays})
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_bytes": _peak_rss(), **details}


def _status_bytes(field: str) -> int | None:
    """A memory field (``VmRSS``, ``VmHWM``) of ``/proc/self/status`` in bytes; None where there is none."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak_rss() -> int:
    """Peak resident memory (bytes) of this process since its exec.

    ``VmHWM`` of ``/proc/self/status`` where there is one (Linux): ``ru_maxrss`` also counts the memory of
    the parent that forked this process, as held at the fork. Elsewhere ``ru_maxrss`` (KiB on Linux, bytes
    on macOS).
    """
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _run_phase(root: Path, scene: str, phase: str, eval_windows: bool) -> dict:
    spec = {"root": str(root), "scene": scene, "phase": phase, "eval_windows": eval_windows}
    done = subprocess.run(
        [sys.executable, "-m", "bench.srraw_prepare", "--worker", json.dumps(spec)],
        capture_output=True, text=True, env=_single_thread_env(),
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:]) or f"exit {done.returncode} (killed?)"
        raise RuntimeError(f"{phase} of scene {scene} failed:\n{tail}")
    return json.loads(lines[-1][len(_MARK):])


# ---------------------------------------------------------------------------------------------- data


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def simulated_root(out: Path, scenes: int, width: int, height: int) -> Path:
    """``out`` holding the simulation of ``scenes`` scenes of ``width`` × ``height``: reused, or written now."""
    from datamodules.simulate import FORMAT_VERSION, SRRAWSimulation, simulate_srraw

    config = SRRAWSimulation(scenes=scenes, width=width, height=height)
    manifest = out / "simulation.json"
    if manifest.is_file():
        written = json.loads(manifest.read_text())
        if written.get("format") == FORMAT_VERSION and written.get("config") == config.to_dict():
            print(f"reusing the simulation in {out}")
            return out
        raise SystemExit(f"{out} holds another simulation ({manifest}); pass another --out or delete it")
    start = time.perf_counter()
    print(f"simulating {scenes} SR-RAW scenes of {width}×{height} in {out} (not timed; about 2 minutes per 24 MP shot)", flush=True)
    # in a process of its own: the simulation holds gigabytes, and the timed processes are forked from this one
    process = multiprocessing.get_context("spawn").Process(target=simulate_srraw, args=(out, config))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise SystemExit(f"the simulation into {out} failed (exit code {process.exitcode})")
    print(f"simulated in {time.perf_counter() - start:.0f} s")
    return out


def _clear_caches(root: Path, scene: str, phase: str) -> None:
    """Remove what ``phase`` of ``scene`` computes, so that it is computed again."""
    from datamodules.srraw.alignment import ALIGNMENT_CACHE_NAME
    from datamodules.srraw.camera_geometry import CAMERAS_FILE
    from datamodules.srraw.decoded import DECODED_FOLDER

    if phase == "camera":
        (root / CAMERAS_FILE).unlink(missing_ok=True)
    elif phase == "align":
        (root / scene / ALIGNMENT_CACHE_NAME).unlink(missing_ok=True)
    else:
        shutil.rmtree(root / scene / DECODED_FOLDER, ignore_errors=True)


def _scene_row(root: Path, scene: str, first: bool, eval_windows: bool) -> dict:
    row = {}
    for phase in PHASES:
        if phase == "camera" and not first:
            continue
        _clear_caches(root, scene, phase)
        row[phase] = _run_phase(root, scene, phase, eval_windows)
    return row


# ---------------------------------------------------------------------------------------------- main


def _load() -> str:
    try:
        return " ".join(f"{value:.1f}" for value in os.getloadavg()) + f" on {os.cpu_count()} cores"
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=2, help="simulated scenes (default %(default)s)")
    parser.add_argument("--size", default="6000x4000", help="sensor size W×H (default %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="scenes prepared at once, one process each")
    parser.add_argument("--out", default=None, help="simulation folder (default: under the system temp folder)")
    parser.add_argument("--eval-windows", action="store_true", help="also decode the input JPG windows (val/test scenes)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(_MARK + json.dumps(_worker(json.loads(args.worker))), flush=True)
        return

    width, height = _size(args.size)
    out = Path(args.out or Path(tempfile.gettempdir()) / f"rawzoom_bench_srraw_{width}x{height}_{args.scenes}")
    root = simulated_root(out, args.scenes, width, height)
    from datamodules.srraw.layout import find_scenes

    names = [scene.name for scene in find_scenes(root)]
    print(f"preparing {len(names)} scenes of {width}×{height} ({args.workers} at a time, torch on 1 thread each)")
    rows: dict[str, dict] = {names[0]: _scene_row(root, names[0], True, args.eval_windows)}
    with ThreadPoolExecutor(max(1, args.workers)) as pool:
        futures = {name: pool.submit(_scene_row, root, name, False, args.eval_windows) for name in names[1:]}
        rows.update({name: future.result() for name, future in futures.items()})

    header = (
        f"{'scene':8} {'camera s':>9} {'align s':>8} {'decode s':>9} {'total s':>8} {'(cpu s)':>8} | "
        f"{'peak MiB camera/align/decode':>28}"
    )
    print(header)
    print("-" * len(header))
    worst_seconds = worst_cpu = worst_peak = 0.0
    for name, row in rows.items():
        seconds = {phase: row[phase]["seconds"] for phase in row}
        peaks = {phase: row[phase]["peak_bytes"] / 2**20 for phase in row}
        total = seconds["align"] + seconds["decode"]  # the per-scene work; the camera map is estimated once
        cpu = row["align"]["cpu_seconds"] + row["decode"]["cpu_seconds"]
        worst_seconds, worst_cpu, worst_peak = max(worst_seconds, total), max(worst_cpu, cpu), max(worst_peak, *peaks.values())
        camera = f"{seconds['camera']:9.2f}" if "camera" in row else f"{'-':>9}"
        peak_cells = "/".join(f"{peaks[phase]:.0f}" if phase in peaks else "-" for phase in PHASES)
        print(
            f"{name:8} {camera} {seconds['align']:8.2f} {seconds['decode']:9.2f} {total:8.2f} {cpu:8.2f} | "
            f"{peak_cells:>28}"
        )
    decode = rows[names[0]]["decode"]
    print(
        f"decode: {decode['pairs']} pairs, {decode['files_decoded']} files decoded per scene"
        + (" (input JPG windows included)" if args.eval_windows else " (training scene: raw + target windows)")
    )
    baseline = rows[names[0]]["align"].get("baseline_bytes")
    if baseline:
        print(f"memory: the peaks include {baseline / 2**20:.0f} MiB resident after the imports (torch, Lightning)")
    print(f"cpu s: CPU time of align + decode (wall time also counts waiting for a shared core); load now {_load()}")
    seconds_ok, memory_ok = worst_seconds <= TARGET_SECONDS, worst_peak * 2**20 <= TARGET_BYTES
    print(
        f"target ≤ {TARGET_SECONDS:.0f} s per scene per core (align + decode): worst {worst_seconds:.2f} s wall, "
        f"{worst_cpu:.2f} s CPU "
        f"{'met' if seconds_ok else 'MISSED'}; target ≤ {TARGET_BYTES / 1e9:.0f} GB peak: worst "
        f"{worst_peak * 2**20 / 1e9:.2f} GB {'met' if memory_ok else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
