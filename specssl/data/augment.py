"""Multi-view augmentation recipes: one config, two engines with the same distribution.

An :class:`AugmentConfig` describes one view (the SimCLR/BYOL family of augmentations). A
recipe is a list of them (:data:`ViewsConfig`), one per view, e.g. BYOL's asymmetric pair
(solarize 0.0 / 0.2, blur 1.0 / 0.1) or multi-crop (2 large + k small crops).

Two engines run a config:

* **per-image** (:func:`build_transform`, :class:`MultiViewTransform`): a
  ``torchvision.transforms.v2`` pipeline for ``DataLoader`` workers; accepts PIL images and
  uint8 or float ``(3, H, W)`` tensors.
* **batched** (:class:`BatchedAugment`, :class:`BatchedMultiView`): an ``nn.Module`` that
  augments a whole ``(B, 3, H, W)`` batch with a few tensor ops on whatever device the batch is
  on (no per-image Python loop), drawing every random parameter per sample from the same
  distributions as torchvision's transforms.

Op order for both engines (each op only present when its probability / strength is non-zero):

    RandomResizedCrop(crop_size, scale, ratio) -> HorizontalFlip(flip_p) -> to float [0, 1]
    -> ColorJitter(brightness, contrast, saturation, hue) with p=jitter_p, in a random order
    per sample -> Grayscale(gray_p) -> GaussianBlur(kernel, sigma ~ U(blur_sigma), blur_p)
    -> Solarize(threshold, solarize_p) -> Normalize(mean, std)

Known differences of the batched engine, below what the statistical tests can tell apart:
crops are not rounded to uint8 between the crop and the colour ops, and crops that shrink
(box side > crop size) use a box prefilter instead of torchvision's triangle antialias filter
(upsampled crops, i.e. every CIFAR-size crop, are identical to torchvision's).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from specssl.data.datasets import dataset_stats

__all__ = [
    "AugmentConfig",
    "BatchedAugment",
    "BatchedMultiView",
    "MultiViewTransform",
    "ViewsConfig",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "build_transform",
    "cifar_views",
    "digits_views",
    "gaussian_blur",
    "imagenet_views",
    "multicrop_views",
    "random_resized_crop_params",
    "resized_crop",
    "rgb_to_grayscale",
    "solarize",
    "views_from_dicts",
]

_CIFAR10_MEAN, _CIFAR10_STD = dataset_stats("cifar10")
# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """One view's augmentation (torchvision semantics for every parameter).

    Attributes:
        crop_size: output side ``S`` of the square view.
        scale_min, scale_max: crop area fraction ~ U(scale_min, scale_max).
        ratio_min, ratio_max: crop aspect ratio w/h, log-uniform in this range.
        flip_p: horizontal flip probability.
        brightness, contrast, saturation: factor ~ U(max(0, 1 - s), 1 + s); 0 disables.
        hue: hue shift ~ U(-hue, hue) in turns, ``0 <= hue <= 0.5``; 0 disables.
        jitter_p: probability of applying the colour jitter (all four adjustments).
        gray_p: grayscale probability (3 equal channels).
        blur_p: Gaussian blur probability.
        blur_sigma: blur sigma ~ U(blur_sigma[0], blur_sigma[1]) pixels.
        blur_kernel_size: odd blur kernel size in pixels (must be < 2 * crop_size).
        solarize_p: solarization probability.
        solarize_threshold: pixels ``>= threshold`` (on the [0, 1] scale) are inverted;
            0.5 ~ torchvision/PIL's 128/255.
        mean, std: per-channel normalization, on the [0, 1] scale.
    """

    crop_size: int = 32
    scale_min: float = 0.08
    scale_max: float = 1.0
    ratio_min: float = 3.0 / 4.0
    ratio_max: float = 4.0 / 3.0
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_size: int = 23
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    mean: tuple[float, ...] = field(default=_CIFAR10_MEAN)
    std: tuple[float, ...] = field(default=_CIFAR10_STD)

    def __post_init__(self) -> None:
        for key in ("blur_sigma", "mean", "std"):  # YAML gives lists
            object.__setattr__(self, key, tuple(float(v) for v in getattr(self, key)))

        def bad(key: str, rule: str) -> ValueError:
            return ValueError(f"AugmentConfig.{key} {rule}, got {getattr(self, key)!r}")

        if (
            isinstance(self.crop_size, bool)
            or not isinstance(self.crop_size, int)
            or (self.crop_size < 1)
        ):
            raise bad("crop_size", "must be a positive integer")
        if not 0 < self.scale_min <= self.scale_max <= 1:
            raise bad("scale_min", f"must satisfy 0 < scale_min <= scale_max={self.scale_max} <= 1")
        if not 0 < self.ratio_min <= self.ratio_max:
            raise bad("ratio_min", f"must satisfy 0 < ratio_min <= ratio_max={self.ratio_max}")
        for key in ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p"):
            if not 0 <= getattr(self, key) <= 1:
                raise bad(key, "must be a probability in [0, 1]")
        for key in ("brightness", "contrast", "saturation"):
            if getattr(self, key) < 0:
                raise bad(key, "must be >= 0")
        if not 0 <= self.hue <= 0.5:
            raise bad("hue", "must be in [0, 0.5]")
        if len(self.blur_sigma) != 2 or not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise bad("blur_sigma", "must be (min, max) with 0 < min <= max")
        k = self.blur_kernel_size
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise bad("blur_kernel_size", "must be a positive odd integer")
        if self.blur_p > 0 and k // 2 >= self.crop_size:
            raise bad("blur_kernel_size", f"must be < 2 * crop_size = {2 * self.crop_size}")
        if not 0 <= self.solarize_threshold <= 1:
            raise bad("solarize_threshold", "must be in [0, 1]")
        if len(self.mean) != 3:
            raise bad("mean", "must have 3 values (RGB)")
        if len(self.std) != 3 or min(self.std) <= 0:
            raise bad("std", "must have 3 positive values (RGB)")

    @property
    def jitter_enabled(self) -> bool:
        """Whether the colour jitter can change anything."""
        strengths = (self.brightness, self.contrast, self.saturation, self.hue)
        return self.jitter_p > 0 and any(s > 0 for s in strengths)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AugmentConfig:
        """Build from a mapping (e.g. YAML); an unknown key raises a ``ValueError`` naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise ValueError(f"unknown AugmentConfig key {key!r}; known: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> AugmentConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


#: A recipe: one :class:`AugmentConfig` per view.
ViewsConfig = list[AugmentConfig]


def views_from_dicts(items: Iterable[Mapping[str, Any] | AugmentConfig]) -> ViewsConfig:
    """A :data:`ViewsConfig` from a list of mappings (YAML) or configs."""
    return [c if isinstance(c, AugmentConfig) else AugmentConfig.from_dict(c) for c in items]


def _pair(value: float | Sequence[float], n: int, key: str) -> list[float]:
    if isinstance(value, int | float):
        return [float(value)] * n
    values = [float(v) for v in value]
    if len(values) != n:
        raise ValueError(f"{key} must be a float or {n} floats (one per view), got {value!r}")
    return values


def cifar_views(
    dataset: str = "cifar10",
    *,
    crop_size: int = 32,
    scale: tuple[float, float] = (0.08, 1.0),
    solarize_p: float | Sequence[float] = (0.0, 0.2),
    num_views: int = 2,
) -> ViewsConfig:
    """CIFAR recipe of solo-learn / INTL: crop scale (0.08, 1), flip 0.5, jitter
    (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale 0.2, no blur, solarize per view (BYOL's
    asymmetric 0.0 / 0.2 by default), normalized with ``dataset``'s statistics."""
    mean, std = dataset_stats(dataset)
    sol = _pair(solarize_p, num_views, "solarize_p")
    base = AugmentConfig(
        crop_size=crop_size, scale_min=scale[0], scale_max=scale[1], mean=mean, std=std
    )
    return [base.replace(solarize_p=p) for p in sol]


def imagenet_views(
    *,
    crop_size: int = 224,
    scale: tuple[float, float] = (0.08, 1.0),
    blur_p: float | Sequence[float] = (1.0, 0.1),
    solarize_p: float | Sequence[float] = (0.0, 0.2),
    num_views: int = 2,
) -> ViewsConfig:
    """ImageNet recipe of BYOL: crop 224 scale (0.08, 1), flip, jitter (0.4, 0.4, 0.2, 0.1)
    p 0.8, grayscale 0.2, Gaussian blur kernel 23 sigma U(0.1, 2) with p 1.0 / 0.1, solarize
    0.0 / 0.2, ImageNet normalization."""
    mean, std = dataset_stats("imagenet")
    blur, sol = _pair(blur_p, num_views, "blur_p"), _pair(solarize_p, num_views, "solarize_p")
    base = AugmentConfig(
        crop_size=crop_size,
        scale_min=scale[0],
        scale_max=scale[1],
        blur_kernel_size=_odd_kernel(crop_size),
        mean=mean,
        std=std,
    )
    return [base.replace(blur_p=b, solarize_p=s) for b, s in zip(blur, sol, strict=True)]


def digits_views(*, crop_size: int = 32, num_views: int = 2) -> ViewsConfig:
    """Milder recipe for the gray 32x32 digits: crop scale (0.3, 1), no flip (a mirrored digit
    is another symbol), brightness/contrast jitter 0.4 with p 0.8, no saturation/hue/grayscale
    (the images are already gray), no blur or solarize, digits normalization."""
    mean, std = dataset_stats("digits")
    cfg = AugmentConfig(
        crop_size=crop_size,
        scale_min=0.3,
        flip_p=0.0,
        brightness=0.4,
        contrast=0.4,
        saturation=0.0,
        hue=0.0,
        gray_p=0.0,
        mean=mean,
        std=std,
    )
    return [cfg] * num_views


def multicrop_views(
    large: ViewsConfig,
    n_small: int = 6,
    *,
    small_size: int | None = None,
    small_scale: tuple[float, float] = (0.05, 0.14),
    large_scale: tuple[float, float] | None = None,
) -> ViewsConfig:
    """Multi-crop (SwAV/DINO): the ``large`` views followed by ``n_small`` small crops.

    Small crops copy the first large view's colour settings with ``crop_size=small_size``
    (default ``round(3 / 7 * large crop)``, i.e. 96 for 224), crop scale ``small_scale`` and a
    blur kernel scaled to the crop. ``large_scale`` optionally overrides the large crops'
    scale (SwAV uses (0.14, 1)).
    """
    if not large:
        raise ValueError("large must contain at least one view config")
    if n_small < 0:
        raise ValueError(f"n_small must be >= 0, got {n_small}")
    if large_scale is not None:
        large = [c.replace(scale_min=large_scale[0], scale_max=large_scale[1]) for c in large]
    size = small_size if small_size is not None else max(1, round(large[0].crop_size * 3 / 7))
    small = large[0].replace(
        crop_size=size,
        scale_min=small_scale[0],
        scale_max=small_scale[1],
        blur_kernel_size=_odd_kernel(size),
    )
    return list(large) + [small] * n_small


def _odd_kernel(crop_size: int) -> int:
    """Blur kernel ~10% of the crop side, odd (23 for 224)."""
    k = max(3, round(crop_size * 0.1))
    return k if k % 2 == 1 else k + 1


# ---------------------------------------------------------------------------------------------
# Per-image engine (torchvision.transforms.v2)
# ---------------------------------------------------------------------------------------------


def build_transform(config: AugmentConfig) -> v2.Compose:
    """The torchvision v2 pipeline of one view.

    Input: a PIL image or a uint8/float ``(3, H, W)`` tensor (float in [0, 1]). Output: float32
    ``(3, S, S)`` normalized tensor. Geometric ops run on the input dtype (the uint8 fast path
    of torchvision), colour ops on float.
    """
    c = config
    ops: list[Callable[..., Any]] = [
        v2.ToImage(),
        v2.RandomResizedCrop(
            c.crop_size,
            scale=(c.scale_min, c.scale_max),
            ratio=(c.ratio_min, c.ratio_max),
            antialias=True,
        ),
    ]
    if c.flip_p > 0:
        ops.append(v2.RandomHorizontalFlip(c.flip_p))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    if c.jitter_enabled:
        jitter = v2.ColorJitter(c.brightness, c.contrast, c.saturation, c.hue)
        ops.append(v2.RandomApply([jitter], p=c.jitter_p))
    if c.gray_p > 0:
        ops.append(v2.RandomGrayscale(c.gray_p))
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
        views: a :data:`ViewsConfig` or ready-made callables (one per view).
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


# ---------------------------------------------------------------------------------------------
# Batched functional ops: x is float (B, 3, H, W) in [0, 1]; factors are (B,) per sample.
# ---------------------------------------------------------------------------------------------


def random_resized_crop_params(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    *,
    attempts: int = 10,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Crop boxes with torchvision's ``RandomResizedCrop`` rule, for a whole batch at once.

    Per sample, ``attempts`` candidates are drawn at once (area fraction ~ U(scale),
    log aspect ratio ~ U(log ratio)); ``w = round(sqrt(area * r))``, ``h = round(sqrt(area / r))``;
    the first candidate that fits is kept with a uniform integer offset, otherwise the central
    crop of torchvision's fallback. Random numbers come from ``generator`` (on its device)
    or the default generator of ``device``.

    Returns:
        ``(B, 4)`` int64 ``[top, left, h, w]`` on ``device``.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    gdev = generator.device if generator is not None else dev
    u = torch.rand(4, batch, attempts, generator=generator, device=gdev).to(dev)
    area = float(height * width)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[1])
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # first fitting attempt
    found = ok.any(dim=1)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    top = torch.floor(u[2].gather(1, first).squeeze(1) * (height - h + 1))
    left = torch.floor(u[3].gather(1, first).squeeze(1) * (width - w + 1))
    # torchvision's fallback: the largest central crop with an allowed aspect ratio.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    box = torch.stack([top, left, h, w], dim=1)
    fallback = torch.tensor(
        [(height - fh) // 2, (width - fw) // 2, fh, fw], dtype=box.dtype, device=dev
    )
    box = torch.where(found[:, None], box, fallback)
    # Guard float rounding at the upper end of the offsets.
    box[:, 0] = torch.minimum(box[:, 0], height - box[:, 2])
    box[:, 1] = torch.minimum(box[:, 1], width - box[:, 3])
    return box.to(torch.int64)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop ``boxes`` from ``images`` and resize each crop to ``size x size`` (bilinear).

    Matches ``torchvision.transforms.v2.functional.resized_crop(..., antialias=True)``: samples
    sit at the output pixel centres (``align_corners=False``) and are clamped to the box, as
    when cropping first. Upsampling (box side <= ``size``) is exact bilinear. Downsampling by
    ``f = ceil(box side / size)`` averages ``f`` bilinear samples per output pixel and axis (a
    box prefilter standing in for torchvision's triangle antialias filter). Samples are grouped
    by their ``f``; one ``grid_sample`` per group (a single one when no crop is downsampled).

    Args:
        images: float ``(B, C, H, W)``.
        boxes: ``(B, 4)`` ``[top, left, h, w]`` in pixels, inside the image.
        size: output side ``S``.

    Returns:
        ``(B, C, S, S)``, dtype of ``images``.
    """
    bsz, _, hgt, wid = images.shape
    dev, dt = images.device, images.dtype
    top, left, h, w = boxes.to(device=dev, dtype=dt).unbind(1)
    fy = torch.ceil(h / size).clamp_(min=1)
    fx = torch.ceil(w / size).clamp_(min=1)
    group = (fy * (wid + 1) + fx).to(torch.int64)
    groups = torch.unique(group).tolist()
    out = None
    for g in groups:
        gy, gx = divmod(int(g), wid + 1)
        if len(groups) == 1:
            idx, src, t, lf, hh, ww = None, images, top, left, h, w
        else:
            idx = (group == g).nonzero().squeeze(1)
            src = images.index_select(0, idx)
            t, lf, hh, ww = (v.index_select(0, idx) for v in (top, left, h, w))
        ys = _sample_coords(t, hh, size, gy, hgt)  # (n, S*gy), normalized
        xs = _sample_coords(lf, ww, size, gx, wid)  # (n, S*gx)
        shape = (ys.shape[0], size * gy, size * gx)
        grid = torch.stack([xs[:, None, :].expand(shape), ys[:, :, None].expand(shape)], dim=-1)
        crops = F.grid_sample(
            src, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        if gy > 1 or gx > 1:
            crops = F.avg_pool2d(crops, kernel_size=(gy, gx))
        if idx is None:
            return crops
        if out is None:
            out = images.new_empty(bsz, images.shape[1], size, size)
        out.index_copy_(0, idx, crops)
    assert out is not None
    return out


def _sample_coords(
    start: torch.Tensor, length: torch.Tensor, size: int, factor: int, extent: int
) -> torch.Tensor:
    """Normalized (``align_corners=False``) sample positions ``(n, size * factor)`` along one
    axis: ``factor`` evenly spread samples per output pixel, clamped to the box."""
    steps = (torch.arange(size * factor, device=start.device, dtype=start.dtype) + 0.5) / factor
    pos = start[:, None] + steps[None, :] * (length / size)[:, None] - 0.5
    pos = torch.minimum(torch.maximum(pos, start[:, None]), (start + length - 1)[:, None])
    return (2.0 * pos + 1.0) / extent - 1.0


def _per_sample(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return f.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def _luma(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (_GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b).unsqueeze(1)


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W) -> (B, 3, H, W)`` luma repeated over the 3 channels (torchvision weights)."""
    return _luma(x).expand_as(x)


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = _per_sample(f, x)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(f * x, 0, 1)``; ``x (B, 3, H, W)``, ``factor (B,)``."""
    return (x * _per_sample(factor, x)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the per-image mean luma; ``x (B, 3, H, W)``, ``factor (B,)``."""
    return _blend(x, _luma(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the per-pixel luma; ``x (B, 3, H, W)``, ``factor (B,)``."""
    return _blend(x, _luma(x), factor)


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue by ``factor`` turns; ``x (B, 3, H, W)``, ``factor (B,)`` in
    ``[-0.5, 0.5]``. Saturation and value are unchanged (RGB -> HSV -> RGB, in closed form)."""
    maxc = x.amax(dim=1, keepdim=True)  # V, (B, 1, H, W)
    delta = maxc - x.amin(dim=1, keepdim=True)  # chroma V * S
    # Distances of R, G, B to the max in units of delta (0 for gray pixels: numerators are 0).
    d = (maxc - x).div_(delta.clamp_min(1e-12))
    dr, dg, db = d.unbind(1)
    v = maxc.squeeze(1)
    is_r = (x[:, 0] == v).to(x.dtype)
    is_g = (x[:, 1] == v).to(x.dtype).mul_(1.0 - is_r)
    # Hue in sixths of a turn: max R -> db - dg; max G -> 2 + dr - db; max B -> 4 + dg - dr.
    hue_b = (dg - dr).add_(4.0)
    hue = hue_b + is_r * (db - dg).sub_(hue_b) + is_g * (dr - db).add_(2.0).sub_(hue_b)
    hue = hue.unsqueeze(1).add_(6.0 * _per_sample(factor, x))
    # HSV -> RGB: channel n = V - delta * clamp(min(k, 4 - k), 0, 1), k = (n + hue) mod 6,
    # n = 5, 3, 1 for R, G, B.
    offsets = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(hue + offsets, 6.0)
    return maxc - delta * torch.minimum(k, 4.0 - k).clamp_(0, 1)


def solarize(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Invert pixels ``>= threshold``: ``x (B, C, H, W)`` in [0, 1]."""
    return torch.where(x >= threshold, 1.0 - x, x)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Gaussian blur with a per-sample ``sigma (B,)``, reflect padding (as torchvision).

    Two grouped 1-D convolutions (one group per sample and channel) with the separable kernel
    ``exp(-t^2 / (2 sigma^2))``, ``t = -(k-1)/2 .. (k-1)/2``, normalized.

    Args:
        x: ``(B, C, H, W)`` float; ``kernel_size // 2`` must be < H and < W.
        sigma: ``(B,)`` positive.
        kernel_size: odd.
    """
    bsz, c, hgt, wid = x.shape
    t = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - (kernel_size - 1) / 2
    s = sigma.to(device=x.device, dtype=x.dtype).view(-1, 1)
    kern = torch.softmax(-0.5 * (t.view(1, -1) / s).square(), dim=1)  # (B, k), rows sum to 1
    kern = kern.repeat_interleave(c, dim=0)  # (B*C, k)
    pad = kernel_size // 2
    y = F.pad(x.reshape(1, bsz * c, hgt, wid), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, kern.view(bsz * c, 1, kernel_size, 1), groups=bsz * c)
    y = F.conv2d(y, kern.view(bsz * c, 1, 1, kernel_size), groups=bsz * c)
    return y.view(bsz, c, hgt, wid)


# ---------------------------------------------------------------------------------------------
# Batched engine
# ---------------------------------------------------------------------------------------------


def _as_float_batch(images: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Validate a ``(B, 3, H, W)`` batch; return it as float32 plus its value scale."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise ValueError(
            f"images must have shape (B, 3, H, W) with B > 0, got {tuple(images.shape)}"
        )
    if images.dtype == torch.uint8:
        return images.to(torch.float32), 1.0 / 255.0
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
    return images.to(torch.float32), 1.0


class BatchedAugment(nn.Module):
    """One view of :class:`AugmentConfig`, for a whole batch on its own device.

    ``forward(images (B, 3, H, W) uint8 or float in [0, 1], generator=None)`` returns the float32
    normalized views ``(B, 3, S, S)`` on ``images.device``. Every random parameter is drawn per
    sample from the same distribution as the per-image torchvision pipeline (colour-jitter
    order included: a random permutation per sample). Random numbers come from ``generator``
    if given (a CPU generator makes results identical across devices) or the default generator
    of the input's device; no gradient is tracked. Ops applied to a random subset of the batch
    (jitter steps, blur, solarize) run on that subset only, which costs one host sync each on
    an accelerator.
    """

    def __init__(self, config: AugmentConfig) -> None:
        super().__init__()
        if not isinstance(config, AugmentConfig):
            raise ValueError(f"config must be an AugmentConfig, got {type(config).__name__}")
        self.config = config

    def extra_repr(self) -> str:
        return repr(self.config)

    def sample_params(
        self,
        batch: int,
        height: int,
        width: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> dict[str, torch.Tensor]:
        """All random parameters of a batch, on ``device``.

        Returns a dict: ``boxes (B, 4)`` int64 ``[top, left, h, w]``; boolean ``(B,)`` masks
        ``flip``, ``jitter``, ``gray``, ``blur``, ``solarize``; ``factors (B, 4)`` jitter
        factors (brightness, contrast, saturation, hue); ``order (B, 4)`` a permutation of the
        4 jitter ops per sample; ``sigma (B,)`` blur sigmas.
        """
        c = self.config
        dev = torch.device(device) if device is not None else torch.device("cpu")
        gdev = generator.device if generator is not None else dev
        boxes = random_resized_crop_params(
            batch,
            height,
            width,
            (c.scale_min, c.scale_max),
            (c.ratio_min, c.ratio_max),
            generator=generator,
            device=dev,
        )
        u = torch.rand(10, batch, generator=generator, device=gdev).to(dev)
        keys = torch.rand(batch, 4, generator=generator, device=gdev).to(dev)
        lo = torch.tensor(
            [
                max(0.0, 1 - c.brightness),
                max(0.0, 1 - c.contrast),
                max(0.0, 1 - c.saturation),
                -c.hue,
            ],
            device=dev,
        )
        hi = torch.tensor([1 + c.brightness, 1 + c.contrast, 1 + c.saturation, c.hue], device=dev)
        factors = lo + (hi - lo) * u[5:9].T
        return {
            "boxes": boxes,
            "flip": u[0] < c.flip_p,
            "jitter": u[1] < c.jitter_p,
            "gray": u[2] < c.gray_p,
            "blur": u[3] < c.blur_p,
            "solarize": u[4] < c.solarize_p,
            "factors": factors,
            "order": keys.argsort(dim=1),  # uniform random permutation per sample
            "sigma": c.blur_sigma[0] + (c.blur_sigma[1] - c.blur_sigma[0]) * u[9],
        }

    def apply(
        self, x: torch.Tensor, params: Mapping[str, torch.Tensor], value_scale: float = 1.0
    ) -> torch.Tensor:
        """Apply given ``params`` to a float batch ``x (B, 3, H, W)`` whose values times
        ``value_scale`` lie in [0, 1]. Returns ``(B, 3, S, S)`` float32, normalized."""
        c = self.config
        out = resized_crop(x, params["boxes"], c.crop_size)
        if value_scale != 1.0:
            out = out.mul_(value_scale)
        out = out.clamp_(0, 1)
        if c.flip_p > 0:
            out = torch.where(params["flip"].view(-1, 1, 1, 1), out.flip(-1), out)
        if c.jitter_enabled:
            out = self._color_jitter(out, params)
        if c.gray_p > 0:
            out = torch.where(params["gray"].view(-1, 1, 1, 1), rgb_to_grayscale(out), out)
        if c.blur_p > 0:
            idx = params["blur"].nonzero().squeeze(1)
            if idx.numel() > 0:
                blurred = gaussian_blur(
                    out.index_select(0, idx), params["sigma"][idx], c.blur_kernel_size
                )
                out.index_copy_(0, idx, blurred)
        if c.solarize_p > 0:
            idx = params["solarize"].nonzero().squeeze(1)
            if idx.numel() > 0:
                sol = solarize(out.index_select(0, idx), c.solarize_threshold)
                out.index_copy_(0, idx, sol)
        mean = torch.tensor(c.mean, device=out.device, dtype=out.dtype).view(1, -1, 1, 1)
        std = torch.tensor(c.std, device=out.device, dtype=out.dtype).view(1, -1, 1, 1)
        return out.sub_(mean).div_(std)

    def _color_jitter(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # In place on x. Step s applies, to each jittered sample, the op that its permutation
        # puts at position s: 4 x 4 batched calls on index subsets, no per-image loop.
        c = self.config
        fns = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
        enabled = (c.brightness > 0, c.contrast > 0, c.saturation > 0, c.hue > 0)
        apply, order, factors = params["jitter"], params["order"], params["factors"]
        for step in range(4):
            for k, fn in enumerate(fns):
                if not enabled[k]:
                    continue
                idx = (apply & (order[:, step] == k)).nonzero().squeeze(1)
                if idx.numel() == 0:
                    continue
                x.index_copy_(0, idx, fn(x.index_select(0, idx), factors[idx, k]))
        return x

    @torch.no_grad()
    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(B, 3, H, W)`` uint8 / float in [0, 1] -> ``(B, 3, S, S)`` float32 normalized."""
        x, value_scale = _as_float_batch(images)
        params = self.sample_params(x.shape[0], x.shape[2], x.shape[3], generator, x.device)
        return self.apply(x, params, value_scale)


class BatchedMultiView(nn.Module):
    """Several :class:`BatchedAugment` views of one batch: ``images -> [view_0, ...]``.

    Args:
        views: a :data:`ViewsConfig` (one :class:`AugmentConfig` per view).

    ``forward(images (B, 3, H, W), generator=None)`` returns ``V`` tensors ``(B, 3, S_v, S_v)``
    on ``images.device``; the input is converted to float once for all views.
    """

    def __init__(self, views: Sequence[AugmentConfig]) -> None:
        super().__init__()
        if len(views) == 0:
            raise ValueError("views must contain at least one AugmentConfig")
        self.views = nn.ModuleList(BatchedAugment(v) for v in views)

    def __len__(self) -> int:
        return len(self.views)

    @torch.no_grad()
    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        x, value_scale = _as_float_batch(images)
        out = []
        for view in self.views:
            assert isinstance(view, BatchedAugment)
            params = view.sample_params(x.shape[0], x.shape[2], x.shape[3], generator, x.device)
            out.append(view.apply(x, params, value_scale))
        return out
