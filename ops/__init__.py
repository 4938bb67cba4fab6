"""Tensor operators (no Lightning, no file I/O): Bayer handling, image geometry and registration, patch and
VGG features, CoBi/CX, translation search, local shifts, deformable convolution and AdaSTN, Ref↔LR patch
matching, sliced Wasserstein, the position-preserving loss, correlation, optical flow and backward warping, Haar wavelets."""

from ops.bayer import (
    BAYER_PATTERNS,
    Demosaic,
    PackBayer,
    apply_white_balance,
    demosaic,
    gamma_compress,
    gamma_expand,
    mosaic_rgb,
    normalize_levels,
    pack_bayer,
    packed_to_rgb_preview,
    unpack_bayer,
)
from ops.cobi import (
    CoBiLoss,
    ContextualLoss,
    cobi_loss,
    cobi_loss_at,
    contextual_loss,
    sample_positions,
    unique_match_share,
)
from ops.correlation import Correlation, correlation
from ops.deform import AdaSTN, DeformConv2d, deform_conv2d
from ops.flow import ClassicalFlow, FlowEstimator, PWCNet, RAFTFlow, build_flow_estimator
from ops.geometry import (
    central_box,
    downscale,
    inner_box,
    map_points,
    pixel_grid,
    sample_bicubic,
    scale_map,
    warp_image,
)
from ops.local_shifts import local_shifts
from ops.matching import PatchMatcher, index_to_offsets, match_offsets, match_patches, upsample_offsets
from ops.patches import PatchFeatures, extract_patches, extract_patches_at
from ops.position_loss import PositionLoss, position_loss
from ops.registration import SimilarityRegistration, masked_correlation, register_similarity
from ops.sliced_wasserstein import SlicedWassersteinLoss, sliced_wasserstein
from ops.translation_search import TranslationSearch, translation_search
from ops.vgg import VGG19_LAYERS, VGG19_STRIDES, VGG19Features
from ops.warp import BackwardWarp, backward_warp
from ops.wavelet import HaarDWT, HaarIWT, haar_dwt, haar_iwt

__all__ = [
    "BAYER_PATTERNS",
    "pack_bayer",
    "unpack_bayer",
    "normalize_levels",
    "apply_white_balance",
    "gamma_compress",
    "gamma_expand",
    "demosaic",
    "mosaic_rgb",
    "packed_to_rgb_preview",
    "PackBayer",
    "Demosaic",
    "map_points",
    "scale_map",
    "pixel_grid",
    "inner_box",
    "central_box",
    "warp_image",
    "downscale",
    "sample_bicubic",
    "SimilarityRegistration",
    "register_similarity",
    "masked_correlation",
    "extract_patches",
    "extract_patches_at",
    "PatchFeatures",
    "VGG19_LAYERS",
    "VGG19_STRIDES",
    "VGG19Features",
    "cobi_loss",
    "cobi_loss_at",
    "sample_positions",
    "unique_match_share",
    "contextual_loss",
    "CoBiLoss",
    "ContextualLoss",
    "translation_search",
    "deform_conv2d",
    "DeformConv2d",
    "AdaSTN",
    "match_patches",
    "index_to_offsets",
    "match_offsets",
    "upsample_offsets",
    "PatchMatcher",
    "position_loss",
    "PositionLoss",
    "sliced_wasserstein",
    "SlicedWassersteinLoss",
    "local_shifts",
    "correlation",
    "Correlation",
    "backward_warp",
    "BackwardWarp",
    "haar_dwt",
    "haar_iwt",
    "HaarDWT",
    "HaarIWT",
    "FlowEstimator",
    "PWCNet",
    "RAFTFlow",
    "ClassicalFlow",
    "build_flow_estimator",
    "TranslationSearch",
]
