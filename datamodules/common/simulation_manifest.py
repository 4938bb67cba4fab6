"""The check that a simulated dataset on disk is the one a DataModule asks for (``simulation.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datamodules.common.errors import DatasetError

__all__ = ["check_simulation_manifest"]


def check_simulation_manifest(manifest: Path, dataset: str | None, format_version: int, config: dict[str, Any]) -> None:
    """Raise :class:`DatasetError` unless ``manifest`` records the simulator ``dataset`` (not checked when None),
    its ``format_version`` and exactly ``config`` (the simulation settings as a dict)."""
    try:
        written = json.loads(manifest.read_text())
        stored_dataset, version, stored = written.get("dataset"), written.get("format"), written.get("config")
    except (OSError, ValueError, AttributeError) as error:
        raise DatasetError(f"{manifest}: cannot read the simulation manifest ({error})") from error
    root = manifest.parent
    if dataset is not None and stored_dataset != dataset:
        raise DatasetError(f"{manifest}: the data in {root} was written by the {stored_dataset!r} simulator, not {dataset!r}")
    if version != format_version:
        raise DatasetError(
            f"{manifest}: the data in {root} was written by simulator format {version}, this version writes "
            f"format {format_version} (different images for the same settings); delete {root} to simulate it again"
        )
    if stored != config:
        raise DatasetError(f"{manifest}: the data in {root} was simulated with {stored}, not with the requested {config}")
