"""Deterministic capture simulators that write synthetic data in real datasets' layouts and formats."""

from datamodules.simulate.config import SRRAWSimulation
from datamodules.simulate.geometry import shot_mapping, warp_displacement
from datamodules.simulate.srraw import FORMAT_VERSION, simulate_srraw

__all__ = ["FORMAT_VERSION", "SRRAWSimulation", "simulate_srraw", "shot_mapping", "warp_displacement"]
