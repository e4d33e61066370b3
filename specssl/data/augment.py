"""Multi-view augmentation recipes: one config, two engines with the same distribution.

An :class:`AugmentConfig` (:mod:`specssl.data.views`) describes one view (the SimCLR/BYOL
family of augmentations). A recipe is a list of them (:data:`ViewsConfig`), one per view, e.g.
BYOL's asymmetric pair (solarize 0.0 / 0.2, blur 1.0 / 0.1) or multi-crop (2 large + k small
crops). Named recipes, each the published pipeline of a paper's code, are in
:data:`PRESETS` (:mod:`specssl.data.presets`, YAML ``data.views``).

Two engines run a config:

* **per-image** (:func:`build_transform`, :class:`MultiViewTransform`;
  :mod:`specssl.data.transforms`): a ``torchvision.transforms.v2`` pipeline for ``DataLoader``
  workers; accepts PIL images and uint8 or float ``(3, H, W)`` tensors.
* **batched** (:class:`BatchedAugment`, :class:`BatchedMultiView`; :mod:`specssl.data.batched`):
  an ``nn.Module`` that augments a whole ``(B, 3, H, W)`` batch with a few tensor ops on
  whatever device the batch is on (no per-image Python loop), drawing every random parameter
  per sample from the same distributions as torchvision's transforms.

Op order for both engines (each op only present when its probability / strength is non-zero;
``Colour`` = ColorJitter(brightness, contrast, saturation, hue) with p=jitter_p, in a random
order per sample, then Grayscale(gray_p)):

    color_first=False (default; SimCLR, BYOL, solo-learn, INTL):
        RandomResizedCrop(crop_size, scale, ratio, interpolation) -> HorizontalFlip(flip_p)
        -> to float [0, 1] -> Colour -> GaussianBlur(kernel, sigma ~ U(blur_sigma), blur_p)
        -> Solarize(threshold, solarize_p) -> Normalize(mean, std)
    color_first=True (W-MSE, CW-RGP on CIFAR / STL-10 / Tiny ImageNet):
        to float [0, 1] -> Colour on the whole image -> (per-image engine: back to uint8)
        -> RandomResizedCrop -> HorizontalFlip -> to float -> GaussianBlur -> Solarize
        -> Normalize

The crop resize is torchvision's antialiased ``bilinear`` or ``bicubic`` (PIL's filters).

Known differences of the batched engine, below what the statistical tests can tell apart:
crops are not rounded to uint8 between the crop and the colour ops (nor, with
``color_first``, between the colour ops and the crop); bilinear crops that shrink (box side >
crop size) use a box prefilter instead of torchvision's triangle antialias filter (upsampled
bilinear crops, i.e. every CIFAR-size crop, and all bicubic crops are torchvision's filter,
the bicubic one with its uint8 kernel's clamping after each pass but without its rounding).

This module re-exports the public names of :mod:`specssl.data.views`,
:mod:`specssl.data.presets`, :mod:`specssl.data.transforms` and :mod:`specssl.data.batched`.
"""

from __future__ import annotations

from specssl.data.batched import (
    BatchedAugment,
    BatchedMultiView,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    gaussian_blur,
    random_resized_crop_params,
    resized_crop,
    rgb_to_grayscale,
    solarize,
)
from specssl.data.datasets import dataset_stats
from specssl.data.presets import (
    LEGACY_PRESETS,
    PRESETS,
    PresetError,
    cifar_views,
    digits_views,
    imagenet_views,
    multicrop_views,
    preset_views,
)
from specssl.data.transforms import MultiViewTransform, build_transform
from specssl.data.views import (
    INTERPOLATIONS,
    AugmentConfig,
    AugmentConfigError,
    ViewOverrideError,
    ViewsConfig,
    override_views,
    views_from_dicts,
)

__all__ = [
    "INTERPOLATIONS",
    "LEGACY_PRESETS",
    "PRESETS",
    "AugmentConfig",
    "AugmentConfigError",
    "BatchedAugment",
    "BatchedMultiView",
    "MultiViewTransform",
    "PresetError",
    "ViewOverrideError",
    "ViewsConfig",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "build_transform",
    "cifar_views",
    "dataset_stats",
    "digits_views",
    "gaussian_blur",
    "imagenet_views",
    "multicrop_views",
    "override_views",
    "preset_views",
    "random_resized_crop_params",
    "resized_crop",
    "rgb_to_grayscale",
    "solarize",
    "views_from_dicts",
]
