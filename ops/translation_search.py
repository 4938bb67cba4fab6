"""Integer translation search: crop from a larger target the window that best matches a prediction.

Zhang et al. 2019 match the target to the prediction before CoBi by trying every integer shift of
a (H + 2m) × (W + 2m) target crop against the H × W prediction and keeping the one with the lowest
L1 distance (reference ``zoom_learn_zoom.md`` §1.13). The official code only handled batch element 0,
tried every other shift and could select by a different criterion than it reported; here every
sample gets its own shift, chosen and reported by the same criterion.

For shifts s = (dy, dx) ∈ {0, stride, 2·stride, …, 2m}²:

    cost_b(s) = mean_{c,y,x} | pred[b, c, y, x] − target[b, c, y + dy, x + dx] |   (or squared for "l2")

and the result is target[b, :, dy*:dy* + H, dx*:dx* + W] with s* = argmin cost_b.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["translation_search", "TranslationSearch"]


def translation_search(
    pred: Tensor, target: Tensor, *, stride: int = 1, metric: Literal["l1", "l2"] = "l1"
) -> tuple[Tensor, Tensor]:
    """Best-matching crop of ``target`` (B, C, H + 2m, W + 2m) for ``pred`` (B, C, H, W).

    Returns ``(aligned, shift)``: the crops (B, C, H, W) and the chosen offsets (B, 2) as (dy, dx)
    into ``target`` (m, m is the centred crop). The search runs without gradient; ``aligned`` is a
    plain crop of ``target``, so gradients flow to ``target`` as for any crop. The centred crop is
    always among the candidates, whatever the stride.
    """
    if pred.dim() != 4 or target.dim() != 4 or pred.shape[:2] != target.shape[:2]:
        raise ValueError(
            f"expected pred (B, C, H, W) and target (B, C, H+2m, W+2m), got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    extra_h, extra_w = target.shape[-2] - pred.shape[-2], target.shape[-1] - pred.shape[-1]
    if extra_h < 0 or extra_w < 0 or extra_h % 2 or extra_w % 2:
        raise ValueError(
            f"target must exceed pred by an even margin on each axis, got {tuple(target.shape[-2:])} vs {tuple(pred.shape[-2:])}"
        )
    if stride < 1:
        raise ValueError(f"stride must be ≥ 1, got {stride}")
    if metric not in ("l1", "l2"):
        raise ValueError(f"metric must be 'l1' or 'l2', got {metric!r}")
    height, width = pred.shape[-2:]
    rows = sorted(set(range(0, extra_h + 1, stride)) | {extra_h // 2})
    cols = sorted(set(range(0, extra_w + 1, stride)) | {extra_w // 2})
    shifts = torch.tensor([(dy, dx) for dy in rows for dx in cols], device=pred.device)
    with torch.no_grad():
        reference = pred.detach()
        costs = []
        for dy, dx in shifts.tolist():
            difference = reference - target[:, :, dy : dy + height, dx : dx + width].detach()
            costs.append((difference.abs() if metric == "l1" else difference.square()).mean(dim=(1, 2, 3)))
        best = shifts[torch.stack(costs, dim=1).argmin(dim=1)]  # (B, 2)
    rows_index = best[:, 0, None] + torch.arange(height, device=pred.device)  # (B, H)
    cols_index = best[:, 1, None] + torch.arange(width, device=pred.device)  # (B, W)
    batch_index = torch.arange(pred.shape[0], device=pred.device)[:, None, None]
    aligned = target.permute(0, 2, 3, 1)[batch_index, rows_index[:, :, None], cols_index[:, None, :]]
    return aligned.permute(0, 3, 1, 2), best


class TranslationSearch(nn.Module):
    """Module form of :func:`translation_search`."""

    def __init__(self, stride: int = 1, metric: Literal["l1", "l2"] = "l1") -> None:
        super().__init__()
        self.stride = stride
        self.metric = metric

    def forward(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        return translation_search(pred, target, stride=self.stride, metric=self.metric)
