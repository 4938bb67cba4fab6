"""Sliced Wasserstein distance between feature maps, and SelfDZSR's VGG-19 sliced Wasserstein loss.

Zhang et al., "Self-Supervised Learning for Real-World Super-Resolution from Dual Zoomed Observations", ECCV 2022,
§3.5, Eq. (10) (λ_SW = 0.08); Heitz et al., "A Sliced Wasserstein Loss for Neural Texture Synthesis", CVPR 2021.
Restated from the official code in reference ``selfdzsr.md`` §3.1.

For features x, y (B, C, H, W), N = H·W positions, and P directions d_p ~ N(0, I_C), d̂_p = d_p/‖d_p‖ (one draw
shared by the batch and by x and y):

    SW(x, y) = 1/(B·P·N) Σ_{b,p,n} | sort_n(d̂_p · x_b)[n] − sort_n(d̂_p · y_b)[n] |

i.e. the mean over directions of the 1-D Wasserstein-1 distance between the projected empirical distributions
of the positions (independent of where each feature sits in the image).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ops.vgg import VGG19Features

__all__ = ["sliced_wasserstein", "SlicedWassersteinLoss"]


def sliced_wasserstein(
    pred_features: Tensor,
    target_features: Tensor,
    *,
    num_projections: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SW(pred, target) of the module docstring, a scalar; differentiable in both inputs.

    Args:
        pred_features, target_features: (B, C, H, W), the same shape.
        num_projections: P, default ⌊C/2⌋ (at least 1), as the official code.
        generator: torch generator on the features' device for the (P, C) standard-normal draw (the global torch
            RNG when None). Drawn and computed in float32 (float64 for float64 features), also under autocast.
    """
    for name, x in (("pred_features", pred_features), ("target_features", target_features)):
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected {name} of shape (B, C, H, W), got {shape}")
        if not x.is_floating_point():
            raise ValueError(f"expected floating-point {name}, got dtype {x.dtype}")
    if pred_features.shape != target_features.shape or pred_features.numel() == 0:
        raise ValueError(
            f"expected non-empty pred_features and target_features of the same shape, "
            f"got {tuple(pred_features.shape)} and {tuple(target_features.shape)}"
        )
    if pred_features.device != target_features.device:
        raise ValueError(f"expected both inputs on one device, got {pred_features.device} and {target_features.device}")
    channels = pred_features.shape[1]
    if num_projections is None:
        num_projections = max(1, channels // 2)
    if isinstance(num_projections, bool) or not isinstance(num_projections, int) or num_projections < 1:
        raise ValueError(f"expected num_projections to be None or an int >= 1, got {num_projections!r}")

    dtype = torch.promote_types(pred_features.dtype, torch.float32)
    device = pred_features.device
    directions = torch.randn(num_projections, channels, generator=generator, device=device, dtype=dtype)
    directions = F.normalize(directions, dim=1)
    no_autocast = (
        torch.autocast(device.type, enabled=False) if torch.amp.is_autocast_available(device.type) else nullcontext()
    )
    with no_autocast:
        pred = (directions @ pred_features.to(dtype).flatten(2)).sort(dim=2).values  # (B, P, N)
        target = (directions @ target_features.to(dtype).flatten(2)).sort(dim=2).values
    return (pred - target).abs().mean()


#: SelfDZSR's layers (VGG19Features names the post-ReLU outputs: conv3_2 = relu3_2) and their weights.
SELFDZSR_LAYER_WEIGHTS = {"conv3_2": 1.0, "conv4_2": 1.0, "conv5_2": 2.0}


class SlicedWassersteinLoss(nn.Module):
    """SelfDZSR's L_SW: weight · Σ_l w_l · SW(VGG_l(pred), VGG_l(target)), images (B, 3, H, W) in [0, 1].

    Default: 0.08 · (SW_relu3_2 + SW_relu4_2 + 2·SW_relu5_2) with ⌊C_l/2⌋ = 128 / 256 / 256 directions (paper
    λ_SW = 0.08 with the official 1:1:2 layer weights, reference ``selfdzsr.md`` §3.1). The VGG-19 (max pooling,
    ImageNet normalisation) is frozen and in eval mode; its weights are random until the caller passes a torchvision
    VGG-19 state dict to :meth:`load_torchvision_state_dict` (this module does no file I/O). H, W ≥ 16.

    Draw order: one (P_l, C_l) draw from ``generator`` per layer, in the order of ``layer_weights`` (every layer,
    also one of weight 0), i.e. ``sliced_wasserstein`` called per layer in that order with the same generator.
    """

    def __init__(
        self,
        weight: float = 0.08,
        layer_weights: Mapping[str, float] | None = None,
        num_projections: int | None = None,
    ) -> None:
        super().__init__()
        layer_weights = dict(SELFDZSR_LAYER_WEIGHTS if layer_weights is None else layer_weights)
        bad = {name: w for name, w in layer_weights.items() if not isinstance(w, (int, float)) or w < 0}
        if bad or not layer_weights:
            raise ValueError(f"expected a non-empty mapping of VGG-19 layer names to weights >= 0, got {layer_weights}")
        if not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"expected weight >= 0, got {weight!r}")
        if num_projections is not None and (
            isinstance(num_projections, bool) or not isinstance(num_projections, int) or num_projections < 1
        ):
            raise ValueError(f"expected num_projections to be None or an int >= 1, got {num_projections!r}")
        self.weight = float(weight)
        self.layer_weights = {name: float(w) for name, w in layer_weights.items()}
        self.num_projections = num_projections
        self.vgg = VGG19Features(layers=tuple(layer_weights), pooling="max", normalization="imagenet")

    def load_torchvision_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load the feature weights of a torchvision VGG-19 state dict (see :class:`VGG19Features`)."""
        self.vgg.load_torchvision_state_dict(state_dict)

    def forward(self, pred: Tensor, target: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if pred.shape != target.shape:
            raise ValueError(
                f"expected pred and target of the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        pred_features, target_features = self.vgg(pred), self.vgg(target)
        loss = sum(
            w * sliced_wasserstein(
                pred_features[name], target_features[name], num_projections=self.num_projections, generator=generator
            )
            for name, w in self.layer_weights.items()
        )
        return self.weight * loss

    def extra_repr(self) -> str:
        return f"weight={self.weight}, layer_weights={self.layer_weights}, num_projections={self.num_projections}"
