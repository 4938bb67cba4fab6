"""Naive CoBi / CX references for ``tests/ops/test_cobi.py``: full matrices, plain autograd, written straight
from the formulas. The official one is dense only: to check its sampling, gather the sampled positions
first and pass them as a (B, C, H_g, W_g) map.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _positions(x: Tensor) -> Tensor:
    """(B, C, H, W) → (B, P, C), positions in raster order."""
    return x.flatten(2).transpose(1, 2)


def cobi_paper_reference(
    pred: Tensor,
    target: Tensor,
    w_spatial: float,
    distance: str,
    *,
    positions: Tensor | None = None,
    feature_stride: float = 1.0,
    spatial_units: str = "pixels",
) -> Tensor:
    """Per-sample paper CoBi (B,): (1/P) Σ_{i ∈ positions} min_{j ∈ all} [D(p_i, q_j) + w_s·‖x_i − x_j‖],
    x = stride·(row, col) ("pixels") or (row, col)/max(H, W) ("image")."""
    _, channels, height, width = pred.shape
    every = torch.arange(height * width, device=pred.device)
    positions = every if positions is None else positions
    p, q = _positions(pred)[:, positions], _positions(target)
    if distance == "cosine":
        mu = p.mean(dim=1, keepdim=True)  # per sample, over the used prediction positions
        p, q = p - mu, q - mu
        p = p / p.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        d = (1.0 - p @ q.transpose(1, 2)) / 2.0  # d[b, i, j]
    else:
        d = torch.cdist(p, q, compute_mode="donot_use_mm_for_euclid_dist") / channels**0.5
    scale = feature_stride if spatial_units == "pixels" else 1.0 / max(height, width)
    y, x = (every // width).to(pred.dtype) * scale, (every % width).to(pred.dtype) * scale
    spatial = ((y[positions, None] - y[None, :]) ** 2 + (x[positions, None] - x[None, :]) ** 2).sqrt()
    return (d + w_spatial * spatial).min(dim=2).values.mean(dim=1)


def _cx(d: Tensor, bandwidth: float, eps: float) -> Tensor:
    """CX_ij = exp((1 − d̃_ij)/h) / Σ_k exp((1 − d̃_ik)/h), d̃_ij = d_ij / (min_k d_ik + ε)."""
    relative = d / (d.min(dim=-1, keepdim=True).values + eps)
    w = torch.exp((1.0 - relative) / bandwidth)
    return w / w.sum(dim=-1, keepdim=True)


def official_similarity(
    pred: Tensor, target: Tensor, distance: str, bandwidth: float = 0.5, eps: float = 1e-3
) -> Tensor:
    """Official CX matrix (B, P_i, P_j): i = target position (rows), j = prediction position (columns)."""
    t, i = _positions(pred), _positions(target)
    if distance == "cosine":
        mu = t.mean(dim=(0, 1), keepdim=True)  # over batch and positions, from the prediction
        t = (t - mu) / (t - mu).norm(dim=-1, keepdim=True)
        i = (i - mu) / (i - mu).norm(dim=-1, keepdim=True)
        d = (1.0 - i @ t.transpose(1, 2)) / 2.0  # d[b, i, j]
    else:
        t_sq = (t**2).sum(-1)[:, None, :]
        i_sq = (i**2).sum(-1)[:, :, None]
        d = (t_sq - 2.0 * i @ t.transpose(1, 2) + i_sq).clamp(min=0.0)
    return _cx(d, bandwidth, eps)


def cobi_official_reference(
    pred: Tensor, target: Tensor, w_spatial: float, distance: str, bandwidth: float = 0.5, eps: float = 1e-3
) -> Tensor:
    """Per-sample official CoBi (B,): −log((1/P) Σ_j max_i [(1 − w_s)·CX_ij + w_s·CX^sp_ij])."""
    _, _, height, width = pred.shape
    cx = official_similarity(pred, target, distance, bandwidth, eps)
    rows = torch.arange(height * width, device=pred.device) // width
    cols = torch.arange(height * width, device=pred.device) % width
    g_r = 255.0 * rows.to(pred.dtype) / height
    g_c = 255.0 * cols.to(pred.dtype) / width
    d_spatial = (g_r[:, None] - g_r[None, :]) ** 2 + (g_c[:, None] - g_c[None, :]) ** 2
    combined = (1.0 - w_spatial) * cx + w_spatial * _cx(d_spatial, bandwidth, eps)
    return -torch.log(combined.max(dim=1).values.mean(dim=1))
