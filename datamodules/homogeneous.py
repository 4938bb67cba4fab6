"""3×3 homogeneous maps of 2-D pixel coordinates (x = column, y = row)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["map_points"]


def map_points(matrix: Tensor | np.ndarray, xs: Tensor, ys: Tensor) -> tuple[Tensor, Tensor]:
    """(x′, y′) = ((m₀₀x + m₀₁y + m₀₂)/w, (m₁₀x + m₁₁y + m₁₂)/w), w = m₂₀x + m₂₁y + m₂₂, in float64.

    ``xs`` and ``ys`` are coordinate tensors of the same (any) shape.
    """
    m = torch.as_tensor(matrix, dtype=torch.float64)
    xs, ys = xs.to(torch.float64), ys.to(torch.float64)
    w = m[2, 0] * xs + m[2, 1] * ys + m[2, 2]
    return (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / w, (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / w
