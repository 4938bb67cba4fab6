"""Frozen VGG-19 feature extractor for perceptual / contextual losses.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015.
Zhang et al., CVPR 2019 (CoBi_VGG) uses conv1_2, conv2_2 and conv3_2 after ReLU, with average pooling
and Caffe-style input normalisation (reference ``zoom_learn_zoom.md`` §1.2).

The layers are torchvision's ``vgg19().features`` (same modules, same indices, built with
``torchvision.models.vgg.make_layers`` so that the ~124 M-parameter classifier is never allocated),
truncated after the ReLU of the deepest requested layer. Weights are random (torchvision's init) until
the caller passes a torchvision VGG-19 state dict to :meth:`VGG19Features.load_torchvision_state_dict`;
this module does no file I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

__all__ = ["VGG19_LAYERS", "VGG19_STRIDES", "VGG19Features"]


def _layer_indices() -> dict[str, int]:
    """Map "convK_L" → index of its ReLU in torchvision's ``vgg19().features``."""
    indices: dict[str, int] = {}
    block, conv, index = 1, 0, 0
    for entry in cfgs["E"]:
        if entry == "M":
            block, conv, index = block + 1, 0, index + 1
        else:
            conv += 1
            indices[f"conv{block}_{conv}"] = index + 1  # the ReLU that follows the conv
            index += 2
    return indices


_RELU_INDEX = _layer_indices()

#: Names accepted by :class:`VGG19Features` (post-ReLU outputs), shallow to deep.
VGG19_LAYERS = tuple(_RELU_INDEX)
#: Input pixels per feature pixel of each layer: 2^(k−1) for block k (one 2×2 pooling per block before it).
VGG19_STRIDES = {name: 2 ** (int(name[4]) - 1) for name in VGG19_LAYERS}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN = (123.68, 116.779, 103.939)


class VGG19Features(nn.Module):
    """Post-ReLU VGG-19 feature maps: RGB (B, 3, H, W) in [0, 1] → {layer: (B, C_l, H/2^k, W/2^k)}.

    Args:
        layers: names from :data:`VGG19_LAYERS`; the returned dict has them in this order.
        pooling: "max" (torchvision) or "avg" (2×2 stride-2 average pooling, the official CoBi code).
        normalization: "imagenet": (x − mean)/std, what torchvision weights expect; "caffe":
            255·x − (123.68, 116.779, 103.939) in RGB order, what the official code feeds its
            MatConvNet weights.

    The network is frozen (``requires_grad`` False) and stays in eval mode whatever ``train()`` is
    asked; gradients still flow to the input image.
    """

    def __init__(
        self,
        layers: Sequence[str] = ("conv1_2", "conv2_2", "conv3_2"),
        pooling: Literal["max", "avg"] = "max",
        normalization: Literal["imagenet", "caffe"] = "imagenet",
    ) -> None:
        super().__init__()
        layers = tuple(layers)
        if not layers:
            raise ValueError("expected at least one VGG-19 layer name, got none")
        unknown = [name for name in layers if name not in _RELU_INDEX]
        if unknown:
            raise ValueError(f"unknown VGG-19 layer(s) {unknown}; expected names from {VGG19_LAYERS}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"expected distinct layer names, got {layers}")
        if pooling not in ("max", "avg"):
            raise ValueError(f"expected pooling 'max' or 'avg', got {pooling!r}")
        if normalization not in ("imagenet", "caffe"):
            raise ValueError(f"expected normalization 'imagenet' or 'caffe', got {normalization!r}")
        self.layers = layers
        self.pooling = pooling
        self.normalization = normalization

        last = max(_RELU_INDEX[name] for name in layers)
        modules = list(make_layers(cfgs["E"], batch_norm=False))[: last + 1]
        for position, module in enumerate(modules):
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.MaxPool2d) and pooling == "avg":
                modules[position] = nn.AvgPool2d(kernel_size=2, stride=2)
        self.features = nn.Sequential(*modules)
        self._outputs = {_RELU_INDEX[name]: name for name in layers}

        if normalization == "imagenet":
            shift, scale = torch.tensor(_IMAGENET_MEAN), 1.0 / torch.tensor(_IMAGENET_STD)
        else:
            shift, scale = torch.tensor(_CAFFE_MEAN) / 255.0, torch.full((3,), 255.0)
        # normalised = (x − shift)·scale for both conventions
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)

        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> VGG19Features:
        """Stay in eval mode: the extractor is a fixed loss network."""
        return super().train(False)

    def load_torchvision_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Copy the ``features.<index>.*`` entries of a torchvision VGG-19 state dict.

        Only the entries of the truncated network are read (deeper layers and the classifier are
        ignored); every one of them must be present with the right shape.
        """
        own = self.features.state_dict()
        missing = [f"features.{key}" for key in own if f"features.{key}" not in state_dict]
        if missing:
            raise ValueError(
                f"the VGG-19 state dict lacks {missing}; expected a torchvision vgg19 state dict "
                f"with keys like 'features.0.weight'"
            )
        wrong = [
            f"features.{key}: expected {tuple(value.shape)}, got {tuple(state_dict[f'features.{key}'].shape)}"
            for key, value in own.items()
            if tuple(state_dict[f"features.{key}"].shape) != tuple(value.shape)
        ]
        if wrong:
            raise ValueError(f"mis-shaped VGG-19 weights: {'; '.join(wrong)}")
        self.features.load_state_dict({key: state_dict[f"features.{key}"] for key in own}, strict=True)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an RGB image of shape (B, 3, H, W), got shape {tuple(image.shape)}")
        if not image.is_floating_point():
            raise ValueError(f"expected a floating-point image, got dtype {image.dtype}")
        x = (image - self.shift) * self.scale
        found: dict[str, Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in self._outputs:
                found[self._outputs[index]] = x
        return {name: found[name] for name in self.layers}

    def extra_repr(self) -> str:
        return f"layers={self.layers}, pooling={self.pooling!r}, normalization={self.normalization!r}"
