"""Contextual (CX) and contextual bilateral (CoBi) losses, computed exactly in chunks.

Zhang, Chen, Ng, Koltun, "Zoom to Learn, Learn to Zoom", CVPR 2019, Eq. (1)–(2); Mechrez et al.,
"The Contextual Loss for Image Transformation with Non-Aligned Data", ECCV 2018. The official TF
graph is restated in reference ``zoom_learn_zoom.md`` §1.

Two variants, both taking ``pred`` (features of the network output) first and ``target`` second,
each of shape (B, C, H, W).

``variant="paper"`` (default): the paper's Eq. (2), an average of nearest-neighbour distances
    CoBi_b = (1/P) Σ_{i ∈ S} min_{j ∈ all H·W} [ D(p_i, q_j) + w_s·D′_ij ],
with i over a set S of P prediction positions (all of them, or a uniform random sample of
``max_positions``: the sample is an unbiased estimate of the mean) and j over **every** target position,
so sampling never shrinks the search:
    cosine: D_ij = (1 − p̂_i·q̂_j)/2 ∈ [0, 1], x̂ = (x − μ_b)/max(‖x − μ_b‖, 1e-8), μ_b the mean of
            sample b's prediction features over S (no dependence on the rest of the batch);
    l2:     D_ij = ‖p_i − q_j‖₂/√C (root-mean-square channel difference; 0 gradient at 0 distance);
    D′_ij = ‖x_i − x_j‖₂, the distance of the two features' image positions, measured in output pixels
            (``spatial_units="pixels"``, default): x = s·(row, col) for a feature map whose pixel spans
            s = ``feature_stride`` output pixels (1 for RGB patches, 2^(k−1) for VGG block k), so w_s is
            the cost of one pixel of displacement at every zoom and crop size (default ≈ 2e-4,
            :data:`W_SPATIAL_PER_PIXEL`); or, with
            ``spatial_units="image"``, x = (row, col)/max(H, W) (fractions of the feature map's side).
w_s = 0 gives the paper's CX, Eq. (1). Loss = mean over the batch (or per sample, (B,)).

``variant="official"``: the official TF code (reference §1.3–§1.10), j over prediction and i over
target positions:
    cosine: d_ij = (1 − t_j·q_i)/2, t_j = (T_j − μ)/‖T_j − μ‖, q_i = (I_i − μ)/‖I_i − μ‖
            (no epsilon), μ the per-channel mean of the prediction over the batch and all positions;
    l2:     d_ij = max(0, ‖T_j‖² − 2 T_j·I_i + ‖I_i‖²) (squared);
    d̃_ij = d_ij / (min_k d_ik + ε);   CX_ij = exp((1 − d̃_ij)/h) / Σ_k exp((1 − d̃_ik)/h);
    CX^sp_ij: the same l2 → d̃ → CX steps on the coordinates g = (255·r/H_g, 255·c/W_g) of the
            (sampled) H_g×W_g grid (TF's meshgrid 'xy' transposes non-square grids; here rows and
            columns are the true ones); it is the identity matrix for grids below ~1100 per side;
    C_ij = (1 − w_s)·CX_ij + w_s·CX^sp_ij;   loss_b = −log((1/P) Σ_j max_i C_ij);  loss = mean_b loss_b.
If H·W exceeds ``max_positions`` (63² by default), one random permutation of the positions is drawn
(shared by prediction, target and batch) and its first 63² entries form a 63×63 grid in random order;
otherwise the grid is the H×W map itself. exp results below e^-80 (float32) / e^-700 (float64) are
flushed to 0, far below the rounding of the softmax sum (≥ 1).

Memory: the P×Q distance matrices are never held; prediction rows are processed ``chunk_size`` at a time,
so the peak is O(B·chunk·Q) (Q = P for the official variant, H·W for the paper's). Paper: chunked no-grad
argmin, then the gradient through the P selected pairs (exactly the gradient of the min for unique minima).
Official: a custom autograd function keeps the running column max and its argmax, and recomputes each chunk of
rows in the backward pass.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = [
    "cobi_loss",
    "cobi_loss_at",
    "sample_positions",
    "resolve_w_spatial",
    "unique_match_share",
    "contextual_loss",
    "CoBiLoss",
    "ContextualLoss",
]

Distance = Literal["cosine", "l2"]
Variant = Literal["paper", "official"]
Reduction = Literal["mean", "none"]
SpatialUnits = Literal["pixels", "image"]

#: Positions kept by the official code's random sub-sampling (63×63).
OFFICIAL_MAX_POSITIONS = 63 * 63
#: The official default w_s (``loss.py``, ``CSFlow.py``): the weight of coordinates scaled like the intensities
#: (255·row/H against RGB × 255), i.e. per image side against features in [0, 1].
OFFICIAL_W_SPATIAL = 0.1
#: ``w_spatial="auto"`` for the paper variant in output pixels: the official 0.1 per image side over the paper's
#: 512-pixel training crops (reference ``zoom_learn_zoom.md`` §1.7, §3.7), ≈ 2e-4 per pixel. Patch distances
#: are a few hundredths, so a displacement of tens of pixels still costs less than a wrong patch; a w_s of 0.1
#: per pixel would pin every feature to its own position (``notebooks/cobi_matching.ipynb``).
W_SPATIAL_PER_PIXEL = OFFICIAL_W_SPATIAL / 512
_CHUNK_ELEMENTS = 2**22
_COSINE_EPS = 1e-8


# ----------------------------------------------------------------------------------------- guards
def resolve_w_spatial(w_spatial: float | Literal["auto"], variant: str, spatial_units: str) -> float:
    """w_s itself, or for ``"auto"``: :data:`W_SPATIAL_PER_PIXEL` for the paper variant in output pixels,
    :data:`OFFICIAL_W_SPATIAL` for the official variant and for ``spatial_units="image"``."""
    if w_spatial != "auto":
        return w_spatial
    return W_SPATIAL_PER_PIXEL if variant == "paper" and spatial_units == "pixels" else OFFICIAL_W_SPATIAL


def _check_options(
    w_spatial: float | Literal["auto"],
    distance: str,
    variant: str,
    max_positions: int | str | None,
    bandwidth: float,
    eps: float,
    chunk_size: int | None,
    reduction: str,
    feature_stride: float = 1.0,
    spatial_units: str = "pixels",
) -> None:
    if distance not in ("cosine", "l2"):
        raise ValueError(f"expected distance 'cosine' or 'l2', got {distance!r}")
    if variant not in ("paper", "official"):
        raise ValueError(f"expected variant 'paper' or 'official', got {variant!r}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"expected reduction 'mean' or 'none', got {reduction!r}")
    if spatial_units not in ("pixels", "image"):
        raise ValueError(f"expected spatial_units 'pixels' or 'image', got {spatial_units!r}")
    if isinstance(feature_stride, bool) or not isinstance(feature_stride, (int, float)) or not feature_stride > 0:
        raise ValueError(f"expected feature_stride > 0 (output pixels per feature pixel), got {feature_stride!r}")
    w_spatial = resolve_w_spatial(w_spatial, variant, spatial_units)
    if not isinstance(w_spatial, (int, float)) or isinstance(w_spatial, bool) or not w_spatial >= 0:
        raise ValueError(f"expected w_spatial to be 'auto' or a number >= 0, got {w_spatial!r}")
    if variant == "official" and w_spatial > 1:
        raise ValueError(
            f"the official variant blends (1 − w_s)·CX + w_s·CX_sp: expected w_spatial in [0, 1], got {w_spatial}"
        )
    if not isinstance(bandwidth, (int, float)) or not bandwidth > 0:
        raise ValueError(f"expected bandwidth > 0, got {bandwidth!r}")
    if not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"expected eps > 0, got {eps!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"expected chunk_size to be None or an int >= 1, got {chunk_size!r}")
    if max_positions is None or max_positions == "auto":
        return
    if isinstance(max_positions, bool) or not isinstance(max_positions, int) or max_positions < 1:
        raise ValueError(f"expected max_positions to be 'auto', None or an int >= 1, got {max_positions!r}")
    if variant == "official" and math.isqrt(max_positions) ** 2 != max_positions:
        raise ValueError(
            f"the official variant reshapes the sampled positions to a square grid: expected max_positions "
            f"to be a perfect square (e.g. 3969 = 63²), got {max_positions}"
        )


def _check_features(pred: Tensor, target: Tensor) -> None:
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, Tensor):
            raise ValueError(f"expected {name} to be a Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"expected {name} of shape (B, C, H, W), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected {name} to be floating point, got dtype {x.dtype}")
        if x.numel() == 0:
            raise ValueError(f"expected a non-empty {name}, got shape {tuple(x.shape)}")
    if pred.shape != target.shape:
        raise ValueError(
            f"expected pred and target of the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.device != target.device:
        raise ValueError(f"expected pred and target on the same device, got {pred.device} and {target.device}")


# ------------------------------------------------------------------------------------ geometry
def _coordinate_distance(rows: Tensor, cols: Tensor, squared: bool) -> Tensor:
    """Exact (squared) Euclidean distances between coordinates (c, 2) and (P, 2) → (c, P)."""
    dr = rows[:, None, 0] - cols[None, :, 0]
    dc = rows[:, None, 1] - cols[None, :, 1]
    squares = dr.square_().add_(dc.square_())
    return squares if squared else squares.sqrt_()


def _auto_chunk(chunk_size: int | None, batch: int, positions: int) -> int:
    return chunk_size if chunk_size is not None else max(1, _CHUNK_ELEMENTS // (batch * positions))


# ---------------------------------------------------------------------------------- paper variant
@torch.no_grad()
def _nearest_targets(
    p: Tensor, q: Tensor, p_coords: Tensor, q_coords: Tensor, w_spatial: float, distance: str, chunk: int
) -> Tensor:
    """argmin_j D(p_i, q_j) + w_s·D′_ij for every prediction row i: p (B, P, C), q (B, Q, C) → (B, P)."""
    batch, positions, channels = p.shape
    match = torch.empty(batch, positions, dtype=torch.long, device=p.device)
    q_t = q.transpose(1, 2)
    if distance == "l2":
        p_sq, q_sq = p.square().sum(-1), q.square().sum(-1)
    for start in range(0, positions, chunk):
        stop = min(start + chunk, positions)
        if distance == "cosine":
            d = torch.bmm(p[:, start:stop], q_t).mul_(-0.5).add_(0.5)
        else:
            d = torch.baddbmm(q_sq[:, None, :], p[:, start:stop], q_t, alpha=-2.0)
            d.add_(p_sq[:, start:stop, None]).clamp_(min=0.0)
            if w_spatial > 0:  # argmin of ‖·‖² is argmin of ‖·‖ unless a spatial term is added
                d.sqrt_().mul_(channels**-0.5)
        if w_spatial > 0:
            d.add_(_coordinate_distance(p_coords[start:stop], q_coords, squared=False), alpha=w_spatial)
        match[:, start:stop] = d.argmin(dim=-1)
    return match


def _paper_loss(
    p: Tensor, q: Tensor, p_coords: Tensor, q_coords: Tensor, w_spatial: float, distance: str, chunk: int
) -> tuple[Tensor, Tensor]:
    """Paper Eq. (2) per sample: prediction rows p (B, P, C) at p_coords (P, 2), every target row q (B, Q, C)
    at q_coords (Q, 2) → (loss (B,), match (B, P) indices into the Q target rows)."""
    channels = p.shape[-1]
    if distance == "cosine":
        mu = p.mean(dim=1, keepdim=True)
        p = F.normalize(p - mu, dim=-1, eps=_COSINE_EPS)
        q = F.normalize(q - mu, dim=-1, eps=_COSINE_EPS)
    match = _nearest_targets(p.detach(), q.detach(), p_coords, q_coords, w_spatial, distance, chunk)
    q_match = q.gather(1, match[..., None].expand(-1, -1, channels))
    if distance == "cosine":
        d = 0.5 - 0.5 * (p * q_match).sum(-1)
    else:
        d = torch.linalg.vector_norm(p - q_match, dim=-1) * channels**-0.5
    if w_spatial > 0:
        d = d + w_spatial * torch.linalg.vector_norm(p_coords - q_coords[match], dim=-1)
    return d.mean(dim=1), match


def _grid_coordinates(
    positions: Tensor, grid_size: tuple[int, int], units: str, stride: float, dtype: torch.dtype
) -> Tensor:
    """Image positions (P, 2) of flat grid ``positions``: s·(row, col) in output pixels, or (row, col)/max(H, W)."""
    height, width = grid_size
    coords = torch.stack([positions // width, positions % width], dim=-1).to(dtype)
    return coords * stride if units == "pixels" else coords / max(height, width)


# ------------------------------------------------------------------------------- official variant
def _raw_distances(rows: Tensor, cols: Tensor, l2: bool, rows_sq: Tensor | None, cols_sq: Tensor | None) -> Tensor:
    """d between target rows (B, c, C) and prediction columns (B, P, C) → (B, c, P) (l2: clamped ≥ 0)."""
    if l2:
        d = torch.baddbmm(cols_sq[:, None, :], rows, cols.transpose(1, 2), alpha=-2.0)
        return d.add_(rows_sq[:, :, None]).clamp_(min=0.0)
    return torch.bmm(rows, cols.transpose(1, 2)).mul_(-0.5).add_(0.5)


def _exp_(z: Tensor) -> Tensor:
    """In place exp of z ≤ 0, results below e^-80 (float32) / e^-700 (float64) flushed to exactly 0.

    The flushed terms are below the rounding error of a softmax sum ≥ 1; CPU exp is 3–30× slower on
    inputs whose result underflows or is subnormal (e.g. the spatial term's d̃ ≈ 10⁴–10⁶).
    """
    floor = -80.0 if z.dtype.itemsize <= 4 else -700.0
    return F.threshold_(F.threshold_(z, floor - 1.0, floor - 1.0).exp_(), math.exp(floor), 0.0)


def _similarity_(d: Tensor, bandwidth: float, eps: float) -> Tensor:
    """In place: d (…, P) → CX = softmax over the last axis of −d̃/h, d̃ = d/(min d + ε)."""
    d_min = d.amin(dim=-1, keepdim=True)
    # −d̃/h minus its row maximum −d̃_min/h, written without a second reduction
    cx = _exp_(d.sub_(d_min).mul_((d_min + eps).reciprocal_().mul_(-1.0 / bandwidth)))
    return cx.div_(cx.sum(dim=-1, keepdim=True))


def _column_argmax(c: Tensor, value: Tensor) -> Tensor:
    """First row index i with c[b, i, j] == value[b, j]: (B, n, P), (B, P) → (B, P) int64.

    Much faster on CPU than ``max(dim=1)`` with indices, which does not vectorise over columns.
    """
    rows = torch.arange(c.shape[1], dtype=torch.int32, device=c.device)[None, :, None]
    return torch.where(c == value[:, None, :], rows, c.shape[1]).amin(dim=1).long()


class _ContextualColumnMax(torch.autograd.Function):
    """m_j = max_i [(1 − w_s)·CX_ij + w_s·CX^sp_ij] over target rows i, computed chunk by chunk.

    Inputs: target rows (B, P, C), prediction columns (B, P, C) (both already centred/normalised for
    cosine), grid coordinates (P, 2). Outputs: m (B, P) and the arg-max row i of each column (B, P). Only the
    row index of each column maximum is kept; the backward pass recomputes CX chunk by chunk (CX^sp is a
    constant and is not recomputed).
    """

    @staticmethod
    def forward(ctx, rows, cols, coords, l2, w_spatial, bandwidth, eps, chunk):  # noqa: ANN001, ANN205
        batch, positions, _ = rows.shape
        rows_sq = rows.square().sum(-1) if l2 else None
        cols_sq = cols.square().sum(-1) if l2 else None
        best = torch.full((batch, positions), -math.inf, dtype=rows.dtype, device=rows.device)
        best_row = torch.zeros(batch, positions, dtype=torch.long, device=rows.device)
        for start in range(0, positions, chunk):
            stop = min(start + chunk, positions)
            sq = rows_sq[:, start:stop] if l2 else None
            c = _similarity_(_raw_distances(rows[:, start:stop], cols, l2, sq, cols_sq), bandwidth, eps)
            if w_spatial > 0:
                spatial = _coordinate_distance(coords[start:stop], coords, squared=True)
                c.mul_(1.0 - w_spatial).add_(_similarity_(spatial, bandwidth, eps), alpha=w_spatial)
            value = c.amax(dim=1)
            better = value > best
            best = torch.where(better, value, best)
            best_row = torch.where(better, _column_argmax(c, value) + start, best_row)
        ctx.save_for_backward(rows, cols, best_row)
        ctx.mark_non_differentiable(best_row)
        ctx.options = (l2, w_spatial, bandwidth, eps, chunk)
        return best, best_row

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_best, _grad_best_row):  # noqa: ANN001, ANN205
        rows, cols, best_row = ctx.saved_tensors
        l2, w_spatial, bandwidth, eps, chunk = ctx.options
        need_rows, need_cols = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        positions = rows.shape[1]
        with torch.autocast(device_type=rows.device.type, enabled=False):
            rows_sq = rows.square().sum(-1) if l2 else None
            cols_sq = cols.square().sum(-1) if l2 else None
            grad_cx = grad_best * (1.0 - w_spatial)  # ∂L/∂CX_ij, nonzero only at i = best_row_j
            grad_rows = torch.zeros_like(rows) if need_rows else None
            grad_cols = torch.zeros_like(cols) if need_cols else None
            factor = -2.0 if l2 else -0.5  # ∂d/∂(rows·cols)
            for start in range(0, positions, chunk):
                stop = min(start + chunk, positions)
                r = rows[:, start:stop]
                d = _raw_distances(r, cols, l2, rows_sq[:, start:stop] if l2 else None, cols_sq)
                d_min, arg_min = d.min(dim=-1, keepdim=True)
                scale = (d_min + eps).reciprocal_()  # a_i = 1/(min_k d_ik + ε), (B, n, 1)
                rel = d.mul_(scale)  # d̃ (in place)
                cx = _exp_((rel - rel.gather(-1, arg_min)).mul_(-1.0 / bandwidth))
                cx.div_(cx.sum(dim=-1, keepdim=True))
                # the upstream gradient g is sparse: one entry per column j, in row best_row_j (if in this chunk)
                row = best_row - start
                in_chunk = (row >= 0) & (row < stop - start)
                row = row.clamp_(0, stop - start - 1)
                # g_ij·CX_ij at (best_row_j, j), as (B, P)
                gcx = torch.where(in_chunk, grad_cx, 0.0) * cx.gather(1, row[:, None, :])[:, 0]
                a = scale[..., 0]
                s = torch.zeros_like(a).scatter_add_(1, row, gcx)  # s_i = Σ_j g_ij·CX_ij
                # G = a ⊙ ∂L/∂d̃, ∂L/∂d̃ = −(1/h)·CX ⊙ (g − s): dense part a·s·CX/h, sparse part −a·g·CX/h
                g = cx.mul_((a * s / bandwidth)[..., None])
                g.scatter_add_(1, row[:, None, :], (gcx * a.gather(1, row) / -bandwidth)[:, None, :])
                # d̃_ij = d_ij·a_i: the row minimum receives −a_i Σ_j ∂L/∂d̃_ij·d̃_ij = −Σ_j G_ij d̃_ij
                g.scatter_add_(-1, arg_min, torch.linalg.vecdot(g, rel)[..., None].neg_())
                if l2:
                    g.masked_fill_(rel == 0, 0.0)  # clamp at 0 (and ∇‖a − b‖² = 0 at a = b)
                if need_rows:
                    grad_r = torch.bmm(g, cols).mul_(factor)
                    if l2:
                        grad_r.add_(r * (2.0 * g.sum(-1, keepdim=True)))
                    grad_rows[:, start:stop] = grad_r
                if need_cols:
                    grad_cols.baddbmm_(g.transpose(1, 2), r, alpha=factor)
                    if l2:
                        grad_cols.add_(cols * (2.0 * g.sum(1)[..., None]))
        return grad_rows, grad_cols, None, None, None, None, None, None


def _official_loss(
    t: Tensor, i: Tensor, coords: Tensor, w_spatial: float, distance: str, bandwidth: float, eps: float, chunk: int
) -> tuple[Tensor, Tensor]:
    """Official CoBi per sample: prediction T (B, P, C), target I (B, P, C), grid (P, 2) → (loss (B,),
    match (B, P): the target row of each prediction column's maximum)."""
    if distance == "cosine":
        mu = t.mean(dim=(0, 1), keepdim=True)
        t, i = t - mu, i - mu
        t = t / torch.linalg.vector_norm(t, dim=-1, keepdim=True)
        i = i / torch.linalg.vector_norm(i, dim=-1, keepdim=True)
    best, match = _ContextualColumnMax.apply(
        i, t, coords, distance == "l2", float(w_spatial), float(bandwidth), float(eps), chunk
    )
    return -torch.log(best.mean(dim=1)), match


# ---------------------------------------------------------------------------------------- public
def cobi_loss(
    pred: Tensor,
    target: Tensor,
    *,
    w_spatial: float | Literal["auto"] = "auto",
    distance: Distance = "cosine",
    variant: Variant = "paper",
    max_positions: int | Literal["auto"] | None = "auto",
    feature_stride: float = 1.0,
    spatial_units: SpatialUnits = "pixels",
    bandwidth: float = 0.5,
    eps: float = 1e-3,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Contextual bilateral loss between feature maps ``pred`` and ``target``, both (B, C, H, W).

    Formulas of both variants: see the module docstring. Returns a scalar (``reduction="mean"``) or the
    per-sample losses (B,) (``"none"``), in float32 (float64 for float64 input).

    Args:
        w_spatial: weight w_s of the spatial term (official: must lie in [0, 1]); ``"auto"``:
            :func:`resolve_w_spatial` (0.1 per image side, ≈ 2e-4 per output pixel).
        distance: "cosine" (VGG features) or "l2" (RGB patches).
        variant: "paper" (Eq. 2, default) or "official" (the TF graph).
        max_positions: when H·W exceeds it, this many positions are drawn at random (one draw for the
            batch). Paper: prediction positions only, each searching every target position. Official:
            the same positions of prediction and target, laid out as a square grid (needs a perfect
            square). None = all positions; "auto" = 63² for "official", None for "paper".
        feature_stride, spatial_units: how the paper variant measures D′ (module docstring): in output
            pixels, one feature pixel spanning ``feature_stride`` of them, or in fractions of the map.
        bandwidth, eps: h and ε of the official variant (unused by "paper").
        chunk_size: prediction rows per chunk; None keeps one chunk buffer at ≲ 2²² elements.
        generator: the only source of randomness (torch's default generator when None).
    """
    _check_options(
        w_spatial, distance, variant, max_positions, bandwidth, eps, chunk_size, reduction, feature_stride,
        spatial_units,
    )
    _check_features(pred, target)
    height, width = pred.shape[-2:]
    kept = sample_positions(height, width, max_positions, generator, pred.device, variant=variant)
    pred_vectors, target_vectors = pred.flatten(2), target.flatten(2)
    if kept.numel() < height * width:
        pred_vectors = pred_vectors[..., kept]
        if variant == "official":
            target_vectors = target_vectors[..., kept]
    return cobi_loss_at(
        pred_vectors,
        target_vectors,
        kept,
        (height, width),
        w_spatial=w_spatial,
        distance=distance,
        variant=variant,
        feature_stride=feature_stride,
        spatial_units=spatial_units,
        bandwidth=bandwidth,
        eps=eps,
        chunk_size=chunk_size,
        reduction=reduction,
    )


def sample_positions(
    height: int,
    width: int,
    max_positions: int | Literal["auto"] | None,
    generator: torch.Generator | None,
    device: torch.device,
    variant: Variant = "paper",
) -> Tensor:
    """Flat indices (P,) into an H×W grid that :func:`cobi_loss` uses: all of them in order when
    H·W ≤ ``max_positions`` (or it is None), else the first ``max_positions`` of one random permutation.
    ``"auto"`` means 63² for the official variant and None for the paper's."""
    if max_positions == "auto":
        max_positions = OFFICIAL_MAX_POSITIONS if variant == "official" else None
    if max_positions is None or height * width <= max_positions:
        return torch.arange(height * width, device=device)
    draw_on = generator.device if generator is not None else device
    return torch.randperm(height * width, generator=generator, device=draw_on)[:max_positions].to(device)


def cobi_loss_at(
    pred: Tensor,
    target: Tensor,
    positions: Tensor,
    grid_size: tuple[int, int],
    *,
    w_spatial: float | Literal["auto"] = "auto",
    distance: Distance = "cosine",
    variant: Variant = "paper",
    feature_stride: float = 1.0,
    spatial_units: SpatialUnits = "pixels",
    bandwidth: float = 0.5,
    eps: float = 1e-3,
    chunk_size: int | None = None,
    reduction: Reduction = "mean",
    return_matches: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`cobi_loss` of prediction features already taken at ``positions`` (P,) of an H×W grid.

    ``pred`` is (B, C, P). ``target`` is (B, C, H·W), every position in raster order, for the paper
    variant (each prediction feature searches the whole target), and (B, C, P) at the same ``positions``
    for the official one (the TF graph samples both alike; a sub-sample is laid out as a square grid,
    so P must be a perfect square there). Taking the prediction's features only where
    :func:`sample_positions` draws them (e.g. with :func:`~ops.patches.extract_patches_at`) gives the
    same loss as :func:`cobi_loss` on the full maps with the same generator.

    With ``return_matches`` it also returns the matched target position of every prediction feature,
    (B, P) flat indices into the H×W grid (paper: the arg-min of Eq. 2; official: the arg-max row of
    the column maximum), e.g. for :func:`unique_match_share`.
    """
    _check_options(
        w_spatial, distance, variant, None, bandwidth, eps, chunk_size, reduction, feature_stride, spatial_units
    )
    w_spatial = resolve_w_spatial(w_spatial, variant, spatial_units)
    height, width = grid_size
    count = positions.numel()
    subsampled = count < height * width
    target_count = height * width if variant == "paper" else count
    if pred.dim() != 3 or pred.shape[-1] != count or target.dim() != 3 or target.shape != (*pred.shape[:2], target_count):
        expected = "every H·W position (paper)" if variant == "paper" else "the P positions (official)"
        raise ValueError(
            f"expected pred (B, C, {count}) at {count} positions and target (B, C, {target_count}) at {expected}, "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if variant == "official" and subsampled and math.isqrt(count) ** 2 != count:
        raise ValueError(f"the official variant lays sampled positions out as a square grid, got {count} positions")
    dtype = torch.promote_types(pred.dtype, target.dtype)
    if dtype.itemsize < 4:
        dtype = torch.float32
    with torch.autocast(device_type=pred.device.type, enabled=False):
        p = pred.to(dtype).transpose(1, 2)  # (B, P, C)
        q = target.to(dtype).transpose(1, 2)  # (B, Q, C)
        chunk = _auto_chunk(chunk_size, p.shape[0], q.shape[1])
        if variant == "paper":
            every = torch.arange(height * width, device=pred.device)
            p_coords = _grid_coordinates(positions, grid_size, spatial_units, feature_stride, dtype)
            q_coords = _grid_coordinates(every, grid_size, spatial_units, feature_stride, dtype)
            loss, match = _paper_loss(p, q, p_coords, q_coords, float(w_spatial), distance, chunk)
        else:
            side = math.isqrt(count)
            grid = (side, count // side) if subsampled else (height, width)
            cell = torch.arange(count, device=pred.device)
            coords = torch.stack([cell // grid[1], cell % grid[1]], dim=-1).to(dtype)
            coords = coords * coords.new_tensor([255.0 / grid[0], 255.0 / grid[1]])
            loss, rows = _official_loss(p, q, coords, w_spatial, distance, bandwidth, eps, chunk)
            match = positions[rows]
    loss = loss.mean() if reduction == "mean" else loss
    return (loss, match) if return_matches else loss


def unique_match_share(matches: Tensor) -> Tensor:
    """Share of one-to-one matches per sample: (number of distinct matched target positions) / P, for
    ``matches`` (B, P) as returned by :func:`cobi_loss_at` → (B,). 1 when no two prediction features
    match the same target feature (paper §4: 43.7 % for CX, 93.9 % for CoBi)."""
    if matches.dim() != 2 or matches.shape[1] == 0:
        raise ValueError(f"expected matches of shape (B, P) with P ≥ 1, got {tuple(matches.shape)}")
    ordered = matches.sort(dim=1).values
    distinct = 1 + (ordered[:, 1:] != ordered[:, :-1]).sum(dim=1)
    return distinct.to(torch.float32) / matches.shape[1]


def contextual_loss(
    pred: Tensor,
    target: Tensor,
    *,
    distance: Distance = "cosine",
    variant: Variant = "paper",
    max_positions: int | Literal["auto"] | None = "auto",
    bandwidth: float = 0.5,
    eps: float = 1e-3,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Contextual loss CX: :func:`cobi_loss` with w_spatial = 0 (paper Eq. 1 / the official CX)."""
    return cobi_loss(
        pred,
        target,
        w_spatial=0.0,
        distance=distance,
        variant=variant,
        max_positions=max_positions,
        bandwidth=bandwidth,
        eps=eps,
        chunk_size=chunk_size,
        generator=generator,
        reduction=reduction,
    )


class CoBiLoss(nn.Module):
    """Module form of :func:`cobi_loss`; ``forward(pred, target, generator=None)``."""

    def __init__(
        self,
        w_spatial: float | Literal["auto"] = "auto",
        distance: Distance = "cosine",
        variant: Variant = "paper",
        max_positions: int | Literal["auto"] | None = "auto",
        feature_stride: float = 1.0,
        spatial_units: SpatialUnits = "pixels",
        bandwidth: float = 0.5,
        eps: float = 1e-3,
        chunk_size: int | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        _check_options(
            w_spatial, distance, variant, max_positions, bandwidth, eps, chunk_size, reduction, feature_stride,
            spatial_units,
        )
        self.w_spatial = w_spatial
        self.distance = distance
        self.variant = variant
        self.max_positions = max_positions
        self.feature_stride = feature_stride
        self.spatial_units = spatial_units
        self.bandwidth = bandwidth
        self.eps = eps
        self.chunk_size = chunk_size
        self.reduction = reduction

    def forward(self, pred: Tensor, target: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return cobi_loss(
            pred,
            target,
            w_spatial=self.w_spatial,
            distance=self.distance,
            variant=self.variant,
            max_positions=self.max_positions,
            feature_stride=self.feature_stride,
            spatial_units=self.spatial_units,
            bandwidth=self.bandwidth,
            eps=self.eps,
            chunk_size=self.chunk_size,
            generator=generator,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"w_spatial={self.w_spatial}, distance={self.distance!r}, variant={self.variant!r}, "
            f"max_positions={self.max_positions!r}, feature_stride={self.feature_stride}, "
            f"spatial_units={self.spatial_units!r}, reduction={self.reduction!r}"
        )


class ContextualLoss(CoBiLoss):
    """Module form of :func:`contextual_loss` (CoBi with w_spatial = 0)."""

    def __init__(
        self,
        distance: Distance = "cosine",
        variant: Variant = "paper",
        max_positions: int | Literal["auto"] | None = "auto",
        bandwidth: float = 0.5,
        eps: float = 1e-3,
        chunk_size: int | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(0.0, distance, variant, max_positions, 1.0, "pixels", bandwidth, eps, chunk_size, reduction)
