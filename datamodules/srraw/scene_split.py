"""Splitting scenes into train / val / test (by scene, never by pair, so no scene leaks across splits).

* By fractions: the sorted scene names are shuffled by a permutation seeded with ``seed`` and cut into
  round(n·f_val/Σf) val and round(n·f_test/Σf) test scenes, the rest train. A split with a positive
  fraction gets at least one scene while train keeps one (so 3 scenes give 1/1/1).
* SR-RAW's released layout (``train/`` and ``test/`` folders): test is the ``test/`` folder and val is
  cut from the ``train/`` scenes by f_val/(f_train + f_val).
* By a JSON file ``{"train": [...], "val": [...], "test": [...]}`` naming scenes (missing keys are
  empty splits; scenes it does not name are unused). A training scene may not also be a val or test
  scene; val and test may share scenes (e.g. validating on the test scenes).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from datamodules.common.errors import DatasetError
from datamodules.srraw.layout import SceneLocation

__all__ = ["SPLITS", "split_counts", "split_scenes", "read_split_file"]

SPLITS = ("train", "val", "test")


def split_counts(count: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Scene counts (train, val, test) for ``count`` scenes and the given (unnormalised) fractions."""
    total = sum(fractions)
    if total <= 0 or min(fractions) < 0:
        raise ValueError(f"split fractions must be non-negative with a positive sum, got {fractions}")
    held_out = [int(count * fraction / total + 0.5) for fraction in fractions[1:]]
    held_out = [max(n, 1) if fraction > 0 else n for n, fraction in zip(held_out, fractions[1:])]
    keep = 1 if fractions[0] > 0 else 0
    while sum(held_out) > max(count - keep, 0):
        held_out[held_out.index(max(held_out))] -= 1
    val, test = held_out
    return count - val - test, val, test


def _cut(names: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    names = sorted(names)
    generator = torch.Generator().manual_seed(seed)
    shuffled = [names[i] for i in torch.randperm(len(names), generator=generator).tolist()]
    train, val, _ = split_counts(len(names), fractions)
    return {
        "train": sorted(shuffled[:train]),
        "val": sorted(shuffled[train : train + val]),
        "test": sorted(shuffled[train + val :]),
    }


def split_scenes(scenes: list[SceneLocation], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """Scene names per split (see the module docstring)."""
    if any(scene.released_split is not None for scene in scenes):
        split = _cut([s.name for s in scenes if s.released_split == "train"], (fractions[0], fractions[1], 0.0), seed)
        split["test"] = sorted(s.name for s in scenes if s.released_split == "test")
        return split
    return _cut([scene.name for scene in scenes], fractions, seed)


def read_split_file(path: str | Path, scenes: list[SceneLocation]) -> dict[str, list[str]]:
    """Scene names per split from a JSON split file; every name must be a scene under the root."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read split file ({error})") from error
    if not isinstance(data, dict) or not set(data) <= set(SPLITS):
        raise DatasetError(f"{path}: a split file must be an object with keys among {SPLITS}")
    split = {}
    for key in SPLITS:
        names = data.get(key, [])
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise DatasetError(f"{path}: {key!r} must be a list of scene names")
        split[key] = sorted(set(names))
    known = {scene.name for scene in scenes}
    unknown = sorted({name for names in split.values() for name in names} - known)
    if unknown:
        raise DatasetError(f"{path}: unknown scenes {unknown} (known: {sorted(known)})")
    leaked = sorted(set(split["train"]) & (set(split["val"]) | set(split["test"])))
    if leaked:
        raise DatasetError(f"{path}: scenes {leaked} are both training and evaluation scenes")
    return split
