"""Similarity registration of two grey images, robust to exposure and colour drift between them.

Coordinates: x = column, y = row, pixel centres at integers. A 3×3 matrix ``A`` *maps fixed pixel
coordinates to moving pixel coordinates*, so the moving image seen at fixed pixel x is m(A·x).

Model (paper §3.3 asks for a Euclidean ECC; SR-RAW's shots also differ by a small scale):

    f(x) ≈ g · m(A·x) + h,   A = [[p, −q, e], [q, p, k], [0, 0, 1]]   (p = s·cos θ, q = s·sin θ)

Minimising Σₓ (g·m(A·x) + h − f(x))² over A, the photometric gain g and offset h is the same as
maximising the correlation coefficient of f and m∘A (eliminate g and h): the ECC criterion
(Evangelidis & Psarakis, 2008) that the official code ran with OpenCV, here with the similarity model.
We maximise it with ECC's forward-additive Gauss–Newton update on a Gaussian pyramid, coarse to fine,
with a trust region on each step and the best parameters kept per level. A global change of exposure,
contrast or black level between the shots costs nothing.

Measured: ≤ 0.03 px on 160×224 analytic renderings (scale 0.92–1.1, rotation ≤ 1°, shifts ≤ 8 px,
exposure and gamma change, noise), ~0.05 s on one CPU core; kornia's ``ImageRegistrator``
(similarity, Adam on MSE of standardised images) reached 0.2 px in 7–10 s on the same pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d, spatial_gradient
from torch import Tensor

from ops.geometry import pixel_grid, warp_image

__all__ = ["SimilarityRegistration", "masked_correlation", "register_similarity"]


@dataclass(frozen=True)
class SimilarityRegistration:
    """Result of :func:`register_similarity`.

    Attributes:
        matrix: (3, 3) float64, fixed pixel coordinates → moving pixel coordinates.
        correlation: Correlation coefficient of f and m∘A over the overlap, after a σ = 1 px Gaussian
            blur of both (1 = perfect).
        overlap: Fraction of fixed pixels whose match lies inside the moving image.
    """

    matrix: Tensor
    correlation: float
    overlap: float


def _check_grey(name: str, image: Tensor) -> None:
    if image.dim() != 2 or not image.is_floating_point():
        raise ValueError(f"{name}: expected a float grey image of shape (H, W), got {image.dtype} {tuple(image.shape)}")
    if min(image.shape) < 8:
        raise ValueError(f"{name}: image of {tuple(image.shape)} is too small to register (need ≥ 8×8)")


def masked_correlation(a: Tensor, b: Tensor, mask: Tensor) -> float:
    """Correlation coefficient Σ(a−ā)(b−b̄) / √(Σ(a−ā)² Σ(b−b̄)²) over the pixels where ``mask`` is true."""
    x, y = a[mask].to(torch.float64), b[mask].to(torch.float64)
    if x.numel() < 2:
        return 0.0
    x, y = x - x.mean(), y - y.mean()
    denominator = torch.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def _smooth(image: Tensor) -> Tensor:
    return gaussian_blur2d(image[None, None], (5, 5), (1.0, 1.0), border_type="replicate")[0, 0]


def _half(image: Tensor) -> Tensor:
    """Blur and halve; coarse pixel x sits at fine pixel 2x + 0.5."""
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    return F.avg_pool2d(_smooth(image)[None, None, :height, :width], 2)[0, 0]


def _standardise(image: Tensor) -> Tensor:
    return (image - image.mean()) / image.std().clamp_min(1e-6)


def _gradients(image: Tensor) -> Tensor:
    """Central differences (∂/∂x, ∂/∂y) of (H, W) → (2, H, W), border pixels replicated."""
    return spatial_gradient(image[None, None], mode="diff")[0, 0]


#: Coarse-level pixel coords → next finer level's: x_fine = 2·x_coarse + 0.5 (see :func:`_half`).
_HALF = torch.tensor([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _ecc_step(template: Tensor, warped: Tensor, jacobian: Tensor) -> Tensor:
    """One ECC parameter update (Evangelidis & Psarakis 2008, eqs. 26–28), all inputs zero-mean, float64.

    With G the Jacobian (N, n), P = G(GᵀG)⁻¹Gᵀ, t the template and w the warped image:
    Δp = (GᵀG)⁻¹Gᵀ(λ·t − w), λ = (‖w‖² − wᵀPw)/(tᵀw − tᵀPw) when tᵀw > tᵀPw, else
    λ = max(√(wᵀPw / tᵀPt), (tᵀPw − tᵀw)/tᵀPt). λ plays the photometric gain, chosen so that every step
    raises the correlation even far from the optimum (no gain collapse).
    """
    hessian = jacobian.T @ jacobian
    scale = hessian.diagonal().clamp_min(1e-12).rsqrt()  # Jacobi preconditioning of the solve
    hessian_inverse = scale[:, None] * torch.linalg.inv(scale[:, None] * hessian * scale) * scale
    t_proj, w_proj = jacobian.T @ template, jacobian.T @ warped
    tpt, wpw, tpw = t_proj @ hessian_inverse @ t_proj, w_proj @ hessian_inverse @ w_proj, t_proj @ hessian_inverse @ w_proj
    tw, ww = template @ warped, warped @ warped
    if tw > tpw:
        lam = (ww - wpw) / (tw - tpw)
    else:
        lam = torch.maximum(torch.sqrt(wpw / tpt), (tpw - tw) / tpt)
    return hessian_inverse @ (lam * t_proj - w_proj)


def _similarity(p: float, q: float, u: float, v: float, cx: float, cy: float) -> Tensor:
    """The 3×3 map X = p·(x − cx) − q·(y − cy) + u, Y = q·(x − cx) + p·(y − cy) + v (float64)."""
    return torch.tensor(
        [[p, -q, u - p * cx + q * cy], [q, p, v - q * cx - p * cy], [0.0, 0.0, 1.0]], dtype=torch.float64
    )


def _refine_level(
    fixed: Tensor, moving: Tensor, matrix: Tensor, max_iterations: int, tolerance: float
) -> tuple[Tensor, Tensor, Tensor]:
    """ECC iterations at one pyramid level; returns (matrix, warped moving, valid mask)."""
    height, width = fixed.shape
    xs, ys = pixel_grid(height, width)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    xc, yc = (xs - cx).to(fixed.dtype), (ys - cy).to(fixed.dtype)
    # Parameters about the image centre: X = p·xc − q·yc + u, Y = q·xc + p·yc + v.
    p, q = matrix[0, 0].item(), matrix[1, 0].item()
    u = matrix[0, 0].item() * cx + matrix[0, 1].item() * cy + matrix[0, 2].item()
    v = matrix[1, 0].item() * cx + matrix[1, 1].item() * cy + matrix[1, 2].item()
    stack = torch.cat((moving[None], _gradients(moving)))
    corners = torch.tensor([[-cx, -cy], [cx, -cy], [-cx, cy], [cx, cy]], dtype=torch.float64)
    max_move = max(1.0, 0.1 * min(height, width))  # trust region: corner motion per step, pixels
    best_correlation, best = -2.0, (p, q, u, v)  # keep the best parameters seen (ECC can overshoot)
    for _ in range(max_iterations):
        (warped, wx, wy), valid = warp_image(stack, _similarity(p, q, u, v, cx, cy), (height, width), margin=1.0)
        if int(valid.sum()) < 16:
            break
        jacobian = torch.stack((wx * xc + wy * yc, wy * xc - wx * yc, wx, wy), dim=-1)[valid].to(torch.float64)
        template, warped = fixed[valid].to(torch.float64), warped[valid].to(torch.float64)
        template, warped = template - template.mean(), warped - warped.mean()
        correlation = float(template @ warped / (template.norm() * warped.norm()).clamp_min(1e-12))
        if correlation > best_correlation:
            best_correlation, best = correlation, (p, q, u, v)
        step = _ecc_step(template, warped, jacobian - jacobian.mean(0))
        if not bool(torch.isfinite(step).all()):
            break
        dp, dq, du, dv = step.tolist()
        moved = float((corners[:, 0] * dp - corners[:, 1] * dq + du).abs().max() + (corners[:, 0] * dq + corners[:, 1] * dp + dv).abs().max())
        shrink = min(1.0, max_move / max(moved, 1e-12))
        p, q, u, v = p + shrink * dp, q + shrink * dq, u + shrink * du, v + shrink * dv
        if moved < tolerance:
            break
    matrix = _similarity(*best, cx, cy)
    warped, inside = warp_image(moving, matrix, (height, width))
    return matrix, warped, inside


def register_similarity(
    fixed: Tensor,
    moving: Tensor,
    *,
    coarsest_size: int = 16,
    max_iterations: int = 40,
    tolerance: float = 1e-3,
) -> SimilarityRegistration:
    """Similarity A (fixed pixel coords → moving pixel coords) with f(x) ≈ g·m(A·x) + h.

    Args:
        fixed, moving: Float grey images (H, W) and (H′, W′), roughly aligned already (the search
            starts at the identity; coarse levels catch shifts of a few percent of the image size).
        coarsest_size: The pyramid is halved while the shorter side of the fixed image stays ≥ this.
        max_iterations: ECC iterations per level.
        tolerance: Stop the finest level when no corner of the fixed image moves by more than this
            (pixels); level l (halved l times) stops at tolerance·2^l, as finer levels refine it.
    """
    _check_grey("fixed", fixed)
    _check_grey("moving", moving)
    fixed_levels, moving_levels = [_smooth(_standardise(fixed))], [_smooth(_standardise(moving))]
    while min(fixed_levels[-1].shape) // 2 >= coarsest_size and min(moving_levels[-1].shape) // 2 >= 8:
        fixed_levels.append(_half(fixed_levels[-1]))
        moving_levels.append(_half(moving_levels[-1]))
    matrix = torch.eye(3, dtype=torch.float64)  # the identity is the identity at every level
    for level in range(len(fixed_levels) - 1, -1, -1):
        matrix, warped, inside = _refine_level(
            fixed_levels[level], moving_levels[level], matrix, max_iterations, tolerance * 2**level
        )
        if level:
            matrix = _HALF @ matrix @ torch.linalg.inv(_HALF)
    return SimilarityRegistration(
        matrix=matrix,
        correlation=masked_correlation(fixed_levels[0], warped, inside),
        overlap=float(inside.float().mean()),
    )
