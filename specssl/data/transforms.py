"""The per-image augmentation engine: one ``torchvision.transforms.v2`` pipeline per view.

For ``DataLoader`` workers; accepts PIL images and uint8 or float ``(3, H, W)`` tensors. The op
order is that of :mod:`specssl.data.augment` (it depends on ``AugmentConfig.color_first``);
:mod:`specssl.data.batched` draws from the same distributions for whole batches on device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision.transforms import InterpolationMode, v2

from specssl.data.views import AugmentConfig

__all__ = ["MultiViewTransform", "build_transform"]

_INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


def _colour_ops(c: AugmentConfig) -> list[Callable[..., Any]]:
    ops: list[Callable[..., Any]] = []
    if c.jitter_enabled:
        jitter = v2.ColorJitter(c.brightness, c.contrast, c.saturation, c.hue)
        ops.append(v2.RandomApply([jitter], p=c.jitter_p))
    if c.gray_p > 0:
        ops.append(v2.RandomGrayscale(c.gray_p))
    return ops


def build_transform(config: AugmentConfig) -> v2.Compose:
    """The torchvision v2 pipeline of one view.

    Input: a PIL image or a uint8/float ``(3, H, W)`` tensor (float in [0, 1]). Output: float32
    ``(3, S, S)`` normalized tensor. Geometric ops run on the input dtype (the uint8 fast path
    of torchvision), colour ops on float. With ``color_first`` the jittered / grayscaled whole
    image is converted back to uint8 before the crop, as in the W-MSE pipeline (PIL images
    throughout), so the bicubic overshoot is clamped as there.
    """
    c = config
    ops: list[Callable[..., Any]] = [v2.ToImage()]
    colour = _colour_ops(c)
    if c.color_first and colour:
        ops += [v2.ToDtype(torch.float32, scale=True), *colour, v2.ToDtype(torch.uint8, scale=True)]
    ops.append(
        v2.RandomResizedCrop(
            c.crop_size,
            scale=(c.scale_min, c.scale_max),
            ratio=(c.ratio_min, c.ratio_max),
            interpolation=_INTERPOLATION_MODES[c.interpolation],
            antialias=True,
        )
    )
    if c.flip_p > 0:
        ops.append(v2.RandomHorizontalFlip(c.flip_p))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    if not c.color_first:
        ops += colour
    if c.blur_p > 0:
        blur = v2.GaussianBlur(c.blur_kernel_size, sigma=c.blur_sigma)
        ops.append(v2.RandomApply([blur], p=c.blur_p))
    if c.solarize_p > 0:
        ops.append(v2.RandomSolarize(c.solarize_threshold, p=c.solarize_p))
    ops += [v2.Normalize(list(c.mean), list(c.std)), v2.ToPureTensor()]
    return v2.Compose(ops)


class MultiViewTransform:
    """Per-image multi-view transform: ``image -> [view_0, ..., view_{V-1}]``.

    Args:
        views: a :data:`~specssl.data.views.ViewsConfig` or ready-made callables (one per
            view).
    """

    def __init__(self, views: Sequence[AugmentConfig | Callable[[Any], torch.Tensor]]) -> None:
        if len(views) == 0:
            raise ValueError("views must contain at least one view")
        self.transforms = [build_transform(v) if isinstance(v, AugmentConfig) else v for v in views]

    def __call__(self, image: Any) -> list[torch.Tensor]:
        """Returns ``V`` float tensors ``(3, S_v, S_v)``."""
        return [t(image) for t in self.transforms]

    def __repr__(self) -> str:
        return f"MultiViewTransform(num_views={len(self.transforms)})"
