"""ZoomLearnModule: "Zoom to Learn, Learn to Zoom" (Zhang, Chen, Ng, Koltun, CVPR 2019).

Packed raw (B, 4, p, p) → zoomed RGB (B, 3, 2N·p, 2N·p) with the SRResNet-style network of
:class:`~lightning_modules.networks.ZoomLearnNet`, trained against the optically zoomed camera JPG with
the contextual bilateral loss (paper Eq. 3):

    L = w_rgb · CoBi_RGB(n) + w_vgg · Σ_l w_l · CoBi_VGG,l  [+ w_l1 · L1]

CoBi_RGB compares n × n RGB patches (n = 10 for 4X, 15 for 8X), CoBi_VGG the VGG19 features conv1_2,
conv2_2, conv3_2 (weights 1, 1, 0.5). Before the loss the target (which carries a margin of m output
pixels on each side) is matched to the prediction by an integer translation search (reference §1.13),
or centre-cropped with ``align_target: none``. An optional L1 warm-up (``l1_warmup_steps``) trains with
the translation-matched L1 only, as users of the official code recommend (reference §8, issue #9).

White balance, ``white_balance="target"`` (paper, reference §3.8): the network predicts a
white-balance-free, gamma-encoded image. The training target is the camera JPG with its own gains
divided out in the gamma domain (÷ wb_target^(1/2.2)); for metrics and outputs the prediction gets the
*input* shot's gains (× wb_input^(1/2.2)) and is compared with the JPG as it is. Because the camera's
colour matrix mixes the white-balanced channels, that white-balance-free image still depends on the
scene's illuminant, which a network that sees a raw crop can only guess; with few training scenes
the guess becomes a colour cast on new ones. ``white_balance="input"`` (not in the paper) multiplies
the packed raw by the input shot's as-shot gains (R, G, B, G; camera metadata, known at test time)
and lets the network predict the camera JPG itself, a mapping that no longer depends on the illuminant.

Metrics (val/test, protocols of :mod:`lightning_modules.evaluation`): PSNR, SSIM and LPIPS of the model
and of bicubic upsampling of the input shot's camera JPG, each against (a) the target as registered by
the data (``…/psnr``) and (b) the target translation-searched to that output (``…/psnr_aligned``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.base import ZoomModule
from lightning_modules.evaluation import ImageQualityMetrics, aligned_target, bicubic_baseline, center_crop
from lightning_modules.networks import ZoomLearnNet
from lightning_modules.pretrained import Pretrained, load_weights
from lightning_modules.tiling import tiled_forward
from ops import (
    VGG19_STRIDES,
    VGG19Features,
    apply_white_balance,
    cobi_loss_at,
    extract_patches,
    extract_patches_at,
    sample_positions,
    translation_search,
    unique_match_share,
)

__all__ = ["ZoomLearnModule"]

GAMMA = 2.2
DEFAULT_VGG_LAYERS = {"conv1_2": 1.0, "conv2_2": 1.0, "conv3_2": 0.5}
#: Model and bicubic baseline, each against the registered target and the target aligned to it.
COMPARISONS = ("", "_aligned", "_bicubic", "_bicubic_aligned")


class ZoomLearnModule(ZoomModule):
    """LightningModule of Zhang et al. 2019 (see the module docstring for the loss and metrics).

    Args:
        zoom, in_channels, patch_size: Linked from the DataModule (see :class:`ZoomModule`).
        norm: Normalisation of the network, ``"batch"`` (paper), ``"instance"`` or ``"none"``.
        width, num_blocks, up_width: Size of the network (paper: 64, 16, 256); smaller values make a
            CPU-sized network for demos.
        head_kernel, upsampler, raw_skip: Network options outside the paper (paper: 9, ``"deconv"``,
            False), see :class:`~lightning_modules.networks.ZoomLearnNet`.
        white_balance: ``"target"`` (paper) or ``"input"`` (raw input only), see the module docstring.
        w_rgb: Weight of CoBi_RGB.
        rgb_patch_size: n of the n × n RGB patches (paper: 10 for 4X, 15 for 8X).
        w_vgg: λ, the weight of CoBi_VGG (0 disables it and VGG19 is never loaded).
        vgg_layers: VGG19 layers and their weights (default conv1_2: 1, conv2_2: 1, conv3_2: 0.5).
        vgg_pooling, vgg_normalization: VGG19 variant. torchvision's weights (``pretrained``) were trained
            with ``max``/``imagenet``; the official TF code used ``avg``/``caffe`` with the original
            MatConvNet weights, which rawzoom does not read, so ``avg``/``caffe`` are only accepted with
            random weights (``pretrained: false``).
        w_spatial: w_s, weight of CoBi's spatial term. Paper variant: the cost of one output pixel of
            displacement between matched features (``cobi_spatial_units: pixels``), the same at every
            zoom, crop size and VGG layer. ``"auto"``: the official 0.1 per image side, i.e. 0.1/512 ≈ 2e-4
            per pixel of the paper's 512-pixel crops (:func:`ops.cobi.resolve_w_spatial`).
        cobi_spatial_units: ``"pixels"`` (default) or ``"image"`` (distances in fractions of the
            feature map's side, the earlier convention), see :mod:`ops.cobi`.
        cobi_variant: ``"paper"`` (default) or ``"official"``: the whole TF graph, with its own 63×63
            position sampling and collapsed spatial term; RGB features × 255.
        cobi_max_positions: Prediction positions sampled per CoBi call by the paper variant (None: all);
            each sampled feature searches every target position. The official variant ignores it.
        cobi_chunk_size: Rows per chunk of the CoBi computation (None: automatic).
        w_l1: Weight of an extra L1 term against the matched target.
        l1_warmup_steps: Optimizer steps trained with the matched L1 alone before CoBi starts.
        align_target: ``"translation"`` (search within the margin) or ``"none"`` (centre crop).
        align_stride: Step of the training-time translation search in output pixels (official: 2).
        pretrained: Weights of VGG19 and of LPIPS' AlexNet: false | true | path (see
            :mod:`lightning_modules.pretrained`).
        lr, lr_decay, lr_decay_steps: Adam with lr · lr_decay^(step / lr_decay_steps) (official:
            1e-4, 0.05, 20000).
        predict_tile, predict_overlap: Tiles (input pixels) for whole-image prediction.
        seed: Seed of CoBi's position sampling (combined with the global step, so resumed runs
            draw the same positions).
    """

    #: Rebuilt from `pretrained` in `setup`, never stored in checkpoints.
    frozen_prefixes = ("vgg.", "quality.lpips_net.")
    metric_labels = {"": "whole image, target as given", "_aligned": "target aligned to each output"}

    def __init__(
        self,
        zoom: int = 4,
        in_channels: int = 4,
        patch_size: int = 64,
        norm: Literal["batch", "instance", "none"] = "batch",
        width: int = 64,
        num_blocks: int = 16,
        up_width: int = 256,
        head_kernel: int = 9,
        upsampler: Literal["deconv", "pixel_shuffle"] = "deconv",
        raw_skip: bool = False,
        white_balance: Literal["target", "input"] = "target",
        w_rgb: float = 1.0,
        rgb_patch_size: int = 10,
        w_vgg: float = 1.0,
        vgg_layers: dict[str, float] | None = None,
        vgg_pooling: Literal["max", "avg"] = "max",
        vgg_normalization: Literal["imagenet", "caffe"] = "imagenet",
        w_spatial: float | Literal["auto"] = "auto",
        cobi_spatial_units: Literal["pixels", "image"] = "pixels",
        cobi_variant: Literal["paper", "official"] = "paper",
        cobi_max_positions: int | None = None,
        cobi_chunk_size: int | None = None,
        w_l1: float = 0.0,
        l1_warmup_steps: int = 0,
        align_target: Literal["translation", "none"] = "translation",
        align_stride: int = 2,
        pretrained: Pretrained = True,
        lr: float = 1e-4,
        lr_decay: float = 0.05,
        lr_decay_steps: int = 20000,
        predict_tile: int = 128,
        predict_overlap: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__(zoom, in_channels, patch_size)
        self.save_hyperparameters()
        self.vgg_layers: dict[str, float] = dict(vgg_layers if vgg_layers is not None else DEFAULT_VGG_LAYERS)
        if w_vgg > 0 and not self.vgg_layers:
            raise ValueError("w_vgg > 0 needs at least one entry in vgg_layers")
        if white_balance not in ("target", "input"):
            raise ValueError(f"white_balance must be 'target' or 'input', got {white_balance!r}")
        if white_balance == "input" and in_channels != 4:
            raise ValueError(f"white_balance='input' needs packed raw input (in_channels=4), got {in_channels}")
        if w_vgg > 0 and pretrained is not False and (vgg_pooling, vgg_normalization) != ("max", "imagenet"):
            raise ValueError(
                f"vgg_pooling={vgg_pooling!r}, vgg_normalization={vgg_normalization!r} with pretrained weights: "
                "torchvision's VGG19 weights were trained with max pooling on ImageNet-normalised input, and the "
                "official code's avg/caffe variant needs the original MatConvNet weights, which rawzoom cannot read; "
                "use vgg_pooling: max, vgg_normalization: imagenet (or pretrained: false for random weights)"
            )
        self.net = ZoomLearnNet(
            zoom=zoom,
            in_channels=in_channels,
            width=width,
            num_blocks=num_blocks,
            up_width=up_width,
            norm=norm,
            head_kernel=head_kernel,
            upsampler=upsampler,
            raw_skip=raw_skip,
        )
        self.example_input_array = torch.zeros(1, in_channels, patch_size, patch_size)
        self.vgg: VGG19Features | None = None
        self.quality = ImageQualityMetrics(pretrained, COMPARISONS)

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        """Build the frozen helpers (VGG19 for the loss, LPIPS for metrics) and load their weights.

        Prediction needs neither, so ``lightning predict`` reads no weights but the checkpoint.
        """
        if stage == "predict":
            return
        pretrained = self.hparams.pretrained
        # Random helper weights (pretrained: false) depend on the seed only, not on the global RNG state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.hparams.seed)
            if self.vgg is None and self.hparams.w_vgg > 0:
                vgg = VGG19Features(
                    layers=tuple(self.vgg_layers),
                    pooling=self.hparams.vgg_pooling,
                    normalization=self.hparams.vgg_normalization,
                )
                state = load_weights(pretrained, "vgg19")
                if state is not None:
                    vgg.load_torchvision_state_dict(state)
                self.vgg = vgg.to(self.device)
            self.quality.build()

    def metric_goals(self) -> dict[str, str]:
        return {**self.quality.goals("val"), "val/loss": "min", "val/cobi_unique_match": "max"}

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr)
        decay, steps = self.hparams.lr_decay, self.hparams.lr_decay_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: decay ** (step / steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    # ------------------------------------------------------------------ loss
    def _match_target(self, pred: Tensor, target: Tensor, stride: int) -> Tensor:
        """The target window (B, 3, S, S) for ``pred`` inside the target with margin."""
        if self.hparams.align_target == "translation":
            return translation_search(pred, target, stride=stride)[0]
        return center_crop(target, pred.shape[-2:])

    def _cobi_term(
        self, pred: Tensor, target: Tensor, generator: torch.Generator, *, patch_size: int | None = None, stride: int = 1
    ) -> tuple[Tensor, Tensor]:
        """One CoBi term between (B, C, H, W) maps: VGG features, or n×n RGB patches with ``patch_size``.

        The paper variant samples ``cobi_max_positions`` prediction positions and searches the whole
        target; the official one samples 63×63 positions of both. Patches are extracted only where they
        are used. Returns the loss and the share of one-to-one matches.
        """
        hp = self.hparams
        official = hp.cobi_variant == "official"
        height, width = pred.shape[-2:]
        max_positions = "auto" if official else hp.cobi_max_positions
        positions = sample_positions(height, width, max_positions, generator, pred.device, variant=hp.cobi_variant)
        if patch_size is None:
            pred_at = pred.flatten(2)[..., positions]
            target_at = target.flatten(2)[..., positions] if official else target.flatten(2)
        else:
            scale = 255.0 if official else 1.0
            pred_at = extract_patches_at(pred * scale, patch_size, positions)
            if official:
                target_at = extract_patches_at(target * scale, patch_size, positions)
            else:
                target_at = extract_patches(target, patch_size).flatten(2)
        loss, matches = cobi_loss_at(
            pred_at,
            target_at,
            positions,
            (height, width),
            w_spatial=hp.w_spatial,
            distance="cosine" if patch_size is None else "l2",
            variant=hp.cobi_variant,
            feature_stride=stride,
            spatial_units=hp.cobi_spatial_units,
            chunk_size=hp.cobi_chunk_size,
            return_matches=True,
        )
        return loss, unique_match_share(matches).mean()

    def compute_loss(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Loss terms for a prediction and its matched, white-balance-free target (both (B, 3, S, S))."""
        hp = self.hparams
        terms: dict[str, Tensor] = {}
        l1 = F.l1_loss(pred, target)
        if self.global_step < hp.l1_warmup_steps:
            return {"loss": l1, "l1": l1}
        generator = torch.Generator(device=pred.device).manual_seed(hp.seed * 1_000_003 + self.global_step)
        total = pred.new_zeros(())
        shares = []
        if hp.w_rgb > 0:
            terms["cobi_rgb"], share = self._cobi_term(pred, target, generator, patch_size=hp.rgb_patch_size)
            shares.append(share)
            total = total + hp.w_rgb * terms["cobi_rgb"]
        if hp.w_vgg > 0:
            if self.vgg is None:
                raise RuntimeError("CoBi_VGG needs VGG19: call setup('fit') (the Trainer does) before the loss")
            pred_features = self.vgg(pred)
            with torch.no_grad():
                target_features = self.vgg(target)
            cobi_vgg = pred.new_zeros(())
            for name, weight in self.vgg_layers.items():
                layer, share = self._cobi_term(
                    pred_features[name], target_features[name], generator, stride=VGG19_STRIDES[name]
                )
                cobi_vgg = cobi_vgg + weight * layer
                shares.append(share)
            terms["cobi_vgg"] = cobi_vgg
            total = total + hp.w_vgg * cobi_vgg
        if shares:
            terms["cobi_unique_match"] = torch.stack(shares).mean()
        if hp.w_l1 > 0:
            total = total + hp.w_l1 * l1
        terms["l1"] = l1
        terms["loss"] = total
        return terms

    # ------------------------------------------------------------------ white balance
    def _network_input(self, batch: Mapping[str, Any]) -> Tensor:
        """The packed input, multiplied by the input shot's gains (R, G, B, G) with ``white_balance="input"``.

        Those gains must be the camera's as-shot multipliers (``wb_source`` "camera"): gains measured on
        rendered images (SR-RAW's ``wb.txt``) are another quantity and do not belong on the raw.
        """
        if self.hparams.white_balance == "target":
            return batch["input"]
        sources = set(batch.get("wb_source", ["camera"]))
        if sources != {"camera"}:
            raise ValueError(
                f"white_balance='input' multiplies the raw by the camera's as-shot gains, but the data's gains come "
                f"from {sorted(sources)}; set the DataModule's wb_source: camera"
            )
        gains = batch["wb_input"].to(batch["input"].dtype)
        return batch["input"] * gains[:, [0, 1, 2, 1], None, None]

    def _loss_target(self, target: Tensor, wb_target: Tensor) -> Tensor:
        """What the network learns to predict: the JPG, white-balance-free with ``white_balance="target"``."""
        if self.hparams.white_balance == "target":
            return apply_white_balance(target, wb_target, -1.0 / GAMMA)
        return target

    def _output(self, pred: Tensor, wb_input: Tensor) -> Tensor:
        """The network's prediction as a camera-like sRGB image in [0, 1]."""
        if self.hparams.white_balance == "target":
            pred = apply_white_balance(pred, wb_input, 1.0 / GAMMA)
        return pred.clamp(0.0, 1.0)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        pred = self.net(self._network_input(batch))
        target = self._loss_target(batch["target"], batch["wb_target"])
        terms = self.compute_loss(pred, self._match_target(pred, target, self.hparams.align_stride))
        batch_size = pred.shape[0]
        self.log_dict({f"train/{name}": value for name, value in terms.items() if name != "loss"}, batch_size=batch_size)
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=batch_size)
        return terms["loss"]

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, batch: Mapping[str, Any], stage: str) -> dict[str, Any]:
        pred = self.net(self._network_input(batch))
        target = batch["target"]
        output = self._output(pred, batch["wb_input"])
        bicubic = bicubic_baseline(batch["input_rgb"], self.zoom)
        registered = center_crop(target, output.shape[-2:])
        comparisons = {
            "": (output, registered),
            "_aligned": (output, aligned_target(output, target)),
            "_bicubic": (bicubic, registered),
            "_bicubic_aligned": (bicubic, aligned_target(bicubic, target)),
        }
        for comparison, (image, reference) in comparisons.items():
            logged = self.quality.update(stage, comparison, image, reference)
            self.log_dict(logged, on_step=False, on_epoch=True, batch_size=image.shape[0])
        loss_target = self._loss_target(target, batch["wb_target"])
        terms = self.compute_loss(pred, self._match_target(pred, loss_target, stride=1))
        self.log(f"{stage}/loss", terms["loss"], sync_dist=True, batch_size=pred.shape[0])
        if "cobi_unique_match" in terms:
            self.log(f"{stage}/cobi_unique_match", terms["cobi_unique_match"], sync_dist=True, batch_size=pred.shape[0])
        return {"panels": {"input": bicubic, "output": output, "target": comparisons["_aligned"][1]}}

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, "test")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        """Whole-image prediction, tiled with overlap; returns the white-balanced output in [0, 1]."""
        pred = tiled_forward(
            self.net,
            self._network_input(batch),
            scale=2 * self.zoom,
            tile=self.hparams.predict_tile,
            overlap=self.hparams.predict_overlap,
        )
        output = self._output(pred, batch["wb_input"])
        names = [f"{scene}_{name}_x{self.zoom}" for scene, name in zip(batch["scene"], batch["input_name"])]
        return {"image": output, "name": names}

