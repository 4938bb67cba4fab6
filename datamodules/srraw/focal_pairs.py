"""Choosing (input, target) shot pairs of a zoom sequence by EXIF focal ratio (reference §3.5).

For each input shot s, the target is the shot t with the smallest ratio f_t/f_s inside
[zoom·low, zoom·high]; s has no pair when there is none. With SR-RAW's focals 240, 150, 100, 70, 50,
35, 24 mm (00001…00007) and (low, high) = (0.95, 1.3) this gives 00007→00003, 00006→00002 and
00005→00001 for zoom 4 (ratios 4.17, 4.29, 4.8) and 00007→00001 (ratio 10) for zoom 8.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["FocalPair", "select_focal_pairs"]


@dataclass(frozen=True)
class FocalPair:
    """Input shot, target shot and their focal ratio f_target/f_input."""

    input: str
    target: str
    ratio: float


def select_focal_pairs(
    focal_lengths: Mapping[str, float], zoom: float, ratio_range: tuple[float, float] = (0.95, 1.3)
) -> list[FocalPair]:
    """Pairs of a scene from its shots' focal lengths (mm, by shot name), ordered by input name."""
    low, high = zoom * ratio_range[0], zoom * ratio_range[1]
    pairs = []
    for source, source_focal in sorted(focal_lengths.items()):
        candidates = sorted(
            (focal / source_focal, target)
            for target, focal in focal_lengths.items()
            if target != source and low <= focal / source_focal <= high
        )
        if candidates:
            ratio, target = candidates[0]
            pairs.append(FocalPair(source, target, ratio))
    return pairs
