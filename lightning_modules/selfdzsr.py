"""SelfDZSRModule: "Self-Supervised Learning for Real-World Super-Resolution from Dual Zoomed Observations"
(Zhang, Li, Zuo, Zhang, ECCV 2022).

The short-focus image is the LR, the telephoto image the target; its centre doubles as the reference (Ref),
because at test time the telephoto covers the central box B of the LR (:func:`ops.geometry.central_box`).
Training step (reference ``selfdzsr.md`` §0–§3), for an LR patch x (p × p), its GT y (s·p), the Ref = the GT
under a random box of p/s LR pixels, and the degradation residual n (:mod:`datamodules.dualzoom.degradation`):

    ã = KernelGen(y, x)                      auxiliary LR, aligned with y (trained by its own losses)
    g = clamp(detach(ã) + n, 0, 1)           the guide of the AdaSTNs and of the Ref matching
    ŷ = net(x, g, F_lr(g), Ref, F_ref(Ref), box, paste ~ Bernoulli(p_paste))
    L = L1(ŷ, y) + w_sw·SW(ŷ, y)  +  L1(ã, x) + λ_p·Σ_k position(W_k)

with F the frozen feature extractor, SW the sliced Wasserstein loss on VGG19 relu3_2/4_2/5_2 (weights
1, 1, 2 and w_sw = 0.08: paper Eq. 10) and position the kernel-centroid penalty of KernelGen's 7×7, 5×5 and
3×3 convolutions (paper Eq. 4 by default; the official code form as ``position_loss_form: code``). One Adam
with two parameter groups (the network at ``lr``, KernelGen at ``lr·aux_lr_ratio``), halved every
``lr_step_epochs`` epochs.

Test time (:meth:`SelfDZSRModule.super_resolve`): the LR guides itself, AdaSTNs 1–3 collapse, the matching
searches the whole Ref, ``ref_head(Ref)`` is pasted over B, and the global modulation sees the LR in B and
the whole Ref. Validation runs this graph on the centre crop of each validation image (not the official
training graph); test and predict on whole images.

Metrics (:mod:`lightning_modules.evaluation`) of the model and of bicubic upsampling of the LR on the whole
image (``…/psnr``), the centre B where the Ref — part of the GT — is pasted (``…/psnr_centre``), and the
rest of the image (``…/psnr_corner``, the paper's main numbers), e.g. ``val/psnr_bicubic_corner``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.base import ZoomModule
from lightning_modules.checkpoints import load_official_selfdzsr
from lightning_modules.evaluation import ImageQualityMetrics, bicubic_baseline
from lightning_modules.networks import AuxLRGenerator, DZSRFeatureExtractor, SelfDZSRNet
from lightning_modules.pretrained import Pretrained, load_weights
from lightning_modules.selfdzsr_official_tiling import official_tiled_super_resolve
from lightning_modules.tiling import tiled_with_halo
from ops import SlicedWassersteinLoss, central_box, position_loss

__all__ = ["SelfDZSRModule", "REGIONS", "COMPARISONS", "DECODE_HALO", "AUTO_TILE", "WHOLE_IMAGE_BYTES_PER_OUTPUT_PIXEL"]

#: Metric regions: the whole image, the central box B (Ref pasted there), and the rest ("corner").
REGIONS = ("", "_centre", "_corner")
COMPARISONS = tuple(method + region for method in ("", "_bicubic") for region in REGIONS)
# LR pixels around a tile that the decoder reads: 16 blocks × 2 convolutions + 4 more, and a margin.
DECODE_HALO = 40
#: LR tile side of ``tile: auto`` when it tiles.
AUTO_TILE = 256
#: Peak memory of an untiled pass per output pixel, official network size (measured: 8.6 GiB for 12.2 Mpx, whole
#: process on the CPU); ``tile: auto`` runs untiled when this estimate fits in the device's free memory.
WHOLE_IMAGE_BYTES_PER_OUTPUT_PIXEL = 768
Tile = int | Literal["auto", "official"] | None


class SelfDZSRModule(ZoomModule):
    """LightningModule of SelfDZSR (formulas in the module docstring).

    Args:
        zoom, in_channels, patch_size: Linked from the DataModule (SR scale s; RGB; LR patch side p).
        channels, num_blocks: Width C and modulated residual blocks of the network (official: 64, 16;
            official checkpoints need these).
        adastn_dropout: Probability that AdaSTNs 1–3 drop their offsets per sample in training (0.3 for
            Nikon, 0.45 for CameraFusion in the official scripts).
        paste_probability: Probability per training sample that the Ref is pasted into its box (0.3).
        w_sw: Weight of the sliced Wasserstein term (0.08; 0 gives "SelfDZSR-ℓ1" and loads no VGG19).
        position_weight: λ_p of the position-preserving loss (100, paper Table 5).
        position_loss_form: ``"paper"`` (Eq. 4, one centroid per kernel) or ``"code"`` (the official rows/columns form).
        lr: Learning rate of the network; KernelGen learns at ``lr·aux_lr_ratio``.
        aux_lr_ratio: 0.5 (the official lr/2).
        lr_step_epochs, lr_gamma: StepLR per epoch (official: 200, 0.5).
        pretrained: Weights of the frozen helpers: VGG16 (the feature extractor's start when no
            ``feature_extractor_weights``), VGG19 (sliced Wasserstein), AlexNet (LPIPS): false | true | path.
        network_weights: An official ``RefSR_model_*.pth`` loaded into the network in every stage (e.g. to test
            the released models: ``lightning test … --model.init_args.network_weights RefSR_model_400.pth``).
        aux_lr_generator_weights: An official ``KernelGen_model_*.pth`` to start KernelGen from (the official
            training loads its pre-trained one; its pre-training code is not released). None: random weights.
        feature_extractor_weights: An official ``Student_model_*.pth`` (the contrastively trained matching
            features, not released with the code). None: ImageNet VGG16 (``pretrained``).
        tile: Inference tiling of validation, test and prediction (:meth:`super_resolve`).
        deform_backend: Backend of the deformable convolutions (:mod:`ops.deform`).
        seed: Seed of the training-time draws (paste, offset dropout, SW projections), with the global step.
    """

    #: Rebuilt from `pretrained` in `setup`, never stored in checkpoints (the feature extractor is stored: the
    #: official one is a trained network of its own).
    frozen_prefixes = ("sw_loss.", "quality.lpips_net.")
    metric_labels = {
        "": "whole image, registered GT",
        "_centre": "centre box, where the Ref is pasted",
        "_corner": "outside the centre box",
    }

    def __init__(
        self,
        zoom: int = 4,
        in_channels: int = 3,
        patch_size: int = 48,
        channels: int = 64,
        num_blocks: int = 16,
        adastn_dropout: float = 0.3,
        paste_probability: float = 0.3,
        w_sw: float = 0.08,
        position_weight: float = 100.0,
        position_loss_form: Literal["paper", "code"] = "paper",
        lr: float = 1e-4,
        aux_lr_ratio: float = 0.5,
        lr_step_epochs: int = 200,
        lr_gamma: float = 0.5,
        pretrained: Pretrained = True,
        network_weights: str | None = None,
        aux_lr_generator_weights: str | None = None,
        feature_extractor_weights: str | None = None,
        tile: Tile = "auto",
        deform_backend: Literal["auto", "torchvision", "grid_sample"] = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(zoom, in_channels, patch_size)
        self.save_hyperparameters()
        if in_channels != 3:
            raise ValueError(f"SelfDZSR super-resolves RGB images (in_channels 3), got {in_channels}")
        if patch_size % zoom:
            raise ValueError(f"patch_size must be a multiple of the scale {zoom}, got {patch_size}")
        if not 0 <= paste_probability <= 1:
            raise ValueError(f"paste_probability must be in [0, 1], got {paste_probability}")
        _check_tile(tile)
        self.net = SelfDZSRNet(zoom, channels, num_blocks, adastn_dropout=adastn_dropout, deform_backend=deform_backend)
        self.aux_lr_generator = AuxLRGenerator(scale=zoom)
        self.feature_extractor = DZSRFeatureExtractor()
        self.sw_loss: SlicedWassersteinLoss | None = None
        self.quality = ImageQualityMetrics(pretrained, COMPARISONS)
        self._helpers_built = False

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        """Load the frozen helpers' weights (and the official RefSR / KernelGen / Student files when given).

        Random helper weights (``pretrained: false``) depend on the seed only. A checkpoint loaded later
        (resuming, ``--ckpt_path``) replaces the network, KernelGen and feature extractor weights.
        """
        if self._helpers_built:
            return
        hp = self.hparams
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hp.seed)
            if hp.feature_extractor_weights is None:
                state = load_weights(hp.pretrained, "vgg16")
                if state is not None:
                    self.feature_extractor.load_torchvision_vgg16(state)
            if stage == "fit" and hp.w_sw > 0:
                self.sw_loss = SlicedWassersteinLoss(weight=hp.w_sw)
                state = load_weights(hp.pretrained, "vgg19")
                if state is not None:
                    self.sw_loss.load_torchvision_state_dict(state)
                self.sw_loss.to(self.device)
            if stage != "predict":
                self.quality.build()
        load_official_selfdzsr(
            self,
            refsr=hp.network_weights,
            kernelgen=hp.aux_lr_generator_weights,
            student=hp.feature_extractor_weights,
        )
        self._helpers_built = True

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.Adam(
            [
                {"params": self.net.parameters(), "lr": hp.lr},
                {"params": self.aux_lr_generator.parameters(), "lr": hp.lr * hp.aux_lr_ratio},
            ]
        )
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=hp.lr_step_epochs, gamma=hp.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}

    def metric_goals(self) -> dict[str, str]:
        return {**self.quality.goals("val"), "val/loss": "min"}

    # ------------------------------------------------------------------ training
    def _generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.hparams.seed * 1_000_003 + self.global_step)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        hp = self.hparams
        lr, hr, ref = batch["lr"], batch["hr"], batch["ref"]
        generator = self._generator()
        aux = self.aux_lr_generator(hr, lr)
        aux_l1 = F.l1_loss(aux, lr)
        position = sum(position_loss(kernel, hp.position_loss_form) for kernel in self.aux_lr_generator.position_kernels())
        guide = (aux.detach() + batch["degradation"]).clamp(0.0, 1.0)
        with torch.no_grad():
            guide_features = self.feature_extractor(guide, "lr")
            ref_features = self.feature_extractor(ref, "ref")
        paste = torch.rand(lr.shape[0], generator=generator, device=self.device) < hp.paste_probability
        sr = self.net(lr, guide, guide_features, ref, ref_features, batch["ref_box"], paste, batch["lr_box"], generator)
        terms = {"l1": F.l1_loss(sr, hr), "aux_l1": aux_l1, "position": position}
        if self.sw_loss is not None:
            terms["sw"] = self.sw_loss(sr, hr, generator=generator)
        loss = terms["l1"] + terms.get("sw", 0.0) + aux_l1 + hp.position_weight * position
        batch_size = lr.shape[0]
        self.log_dict({f"train/{name}": value for name, value in terms.items()}, batch_size=batch_size)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        return loss

    # ------------------------------------------------------------------ inference
    def super_resolve(self, lr: Tensor, ref: Tensor, *, tile: Tile = "auto", paste: bool = True) -> Tensor:
        """SR (B, 3, s·H, s·W) of whole LR images (B, 3, H, W) in [0, 1], not clamped.

        ``ref`` is the telephoto view of the central box B of the LR (:func:`ops.geometry.central_box`: rows
        [t, t + ⌊H/s⌋) with t = (H − ⌊H/s⌋)//2, likewise columns) at s× resolution: (B, 3, s·⌊H/s⌋, s·⌊W/s⌋),
        about the LR's pixel size. The network runs its test-time graph: the LR guides the AdaSTNs and the
        matching, AdaSTNs 1–3 collapse, the matching searches the whole Ref, ``ref_head(Ref)`` is pasted over B
        (not with ``paste=False``), and the global modulation sees the LR in B and the whole Ref.

        ``tile``: ``None`` runs the whole image in one pass; an int N runs the decoder (the memory-heavy part at
        s× resolution) on N×N-pixel LR tiles with a halo wider than its receptive field, with the modulation code
        of the whole image computed once, so the result equals the untiled one; ``"auto"``: the whole
        image when its estimated peak (:data:`WHOLE_IMAGE_BYTES_PER_OUTPUT_PIXEL`) fits in the device's free memory
        (CUDA, or the CPU's free RAM), else :data:`AUTO_TILE`-pixel tiles (for a 1111×687 LR on 2 CPU cores,
        ``bench/selfdzsr_inference.py``: 93 s / 8.6 GiB untiled, 105 s / 4.0 GiB tiled); ``"official"`` is the official
        3×3 (×4) / 6×6 (×2) tiling with colour-histogram Ref windows, for comparison
        (:mod:`lightning_modules.selfdzsr_official_tiling`).
        """
        _check_tile(tile)
        s = self.zoom
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"expected LR images (B, 3, H, W), got {tuple(lr.shape)}")
        height, width = lr.shape[-2:]
        top, left, box_h, box_w = central_box(height, width, s)
        expected = (lr.shape[0], 3, s * box_h, s * box_w)
        if tuple(ref.shape) != expected:
            raise ValueError(
                f"expected the Ref of the central {box_h}×{box_w} LR box at {s}× resolution, {expected}, for an LR of "
                f"{tuple(lr.shape)}; got {tuple(ref.shape)}"
            )
        if tile == "official":
            return official_tiled_super_resolve(self.net, self.feature_extractor, lr, ref, paste=paste)
        if tile == "auto":
            tile = None if _fits_in_device_memory(lr, s) else AUTO_TILE
        padded = F.pad(lr, (0, -width % 4, 0, -height % 4), mode="replicate")  # the features' stride
        box = torch.tensor([[top, left, box_h, box_w]], device=lr.device).expand(lr.shape[0], 4)
        paste_mask = torch.full((lr.shape[0],), paste, device=lr.device)
        fused, skip = self.net.encode(
            padded, padded, self.feature_extractor(padded, "lr"), ref, self.feature_extractor(ref, "ref"),
            box, paste_mask,
        )
        code = self.net.modulation(fused, lr[..., top : top + box_h, left : left + box_w], ref)
        channels = fused.shape[1]

        def decode(features: Tensor) -> Tensor:
            return self.net.decode(features[:, :channels], features[:, channels:], code)

        features = torch.cat((fused, skip), dim=1)
        sr = decode(features) if tile is None else tiled_with_halo(decode, features, scale=s, tile=tile, halo=DECODE_HALO)
        return sr[..., : s * height, : s * width]

    # ------------------------------------------------------------------ evaluation
    def _regions(self, batch: Mapping[str, Any], shape: torch.Size) -> dict[str, Tensor | None]:
        """Masks (B, 1, s·H, s·W) of the whole image (None), the Ref box B and the rest."""
        s = self.zoom
        centre = torch.zeros(shape[0], 1, shape[-2], shape[-1], dtype=torch.bool, device=self.device)
        for index, (top, left, height, width) in enumerate(batch["ref_box"].tolist()):
            centre[index, :, s * top : s * (top + height), s * left : s * (left + width)] = True
        return {"": None, "_centre": centre, "_corner": ~centre}

    def _evaluate(self, batch: Mapping[str, Any], stage: str, tile: Tile) -> dict[str, Any]:
        lr, hr = batch["lr"], batch["hr"]
        sr = self.super_resolve(lr, batch["ref"], tile=tile).clamp(0.0, 1.0)
        bicubic = bicubic_baseline(lr, self.zoom)
        per_image: dict[str, Tensor] = {}
        for region, mask in self._regions(batch, hr.shape).items():
            for method, image in (("", sr), ("_bicubic", bicubic)):
                values = self.quality.measure(image, hr, mask)
                logged = self.quality.accumulate(stage, method + region, values)
                self.log_dict(logged, on_step=False, on_epoch=True, batch_size=lr.shape[0])
                per_image.update({f"{name}{method}{region}": value for name, value in values.items()})
        self.log(f"{stage}/loss", F.l1_loss(sr, hr), sync_dist=True, batch_size=lr.shape[0])
        aux = self.aux_lr_generator(hr, lr).clamp(0.0, 1.0)
        return {"panels": self._panels(batch, aux, sr), "metrics": per_image, "names": list(batch["name"])}

    def _panels(self, batch: Mapping[str, Any], aux: Tensor, sr: Tensor) -> dict[str, Tensor]:
        """LR (nearest ×s) | Ref in its box | aux-LR (nearest ×s) | output | GT, all on the output grid."""
        s = self.zoom
        ref_canvas = torch.full_like(sr, 0.5)
        for index, (top, left, height, width) in enumerate(batch["ref_box"].tolist()):
            ref_canvas[index, :, s * top : s * (top + height), s * left : s * (left + width)] = batch["ref"][index]
        return {
            "lr": F.interpolate(batch["lr"], scale_factor=s, mode="nearest"),
            "ref": ref_canvas,
            "aux_lr": F.interpolate(aux, scale_factor=s, mode="nearest"),
            "output": sr,
            "target": batch["hr"],
        }

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, "val", tile=self.hparams.tile if self.hparams.tile != "official" else "auto")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, "test", tile=self.hparams.tile)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        """Whole-image SR in [0, 1] with the LR's file names (``PNGPredictionWriter``)."""
        sr = self.super_resolve(batch["lr"], batch["ref"], tile=self.hparams.tile).clamp(0.0, 1.0)
        names = [name.rsplit(".", 1)[0] + f"_x{self.zoom}" for name in batch["name"]]
        return {"image": sr, "name": names}


def _fits_in_device_memory(lr: Tensor, scale: int) -> bool:
    """Whether an untiled pass of ``lr`` is expected to fit in the free memory of its device: the CUDA device's free
    memory, or on the CPU 80 % of the system's free RAM (data-loading workers share it); False where unknown."""
    if lr.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(lr.device)
    elif lr.device.type == "cpu" and hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        free = 0.8 * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    else:
        return False
    return lr.shape[0] * scale**2 * lr.shape[-2] * lr.shape[-1] * WHOLE_IMAGE_BYTES_PER_OUTPUT_PIXEL <= free


def _check_tile(tile: object) -> None:
    if tile is None or tile in ("auto", "official"):
        return
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 8:
        raise ValueError(f"tile must be None, 'auto', 'official' or an int ≥ 8 (LR pixels), got {tile!r}")

