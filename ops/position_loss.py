"""Position-preserving loss of SelfDZSR's auxiliary-LR generator.

Zhang et al., "Self-Supervised Learning for Real-World Super-Resolution from Dual Zoomed Observations", ECCV 2022,
Eq. 4 (after KernelGAN's centroid constraint); the official ``FilterLoss`` differs (reference ``selfdzsr.md`` §3.2).
For a convolution weight W (O, I, k, k) with centred indices c_i = i − (k − 1)/2 (rows i, columns j):

    paper (Eq. 4):  mean_{o,n} ( |Σ_{i,j} c_i·w_{o,n,i,j}| + |Σ_{i,j} c_j·w_{o,n,i,j}| )
    code:           mean_{o,n,j} |(1/k)·Σ_i c_i·w_{o,n,i,j}| + mean_{o,n,i} |(1/k)·Σ_j c_j·w_{o,n,i,j}|

Paper form: Eq. 4 is written for one 2-D kernel, i.e. one (unnormalised) centroid per (output, input) channel
pair; we average it over the O·I kernels, the reduction the official code also uses, so the value does not grow
with the channel count and λ_p = 100 (paper Table 5) stays on the scale it was tuned on (a sum would multiply it
by 4,096 for 64×64 channels). Code form: the absolute value is taken per column (resp. per row), so every row
and column must be centred, a stronger constraint on a different scale. Both are zero for kernels symmetric
under i ↦ k−1−i and j ↦ k−1−j. The training objective multiplies either by λ_p = 100 per layer.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["position_loss", "PositionLoss"]

Form = Literal["paper", "code"]
_FORMS = ("paper", "code")


def position_loss(weight: Tensor, form: Form = "paper") -> Tensor:
    """Position-preserving penalty of one convolution weight (formulas in the module docstring).

    Args:
        weight: (O, I, k, k), floating point.
        form: ``"paper"`` (Eq. 4, one centroid per kernel, the default) or ``"code"`` (the official
            ``FilterLoss``, per row / column).

    Returns:
        A scalar tensor, differentiable in ``weight``.
    """
    if form not in _FORMS:
        raise ValueError(f"expected form in {_FORMS}, got {form!r}")
    if not isinstance(weight, Tensor) or weight.dim() != 4 or weight.shape[-1] != weight.shape[-2]:
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"expected a convolution weight of shape (O, I, k, k), got {shape}")
    if not weight.is_floating_point():
        raise ValueError(f"expected a floating-point weight, got dtype {weight.dtype}")
    if weight.numel() == 0:
        raise ValueError(f"expected a non-empty weight, got shape {tuple(weight.shape)}")
    k = weight.shape[-1]
    centred = torch.arange(k, dtype=weight.dtype, device=weight.device) - (k - 1) / 2
    row_moments = (weight * centred[:, None]).sum(dim=-2)  # (O, I, k): Σ_i c_i·w_ij per column j
    col_moments = (weight * centred).sum(dim=-1)  # (O, I, k): Σ_j c_j·w_ij per row i
    if form == "paper":
        return (row_moments.sum(-1).abs() + col_moments.sum(-1).abs()).mean()
    return (row_moments / k).abs().mean() + (col_moments / k).abs().mean()


class PositionLoss(nn.Module):
    """Module form of :func:`position_loss`: ``forward(weight)`` → scalar."""

    def __init__(self, form: Form = "paper") -> None:
        super().__init__()
        if form not in _FORMS:
            raise ValueError(f"expected form in {_FORMS}, got {form!r}")
        self.form = form

    def forward(self, weight: Tensor) -> Tensor:
        return position_loss(weight, self.form)

    def extra_repr(self) -> str:
        return f"form={self.form!r}"
