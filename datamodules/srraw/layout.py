"""Where the scenes and shots of an SR-RAW-style dataset are on disk.

Two layouts are accepted under ``root``:

* flat: ``<root>/<scene>/<shot>.<raw ext>`` + ``<shot>.JPG`` (what the simulator writes);
* SR-RAW's release: ``<root>/train/<scene>/…`` and ``<root>/test/<scene>/…``. Scene names then carry
  the folder (``"train/00134"``) and :attr:`SceneLocation.released_split` says which one it came from.

A scene is a folder holding at least one raw file (extensions of :data:`datamodules.common.raw.RAW_EXTENSIONS`,
any case); other folders (``cropped/``, ``aligned/``, hidden temporary folders) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from datamodules.common.errors import DatasetError
from datamodules.common.raw import is_raw_file

__all__ = ["SceneLocation", "RELEASED_SPLITS", "find_scenes", "list_shots"]

#: Sub-folders of SR-RAW's released layout.
RELEASED_SPLITS = ("train", "test")


@dataclass(frozen=True)
class SceneLocation:
    """A scene folder: ``name`` relative to the root (posix), its ``directory``, and the released split."""

    name: str
    directory: Path
    released_split: Literal["train", "test"] | None


def list_shots(directory: Path) -> dict[str, Path]:
    """The raw files of a scene folder by shot name (file stem), sorted by name."""
    shots: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and is_raw_file(path) and not path.name.startswith("."):
            if path.stem in shots:
                raise DatasetError(f"{path}: shot {path.stem!r} has two raw files ({shots[path.stem].name}, {path.name})")
            shots[path.stem] = path
    return shots


def _scene_folders(parent: Path) -> list[Path]:
    return [
        folder
        for folder in sorted(parent.iterdir())
        if folder.is_dir() and not folder.name.startswith(".") and any(is_raw_file(f) for f in folder.iterdir())
    ]


def find_scenes(root: str | Path) -> list[SceneLocation]:
    """All scenes under ``root`` (flat or released layout), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root folder does not exist")
    released = [root / split for split in RELEASED_SPLITS if (root / split).is_dir()]
    if released:
        return [
            SceneLocation(f"{split.name}/{folder.name}", folder, split.name)  # type: ignore[arg-type]
            for split in released
            for folder in _scene_folders(split)
        ]
    return [SceneLocation(folder.name, folder, None) for folder in _scene_folders(root)]
