"""The restoration network of SelfDZSR (Zhang et al., ECCV 2022, §3.3–3.5; the official ``SelfRefSR``).

Reference ``selfdzsr.md`` §1.4–§1.6. For an LR (B, 3, h, w), a guide image of the same size (the noisy
auxiliary-LR in training, the LR itself at test), a Ref (B, 3, h_r, w_r) with h_r ≤ h, w_r ≤ w (the telephoto
crop, about the LR's pixel size; its footprint covers h_r/s × w_r/s LR pixels) and the frozen features of guide
and Ref (:class:`~lightning_modules.networks.dzsr_feature_extractor.DZSRFeatureExtractor`, stride 4):

    h = head(lr), h_g = head(guide)                                    MeanShift(−) → conv3×3 (3→C)
    x = ada3(ada2(ada1(h, h_g), h_g), h_g)                             AdaSTNs, offset dropout in training
    Δ = 4·bilinear×4(match(F_guide, F_ref))                            cosine 3×3 patch matching (global over Ref)
    r = deform_conv(pad(ref_extractor(ref)), Δ); r[box] = ref_head(ref) where paste
    r = ref_ada(r, h_g)                                                AdaSTN, offsets always estimated
    fused = LReLU_0.1(conv3×3([x, r]))                                 (B, C, h, w)
    code = Predictor(fused, lr_box, ref)                               (B, C, 1, 1), global average pooling
    y = fused; y = y + res(y·(1 + mlp(code))) 16 times                 res = conv3×3 → ReLU → conv3×3
    sr = MeanShift(+)(tail(up(body_lastconv(y) + x)))                  (B, 3, s·h, s·w), not clamped

The forward is split into :meth:`SelfDZSRNet.encode` → :meth:`SelfDZSRNet.modulation` →
:meth:`SelfDZSRNet.decode` so that whole images, tiles and training crops use one network. Every step is made of
convolutions with a local receptive field, except two global ones: the patch matching inside ``encode`` (each LR
position may match any Ref patch) and the Predictor's average pooling in ``modulation``. ``decode`` is purely
convolutional, so it can be run tile by tile (with a halo) under one modulation code computed once per image.

Ref smaller than the LR: ``ref_extractor`` runs at the Ref's own size and its features are zero-padded at the
bottom/right to the LR's size; the deformable convolution then samples them at LR-grid position + offset, which
the matching expresses in the Ref's own pixel coordinates (origin top-left), so the padding moves nothing and
samples falling outside the Ref read zeros (as torchvision's zero padding does in the official code).

Differences from the official code: the MeanShift constants are buffers, not frozen parameters (trainable
parameters are unchanged: 2,054,235 at ×4, 1,885,787 at ×2); the space-to-depth of ``ref_head`` is
``nn.PixelUnshuffle`` (channel c·s² + dy·s + dx; the official DownBlock uses (dy·s + dx)·3 + c, converted by
:mod:`lightning_modules.checkpoints`); dropout and paste are drawn by the caller / a torch generator instead of
``np.random``; the Ref may be smaller than the LR (the official code requires equal sizes). ×3 is not supported.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ops.deform import AdaSTN, DeformConv2d
from ops.matching import match_offsets, upsample_offsets

__all__ = ["DIV2K_RGB_MEAN", "MeanShift", "SelfDZSRNet", "SUPPORTED_SCALES"]

#: RGB mean subtracted / added by the official MeanShift layers (std 1, range 1).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
#: SR scales with an official configuration (×4 DRealSR-Nikon, ×2 CameraFusion).
SUPPORTED_SCALES = (2, 4)
#: Stride of the feature extractor (the factor of the offset upsampling, not the SR scale).
FEATURE_STRIDE = 4

DeformBackend = Literal["auto", "torchvision", "grid_sample"]


def check_scale(scale: int) -> None:
    if isinstance(scale, bool) or scale not in SUPPORTED_SCALES:
        raise ValueError(
            f"expected scale in {SUPPORTED_SCALES} (×4 DRealSR-Nikon, ×2 CameraFusion), got {scale!r}; "
            "×3 is not supported"
        )


class MeanShift(nn.Module):
    """x + sign·(0.4488, 0.4371, 0.4040) per RGB channel, (B, 3, H, W) → (B, 3, H, W).

    The official layer is a frozen grouped 1×1 convolution (weight 1, bias ±mean); here the shift is a
    non-persistent buffer, so it is neither a parameter nor a state-dict entry.
    """

    def __init__(self, sign: Literal[-1, 1]) -> None:
        super().__init__()
        if sign not in (-1, 1):
            raise ValueError(f"expected sign -1 or 1, got {sign!r}")
        self.sign = sign
        self.register_buffer("shift", sign * torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.shift

    def extra_repr(self) -> str:
        return f"sign={self.sign}"


def _conv_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.ReLU())


class ModulatedResBlock(nn.Module):
    """y = x + conv3×3(ReLU(conv3×3(x·(1 + mlp(code))))), mlp = conv1×1 (C→C/16) → ReLU → conv1×1 (C/16→C).

    x (B, C, H, W), code (B, C, 1, 1) → (B, C, H, W). The residual is added to the unmodulated x (official).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(1, channels // 16)
        self.res = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1)
        )
        self.mlp = nn.Sequential(
            nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU()), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        return x + self.res(x * (1 + self.mlp(code)))


class Predictor(nn.Module):
    """Global modulation code (reference §1.6), (B, C, 1, 1).

    lr_box (B, 3, a, b) is upsampled bilinearly (align_corners=True) to the Ref's size (h_r, w_r):

        f = ReLU(conv3×3([MeanShift(−)(up(lr_box)), MeanShift(−)(ref)]))       6 → C
        code = avgpool(4 × [ReLU(conv3×3, stride 2)](ReLU(conv3×3([f, resize(fused)]))))   2C → C
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mean = MeanShift(-1)
        self.head = nn.Sequential(_conv_relu(6, channels))
        self.predictor = nn.Sequential(
            _conv_relu(2 * channels, channels), *(_conv_relu(channels, channels, stride=2) for _ in range(4))
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, fused: Tensor, lr_box: Tensor, ref: Tensor) -> Tensor:
        size = ref.shape[-2:]
        up_lr = F.interpolate(lr_box, size=size, mode="bilinear", align_corners=True)
        features = self.head(torch.cat((self.mean(up_lr), self.mean(ref)), dim=1))
        fused = F.interpolate(fused, size=size, mode="bilinear", align_corners=True)
        return self.pool(self.predictor(torch.cat((features, fused.to(features.dtype)), dim=1)))


class SelfDZSRNet(nn.Module):
    """SelfDZSR's restoration network (official ``SelfRefSR``); formula and shapes in the module docstring.

    Args:
        scale: SR factor, 4 (DRealSR-Nikon) or 2 (CameraFusion).
        channels: feature channels C (64).
        num_blocks: modulated residual blocks (16), named ``block0`` … as in the official checkpoints.
        adastn_dropout: per-sample probability that ada1–3 drop their offsets in training (0.3 Nikon,
            0.45 CameraFusion in the official scripts).
        deform_backend: backend of the deformable convolutions (:func:`ops.deform.deform_conv2d`).

    Submodules follow the official key layout (head, ada1–3, ref_ada, ref_extractor, ref_head, deform_conv,
    predictor, concat_fea, block0…, body_lastconv, up, tail), so a converted official state dict loads strictly.
    """

    def __init__(
        self,
        scale: int = 4,
        channels: int = 64,
        num_blocks: int = 16,
        adastn_dropout: float = 0.3,
        deform_backend: DeformBackend = "auto",
    ) -> None:
        super().__init__()
        check_scale(scale)
        for name, value in (("channels", channels), ("num_blocks", num_blocks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"expected {name} to be an int >= 1, got {value!r}")
        self.scale, self.channels, self.num_blocks = scale, channels, num_blocks
        c = channels

        self.head = nn.Sequential(MeanShift(-1), nn.Conv2d(3, c, 3, padding=1))
        self.ada1, self.ada2, self.ada3 = (
            AdaSTN(c, dropout=adastn_dropout, collapse_at_test=True, backend=deform_backend) for _ in range(3)
        )
        self.ref_extractor = nn.Sequential(
            MeanShift(-1),
            _conv_relu(3, c),
            nn.Sequential(
                *(layer for _ in range(3) for layer in (nn.Conv2d(c, c, 3, padding=1), nn.ReLU())),
                nn.Conv2d(c, c, 3, padding=1),
            ),
        )
        self.ref_head = nn.Sequential(
            MeanShift(-1), nn.PixelUnshuffle(scale), nn.Conv2d(3 * scale**2, c, 3, padding=1)
        )
        self.deform_conv = DeformConv2d(c, c, 3, padding=1, groups=c, bias=True, backend=deform_backend)
        self.ref_ada = AdaSTN(c, dropout=0.0, collapse_at_test=False, backend=deform_backend)
        self.concat_fea = nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1), nn.LeakyReLU(0.1))
        self.predictor = Predictor(c)
        for index in range(num_blocks):
            self.add_module(f"block{index}", ModulatedResBlock(c))
        self.body_lastconv = nn.Conv2d(c, c, 3, padding=1)
        self.up = nn.Sequential(
            *(nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2)) for _ in range(scale // 2))
        )
        self.tail = nn.Sequential(nn.Conv2d(c, 3, 3, padding=1), MeanShift(1))

    # ------------------------------------------------------------------------------------ helpers
    def blocks(self) -> list[ModulatedResBlock]:
        """The residual blocks ``block0`` … in order."""
        return [getattr(self, f"block{index}") for index in range(self.num_blocks)]

    def parameter_count(self, test_time: bool = False, official: bool = False) -> int:
        """Trainable parameters, optionally as the test-time graph / in the official convention.

        ``test_time``: without the offset estimators of ada1–3 (concat, concat2, A- and b-convs: 36,306 at C = 64),
        which eval mode never runs. ``official``: also count the 6 frozen parameters of every MeanShift layer, as the
        official code (where they are convolutions) and reference §2.1 do. ×4: 2,054,235 trainable, 2,017,929 at
        test time; official convention 2,054,265 and 2,017,959.
        """
        total = sum(p.numel() for p in self.parameters() if p.requires_grad)
        if test_time:
            estimators = (
                module
                for ada in (self.ada1, self.ada2, self.ada3)
                for module in (ada.concat, ada.concat2, ada.transform_matrix_conv, ada.translation_conv)
            )
            total -= sum(p.numel() for module in estimators for p in module.parameters() if p.requires_grad)
        if official:
            total += 6 * sum(isinstance(module, MeanShift) for module in self.modules())
        return total

    def _check_inputs(
        self,
        lr: Tensor,
        guide: Tensor,
        guide_features: Tensor,
        ref: Tensor,
        ref_features: Tensor,
        ref_box: Tensor,
        paste: Tensor,
        paste_ref: Tensor,
    ) -> None:
        for name, image in (("lr", lr), ("guide", guide), ("ref", ref), ("paste_ref", paste_ref)):
            if not isinstance(image, Tensor) or image.dim() != 4 or image.shape[1] != 3:
                shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
                raise ValueError(f"expected {name} of shape (B, 3, H, W), got {shape}")
        batch, _, h, w = lr.shape
        if h % FEATURE_STRIDE or w % FEATURE_STRIDE:
            raise ValueError(f"expected an LR whose height and width are multiples of 4, got {(h, w)}; pad it first")
        if guide.shape != lr.shape:
            raise ValueError(f"expected guide of the LR's shape {tuple(lr.shape)}, got {tuple(guide.shape)}")
        h_r, w_r = ref.shape[-2:]
        if ref.shape[0] != batch or h_r > h or w_r > w or h_r < self.scale or w_r < self.scale:
            raise ValueError(
                f"expected ref (B={batch}, 3, h_r, w_r) with {self.scale} <= h_r <= {h} and "
                f"{self.scale} <= w_r <= {w}, got {tuple(ref.shape)}"
            )
        for name, features, size in (
            ("guide_features", guide_features, (h // 4, w // 4)),
            ("ref_features", ref_features, (h_r // 4, w_r // 4)),
        ):
            if not isinstance(features, Tensor) or features.dim() != 4 or features.shape[0] != batch:
                shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
                raise ValueError(f"expected {name} of shape (B={batch}, C, {size[0]}, {size[1]}), got {shape}")
            if tuple(features.shape[-2:]) != size:
                raise ValueError(
                    f"expected {name} at 1/4 of the image size, (B, C, {size[0]}, {size[1]}), "
                    f"got {tuple(features.shape)}"
                )
        if not isinstance(paste, Tensor) or paste.dtype != torch.bool or tuple(paste.shape) != (batch,):
            got = (tuple(paste.shape), paste.dtype) if isinstance(paste, Tensor) else type(paste).__name__
            raise ValueError(f"expected paste as a bool tensor of shape ({batch},), got {got}")
        if not isinstance(ref_box, Tensor) or ref_box.dtype != torch.int64 or tuple(ref_box.shape) != (batch, 4):
            got = (tuple(ref_box.shape), ref_box.dtype) if isinstance(ref_box, Tensor) else type(ref_box).__name__
            raise ValueError(
                f"expected ref_box as an int64 tensor (B={batch}, 4) = (top, left, height, width), got {got}"
            )
        box_h, box_w = paste_ref.shape[-2] // self.scale, paste_ref.shape[-1] // self.scale
        top, left, height, width = ref_box.unbind(1)
        bad = (height != box_h) | (width != box_w) | (top < 0) | (left < 0) | (top + box_h > h) | (left + box_w > w)
        if bool(bad.any()):
            raise ValueError(
                f"expected every ref_box (top, left, height, width) to have the pasted Ref's size // scale, "
                f"{box_h}×{box_w}, and to lie inside the {h}×{w} LR, got {ref_box[bad].tolist()}"
            )

    @staticmethod
    def _paste(warped: Tensor, pasted: Tensor, ref_box: Tensor, paste: Tensor) -> Tensor:
        """warped (B, C, H, W) with pasted (B, C, a, b) written at rows top…top+a−1, cols left…left+b−1 of the
        samples where paste is True (one vectorised index_put, differentiable in both)."""
        batch, _, a, b = pasted.shape
        device = warped.device
        index_b = torch.arange(batch, device=device)[:, None, None]
        rows = (ref_box[:, 0, None] + torch.arange(a, device=device))[:, :, None]
        cols = (ref_box[:, 1, None] + torch.arange(b, device=device))[:, None, :]
        channels_last = warped.permute(0, 2, 3, 1)
        kept = channels_last[index_b, rows, cols]  # (B, a, b, C)
        values = torch.where(paste.to(device)[:, None, None, None], pasted.permute(0, 2, 3, 1).to(kept.dtype), kept)
        return channels_last.index_put((index_b, rows, cols), values).permute(0, 3, 1, 2)

    # ------------------------------------------------------------------------------------- steps
    def encode(
        self,
        lr: Tensor,
        guide: Tensor,
        guide_features: Tensor,
        ref: Tensor,
        ref_features: Tensor,
        ref_box: Tensor,
        paste: Tensor,
        generator: torch.Generator | None = None,
        paste_ref: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Aligned LR features and warped Ref features, fused.

        Args:
            lr: LR (B, 3, h, w) in [0, 1], h and w multiples of 4.
            guide: (B, 3, h, w), drives the AdaSTN offsets and the matching: the noisy aux-LR in training, the LR
                at test.
            guide_features: feature extractor's ``"lr"`` branch on ``guide``, (B, 256, h/4, w/4).
            ref: Ref (B, 3, h_r, w_r), h_r ≤ h, w_r ≤ w (zero-padded at the bottom/right internally, see the
                module docstring).
            ref_features: feature extractor's ``"ref"`` branch on ``ref``, (B, 256, h_r//4, w_r//4).
            ref_box: int64 (B, 4) = (top, left, height, width) in LR pixels, the Ref's footprint on the LR grid;
                height = h_r // scale, width = w_r // scale.
            paste: bool (B,): for these samples ``ref_head(ref)`` (B, C, h_r/s, w_r/s) overwrites the warped-Ref
                features inside ``ref_box`` (before ``ref_ada``).
            generator: torch generator of the training-time offset dropout (drawn by ada1, ada2, ada3 in turn;
                None: the global RNG).
            paste_ref: the image whose ``ref_head`` is pasted (default ``ref``); the official test-time tiling
                matches a tile-sized Ref window but pastes the whole Ref (``ref_box`` then has its size // s).

        Returns:
            ``fused`` (B, C, h, w) and ``skip`` (B, C, h, w), the aligned LR features (the global skip).
        """
        paste_ref = ref if paste_ref is None else paste_ref
        self._check_inputs(lr, guide, guide_features, ref, ref_features, ref_box, paste, paste_ref)
        h, w = lr.shape[-2:]
        h_r, w_r = ref.shape[-2:]
        x, h_g = self.head(lr), self.head(guide)
        for ada in (self.ada1, self.ada2, self.ada3):
            x = ada(x, h_g, generator=generator)

        ref_feat = F.pad(self.ref_extractor(ref), (0, w - w_r, 0, h - h_r))
        offsets = upsample_offsets(match_offsets(guide_features, ref_features), factor=FEATURE_STRIDE)
        warped = self.deform_conv(ref_feat, offsets.to(ref_feat.dtype))
        s = self.scale  # ref_head runs for every sample (cheap), so all parameters are in the graph (DDP)
        h_p, w_p = paste_ref.shape[-2:]
        pasted = self.ref_head(paste_ref[..., : h_p // s * s, : w_p // s * s])
        warped = self.ref_ada(self._paste(warped, pasted, ref_box, paste), h_g)
        fused = self.concat_fea(torch.cat((x, warped.to(x.dtype)), dim=1))
        return fused, x

    def modulation(self, fused: Tensor, lr_box: Tensor, ref: Tensor) -> Tensor:
        """Predictor code (B, C, 1, 1) from fused (B, C, h, w), the LR under the Ref footprint lr_box (B, 3, a, b)
        (training: the (p/s)² LR crop; test: the central LR box of the whole image) and the Ref (B, 3, h_r, w_r)."""
        for name, image in (("lr_box", lr_box), ("ref", ref)):
            if not isinstance(image, Tensor) or image.dim() != 4 or image.shape[1] != 3:
                shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
                raise ValueError(f"expected {name} of shape (B, 3, H, W), got {shape}")
        if fused.dim() != 4 or fused.shape[1] != self.channels:
            raise ValueError(f"expected fused of shape (B, {self.channels}, h, w), got {tuple(fused.shape)}")
        if not fused.shape[0] == lr_box.shape[0] == ref.shape[0]:
            raise ValueError(
                f"expected one batch size, got fused {fused.shape[0]}, lr_box {lr_box.shape[0]}, ref {ref.shape[0]}"
            )
        return self.predictor(fused, lr_box, ref)

    def decode(self, fused: Tensor, skip: Tensor, code: Tensor) -> Tensor:
        """SR (B, 3, s·h, s·w) from fused, skip (B, C, h, w) and code (B, C, 1, 1); convolutions only."""
        if fused.dim() != 4 or fused.shape[1] != self.channels or skip.shape != fused.shape:
            raise ValueError(
                f"expected fused and skip of one shape (B, {self.channels}, h, w), "
                f"got {tuple(fused.shape)} and {tuple(skip.shape)}"
            )
        if tuple(code.shape) != (fused.shape[0], self.channels, 1, 1):
            raise ValueError(
                f"expected code of shape ({fused.shape[0]}, {self.channels}, 1, 1), got {tuple(code.shape)}"
            )
        y = fused
        for block in self.blocks():
            y = block(y, code)
        return self.tail(self.up(self.body_lastconv(y) + skip))

    def forward(
        self,
        lr: Tensor,
        guide: Tensor,
        guide_features: Tensor,
        ref: Tensor,
        ref_features: Tensor,
        ref_box: Tensor,
        paste: Tensor,
        lr_box: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``decode(*encode(...), modulation(fused, lr_box, ref))``: SR (B, 3, s·h, s·w)."""
        fused, skip = self.encode(lr, guide, guide_features, ref, ref_features, ref_box, paste, generator)
        return self.decode(fused, skip, self.modulation(fused, lr_box, ref))

    def extra_repr(self) -> str:
        return f"scale={self.scale}, channels={self.channels}, num_blocks={self.num_blocks}"
