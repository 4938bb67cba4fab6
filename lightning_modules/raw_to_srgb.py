"""RawToSRGBJointModule: "Learning RAW-to-sRGB Mappings with Inaccurately Aligned Supervision" (Zhang, Wang,
Liu, Wang, Zhang, Zuo, ICCV 2021); reference ``raw_to_srgb.md``.

The ISP network I (``net``: :class:`~lightning_modules.networks.LiteISPNet` on ZRR, the SRResNet backbone
:class:`~lightning_modules.networks.ZoomLearnNet` with :data:`RAW_TO_SRGB_BACKBONE` on SR-RAW) learns from a target
y that is not aligned with the raw x. A global colour mapping G (``gcm``, :class:`GlobalColorMapping`, training and
evaluation only) renders the raw in the target's colours, a frozen optical flow F (``flow``) aligns y to that
rendering, and both networks learn against the aligned target (paper Eqs. 1–7, 11):

    x̂ = bilinear demosaic of x                          (B, 3, H, W)   ``raw_rgb`` of the batch
    y↓ = y resized to H × W (bilinear, align_corners=True; the identity on ZRR, where H × W is y's size)
    ỹ = wb(G(x̂, y↓, τ))                                  (B, 3, H, W)   GCM output, τ the coordinate map
    Ψ = ↑F(ỹ, y↓)                                        (B, 2, H_y, W_y) flow, no grad, upsampled to y's size
    y^w, m = W(y, Ψ)                                     backward warp + validity mask (:func:`ops.backward_warp`)
    ŷ = wb(I(x))                                         (B, 3, 2s·h, 2s·w) for packed x (B, 4, h, w)
    L = w_gcm·ℓ1_m(ỹ, y^w↓) + w_l1·ℓ1_m(ŷ, y^w) + w_vgg·VGG_m(ŷ, y^w) [+ w_ssim·(1 − SSIM(m·ŷ, y^w))]
        [+ λ_GAN·L_G(D(m·ŷ))]

wb is the identity, or (SR-RAW, ``white_balance="input"``) the per-image camera gains in the gamma domain,
·wb^(1/2.2) (reference §1.4). When ŷ is smaller than y (the ×1 and ×2 stages of the SR-RAW curriculum), y^w and
m are resized to ŷ's size (bilinear, align_corners=True; the mask re-binarised at 1 − ε); likewise to x̂'s size for
the GCM term. The flow network sees ỹ clamped to [0, 1] (``clamp_flow_input``; the official code feeds it
unclamped). With ``align_target: false`` the flow is skipped, y^w = y and m = 1: the same networks learn from the
misaligned target (the baseline the paper improves on).

The loss terms and their options (mask-area normalisation or the official mean over zeros, the paper's or the
official perceptual loss, the official SSIM term, LSGAN) are in :mod:`lightning_modules.raw_to_srgb_losses`.
With ``gan_weight > 0`` (LiteISPGAN) the PatchGAN discriminator ``discriminator`` is trained on m·ŷ (fake)
against y^w (real) with manual optimisation: each step first updates D, then I and G.

Evaluation (validation and test), in-process on float tensors, the three protocols of paper §4.1 (logged as
``{stage}/{psnr,ssim,lpips}{suffix}``):

* ``""`` Original GT: ŷ against y;
* ``"_align_raw"`` Align GT with raw: ŷ against y warped onto the GCM output ỹ (the flow F(ỹ, y↓), as in training;
  the official release never computes it, reference §5.3);
* ``"_align_result"`` Align GT with result: ŷ against y warped onto ŷ itself (flow F(ŷ, y) at ``result_flow_scale``
  × the output size, upsampled: 1 on ZRR, ½ on SR-RAW officially);
* ``"_gcm_align_raw"``: the GCM output ỹ against the GT aligned to it (paper Table 3's GCM numbers).

A ŷ smaller than y is upsampled bilinearly first (official SR-RAW ×1/×2 test). Images are clamped to [0, 1];
``metric_uint8`` rounds them to 8 bits first (the official PNG round trip). The aligned protocols compare over
the mask m (``metric_mask: region``: PSNR of the MSE over the valid pixels, SSIM and LPIPS maps averaged there)
or, as the official ``metrics.py``, m·ŷ against y^w over the whole image (``metric_mask: official``: masked-out
pixels count as perfect). Also logged: the sharpness of ŷ against the GT aligned to it,
``{stage}/gradient_energy_align_result`` (:func:`gradient_energy_ratio`, 1 = as sharp as the GT), and in the test
the ISP network's inference time (``test/isp_time_ms``, per image).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.common.flow_weights import read_flow_weights
from lightning_modules.base import ZoomModule
from lightning_modules.checkpoints import PackingOrder, load_official_raw_to_srgb
from lightning_modules.evaluation import ImageQualityMetrics
from lightning_modules.networks import GlobalColorMapping, LiteISPNet, PatchGANDiscriminator
from lightning_modules.pretrained import Pretrained, load_weights
from lightning_modules.raw_to_srgb_losses import (
    LossReduction,
    PerceptualLoss,
    PerceptualVariant,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    masked_l1,
    ssim_loss,
)
from ops import apply_white_balance, backward_warp, demosaic, gamma_compress, unpack_bayer
from ops.flow import FlowKind, build_flow_estimator
from ops.warp import Normalization

__all__ = ["RawToSRGBJointModule", "PROTOCOLS", "COMPARISONS", "DEFAULT_VGG_LAYERS", "CurriculumError", "gradient_energy_ratio"]

log = logging.getLogger(__name__)

GAMMA = 2.2
#: The paper's three evaluation protocols, by logged suffix.
PROTOCOLS = {
    "": "Original GT",
    "_align_raw": "Align GT with raw: GT warped to the GCM output",
    "_align_result": "Align GT with result: GT warped to each output",
}
#: Everything measured: the three protocols of the ISP output and the GCM output under "Align GT with raw".
COMPARISONS = (*PROTOCOLS, "_gcm_align_raw")
#: The perceptual loss's layer: the paper names none; relu5_4 is the one of the authors' code.
DEFAULT_VGG_LAYERS = {"conv5_4": 1.0}


class CurriculumError(RuntimeError):
    """The checkpoint of the previous curriculum stage does not differ from this stage by exactly the stated keys."""


@dataclass
class _Sample:
    """A batch in one form, whatever the DataModule: packed raw (B, 4, h, w), its demosaic (B, 3, H, W),
    the target (B, 3, H_y, W_y) or None, the GCM coordinate map (B, 2, H, W) or None, RGB gains (B, 3) or
    None, and one name per image."""

    raw: Tensor
    raw_rgb: Tensor
    target: Tensor | None
    coord: Tensor | None
    wb: Tensor | None
    names: list[str]


def _resize(image: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize (align_corners=True, the official SR-RAW convention); the identity at the same size."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=tuple(size), mode="bilinear", align_corners=True)


def gradient_energy_ratio(image: Tensor, reference: Tensor, mask: Tensor | None = None) -> Tensor:
    """Sharpness of ``image`` relative to ``reference`` (B, C, H, W), per image (B,):

        E(x) = Σ m_x·(x[i, j+1] − x[i, j])² + Σ m_y·(x[i+1, j] − x[i, j])²,   ratio = E(image) / E(reference),

    with m_x, m_y the products of the mask (B, 1, H, W) at both ends of each difference (all ones without a mask):
    1 is as sharp as the reference, below 1 blurrier (a network trained on misaligned targets averages them)."""
    if mask is None:
        mask = image.new_ones(image.shape[0], 1, *image.shape[-2:])
    mask_x = mask[..., :, 1:] * mask[..., :, :-1]
    mask_y = mask[..., 1:, :] * mask[..., :-1, :]

    def energy(x: Tensor) -> Tensor:
        dx = (x[..., :, 1:] - x[..., :, :-1]).square() * mask_x
        dy = (x[..., 1:, :] - x[..., :-1, :]).square() * mask_y
        return dx.flatten(1).sum(1) + dy.flatten(1).sum(1)

    return energy(image) / energy(reference).clamp_min(1e-12)


class RawToSRGBJointModule(ZoomModule):
    """LightningModule of RAW-to-sRGB joint learning (formulas in the module docstring).

    Args:
        zoom, in_channels, patch_size: Linked from the DataModule: the target is 2·zoom × the packed raw
            (ZRR: 1; SR-RAW: 4); packed raw (4 channels); training crop side in packed pixels.
        net: The ISP network, packed raw (B, 4, h, w) → sRGB (B, 3, 2s·h, 2s·w) with s dividing ``zoom``
            (``class_path`` in YAML). None: :class:`LiteISPNet` as released.
        gcm_coord: GCM sees the coordinate map (official: True; 46,243 parameters).
        flow: Frozen optical flow backend (:mod:`ops.flow`): ``"pwcnet"`` (paper), ``"raft_small"``,
            ``"raft_large"`` or ``"classical"`` (OpenCV DIS, weight-free).
        flow_weights: Weight file of a learned backend, read in ``setup``; None runs it with random weights
            (tests only; a warning says so). The classical backend takes none.
        flow_options: Keyword arguments of the backend (e.g. ``{"preset": "fine"}``, ``{"channel_order": "bgr"}``).
        align_target: Align the target by GCM + flow (the paper); False trains on the misaligned target.
        warp_normalization: ``"pixel"`` (exact) or ``"official"`` (flow / ((W − 1)/2)), :mod:`ops.warp`.
        mask_eps: ε of the validity mask (0.001).
        clamp_flow_input: Clamp the images given to the flow network to [0, 1] (official: False).
        loss_reduction: ``"mask"`` (mean over valid pixels) or ``"official"`` (mean over all, zeros included),
            for the ℓ1 terms.
        w_gcm, w_l1, w_vgg: Weights of the GCM ℓ1, the ISP ℓ1 and the perceptual term (paper: 1, 1, 1).
        vgg_layers: {VGG-19 layer: weight} of the perceptual term (default relu5_4 alone, see
            :data:`DEFAULT_VGG_LAYERS`).
        perceptual: ``"paper"`` (mask in feature space) or ``"official"`` (mask in image space, input ×0.5).
        w_ssim: Weight of the official 1 − SSIM term (official: 0.15; not in the paper: 0).
        gan_weight: λ_GAN (LiteISPGAN: 0.01); 0 trains without discriminator (automatic optimisation).
        gan_form: ``"paper"`` (½ in L_G) or ``"official"`` (no ½).
        white_balance: ``"none"`` or ``"input"`` (multiply ŷ and ỹ by the batch's ``wb_input``^(1/2.2); SR-RAW).
        metric_mask: ``"region"`` or ``"official"`` (module docstring).
        metric_uint8: Round images to 8 bits before the metrics (official: True).
        result_flow_scale: Size of the "Align GT with result" flow relative to the output (ZRR 1, SR-RAW 0.5).
        lr, lr_step_epochs, lr_gamma: Adam (β 0.9, 0.999) for I and G (and D), StepLR per epoch.
        pretrained: VGG-19 (loss) and AlexNet (LPIPS) weights: false | true | path.
        official_net, official_gcm: Official ``LiteISPNet_model_*.pth`` / ``SRResNet_model_*.pth`` and
            ``GCMModel_model_*.pth`` files loaded in ``setup`` (:func:`load_official_raw_to_srgb`).
        official_packing: Packed order the data gives LiteISPNet (ZRR DataModule's ``packing``).
        init_checkpoint: Lightning checkpoint of the previous curriculum stage, loaded at the start of ``fit``.
        init_new_keys: Prefixes of the state-dict keys this stage adds (e.g. ``["net.upsample.3.", …]``): the
            loaded checkpoint must lack exactly the keys under them and have no key this module lacks.
        seed: Seed of the helpers' random weights.
    """

    #: Rebuilt in ``setup`` from their own weights, never stored in checkpoints.
    frozen_prefixes = ("flow.", "perceptual.", "quality.lpips_net.")
    metric_labels = {**PROTOCOLS, "_gcm_align_raw": "GCM output, Align GT with raw"}

    def __init__(
        self,
        zoom: int = 1,
        in_channels: int = 4,
        patch_size: int = 224,
        net: nn.Module | None = None,
        gcm_coord: bool = True,
        flow: FlowKind = "pwcnet",
        flow_weights: str | None = None,
        flow_options: dict[str, Any] | None = None,
        align_target: bool = True,
        warp_normalization: Normalization = "pixel",
        mask_eps: float = 1e-3,
        clamp_flow_input: bool = True,
        loss_reduction: LossReduction = "mask",
        w_gcm: float = 1.0,
        w_l1: float = 1.0,
        w_vgg: float = 1.0,
        vgg_layers: dict[str, float] | None = None,
        perceptual: PerceptualVariant = "paper",
        w_ssim: float = 0.0,
        gan_weight: float = 0.0,
        gan_form: Literal["paper", "official"] = "paper",
        white_balance: Literal["none", "input"] = "none",
        metric_mask: Literal["region", "official"] = "region",
        metric_uint8: bool = False,
        result_flow_scale: float = 1.0,
        lr: float = 1e-4,
        lr_step_epochs: int = 50,
        lr_gamma: float = 0.5,
        pretrained: Pretrained = True,
        official_net: str | None = None,
        official_gcm: str | None = None,
        official_packing: PackingOrder = "official",
        init_checkpoint: str | None = None,
        init_new_keys: list[str] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(zoom, in_channels, patch_size)
        with warnings.catch_warnings():  # a network given in Python (not by a config) is dropped below
            warnings.filterwarnings("ignore", message="Attribute 'net' is an instance of `nn.Module`")
            self.save_hyperparameters()
        if isinstance(self.hparams.get("net"), nn.Module):
            # Built in Python: the state dict holds the network; hyper-parameters stay plain data (the CLI reads them
            # with weights_only=True). From a config, ``net`` is its {class_path, init_args} and stays.
            del self.hparams["net"]
        if in_channels != 4:
            raise ValueError(f"RAW-to-sRGB maps a packed Bayer raw (in_channels 4), got in_channels {in_channels}")
        for name, value in (("w_gcm", w_gcm), ("w_l1", w_l1), ("w_vgg", w_vgg), ("w_ssim", w_ssim), ("gan_weight", gan_weight)):
            if value < 0:
                raise ValueError(f"{name} must be ≥ 0, got {value}")
        if not 0 < mask_eps < 1:
            raise ValueError(f"mask_eps must be in (0, 1), got {mask_eps}")
        if not 0 < result_flow_scale <= 1:
            raise ValueError(f"result_flow_scale must be in (0, 1], got {result_flow_scale}")
        checks = {
            "loss_reduction": (loss_reduction, ("mask", "official")),
            "perceptual": (perceptual, ("paper", "official")),
            "gan_form": (gan_form, ("paper", "official")),
            "white_balance": (white_balance, ("none", "input")),
            "metric_mask": (metric_mask, ("region", "official")),
            "warp_normalization": (warp_normalization, ("pixel", "official")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if flow == "classical" and flow_weights is not None:
            raise ValueError(f"the classical (OpenCV DIS) flow takes no weights, got flow_weights={flow_weights!r}")
        if init_new_keys is not None and init_checkpoint is None:
            raise ValueError("init_new_keys states what init_checkpoint lacks: give init_checkpoint too")
        self.vgg_layers = dict(vgg_layers if vgg_layers is not None else DEFAULT_VGG_LAYERS)
        if w_vgg > 0 and not self.vgg_layers:
            raise ValueError("w_vgg > 0 needs at least one entry in vgg_layers")
        if net is None:
            net = LiteISPNet()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
        self.net = net
        self.gcm = GlobalColorMapping(coord=gcm_coord)
        self.flow = build_flow_estimator(flow, None, warn_random=False, **(flow_options or {}))  # weights: setup
        self.discriminator = PatchGANDiscriminator() if gan_weight > 0 else None
        self.automatic_optimization = gan_weight == 0
        self.perceptual: PerceptualLoss | None = None
        self.quality = ImageQualityMetrics(pretrained, COMPARISONS)
        self._weights_loaded = False

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        """Read every weight file: the perceptual VGG-19 (fit), LPIPS (not predict), the flow network, the official
        files, and the previous curriculum stage (fit). Random helper weights depend on ``seed`` only; a checkpoint
        restored afterwards (``--ckpt_path``) replaces the trainable networks."""
        hp = self.hparams
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hp.seed)
            if stage == "fit" and hp.w_vgg > 0 and self.perceptual is None:
                perceptual = PerceptualLoss(self.vgg_layers, hp.perceptual)
                state = load_weights(hp.pretrained, "vgg19")
                if state is not None:
                    perceptual.load_torchvision_state_dict(state)
                self.perceptual = perceptual.to(self.device)
            if stage != "predict":
                self.quality.build()
        if self._weights_loaded:
            return
        self._load_flow_weights()
        load_official_raw_to_srgb(self, net=hp.official_net, gcm=hp.official_gcm, packing=hp.official_packing)
        if stage == "fit" and hp.init_checkpoint is not None:
            self.load_previous_stage(hp.init_checkpoint, hp.init_new_keys or [])
        self._weights_loaded = True

    def _load_flow_weights(self) -> None:
        hp = self.hparams
        if hp.flow == "classical":
            return
        if hp.flow_weights is None:
            log.warning("%s optical flow runs with RANDOM weights (flow_weights: null): the alignment is meaningless.", hp.flow)
            return
        state = read_flow_weights(hp.flow, hp.flow_weights)
        self.flow = build_flow_estimator(hp.flow, state, **(hp.flow_options or {})).to(self.device)

    def load_previous_stage(self, path: str | Path, new_keys: Sequence[str]) -> None:
        """Load the trainable networks from the Lightning checkpoint of the previous curriculum stage.

        The checkpoint (without the frozen helpers) must hold every key of this module except exactly those under
        the prefixes ``new_keys`` (each prefix naming at least one key), nothing this module lacks, and the same
        shapes; anything else raises :class:`CurriculumError` listing the differences. The new keys keep their
        fresh initialisation (the official stages start the new upsampling stage at random)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint of the previous curriculum stage '{path}' not found (train that stage first)")
        content = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(content, Mapping) or not isinstance(content.get("state_dict"), Mapping):
            raise CurriculumError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
        loaded = {k: v for k, v in content["state_dict"].items() if not k.startswith(self.frozen_prefixes)}
        own = {k: v for k, v in self.state_dict().items() if not k.startswith(self.frozen_prefixes + ("quality.",))}
        loaded = {k: v for k, v in loaded.items() if not k.startswith("quality.")}
        expected_new = {k for k in own if k.startswith(tuple(new_keys))}
        missing, unexpected = set(own) - set(loaded), set(loaded) - set(own)
        problems = []
        unused = [prefix for prefix in new_keys if not any(k.startswith(prefix) for k in own)]
        if unused:
            problems.append(f"the stated new prefixes {unused} name no key of this module")
        if missing != expected_new:
            if missing - expected_new:
                problems.append(f"keys of this stage missing from the checkpoint: {sorted(missing - expected_new)}")
            if expected_new - missing:
                problems.append(f"keys stated as new but present in the checkpoint: {sorted(expected_new - missing)}")
        if unexpected:
            problems.append(f"keys in the checkpoint that this stage does not have: {sorted(unexpected)}")
        shapes = [
            f"{k}: checkpoint {tuple(loaded[k].shape)}, this stage {tuple(own[k].shape)}"
            for k in sorted(set(own) & set(loaded))
            if loaded[k].shape != own[k].shape
        ]
        if shapes:
            problems.append("shape mismatches: " + "; ".join(shapes))
        if problems:
            raise CurriculumError(f"{path}: not the previous stage of this one:\n  " + "\n  ".join(problems))
        self.load_state_dict({k: loaded[k] for k in set(own) & set(loaded)}, strict=False)
        log.info("loaded %d tensors from %s; new in this stage: %d (%s)", len(loaded), path, len(expected_new), list(new_keys))

    def configure_optimizers(self) -> Any:
        hp = self.hparams

        def adam_with_schedule(parameters) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
            optimizer = torch.optim.Adam(parameters, lr=hp.lr, betas=(0.9, 0.999))
            return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=hp.lr_step_epochs, gamma=hp.lr_gamma)

        # One Adam over I and G equals the official one Adam per network (same lr and betas; Adam is per parameter).
        generator, generator_schedule = adam_with_schedule([*self.net.parameters(), *self.gcm.parameters()])
        if self.discriminator is None:
            return {"optimizer": generator, "lr_scheduler": {"scheduler": generator_schedule, "interval": "epoch"}}
        discriminator, discriminator_schedule = adam_with_schedule(self.discriminator.parameters())
        return [generator, discriminator], [generator_schedule, discriminator_schedule]

    def metric_goals(self) -> dict[str, str]:
        return self.quality.goals("val")

    # ------------------------------------------------------------------ batches
    def _sample(self, batch: Mapping[str, Any]) -> _Sample:
        """The batch of the ZRR DataModule (``raw``, ``raw_rgb``, ``target``, ``coord``, ``name``) or of the SR-RAW
        DataModule (``input`` packed R, G1, B, G2, ``target``, ``wb_input``, ``scene``, ``input_name``) in one form."""
        if "raw" in batch:
            raw, raw_rgb = batch["raw"], batch["raw_rgb"]
            names = [str(name) for name in batch["name"]]
            coord = batch.get("coord")
        elif "input" in batch:
            raw = batch["input"]
            if raw.dim() != 4 or raw.shape[1] != 4:
                raise ValueError(
                    f"expected the SR-RAW DataModule's packed raw input (B, 4, h, w), got {tuple(raw.shape)} (input: raw)"
                )
            raw_rgb = demosaic(unpack_bayer(raw, "RGGB")[:, None], "RGGB")
            names = [f"{scene}_{name}" for scene, name in zip(batch["scene"], batch["input_name"])]
            coord = None
        else:
            raise ValueError(
                f"expected a ZRR batch ('raw', 'raw_rgb', …) or an SR-RAW batch ('input', …), got keys {sorted(batch)}"
            )
        target = batch.get("target")
        if target is not None:
            expected = (2 * self.zoom * raw.shape[-2], 2 * self.zoom * raw.shape[-1])
            if tuple(target.shape[-2:]) != expected:
                raise ValueError(
                    f"the target must be 2·zoom = {2 * self.zoom} × the packed raw {tuple(raw.shape[-2:])}, i.e. {expected}, "
                    f"got {tuple(target.shape[-2:])} (SR-RAW: set the DataModule's target_margin to 0)"
                )
        wb = batch.get("wb_input")
        if self.hparams.white_balance == "input" and wb is None:
            raise ValueError("white_balance='input' needs the batch key 'wb_input' (the SR-RAW DataModule provides it)")
        return _Sample(raw, raw_rgb, target, coord if self.gcm.coord else None, wb, names)

    def _white_balance(self, image: Tensor, wb: Tensor | None) -> Tensor:
        """·wb^(1/2.2) per channel with ``white_balance="input"``, else the identity."""
        if self.hparams.white_balance == "none":
            return image
        return apply_white_balance(image, wb.to(image.dtype), 1.0 / GAMMA)

    def isp(self, raw: Tensor, wb: Tensor | None = None) -> Tensor:
        """ŷ = wb(I(x)): packed raw (B, 4, h, w) → (B, 3, 2s·h, 2s·w), not clamped."""
        out = self.net(raw)
        if out.dim() != 4 or out.shape[1] != 3:
            raise ValueError(f"the ISP network must return (B, 3, H, W), got {tuple(out.shape)}")
        factor = out.shape[-2] / raw.shape[-2]
        if factor != out.shape[-1] / raw.shape[-1] or factor % 2 or (2 * self.zoom) % factor:
            raise ValueError(
                f"the ISP network maps {tuple(raw.shape[-2:])} packed pixels to {tuple(out.shape[-2:])}; expected 2s × with "
                f"s dividing zoom {self.zoom}"
            )
        return self._white_balance(out, wb)

    def forward(self, raw: Tensor) -> Tensor:
        """The ISP network alone (what inference needs): packed raw → sRGB, not clamped, no white balance."""
        return self.net(raw)

    def colour_mapping(self, sample: _Sample) -> tuple[Tensor, Tensor]:
        """(ỹ, y↓): the GCM output wb(G(x̂, y↓, τ)) and the guide y↓ (B, 3, H, W) at the demosaic's size."""
        guide = _resize(sample.target, sample.raw_rgb.shape[-2:])
        return self._white_balance(self.gcm(sample.raw_rgb, guide, sample.coord), sample.wb), guide

    @torch.no_grad()
    def align(self, reference: Tensor, target: Tensor, scale: float = 1.0) -> tuple[Tensor, Tensor]:
        """(y^w, m): ``target`` (B, 3, H_y, W_y) backward-warped onto ``reference`` (B, 3, h, w), h ≤ H_y.

        Ψ = F(reference, target) computed at (scale·h, scale·w) (both resized bilinearly, align_corners=True),
        upsampled to H_y × W_y and multiplied by the size ratio; y^w, m = W(y, Ψ) with mask ε = ``mask_eps``.
        """
        hp = self.hparams
        size = (round(scale * reference.shape[-2]), round(scale * reference.shape[-1]))
        first, second = _resize(reference.detach().float(), size), _resize(target.float(), size)
        if hp.clamp_flow_input:
            first, second = first.clamp(0.0, 1.0), second.clamp(0.0, 1.0)
        flow = self.flow(first, second)
        height, width = target.shape[-2:]
        if size != (height, width):
            ratio = flow.new_tensor([width / size[1], height / size[0]]).view(1, 2, 1, 1)
            flow = _resize(flow, (height, width)) * ratio
        return backward_warp(target.float(), flow, eps=hp.mask_eps, normalization=hp.warp_normalization)

    def _fit(self, image: Tensor, mask: Tensor, size: Sequence[int]) -> tuple[Tensor, Tensor]:
        """A warped target and its mask at another size: resized bilinearly, the mask re-binarised at 1 − ε."""
        if tuple(image.shape[-2:]) == tuple(size):
            return image, mask
        resized_mask = (_resize(mask, size) > 1.0 - self.hparams.mask_eps).to(mask.dtype)
        return _resize(image, size) * resized_mask, resized_mask

    # ------------------------------------------------------------------ training
    def training_terms(self, batch: Mapping[str, Any]) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor]:
        """Loss terms (``loss`` = their weighted sum, without the GAN term), ŷ, and its target y^w and mask m at ŷ's size."""
        hp = self.hparams
        sample = self._sample(batch)
        if sample.target is None:
            raise ValueError("training needs the batch key 'target'")
        gcm_out, _ = self.colour_mapping(sample)
        out = self.isp(sample.raw, sample.wb)
        target = sample.target
        if hp.align_target:
            warped, mask = self.align(gcm_out, target)
        else:
            warped, mask = target, target.new_ones(target.shape[0], 1, *target.shape[-2:])
        warped_out, mask_out = self._fit(warped, mask, out.shape[-2:])
        warped_gcm, mask_gcm = self._fit(warped, mask, gcm_out.shape[-2:])
        terms = {
            "gcm": masked_l1(gcm_out, warped_gcm, mask_gcm, hp.loss_reduction),
            "l1": masked_l1(out, warped_out, mask_out, hp.loss_reduction),
        }
        loss = hp.w_gcm * terms["gcm"] + hp.w_l1 * terms["l1"]
        if hp.w_vgg > 0:
            if self.perceptual is None:
                raise RuntimeError("the perceptual loss is built by setup('fit') (the Trainer calls it): call it first")
            terms["vgg"] = self.perceptual(out, warped_out, mask_out)
            loss = loss + hp.w_vgg * terms["vgg"]
        if hp.w_ssim > 0:
            terms["ssim"] = ssim_loss(out * mask_out, warped_out)
            loss = loss + hp.w_ssim * terms["ssim"]
        terms["mask_fraction"] = mask.mean().detach()
        terms["loss"] = loss
        return terms, out, warped_out, mask_out

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor | None:
        terms, out, warped, mask = self.training_terms(batch)
        batch_size = out.shape[0]
        if self.discriminator is not None:
            terms = self._adversarial_step(terms, out, warped, mask)
        self.log_dict({f"train/{name}": value for name, value in terms.items() if name != "loss"}, batch_size=batch_size)
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=batch_size)
        return terms["loss"] if self.automatic_optimization else None

    def _adversarial_step(self, terms: dict[str, Tensor], out: Tensor, warped: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """LiteISPGAN (manual optimisation): D on real y^w vs fake m·ŷ (detached), then I and G with
        loss + λ_GAN·L_G(D(m·ŷ)), D's parameters frozen for that step (as the official order)."""
        hp = self.hparams
        generator_optimizer, discriminator_optimizer = self.optimizers()
        fake = out * mask
        discriminator_loss = lsgan_discriminator_loss(self.discriminator(warped), self.discriminator(fake.detach()))
        discriminator_optimizer.zero_grad()
        self.manual_backward(discriminator_loss)
        discriminator_optimizer.step()
        self.discriminator.requires_grad_(False)
        try:
            adversarial = lsgan_generator_loss(self.discriminator(fake), hp.gan_form)
        finally:
            self.discriminator.requires_grad_(True)
        loss = terms["loss"] + hp.gan_weight * adversarial
        generator_optimizer.zero_grad()
        self.manual_backward(loss)
        generator_optimizer.step()
        return {**terms, "gan": adversarial.detach(), "discriminator": discriminator_loss.detach(), "loss": loss.detach()}

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization:  # manual optimisation steps its schedules itself
            for schedule in self.lr_schedulers():
                schedule.step()

    # ------------------------------------------------------------------ evaluation
    def _prepare_metric_image(self, image: Tensor) -> Tensor:
        image = image.float().clamp(0.0, 1.0)
        return (image * 255.0).round() / 255.0 if self.hparams.metric_uint8 else image

    def _measure(self, image: Tensor, reference: Tensor, mask: Tensor | None) -> dict[str, Tensor]:
        """Per-image metrics of one comparison, over the mask (``metric_mask: region``) or of m·ŷ against y^w
        over the whole image (``official``)."""
        image, reference = self._prepare_metric_image(image), self._prepare_metric_image(reference)
        if mask is not None and self.hparams.metric_mask == "official":
            image, mask = image * mask, None
        return self.quality.measure(image, reference, mask)

    def _timed_isp(self, sample: _Sample, timed: bool) -> tuple[Tensor, float]:
        """ŷ and the ISP network's wall time per image in ms (synchronised on CUDA; 0 when not ``timed``)."""
        if not timed:
            return self.isp(sample.raw, sample.wb), 0.0
        if sample.raw.is_cuda:
            torch.cuda.synchronize(sample.raw.device)
        start = time.perf_counter()
        out = self.isp(sample.raw, sample.wb)
        if sample.raw.is_cuda:
            torch.cuda.synchronize(sample.raw.device)
        return out, 1000.0 * (time.perf_counter() - start) / sample.raw.shape[0]

    def evaluate(self, batch: Mapping[str, Any], stage: str) -> dict[str, Any]:
        """All comparisons of one batch (module docstring), logged to the stage's accumulators; returns the panels,
        the per-image metrics and the names."""
        hp = self.hparams
        sample = self._sample(batch)
        if sample.target is None:
            raise ValueError(f"{stage} needs the batch key 'target'")
        target = sample.target.float()
        out, isp_ms = self._timed_isp(sample, timed=stage == "test")
        out = _resize(out.float(), target.shape[-2:]).clamp(0.0, 1.0)
        gcm_out, _ = self.colour_mapping(sample)
        gcm_out = gcm_out.float()
        warped_raw, mask_raw = self.align(gcm_out, target)
        warped_result, mask_result = self.align(out, target, hp.result_flow_scale)
        warped_gcm, mask_gcm = self._fit(warped_raw, mask_raw, gcm_out.shape[-2:])
        comparisons = {
            "": (out, target, None),
            "_align_raw": (out, warped_raw, mask_raw),
            "_align_result": (out, warped_result, mask_result),
            "_gcm_align_raw": (gcm_out, warped_gcm, mask_gcm),
        }
        batch_size = out.shape[0]
        per_image: dict[str, Tensor] = {}
        for comparison, (image, reference, mask) in comparisons.items():
            values = self._measure(image, reference, mask)
            logged = self.quality.accumulate(stage, comparison, values)
            self.log_dict(logged, on_step=False, on_epoch=True, batch_size=batch_size)
            per_image.update({f"{name}{comparison}": value for name, value in values.items()})
        sharpness = gradient_energy_ratio(self._prepare_metric_image(out), self._prepare_metric_image(warped_result), mask_result)
        per_image["gradient_energy_align_result"] = sharpness
        self.log(f"{stage}/gradient_energy_align_result", sharpness.mean(), on_step=False, on_epoch=True, batch_size=batch_size)
        per_image["mask_fraction_align_raw"] = mask_raw.flatten(1).mean(1)
        per_image["mask_fraction_align_result"] = mask_result.flatten(1).mean(1)
        if stage == "test":
            per_image["isp_time_ms"] = out.new_full((batch_size,), isp_ms)
            self.log("test/isp_time_ms", isp_ms, on_step=False, on_epoch=True, batch_size=batch_size)
        panels = {
            "raw": _resize(gamma_compress(sample.raw_rgb.float()).clamp(0.0, 1.0), target.shape[-2:]),
            "gcm": _resize(gcm_out, target.shape[-2:]).clamp(0.0, 1.0),
            "output": out,
            "target": warped_raw,
            "mask": mask_raw.expand(-1, 3, -1, -1),
        }
        return {"panels": panels, "metrics": per_image, "names": sample.names}

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        return self.evaluate(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        return self.evaluate(batch, "test")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        """sRGB in [0, 1] at the network's own scale, with the raws' names (``PNGPredictionWriter``)."""
        sample = self._sample(batch)
        return {"image": self.isp(sample.raw, sample.wb).clamp(0.0, 1.0), "name": sample.names}
