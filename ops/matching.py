"""Ref ↔ LR cosine patch matching (C2-Matching style) and its deformable-convolution offsets.

Zhang et al., "Self-Supervised Learning for Real-World Super-Resolution from Dual Zoomed Observations",
ECCV 2022, §3.4 (alignment between Ref and (auxiliary-)LR); the matching is that of Jiang et al., "Robust
Reference-based Super-Resolution via C2-Matching", CVPR 2021. Restated from the official code in reference
``selfdzsr.md`` §1.4.

For input features F (B, C, h, w) and Ref features G (B, C, h_r, w_r), with f̂ = f/‖f‖ per position over the
channels and k×k patches (k = 3) taken with stride 1 and no padding:

    score_b(p, q) = Σ_{i,j<k} f̂_b(p + (i, j)) · ĝ_b(q + (i, j)) / (‖ĝ_b patch at q‖ + 1e-5)
    index_b(p) = argmax_q score_b(p, q)

p runs over the (h−k+1)×(w−k+1) input windows, q over the (h_r−k+1)×(w_r−k+1) Ref patches (flattened
row-major). The input-window norm is the same for every q, so the arg-max is that of the cosine similarity.
Unlike the official code, the Ref may have a different size from the input (the official code decodes the Ref
index with the input width, reference §8 item 14).

Cost: score_b(p, q) is a sum of k² shifted entries of the per-position dot products D = F̂ᵀĜ, so D is computed once
per pair of positions (C multiply-adds, not k²·C). D is built in tiles of input rows × Ref rows, each holding at most
``chunk_size`` elements (default 2**25), with a running max/arg-max per input window: memory stays bounded for
whole-image features (reference §8 item 5), the batch is processed at once, and the loop has no host syncs.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["match_patches", "index_to_offsets", "match_offsets", "upsample_offsets", "PatchMatcher"]

#: Default bound on the elements of one tile of per-position dot products (128 MiB in float32).
DEFAULT_CHUNK_SIZE = 2**25
_PATCH_NORM_EPS = 1e-5


def _check_size(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected {name} to be an int >= 1, got {value!r}")


def _check_features(features: Tensor, ref_features: Tensor, patch_size: int) -> None:
    for name, x in (("features", features), ("ref_features", ref_features)):
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected {name} of shape (B, C, H, W), got {shape}")
        if not x.is_floating_point():
            raise ValueError(f"expected floating-point {name}, got dtype {x.dtype}")
        if min(x.shape[-2:]) < patch_size:
            raise ValueError(
                f"expected {name} of at least {patch_size}×{patch_size} positions (the patch size), "
                f"got {tuple(x.shape[-2:])}"
            )
    if features.shape[:2] != ref_features.shape[:2] or 0 in features.shape[:2]:
        raise ValueError(
            f"expected features (B, C, h, w) and ref_features (B, C, h_r, w_r) with the same non-zero B and C, "
            f"got {tuple(features.shape)} and {tuple(ref_features.shape)}"
        )
    if features.device != ref_features.device:
        raise ValueError(f"expected both feature maps on one device, got {features.device} and {ref_features.device}")


def _tile_rows(
    budget: int, batch: int, patch: int, in_shape: tuple[int, ...], ref_shape: tuple[int, ...]
) -> tuple[int, int]:
    """Input and Ref window rows per tile so that B·(Y+k−1)·w·(R+k−1)·w_r ≤ budget (at least one row each)."""
    (h, w), (h_r, w_r) = in_shape, ref_shape
    pairs = max(1, budget // (batch * w * w_r))  # (input row, Ref row) pairs of D that fit
    rows_in = min(h - patch + 1, max(1, math.isqrt(pairs) - patch + 1))
    rows_ref = min(h_r - patch + 1, max(1, pairs // (rows_in + patch - 1) - patch + 1))
    return rows_in, rows_ref


@torch.no_grad()
def match_patches(
    features: Tensor, ref_features: Tensor, *, patch_size: int = 3, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Best Ref patch for every k×k input window (see the module docstring for the formula).

    Args:
        features: input (LR / aux-LR) features (B, C, h, w).
        ref_features: Ref features (B, C, h_r, w_r), any size ≥ k×k.
        patch_size: k.
        chunk_size: at most this many per-position dot products are held at once (default 2**25; at least one
            input row × one Ref row of them); the peak extra memory is a few times that.

    Returns:
        ``index`` (B, h−k+1, w−k+1) int64 into the row-major (h_r−k+1)×(w_r−k+1) Ref patch grid, and ``score``
        (B, h−k+1, w−k+1), the best correlation (‖input window‖·cosine; k·cosine when no feature vector is zero).
        Computed without gradient, in float32 (float64 for float64 inputs) even under autocast. Ties go to the
        smallest index.
    """
    _check_size(patch_size, "patch_size")
    if chunk_size is not None:
        _check_size(chunk_size, "chunk_size")
    _check_features(features, ref_features, patch_size)
    k = patch_size
    batch, channels, h, w = features.shape
    h_r, w_r = ref_features.shape[-2:]
    out_h, out_w, grid_h, grid_w = h - k + 1, w - k + 1, h_r - k + 1, w_r - k + 1
    dtype = torch.promote_types(features.dtype, torch.float32)
    device_type = features.device.type
    no_autocast = (
        torch.autocast(device_type, enabled=False) if torch.amp.is_autocast_available(device_type) else nullcontext()
    )
    with no_autocast:
        query = F.normalize(features.to(dtype), dim=1).permute(0, 2, 3, 1).contiguous()  # (B, h, w, C)
        ref = F.normalize(ref_features.to(dtype), dim=1)  # (B, C, h_r, w_r)
        ones = ref.new_ones(1, 1, k, k)
        inv_norm = F.conv2d(ref.square().sum(1, keepdim=True), ones).sqrt_().add_(_PATCH_NORM_EPS).reciprocal_()
        inv_norm = inv_norm[:, None, None, 0]  # (B, 1, 1, grid_h, grid_w): broadcast over the input windows

        best_score = query.new_full((batch, out_h, out_w), -math.inf)
        best_index = torch.zeros(batch, out_h, out_w, dtype=torch.int64, device=features.device)
        rows_in, rows_ref = _tile_rows(chunk_size or DEFAULT_CHUNK_SIZE, batch, k, (h, w), (h_r, w_r))
        for y0 in range(0, out_h, rows_in):
            ny = min(rows_in, out_h - y0)
            windows = query[:, y0 : y0 + ny + k - 1].reshape(batch, -1, channels)
            best_s, best_i = best_score[:, y0 : y0 + ny], best_index[:, y0 : y0 + ny]
            for r0 in range(0, grid_h, rows_ref):
                nr = min(rows_ref, grid_h - r0)
                patches = ref[:, :, r0 : r0 + nr + k - 1].reshape(batch, channels, -1)
                dots = torch.bmm(windows, patches).view(batch, ny + k - 1, w, nr + k - 1, w_r)
                taps = (
                    dots[:, i : i + ny, j : j + out_w, i : i + nr, j : j + grid_w] for i in range(k) for j in range(k)
                )
                score = next(taps).clone()
                for tap in taps:
                    score += tap
                score *= inv_norm[..., r0 : r0 + nr, :]
                value, local = score.flatten(3).max(dim=3)  # (B, ny, out_w)
                better = value > best_s
                best_s.copy_(torch.where(better, value, best_s))
                best_i.copy_(torch.where(better, local + r0 * grid_w, best_i))
    return best_index, best_score


def index_to_offsets(index: Tensor, ref_size: tuple[int, int], out_size: tuple[int, int]) -> Tensor:
    """Deformable-convolution offsets (B, 2k², h, w) from a patch match ``index`` (B, h−k+1, w−k+1).

    k = h − index.shape[1] + 1 (3 for :func:`match_patches`' default). With the matched Ref patch at
    (ref_y, ref_x) = divmod(index, w_r − k + 1) for the input window at top-left (y, x):

        flow(y, x) = (ref_y − y, ref_x − x)   in feature pixels, zero-padded by k−1 rows/cols at the bottom/right
        offsets[:, 2t] = dy_t, offsets[:, 2t+1] = dx_t,  (dy_t, dx_t)(y, x) = flow(y − i, x − j) (0 outside),

    t = i·k + j for kernel tap (i, j), row-major: the torchvision ``deform_conv2d`` layout (one offset group).
    Tap (i, j) at (y, x) thus uses the flow of the window that holds (y, x) at in-window position (i, j)
    (reference ``selfdzsr.md`` §1.4 steps 5–6). ``ref_size`` = (h_r, w_r) and ``out_size`` = (h, w) are the Ref
    and input feature sizes. Returns float32.
    """
    if not isinstance(index, Tensor) or index.dim() != 3 or index.dtype != torch.int64:
        got = (tuple(index.shape), index.dtype) if isinstance(index, Tensor) else type(index).__name__
        raise ValueError(f"expected an int64 index of shape (B, h−k+1, w−k+1), got {got}")
    (h, w), (h_r, w_r) = tuple(out_size), tuple(ref_size)
    k = h - index.shape[1] + 1
    if k < 1 or w - index.shape[2] + 1 != k or min(h_r, w_r) < k:
        raise ValueError(
            f"expected index (B, h−k+1, w−k+1) for out_size (h, w) = {(h, w)} and ref_size ≥ k×k with the same k "
            f"on both axes, got index {tuple(index.shape)} and ref_size {(h_r, w_r)}"
        )
    grid_w = w_r - k + 1
    rows = torch.arange(index.shape[1], device=index.device, dtype=torch.float32)[:, None]
    cols = torch.arange(index.shape[2], device=index.device, dtype=torch.float32)
    flow = torch.stack([(index // grid_w) - rows, (index % grid_w) - cols], dim=1)  # (B, 2 = (dy, dx), h', w')
    taps = [F.pad(flow, (j, k - 1 - j, i, k - 1 - i)) for i in range(k) for j in range(k)]
    return torch.stack(taps, dim=1).flatten(1, 2)


def match_offsets(
    features: Tensor, ref_features: Tensor, *, patch_size: int = 3, chunk_size: int | None = None
) -> Tensor:
    """:func:`match_patches` then :func:`index_to_offsets`: (B, C, h, w), (B, C, h_r, w_r) → (B, 2k², h, w)."""
    index, _ = match_patches(features, ref_features, patch_size=patch_size, chunk_size=chunk_size)
    return index_to_offsets(index, ref_features.shape[-2:], features.shape[-2:])


def upsample_offsets(offsets: Tensor, factor: int = 4) -> Tensor:
    """Offsets from feature pixels to image pixels: factor · bilinear×factor (align_corners=True).

    (B, 2k², h, w) → (B, 2k², factor·h, factor·w). SelfDZSR uses factor 4, the stride of its feature extractor
    (not the SR scale; reference ``selfdzsr.md`` §1.4 step 7).
    """
    _check_size(factor, "factor")
    if not isinstance(offsets, Tensor) or offsets.dim() != 4 or offsets.shape[1] % 2 or not offsets.is_floating_point():
        got = (tuple(offsets.shape), offsets.dtype) if isinstance(offsets, Tensor) else type(offsets).__name__
        raise ValueError(f"expected floating-point offsets of shape (B, 2k², h, w), got {got}")
    return factor * F.interpolate(offsets, scale_factor=factor, mode="bilinear", align_corners=True)


class PatchMatcher(nn.Module):
    """Module form of :func:`match_offsets` (no parameters)."""

    def __init__(self, patch_size: int = 3, chunk_size: int | None = None) -> None:
        super().__init__()
        _check_size(patch_size, "patch_size")
        if chunk_size is not None:
            _check_size(chunk_size, "chunk_size")
        self.patch_size = patch_size
        self.chunk_size = chunk_size

    def forward(self, features: Tensor, ref_features: Tensor) -> Tensor:
        return match_offsets(features, ref_features, patch_size=self.patch_size, chunk_size=self.chunk_size)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, chunk_size={self.chunk_size}"
