"""Simulated phone captures for the tests of this folder (the dual-zoom datasets are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamodules.simulate.dualzoom_config import DualZoomSimulation
from tests.conftest import simulate_dualzoom_small

#: Phone captures for prepare: telephoto 512×384 at ×4 (EXIF 26 / 104 mm equivalent), orientations 1, 6, 3.
CAPTURES = DualZoomSimulation(
    output="captures", train_pairs=3, test_pairs=0, width=512, height=384, focal_ratio=4.0, seed=3, orientations=(1, 6, 3)
)


@pytest.fixture(scope="session")
def captures_root(tmp_path_factory) -> Path:
    return simulate_dualzoom_small(tmp_path_factory, "captures", CAPTURES)
