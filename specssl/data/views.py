"""The typed description of an augmentation: one :class:`AugmentConfig` per view.

A recipe is a list of them (:data:`ViewsConfig`), e.g. BYOL's asymmetric pair (solarize
0.0 / 0.2, blur 1.0 / 0.1) or multi-crop (2 large + k small crops). Named recipes live in
:mod:`specssl.data.presets`; the two engines that run a config in :mod:`specssl.data.transforms`
(per image) and :mod:`specssl.data.batched` (batched, on device). :func:`override_views`
applies YAML overrides (``data.augment``) to a preset's views.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from specssl.data.datasets import dataset_stats

__all__ = [
    "INTERPOLATIONS",
    "AugmentConfig",
    "AugmentConfigError",
    "ViewOverrideError",
    "ViewsConfig",
    "override_views",
    "views_from_dicts",
]

_CIFAR10_MEAN, _CIFAR10_STD = dataset_stats("cifar10")

#: Resampling filters of the crop resize (both engines, torchvision / PIL semantics).
INTERPOLATIONS = ("bilinear", "bicubic")

_FLOAT_FIELDS = (
    "scale_min",
    "scale_max",
    "ratio_min",
    "ratio_max",
    "flip_p",
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "jitter_p",
    "gray_p",
    "blur_p",
    "solarize_p",
    "solarize_threshold",
)


class AugmentConfigError(ValueError):
    """A bad :class:`AugmentConfig` field (``key``) or an unknown one, in one line."""

    def __init__(self, key: str, message: str, rule: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        #: What is wrong, without naming the key (for messages that name it their own way).
        self.rule = rule if rule is not None else message.removeprefix(f"AugmentConfig.{key} ")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class AugmentConfig:
    """One view's augmentation (torchvision semantics for every parameter).

    Attributes:
        crop_size: output side ``S`` of the square view.
        scale_min, scale_max: crop area fraction ~ U(scale_min, scale_max).
        ratio_min, ratio_max: crop aspect ratio w/h, log-uniform in this range.
        interpolation: resampling filter of the crop resize, ``"bilinear"`` or ``"bicubic"``
            (torchvision's, antialiased; the INTL, W-MSE/CW-RGP and solo-learn pipelines use
            bicubic).
        flip_p: horizontal flip probability.
        brightness, contrast, saturation: factor ~ U(max(0, 1 - s), 1 + s); 0 disables.
        hue: hue shift ~ U(-hue, hue) in turns, ``0 <= hue <= 0.5``; 0 disables.
        jitter_p: probability of applying the colour jitter (all four adjustments).
        gray_p: grayscale probability (3 equal channels).
        color_first: apply the colour jitter and grayscale to the whole image *before* the
            crop (W-MSE / CW-RGP's order; contrast then blends towards the whole image's mean).
            Default: after the crop and flip (SimCLR / BYOL / solo-learn / INTL).
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
    interpolation: str = "bilinear"
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    jitter_p: float = 0.8
    gray_p: float = 0.2
    color_first: bool = False
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_size: int = 23
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    mean: tuple[float, ...] = field(default=_CIFAR10_MEAN)
    std: tuple[float, ...] = field(default=_CIFAR10_STD)

    def __post_init__(self) -> None:
        def bad(key: str, rule: str) -> AugmentConfigError:
            return AugmentConfigError(
                key, f"AugmentConfig.{key} {rule}, got {getattr(self, key)!r}"
            )

        for key in ("blur_sigma", "mean", "std"):  # YAML gives lists
            value = getattr(self, key)
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise bad(key, "must be a sequence of numbers")
            if not all(_is_number(v) for v in value):
                raise bad(key, "must be a sequence of numbers")
            object.__setattr__(self, key, tuple(float(v) for v in value))
        for key in _FLOAT_FIELDS:
            if not _is_number(getattr(self, key)):
                raise bad(key, "must be a number")
        for key in ("crop_size", "blur_kernel_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(key, "must be an integer")
        if not isinstance(self.color_first, bool):
            raise bad("color_first", "must be true or false")
        if self.interpolation not in INTERPOLATIONS:
            raise bad("interpolation", f"must be one of {'|'.join(INTERPOLATIONS)}")
        if self.crop_size < 1:
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
        if k < 1 or k % 2 == 0:
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
    def field_names(cls) -> tuple[str, ...]:
        """The names of the fields, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def check_keys(cls, values: Mapping[str, Any]) -> None:
        """Raise :class:`AugmentConfigError` naming the first key of ``values`` that is not a
        field."""
        known = cls.field_names()
        for key in values:
            if key not in known:
                raise AugmentConfigError(
                    str(key),
                    f"unknown AugmentConfig key {key!r}; known: {sorted(known)}",
                    rule=f"unknown field; known: {', '.join(known)}",
                )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AugmentConfig:
        """Build from a mapping (e.g. YAML); an unknown key raises a ``ValueError`` naming it."""
        cls.check_keys(values)
        return cls(**values)

    def replace(self, **changes: Any) -> AugmentConfig:
        """A copy with some fields changed (validated; unknown keys raise a ``ValueError``)."""
        self.check_keys(changes)
        return dataclasses.replace(self, **changes)


#: A recipe: one :class:`AugmentConfig` per view.
ViewsConfig = list[AugmentConfig]


def views_from_dicts(items: Iterable[Mapping[str, Any] | AugmentConfig]) -> ViewsConfig:
    """A :data:`ViewsConfig` from a list of mappings (YAML) or configs."""
    return [c if isinstance(c, AugmentConfig) else AugmentConfig.from_dict(c) for c in items]


class ViewOverrideError(AugmentConfigError):
    """A bad entry ``index`` of a list of per-view overrides (``key`` is the field, or ``""``
    when the list itself is wrong)."""

    def __init__(self, index: int | None, key: str, message: str, rule: str | None = None) -> None:
        super().__init__(key, message, rule if rule is not None else message)
        self.index = index


def override_views(
    views: Sequence[AugmentConfig], overrides: Sequence[Mapping[str, Any]]
) -> ViewsConfig:
    """``views`` with per-view field overrides (YAML ``data.augment``).

    ``overrides`` empty: ``views`` unchanged; one mapping: applied to every view; otherwise
    exactly one mapping per view. An unknown field, a bad value or a wrong count raises a
    one-line :class:`ViewOverrideError` with the entry's ``index`` and the field's ``key``.
    """
    if not overrides:
        return list(views)
    if len(overrides) not in (1, len(views)):
        raise ViewOverrideError(
            None,
            "",
            f"{len(overrides)} entries for {len(views)} views: give one entry (applied to every "
            "view) or one per view",
        )
    out = []
    for v, view in enumerate(views):
        i = 0 if len(overrides) == 1 else v
        entry = overrides[i]
        if not isinstance(entry, Mapping):
            raise ViewOverrideError(
                i, "", f"must be a mapping of AugmentConfig fields, got {entry!r}"
            )
        try:
            out.append(view.replace(**dict(entry)))
        except AugmentConfigError as err:
            raise ViewOverrideError(i, err.key, str(err), err.rule) from err
    return out
