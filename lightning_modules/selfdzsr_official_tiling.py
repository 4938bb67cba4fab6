"""The official SelfDZSR test-time tiling (``forward_chop_x4`` / ``forward_chop_x2``, reference ``selfdzsr.md`` §1.7),
kept to compare :meth:`~lightning_modules.selfdzsr.SelfDZSRModule.super_resolve` with (``tile="official"``).

For an LR (B, 3, h, w) and its Ref (the telephoto view of the central box, about the LR's pixel size):

1. reflection-pad the LR to (⌊h/24⌋ + 1)·24 + 16 rows (same for columns), split ⌊pad/2⌋ before / the rest after;
2. cut a k×k grid of tiles (k = 3 at ×4, 6 at ×2): cores of P = (padded − 16)/k pixels plus an 8-pixel halo;
3. the central tile(s) match against the Ref region at the same pixel coordinates (×4) or a Ref crop of twice
   the tile's size from the Ref reflection-padded by pad − 8 (×2), and get a Ref pasted: at ×4 the whole Ref at
   the hand-derived position (⌊P/8⌋ + 6 + ⌊pad_top/4⌋, …) — off by up to one LR pixel —, at ×2 that crop over
   the whole tile;
4. every other tile matches against the Ref window chosen by *PatchSelect*: at 1/8 resolution (bilinear,
   align corners), the window of the tile's size whose sorted pixel values per channel are closest (mean
   absolute difference) to the tile's, a colour-histogram distance with no spatial term; no paste;
5. each tile runs the network with its own global modulation (the Predictor sees the tile's fused features,
   the whole image's central LR crop — rows and columns 3/8…5/8 at ×4, 1/4…3/4 at ×2 — and the whole Ref);
6. the halos (8 LR pixels) are cut off, the cores assembled and the padding removed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.networks import DZSRFeatureExtractor, SelfDZSRNet

__all__ = ["official_tiled_super_resolve", "select_ref_window"]

HALO = 8
_SELECT_FACTOR = 8


def select_ref_window(tile: Tensor, ref: Tensor) -> tuple[int, int]:
    """PatchSelect: the top-left (row, column) in ``ref`` (1, 3, H, W) of the tile-sized window whose per-channel
    sorted pixel values at 1/8 resolution are closest (mean |difference|) to those of ``tile`` (1, 3, h, w)."""
    small_tile = F.interpolate(tile, scale_factor=1 / _SELECT_FACTOR, mode="bilinear", align_corners=True)
    small_ref = F.interpolate(ref, scale_factor=1 / _SELECT_FACTOR, mode="bilinear", align_corners=True)
    th, tw = small_tile.shape[-2:]
    windows = small_ref[0].unfold(1, th, 1).unfold(2, tw, 1)  # (3, n_h, n_w, th, tw)
    rows, cols = windows.shape[1:3]
    ranked = windows.reshape(3, rows, cols, th * tw).sort(dim=-1).values
    target = small_tile[0].reshape(3, 1, 1, th * tw).sort(dim=-1).values
    cost = (ranked - target).abs().mean(dim=(0, 3))  # (n_h, n_w)
    best = int(cost.flatten().argmin())
    top = min(_SELECT_FACTOR * (best // cols), ref.shape[-2] - tile.shape[-2])
    left = min(_SELECT_FACTOR * (best % cols), ref.shape[-1] - tile.shape[-1])
    return max(0, top), max(0, left)


def _padding(size: int) -> tuple[int, int]:
    padded = (size // 24 + 1) * 24 + 16
    return (padded - size) // 2, padded - size - (padded - size) // 2


@torch.no_grad()
def official_tiled_super_resolve(
    net: SelfDZSRNet, features: DZSRFeatureExtractor, lr: Tensor, ref: Tensor, paste: bool = True
) -> Tensor:
    """SR (B, 3, s·h, s·w) by the official tiling (module docstring), one image of the batch at a time."""
    return torch.cat([_one_image(net, features, lr[i : i + 1], ref[i : i + 1], paste) for i in range(lr.shape[0])])


def _one_image(net: SelfDZSRNet, features: DZSRFeatureExtractor, lr: Tensor, ref: Tensor, paste: bool) -> Tensor:
    s = net.scale
    grid = 3 if s == 4 else 6
    height, width = lr.shape[-2:]
    (pad_top, pad_bottom), (pad_left, pad_right) = _padding(height), _padding(width)
    padded = F.pad(lr, (pad_left, pad_right, pad_top, pad_bottom), mode="reflect")
    core_h, core_w = (padded.shape[-2] - 2 * HALO) // grid, (padded.shape[-1] - 2 * HALO) // grid
    tile_h, tile_w = core_h + 2 * HALO, core_w + 2 * HALO
    lo, hi = (3, 5) if s == 4 else (2, 6)  # the official central LR crop: eighths of the image
    lr_centre = lr[..., height * lo // 8 : height * hi // 8, width * lo // 8 : width * hi // 8]
    ref = ref[..., : ref.shape[-2] // 4 * 4, : ref.shape[-1] // 4 * 4]
    centre_tiles = {(1, 1)} if s == 4 else {(2, 2), (2, 3), (3, 2), (3, 3)}
    ref_pad = (max(pad_top - HALO, 0), max(pad_left - HALO, 0))
    padded_ref = F.pad(ref, (ref_pad[1], ref_pad[1], ref_pad[0], ref_pad[0]), mode="reflect") if s == 2 else ref
    output = lr.new_empty(1, 3, s * grid * core_h, s * grid * core_w)
    for i in range(grid):
        for j in range(grid):
            tile = padded[..., i * core_h : i * core_h + tile_h, j * core_w : j * core_w + tile_w]
            centre = (i, j) in centre_tiles
            if centre and s == 4:
                # the Ref region at the tile's pixel coordinates (unpadded frame); the whole Ref is pasted
                top = min(max(i * core_h - pad_top, 0), ref.shape[-2] - tile_h)
                left = min(max(j * core_w - pad_left, 0), ref.shape[-1] - tile_w)
                patch_ref, paste_ref = ref[..., top : top + tile_h, left : left + tile_w], ref
                box = (core_h // 8 + 6 + pad_top // 4, core_w // 8 + 6 + pad_left // 4, ref.shape[-2] // s, ref.shape[-1] // s)
            elif centre:
                # a Ref crop of twice the tile's size where the tile lies in the Ref's frame, pasted over the tile
                top = 2 * (i * core_h - pad_top - height // 4) + ref_pad[0]
                left = 2 * (j * core_w - pad_left - width // 4) + ref_pad[1]
                top = min(max(top, 0), padded_ref.shape[-2] - 2 * tile_h)
                left = min(max(left, 0), padded_ref.shape[-1] - 2 * tile_w)
                paste_ref = padded_ref[..., top : top + 2 * tile_h, left : left + 2 * tile_w]
                patch_ref, box = paste_ref[..., :tile_h, :tile_w], (0, 0, tile_h, tile_w)
            else:
                top, left = select_ref_window(tile, ref)
                patch_ref = paste_ref = ref[..., top : top + tile_h, left : left + tile_w]
                box = (0, 0, tile_h // s, tile_w // s)  # nothing is pasted
            fused, skip = net.encode(
                tile, tile, features(tile, "lr"), patch_ref, features(patch_ref, "ref"),
                torch.tensor([box], device=lr.device), torch.tensor([paste and centre], device=lr.device),
                paste_ref=paste_ref,
            )
            sr = net.decode(fused, skip, net.modulation(fused, lr_centre, ref))
            core = sr[..., s * HALO : s * (HALO + core_h), s * HALO : s * (HALO + core_w)]
            output[..., s * i * core_h : s * (i + 1) * core_h, s * j * core_w : s * (j + 1) * core_w] = core
    # the cores cover the padded image without its outer halo: padded row HALO … ↦ output row 0
    top, left = s * (pad_top - HALO), s * (pad_left - HALO)
    return output[..., top : top + s * height, left : left + s * width]
