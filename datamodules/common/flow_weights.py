"""A learned optical flow's weight file read into a state dict, with errors that name the file and where to get
it (``ops.flow`` estimators take loaded state dicts and read no files). Used by ``datamodules.dualzoom.prepare``,
``RawToSRGBJointModule`` and the notebooks."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

__all__ = ["FLOW_WEIGHT_SOURCES", "read_flow_weights"]

#: Where the weight file of each learned flow backend comes from.
FLOW_WEIGHT_SOURCES = {
    "pwcnet": "the RAW-to-sRGB release's ckpt/pwc-net.pth (= sniklaus' network-default.pytorch)",
    "raft_small": "https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth",
    "raft_large": "https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
}


def read_flow_weights(kind: str, path: str | Path) -> dict[str, Tensor]:
    """The state dict in ``path`` for the flow backend ``kind`` (``"pwcnet"``, ``"raft_small"``, ``"raft_large"``).

    Raises ValueError for the classical flow (it takes no weights) or an unknown kind, FileNotFoundError for a
    missing file, RuntimeError for a file torch cannot read as weights.
    """
    if kind == "classical":
        raise ValueError(f"the classical (OpenCV DIS) flow takes no weights, got {str(path)!r}")
    if kind not in FLOW_WEIGHT_SOURCES:
        raise ValueError(f"expected a learned flow {tuple(FLOW_WEIGHT_SOURCES)}, got {kind!r}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{kind} weights '{path}' not found; get {FLOW_WEIGHT_SOURCES[kind]} and give its path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged or foreign files
        raise RuntimeError(f"{path}: cannot read the {kind} weights ({error})") from error
