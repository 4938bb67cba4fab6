"""Small simulated dual-zoom data shared by the tests of this folder (made once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules.simulate.dualzoom import simulate_dualzoom
from datamodules.simulate.dualzoom_config import DualZoomSimulation

#: ×4 Nikon layout: LR 56×40 (⌊256/4⌋ − 8 by ⌊192/4⌋ − 8), HR 224×160.
NIKON = DualZoomSimulation(layout="nikon", train_pairs=3, test_pairs=2, width=256, height=192, focal_ratio=4.0, seed=1)
#: ×2 CameraFusion layout: LR 120×88, HR 240×176.
CAMERAFUSION = DualZoomSimulation(
    layout="camerafusion", train_pairs=2, test_pairs=1, width=256, height=192, focal_ratio=2.0, seed=2
)
#: Phone captures for prepare: telephoto 512×384 at ×4 (EXIF 26 / 104 mm equivalent), orientations 1, 6, 3.
CAPTURES = DualZoomSimulation(
    output="captures", train_pairs=3, test_pairs=0, width=512, height=384, focal_ratio=4.0, seed=3, orientations=(1, 6, 3)
)


def _simulate(factory: pytest.TempPathFactory, name: str, config: DualZoomSimulation) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return simulate_dualzoom(factory.mktemp(name) / "data", config, progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def nikon_root(tmp_path_factory) -> Path:
    return _simulate(tmp_path_factory, "nikon", NIKON)


@pytest.fixture(scope="session")
def camerafusion_root(tmp_path_factory) -> Path:
    return _simulate(tmp_path_factory, "camerafusion", CAMERAFUSION)


@pytest.fixture(scope="session")
def captures_root(tmp_path_factory) -> Path:
    return _simulate(tmp_path_factory, "captures", CAPTURES)
