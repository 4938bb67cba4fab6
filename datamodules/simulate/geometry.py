"""Geometry of a simulated shot: where a world point (a reference pixel) lands in the shot.

Pixel coordinates everywhere: x = column, y = row, pixel centres at integers, full resolution.
World coordinates are the pixel coordinates of the reference shot ``00001``.

The reference pixel ``u`` appears in shot k at

    q = p + w_k(p),    p = A_k · u    (homogeneous),

* ``A_k = ref_to_shot`` is the homography ``p = c + s·R(θ)·v/(1 + κ·v) + t``, v = u − c, about the
  optical centre ``c = ((W − 1)/2, (H − 1)/2)``, with ``s`` = true focal of k / true focal of 00001 (the
  field-of-view scale, < 1 for wider shots), ``R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]]`` in (x, y)
  with y pointing down (a positive angle turns the content clockwise on screen), ``t`` the
  translation in shot-k pixels and ``κ = (κ_x, κ_y)`` (1/pixel) the perspective of a camera that
  turned between the shots: it moves a point at distance d from the centre by about d²·|κ| pixels
  (0 gives a similarity);
* ``w_k`` is a smooth displacement in shot-k pixels, a sum of sinusoids
  ``w_k(p) = Σ_j a_j · d_j · sin(2π(f_jx·p_x/W + f_jy·p_y/H) + φ_j)``
  (amplitude ``a_j`` px, unit direction ``d_j``, frequency ``f_j`` in cycles per frame, phase ``φ_j``).

The reference defines the world: ``A = I`` and ``w = 0`` for ``00001``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["WarpComponent", "ShotGeometry", "warp_displacement", "shot_mapping"]


@dataclass(frozen=True)
class WarpComponent:
    """One sinusoid of the warp: ``a · d · sin(2π(f_x·x/W + f_y·y/H) + φ)``."""

    amplitude_px: float
    direction: tuple[float, float]
    frequency: tuple[float, float]
    phase: float

    def to_dict(self) -> dict:
        return {
            "amplitude_px": self.amplitude_px,
            "direction": list(self.direction),
            "frequency": list(self.frequency),
            "phase": self.phase,
        }


def warp_displacement(components: list[dict], x, y, width: int, height: int):
    """Warp ``w(p)`` at shot pixels ``(x, y)`` (numpy arrays or tensors) → ``(w_x, w_y)``.

    ``components`` are :meth:`WarpComponent.to_dict` dicts, as stored in the truth file.
    """
    sin = torch.sin if isinstance(x, Tensor) else np.sin
    wx, wy = x * 0.0, y * 0.0
    for c in components:
        wave = sin(2 * math.pi * (c["frequency"][0] * x / width + c["frequency"][1] * y / height) + c["phase"])
        wx = wx + c["amplitude_px"] * c["direction"][0] * wave
        wy = wy + c["amplitude_px"] * c["direction"][1] * wave
    return wx, wy


@dataclass(frozen=True)
class ShotGeometry:
    """Pose of one shot relative to the reference (see the module docstring for the convention).

    Args:
        width, height: Frame size (pixels).
        scale: Field-of-view scale ``s`` = true focal / reference true focal.
        rotation_deg: Rotation θ (degrees).
        translation_px: Translation ``t`` (pixels of this shot).
        perspective: Perspective ``κ`` (1/pixel, reference pixels).
        warp: Components of the smooth warp ``w``.
    """

    width: int
    height: int
    scale: float
    rotation_deg: float = 0.0
    translation_px: tuple[float, float] = (0.0, 0.0)
    perspective: tuple[float, float] = (0.0, 0.0)
    warp: tuple[WarpComponent, ...] = ()

    @property
    def centre(self) -> tuple[float, float]:
        """Optical centre ``c`` (pixels)."""
        return (self.width - 1) / 2, (self.height - 1) / 2

    @property
    def footprint(self) -> float:
        """World units (reference pixels) covered by one pixel of this shot: 1/s."""
        return 1.0 / self.scale

    def ref_to_shot(self) -> np.ndarray:
        """The 3×3 homography ``A`` mapping homogeneous reference pixels to this shot's pixels."""
        theta = math.radians(self.rotation_deg)
        linear = self.scale * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        centre = np.array(self.centre)
        to_centre, from_centre = np.eye(3), np.eye(3)
        to_centre[:2, 2] = -centre
        from_centre[:2, 2] = centre + np.array(self.translation_px)
        similarity = np.eye(3)
        similarity[:2, :2] = linear
        perspective = np.eye(3)
        perspective[2, :2] = self.perspective
        return from_centre @ similarity @ perspective @ to_centre

    def warp_dicts(self) -> list[dict]:
        return [component.to_dict() for component in self.warp]

    def world_grid(self, iterations: int = 3) -> tuple[Tensor, Tensor]:
        """World positions ``u`` (x, y), each (H, W) float32, seen by every pixel ``q`` of this shot.

        Inverts ``q = p + w(p)`` by the fixed-point iteration ``p ← q − w(p)``: a contraction with
        factor ``max |∇w| ≈ 2π · 2 cycles · max_warp_px / H`` (≈ 0.01), so three iterations leave an
        error far below 1e-4 px. Then ``u = A⁻¹ p``.
        """
        qy, qx = torch.meshgrid(
            torch.arange(self.height, dtype=torch.float32), torch.arange(self.width, dtype=torch.float32), indexing="ij"
        )
        px, py = qx, qy
        for _ in range(iterations if self.warp else 0):
            wx, wy = warp_displacement(self.warp_dicts(), px, py, self.width, self.height)
            px, py = qx - wx, qy - wy
        inverse = np.linalg.inv(self.ref_to_shot())
        w = px * float(inverse[2, 0]) + py * float(inverse[2, 1]) + float(inverse[2, 2])
        ux = (px * float(inverse[0, 0]) + py * float(inverse[0, 1]) + float(inverse[0, 2])) / w
        uy = (px * float(inverse[1, 0]) + py * float(inverse[1, 1]) + float(inverse[1, 2])) / w
        return ux, uy


def shot_mapping(truth: dict, shot: str, points: np.ndarray) -> np.ndarray:
    """Where reference pixels ``points`` (..., 2) as (x, y) appear in ``shot``: ``A·u + w(A·u)``.

    ``truth`` is a scene's ``simulation_truth.json``; the result has the shape of ``points``.
    """
    record = truth["shots"][shot]
    matrix = np.asarray(record["ref_to_shot"], dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    w = matrix[2, 0] * points[..., 0] + matrix[2, 1] * points[..., 1] + matrix[2, 2]
    px = (matrix[0, 0] * points[..., 0] + matrix[0, 1] * points[..., 1] + matrix[0, 2]) / w
    py = (matrix[1, 0] * points[..., 0] + matrix[1, 1] * points[..., 1] + matrix[1, 2]) / w
    wx, wy = warp_displacement(record["warp"]["components"], px, py, truth["width"], truth["height"])
    return np.stack([px + wx, py + wy], axis=-1)
