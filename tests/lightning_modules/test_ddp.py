"""Real 2-process DDP (gloo on CPU), launched like a user would: the same training as one process.

Each rank gets one sample per step, the single process two: with per-sample losses, instance
normalisation and crops that depend only on (seed, epoch, index), both runs take the same optimisation
steps and report the same metrics. With BatchNorm (the paper's default) and CoBi's position sampling on,
the single process takes its two samples as two micro-batches of one (``accumulate_grad_batches=2``), so
that every batch statistic is over the same single sample and both runs draw the same CoBi positions
(they are seeded by the optimizer step): the weights agree. BatchNorm's running statistics do not —
SyncBatchNorm needs GPUs (``configs/trainer/ddp.yaml`` turns it on there), so on CPU each rank keeps its
own and DDP broadcasts rank 0's. Both run in float64: in float32 the summation order alone changes small
gradients by ~1e-3 relative, which Adam's normalised steps turn into visible weight differences; in float64
the two runs agree to ~1e-10.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_run_args

LIGHTNING = Path(sys.executable).parent / "lightning"


def run_lightning(args: list[str], cwd: Path) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(LIGHTNING), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"lightning {args[0]} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"


def last_metrics(run_dir: Path) -> dict[str, float]:
    """Merge the rows of the CSV logger's metrics.csv (later rows win)."""
    (path,) = run_dir.glob("lightning_logs/version_*/metrics.csv")
    merged: dict[str, float] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            merged.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return merged


def run_pair(root: Path, split: Path, run_dir: Path, devices: int) -> tuple[dict, dict, dict]:
    common = tiny_run_args(root, run_dir, split=split, logger="csv") + [
        "--model.init_args.norm", "instance",
        "--trainer.accelerator", "cpu",
        "--trainer.precision", "64-true",
        "--trainer.devices", str(devices),
        "--data.init_args.batch_size", str(2 // devices),
    ]
    if devices > 1:
        common += ["--trainer.strategy", "ddp"]
    run_lightning(["fit", *common, "--trainer.max_epochs", "2"], run_dir)
    fit_metrics = last_metrics(run_dir)
    (checkpoint,) = run_dir.glob("lightning_logs/version_0/checkpoints/last.ckpt")
    validate_dir = run_dir / "validate"
    validate_args = [a if a != str(run_dir) else str(validate_dir) for a in common]
    run_lightning(["validate", *validate_args, "--ckpt_path", str(checkpoint)], run_dir)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    fit_metrics["global_step"] = state["global_step"]
    return fit_metrics, last_metrics(validate_dir), state["state_dict"]


def fit_only(root: Path, split: Path, run_dir: Path, extra: list[str]) -> dict[str, torch.Tensor]:
    """Fit 2 epochs; the trained parameters (no BatchNorm running statistics) of the last checkpoint."""
    args = tiny_run_args(root, run_dir, split=split, logger="csv") + [
        "--trainer.accelerator", "cpu", "--trainer.precision", "64-true", "--trainer.max_epochs", "2", *extra,
    ]
    run_lightning(["fit", *args], run_dir)
    (checkpoint,) = run_dir.glob("lightning_logs/version_0/checkpoints/last.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert state["global_step"] == 6
    return {k: v for k, v in state["state_dict"].items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def test_two_process_ddp_with_batchnorm_and_cobi_sampling_takes_the_same_steps(srraw_root, srraw_split, tmp_path):
    paper = ["--model.init_args.norm", "batch", "--model.init_args.cobi_max_positions", "64", "--data.init_args.batch_size", "1"]
    single = fit_only(srraw_root, srraw_split, tmp_path / "single", paper + ["--trainer.accumulate_grad_batches", "2"])
    ddp = fit_only(srraw_root, srraw_split, tmp_path / "ddp", paper + ["--trainer.devices", "2", "--trainer.strategy", "ddp"])
    assert any(".beta" in key for key in single)  # the BatchNorm layers' shifts are trained and compared
    assert single.keys() == ddp.keys()
    for key, value in single.items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-7, atol=1e-9, msg=key)


def test_two_process_ddp_matches_one_process(srraw_root, srraw_split, tmp_path):
    single_fit, single_val, single_weights = run_pair(srraw_root, srraw_split, tmp_path / "single", devices=1)
    ddp_fit, ddp_val, ddp_weights = run_pair(srraw_root, srraw_split, tmp_path / "ddp", devices=2)

    assert single_fit["global_step"] == ddp_fit["global_step"] == 6  # 6 training pairs, 2 per step, 2 epochs
    for name in ("val/psnr", "val/psnr_aligned", "val/ssim", "val/lpips_random_backbone", "val/loss"):
        assert ddp_fit[name] == pytest.approx(single_fit[name], rel=1e-6), name
        assert ddp_val[name] == pytest.approx(single_val[name], rel=1e-6), name
    assert single_val["val/psnr_bicubic"] == pytest.approx(ddp_val["val/psnr_bicubic"], rel=1e-6)
    assert single_weights.keys() == ddp_weights.keys()
    for key, value in single_weights.items():
        torch.testing.assert_close(ddp_weights[key], value, rtol=1e-7, atol=1e-9, msg=key)
