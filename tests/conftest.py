"""Shared fixtures: offline W&B, small simulated SR-RAW and dual-zoom datasets, and the real configs shrunk to
CPU size."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from datamodules.simulate.dualzoom import simulate_dualzoom
from datamodules.simulate.dualzoom_config import DualZoomSimulation
from datamodules.simulate.threads import single_torch_thread

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# W&B must never reach for the network in tests (environment.md: a key without network blocks ~110 s).
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.setdefault("WANDB_DISABLE_GIT", "true")


@pytest.fixture(autouse=True)
def _cli_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cli_main(args)` must not see pytest's own command line."""
    monkeypatch.setattr(sys, "argv", ["lightning"])


@pytest.fixture(scope="session")
def srraw_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four simulated SR-RAW scenes (512×384, 7 focal lengths) from a camera unlike the simulator's defaults:
    GBRG 12-bit raws, JPGs cropped 8 px from the sensor image, half the scenes in portrait, 3 px of
    perspective change between shots."""
    from datamodules.simulate import SRRAWSimulation, simulate_srraw

    root = tmp_path_factory.mktemp("srraw") / "SR-RAW"
    config = SRRAWSimulation(
        scenes=4, width=512, height=384, seed=7, cfa_pattern="GBRG", bit_depth=12, jpeg_border=8,
        portrait_fraction=0.5, max_perspective_px=3.0,
    )
    simulate_srraw(root, config, progress=False)
    return root


#: ×4 Nikon layout: LR 56×40 (⌊256/4⌋ − 8 by ⌊192/4⌋ − 8), HR 224×160.
NIKON = DualZoomSimulation(layout="nikon", train_pairs=3, test_pairs=2, width=256, height=192, focal_ratio=4.0, seed=1)
#: ×2 CameraFusion layout: LR 120×88, HR 240×176.
CAMERAFUSION = DualZoomSimulation(
    layout="camerafusion", train_pairs=2, test_pairs=1, width=256, height=192, focal_ratio=2.0, seed=2
)


def simulate_dualzoom_small(factory: pytest.TempPathFactory, name: str, config: DualZoomSimulation) -> Path:
    """Simulate ``config`` into a fresh temporary folder (the simulator runs on one thread itself)."""
    return simulate_dualzoom(factory.mktemp(name) / "data", config, progress=False)


@pytest.fixture(scope="session")
def nikon_root(tmp_path_factory) -> Path:
    return simulate_dualzoom_small(tmp_path_factory, "nikon", NIKON)


@pytest.fixture(scope="session")
def camerafusion_root(tmp_path_factory) -> Path:
    return simulate_dualzoom_small(tmp_path_factory, "camerafusion", CAMERAFUSION)


@pytest.fixture(scope="session")
def srraw_split(srraw_root: Path) -> Path:
    """An explicit split with two validation scenes, so validation has an even number of samples."""
    path = srraw_root.parent / "split.json"
    path.write_text(json.dumps({"train": ["00001", "00002"], "val": ["00003", "00004"], "test": ["00004"]}))
    return path


def one_epoch_trainer_args(run_dir: Path) -> list[str]:
    """CLI arguments of a quiet one-epoch run writing into ``run_dir`` (logger left to the caller)."""
    return [
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.max_epochs", "1",
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]


def csv_logger_args(run_dir: Path) -> list[str]:
    return ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.init_args.save_dir", str(run_dir)]


def tiny_run_args(root: Path, run_dir: Path, *, split: Path | None = None, logger: str = "wandb") -> list[str]:
    """CLI arguments that shrink the paper's 4X config + demo overlay to a seconds-long CPU run."""
    args = [
        "--config", str(CONFIGS / "zoomlearn_4x.yaml"),
        "--config", str(CONFIGS / "demo" / "zoomlearn.yaml"),
        "--data.init_args.root", str(root),
        "--data.init_args.simulate", "null",
        "--data.init_args.patch_size", "6",
        "--data.init_args.target_margin", "4",
        "--data.init_args.eval_crop", "8",
        "--data.init_args.crops_per_pair", "1",
        "--data.init_args.batch_size", "2",
        "--data.init_args.eval_batch_size", "1",
        "--data.init_args.num_workers", "0",
        "--model.init_args.rgb_patch_size", "3",
        "--model.init_args.cobi_max_positions", "null",
        *one_epoch_trainer_args(run_dir),
    ]
    if split is not None:
        args += ["--data.init_args.split_file", str(split)]
    if logger == "wandb":
        args += ["--trainer.logger.init_args.save_dir", str(run_dir)]
    else:
        args += csv_logger_args(run_dir)
    return args


@pytest.fixture
def one_thread():
    """Tiny tensors: extra intra-op threads only add overhead (and stall on a shared CPU)."""
    with single_torch_thread():
        yield
