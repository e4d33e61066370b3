"""Named augmentation recipes (``data.views``), each the published pipeline of its source.

:data:`PRESETS` maps a name to a function ``preset(dataset, num_views) -> ViewsConfig``:
``dataset`` is the :mod:`specssl.data.datasets` name (it picks the normalisation statistics,
and the crop size where the source has one per dataset); ``num_views`` is the number of
(large) views. A preset whose views differ (asymmetric blur / solarization, multi-crop sizes)
defines a fixed number of views and raises a one-line :class:`PresetError` for any other
``num_views``; a symmetric one repeats its view ``num_views`` times. Every preset's docstring
names the file and values it reproduces.

Sources read (values quoted in each preset): winci-ai/INTL (``cifar/transform.py``,
``cifar/main.py``, ``cifar/cfg.py``, ``src/transform.py``, ``cfg.py``, ``main.py``),
htdt/self-supervised (W-MSE: ``datasets/transforms.py``, ``datasets/<dataset>.py``,
``cfg.py``) and its copy in winci-ai/CW-RGP (``base/datasets/*.py``, ``base/cfg.py``),
winci-ai/CW-RGP ``ImageNet/train.py`` and ``ImageNet/transform.py``, vturrisi/solo-learn
(``scripts/pretrain/cifar/*.yaml``, ``scripts/pretrain/cifar/augmentations/*.yaml``,
``solo/data/pretrain_dataloader.py``).

Shared translations of the sources' PIL ops into :class:`AugmentConfig` terms:

* ``GaussianBlur(radius=sigma)`` of PIL (INTL, CW-RGP, solo-learn) has sigma in output pixels
  and no fixed kernel; it is run as a 23-tap Gaussian (+-5.5 sigma at sigma = 2, the kernel of
  BYOL's 224 crops), which is valid for crops of 12 pixels and more.
* ``ImageOps.solarize`` inverts values >= 128, i.e. ``solarize_threshold = 0.5``.
* Where a source flips last (INTL, solo-learn), the flip is moved right after the crop: it
  commutes with the pixel-wise colour ops and with the symmetric blur.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from specssl.data.datasets import dataset_stats
from specssl.data.views import AugmentConfig, ViewsConfig

__all__ = [
    "LEGACY_PRESETS",
    "PRESETS",
    "PresetError",
    "cifar_views",
    "digits_views",
    "imagenet_views",
    "multicrop_views",
    "preset_views",
]

#: Kernel standing in for PIL's ``GaussianBlur(radius=sigma)``, sigma ~ U(0.1, 2) pixels.
_PIL_BLUR_KERNEL = 23
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class PresetError(ValueError):
    """A preset asked for something it does not define; ``key`` is the offending argument
    (``"views"``: the name, ``"num_views"``, ``"solarize_p"``, ...)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


Stats = tuple[tuple[float, ...], tuple[float, ...]]


def _stats(dataset: str, table: dict[str, Stats] | None = None) -> Stats:
    """``(mean, std)`` of ``dataset`` from a source's ``table``, else from DATASET_STATS."""
    if table is not None and dataset in table:
        return table[dataset]
    return dataset_stats(dataset)


def _pair(value: float | Sequence[float], n: int, key: str) -> list[float]:
    if isinstance(value, int | float):
        return [float(value)] * n
    values = [float(v) for v in value]
    if len(values) != n:
        raise PresetError(key, f"{key} must be a float or {n} floats (one per view), got {value!r}")
    return values


def _fixed(name: str, views: ViewsConfig, num_views: int, what: str) -> ViewsConfig:
    """``views`` if ``num_views`` asks for exactly them, else a one-line :class:`PresetError`."""
    if num_views != len(views):
        raise PresetError(
            "num_views",
            f"preset {name!r} defines exactly {len(views)} views ({what}), got "
            f"num_views={num_views}",
        )
    return list(views)


def _repeat(view: AugmentConfig, num_views: int) -> ViewsConfig:
    if num_views < 1:
        raise PresetError("num_views", f"num_views must be >= 1, got {num_views}")
    return [view] * num_views


# ---------------------------------------------------------------------------------------------
# Builders (also the project's original presets: cifar, imagenet, digits)
# ---------------------------------------------------------------------------------------------


def cifar_views(
    dataset: str = "cifar10",
    *,
    crop_size: int = 32,
    scale: tuple[float, float] = (0.08, 1.0),
    solarize_p: float | Sequence[float] = (0.0, 0.2),
    num_views: int = 2,
) -> ViewsConfig:
    """CIFAR recipe of solo-learn / INTL with bilinear resizing: crop scale (0.08, 1), flip
    0.5, jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale 0.2, no blur, solarize per view
    (BYOL's asymmetric 0.0 / 0.2 by default), normalized with ``dataset``'s statistics."""
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
    0.0 / 0.2, ImageNet normalization (bilinear resizing)."""
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

    Small crops copy the first large view's settings (colour, interpolation, op order) with
    ``crop_size=small_size`` (default ``round(3 / 7 * large crop)``, i.e. 96 for 224), crop
    scale ``small_scale`` and a blur kernel scaled to the crop. ``large_scale`` optionally
    overrides the large crops' scale (SwAV uses (0.14, 1)).
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
# The project's original presets (``data.views: auto | cifar | imagenet | digits``)
# ---------------------------------------------------------------------------------------------


def cifar_preset(
    dataset: str = "cifar10",
    num_views: int = 2,
    *,
    solarize_p: float | Sequence[float] = (0.0, 0.2),
) -> ViewsConfig:
    """``cifar``: :func:`cifar_views`, the project's first CIFAR recipe (bilinear resizing).

    Source: vturrisi/solo-learn ``scripts/pretrain/cifar/augmentations/asymmetric.yaml``
    (crop scale 0.08-1, jitter 0.4/0.4/0.2/0.1 p 0.8, grayscale 0.2, no blur, solarization
    0.0 / 0.2, flip 0.5) = winci-ai/INTL ``cifar/transform.py`` defaults, but resized
    bilinearly (the sources use bicubic: see ``solo_cifar_byol`` / ``intl_cifar``) and with
    ``solarize_p`` (YAML ``data.solarize_p``) per view. Crop 96 on stl10, else 32;
    normalisation of cifar10 / cifar100 / stl10, cifar10's for any other dataset.
    """
    stats = dataset if dataset in ("cifar10", "cifar100", "stl10") else "cifar10"
    size = 96 if dataset == "stl10" else 32
    return cifar_views(stats, crop_size=size, solarize_p=solarize_p, num_views=num_views)


def imagenet_preset(
    dataset: str = "imagefolder",
    num_views: int = 2,
    *,
    solarize_p: float | Sequence[float] = (0.0, 0.2),
) -> ViewsConfig:
    """``imagenet``: :func:`imagenet_views`, BYOL's ImageNet recipe (bilinear resizing).

    Source: google-deepmind/deepmind-research ``byol/utils/augmentations.py``
    (``augment_config``: jitter 0.4/0.4/0.2/0.1 p 0.8, grayscale 0.2, blur p 1.0 / 0.1 with
    kernel 224 / 10 and sigma U(0.1, 2), solarization 0.0 / 0.2, flip), crop 224 scale
    0.08-1, ImageNet normalisation for any ``dataset``; ``solarize_p`` per view.
    """
    return imagenet_views(solarize_p=solarize_p, num_views=num_views)


def digits_preset(
    dataset: str = "digits", num_views: int = 2, *, solarize_p: Any = None
) -> ViewsConfig:
    """``digits``: :func:`digits_views` (``dataset`` and ``solarize_p`` are ignored).

    Source: this project (no published recipe exists for the 8x8 digits): crop 32 scale
    0.3-1, no flip, brightness / contrast 0.4 p 0.8, no saturation / hue / grayscale / blur /
    solarization, digits normalisation.
    """
    return digits_views(num_views=num_views)


def auto_preset(
    dataset: str = "cifar10",
    num_views: int = 2,
    *,
    solarize_p: float | Sequence[float] = (0.0, 0.2),
) -> ViewsConfig:
    """``auto``: ``digits`` on digits, ``imagenet`` on imagefolder, ``cifar`` otherwise.

    Source: vturrisi/solo-learn ``scripts/pretrain/cifar/augmentations/asymmetric.yaml``
    (via ``cifar``), google-deepmind/deepmind-research ``byol/utils/augmentations.py`` (via
    ``imagenet``), this project (``digits``): see those presets; unchanged since the first
    recorded experiments.
    """
    name = {"digits": "digits", "imagefolder": "imagenet"}.get(dataset, "cifar")
    return PRESETS[name](dataset, num_views, solarize_p=solarize_p)


# ---------------------------------------------------------------------------------------------
# INTL (winci-ai/INTL)
# ---------------------------------------------------------------------------------------------

_INTL_CIFAR_STATS: dict[str, Stats] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _intl_imagenet_view(
    crop: int, scale: tuple[float, float], blur: float, sol: float
) -> AugmentConfig:
    """One ``ImageNetTransform`` of winci-ai/INTL ``src/transform.py``."""
    mean, std = _IMAGENET
    return AugmentConfig(
        crop_size=crop,
        scale_min=scale[0],
        scale_max=scale[1],
        interpolation="bicubic",
        blur_p=blur,
        blur_kernel_size=_PIL_BLUR_KERNEL,
        solarize_p=sol,
        mean=mean,
        std=std,
    )


def intl_cifar(dataset: str = "cifar10", num_views: int = 2) -> ViewsConfig:
    """``intl_cifar``: INTL's CIFAR-10/100 pipeline, 2 views.

    Source: winci-ai/INTL ``cifar/transform.py`` ``CifarTransform`` defaults:
    RandomResizedCrop(32, scale=(0.08, 1.0), BICUBIC); ColorJitter(0.4, 0.4, 0.2, 0.1) with
    p 0.8; RandomGrayscale 0.2; gaussian_prob 0.0 (no blur); horizontal flip 0.5;
    normalisation cifar10 (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616), cifar100
    (0.5071, 0.4865, 0.4409) / (0.2673, 0.2564, 0.2762) (other datasets: their own).
    ``cifar/main.py`` builds ``cfg.nmb_crops`` = 2 views as
    ``CifarTransform(solarization_prob=cfg.solarization_prob[i])`` with ``cifar/cfg.py``'s
    ``--solarization_prob [0.0, 0.2]`` (and asserts one probability per view): solarization
    0.0 / 0.2, no per-view blur.
    """
    mean, std = _stats(dataset, _INTL_CIFAR_STATS)
    base = AugmentConfig(crop_size=32, interpolation="bicubic", mean=mean, std=std)
    views = [base.replace(solarize_p=0.0), base.replace(solarize_p=0.2)]
    return _fixed("intl_cifar", views, num_views, "solarization 0.0 / 0.2")


def intl_imagenet(dataset: str = "imagefolder", num_views: int = 2) -> ViewsConfig:
    """``intl_imagenet``: INTL's ImageNet pipeline (2 views, no multi-crop).

    Source: winci-ai/INTL ``src/transform.py`` ``ImageNetTransform`` (BICUBIC
    RandomResizedCrop, ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2, PIL
    GaussianBlur sigma U(0.1, 2), PIL solarization, flip 0.5, ImageNet mean / std
    (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) for any ``dataset``) as built by ``main.py``
    from ``cfg.py``'s defaults: ``--crops_size [224, 224]``, ``--min_scale_crops [0.08,
    0.08]``, ``--max_scale_crops [1, 1]``, ``--gaussian_prob [1.0, 0.1]``,
    ``--solarization_prob [0.0, 0.2]``.
    """
    views = [
        _intl_imagenet_view(224, (0.08, 1.0), 1.0, 0.0),
        _intl_imagenet_view(224, (0.08, 1.0), 0.1, 0.2),
    ]
    return _fixed("intl_imagenet", views, num_views, "blur 1.0 / 0.1, solarization 0.0 / 0.2")


#: INTL's multi-crop: ``(crop size, min scale, max scale)`` of the 6 views.
_INTL_MULTICROP = (
    (224, 0.2, 1.0),
    (224, 0.2, 1.0),
    (192, 0.171, 0.857),
    (160, 0.143, 0.714),
    (128, 0.114, 0.571),
    (96, 0.086, 0.429),
)


def intl_multicrop(dataset: str = "imagefolder", num_views: int = 6) -> ViewsConfig:
    """``intl_multicrop``: INTL's ImageNet multi-crop, exactly 6 views (224, 224, 192, 160,
    128, 96).

    Source: winci-ai/INTL ``src/transform.py`` ``Multi_Crop`` (``--multi-crop``):
    ``nmb_crops [2, 1, 1, 1, 1]``, ``crops_size [224, 192, 160, 128, 96]``,
    ``min_scale_crops [0.2, 0.171, 0.143, 0.114, 0.086]``, ``max_scale_crops [1.0, 0.857,
    0.714, 0.571, 0.429]``, ``gaussian_prob 0.5`` and ``solarization_prob 0.1`` on every crop;
    each crop is an ``ImageNetTransform`` (see ``intl_imagenet``; ``main.py`` builds them in
    this order). ImageNet normalisation for any ``dataset``.
    """
    views = [_intl_imagenet_view(s, (lo, hi), 0.5, 0.1) for s, lo, hi in _INTL_MULTICROP]
    return _fixed("intl_multicrop", views, num_views, "2 x 224, 192, 160, 128, 96")


# ---------------------------------------------------------------------------------------------
# W-MSE (htdt/self-supervised) and CW-RGP (winci-ai/CW-RGP, which copies W-MSE's data code)
# ---------------------------------------------------------------------------------------------

_WMSE_CIFAR_STATS: dict[str, Stats] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}
_WMSE_STL10_STATS: Stats = ((0.43, 0.42, 0.39), (0.27, 0.26, 0.27))
_WMSE_TINY_IN_STATS: Stats = ((0.480, 0.448, 0.398), (0.277, 0.269, 0.282))


def _wmse_view(crop: int, stats: Stats) -> AugmentConfig:
    """W-MSE's ``aug_transform`` with ``cfg.py``'s defaults."""
    return AugmentConfig(
        crop_size=crop,
        scale_min=0.2,
        scale_max=1.0,
        ratio_min=0.75,
        ratio_max=4.0 / 3.0,
        interpolation="bicubic",
        flip_p=0.5,
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.1,
        jitter_p=0.8,
        gray_p=0.1,
        color_first=True,
        mean=stats[0],
        std=stats[1],
    )


def wmse_cifar(dataset: str = "cifar10", num_views: int = 2) -> ViewsConfig:
    """``wmse_cifar``: W-MSE / CW-RGP on CIFAR-10/100, crop 32.

    Source: htdt/self-supervised ``datasets/transforms.py`` ``aug_transform`` with ``cfg.py``
    defaults, and ``datasets/cifar10.py`` / ``datasets/cifar100.py`` (copied unchanged in
    winci-ai/CW-RGP ``base/datasets/`` and ``base/cfg.py``): RandomApply(ColorJitter(0.4,
    0.4, 0.4, 0.1), p=0.8) and RandomGrayscale(0.1) on the whole image *before*
    RandomResizedCrop(32, scale=(0.2, 1.0), ratio=(0.75, 4/3), interpolation=3 = BICUBIC),
    then flip 0.5; no blur, no solarization; normalisation cifar10 (0.4914, 0.4822, 0.4465)
    / (0.2023, 0.1994, 0.2010), cifar100 (0.5071, 0.4867, 0.4408) / (0.2675, 0.2565,
    0.2761), other datasets their own. ``num_samples`` identical views (2 or 4).
    """
    return _repeat(_wmse_view(32, _stats(dataset, _WMSE_CIFAR_STATS)), num_views)


def wmse_stl10(dataset: str = "stl10", num_views: int = 2) -> ViewsConfig:
    """``wmse_stl10``: W-MSE / CW-RGP on STL-10 (96x96 images cropped to 64).

    Source: htdt/self-supervised ``datasets/transforms.py`` ``aug_transform`` with ``cfg.py``
    defaults, and ``datasets/stl10.py`` (copied unchanged in winci-ai/CW-RGP
    ``base/datasets/``): colour jitter (0.4, 0.4, 0.4, 0.1) p 0.8 and grayscale 0.1 before
    RandomResizedCrop(64, scale=(0.2, 1.0), ratio=(0.75, 4/3), BICUBIC), flip 0.5, no blur or
    solarization, normalisation (0.43, 0.42, 0.39) / (0.27, 0.26, 0.27) for any ``dataset``
    (its evaluation resizes to 70 and centre-crops 64). ``num_samples`` identical views.
    """
    return _repeat(_wmse_view(64, _WMSE_STL10_STATS), num_views)


def wmse_tiny_imagenet(dataset: str = "imagefolder", num_views: int = 2) -> ViewsConfig:
    """``wmse_tiny_imagenet``: W-MSE / CW-RGP on Tiny ImageNet (64x64 images, crop 64).

    Source: htdt/self-supervised ``datasets/transforms.py`` ``aug_transform`` with ``cfg.py``
    defaults, and ``datasets/tiny_in.py`` (copied in winci-ai/CW-RGP
    ``base/datasets/tiny_in.py``): colour jitter (0.4, 0.4, 0.4, 0.1) p 0.8 and grayscale 0.1
    before RandomResizedCrop(64, scale=(0.2, 1.0), ratio=(0.75, 4/3), BICUBIC), flip 0.5, no
    blur or solarization, normalisation (0.480, 0.448, 0.398) / (0.277, 0.269, 0.282) for any
    ``dataset``. ``num_samples`` identical views.
    """
    return _repeat(_wmse_view(64, _WMSE_TINY_IN_STATS), num_views)


def cwrgp_imagenet(dataset: str = "imagefolder", num_views: int = 4) -> ViewsConfig:
    """``cwrgp_imagenet``: CW-RGP's ImageNet pipeline (MoCo v2's augmentation).

    Source: winci-ai/CW-RGP ``ImageNet/train.py`` (``augmentation``) with the
    ``GaussianBlur`` of ``ImageNet/transform.py``: RandomResizedCrop(224, scale=(0.2, 1.0))
    (torchvision's default BILINEAR), RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), p=0.8),
    RandomGrayscale(0.2), RandomApply(PIL GaussianBlur sigma U(0.1, 2), p=0.5), flip 0.5,
    ImageNet mean / std (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) for any ``dataset``.
    ``MultiSample`` draws ``cfg.num_samples`` identical views (``ImageNet/cfg.py`` default 4,
    hence ``num_views=4`` by default here).
    """
    mean, std = _IMAGENET
    view = AugmentConfig(
        crop_size=224,
        scale_min=0.2,
        scale_max=1.0,
        saturation=0.4,
        blur_p=0.5,
        blur_kernel_size=_PIL_BLUR_KERNEL,
        mean=mean,
        std=std,
    )
    return _repeat(view, num_views)


# ---------------------------------------------------------------------------------------------
# solo-learn CIFAR recipes (vturrisi/solo-learn scripts/pretrain/cifar/)
# ---------------------------------------------------------------------------------------------


def _solo_view(
    dataset: str,
    *,
    jitter: tuple[float, float, float, float],
    scale_min: float = 0.08,
    blur_p: float = 0.0,
    solarize_p: float = 0.0,
) -> AugmentConfig:
    """solo-learn's ``build_transform_pipeline`` for one CIFAR crop: RandomResizedCrop(32,
    BICUBIC), ColorJitter with p 0.8, grayscale 0.2, PIL blur, PIL solarization, flip 0.5,
    its ``MEANS_N_STD`` normalisation (cifar10 / cifar100 = DATASET_STATS)."""
    mean, std = dataset_stats(dataset)
    b, c, s, h = jitter
    return AugmentConfig(
        crop_size=32,
        scale_min=scale_min,
        scale_max=1.0,
        interpolation="bicubic",
        brightness=b,
        contrast=c,
        saturation=s,
        hue=h,
        jitter_p=0.8,
        gray_p=0.2,
        blur_p=blur_p,
        blur_kernel_size=_PIL_BLUR_KERNEL,
        solarize_p=solarize_p,
        mean=mean,
        std=std,
    )


def solo_cifar_byol(dataset: str = "cifar10", num_views: int = 2) -> ViewsConfig:
    """``solo_cifar_byol`` (= ``solo_cifar_barlow``, ``solo_cifar_dino``): solo-learn's
    asymmetric CIFAR views, exactly 2.

    Source: vturrisi/solo-learn ``scripts/pretrain/cifar/augmentations/asymmetric.yaml``,
    used by ``byol.yaml``, ``barlow.yaml``, ``dino.yaml`` (and mocov3, nnclr, nnbyol,
    nnsiam, all4one): two crops with crop_min_scale 0.08, ColorJitter(0.4, 0.4, 0.2, 0.1),
    grayscale 0.2, no blur, solarization 0.0 / 0.2.
    Each crop as :func:`_solo_view` builds it (solo-learn's ``build_transform_pipeline``).
    """
    jitter = (0.4, 0.4, 0.2, 0.1)
    views = [_solo_view(dataset, jitter=jitter, solarize_p=p) for p in (0.0, 0.2)]
    return _fixed("solo_cifar_byol", views, num_views, "solarization 0.0 / 0.2")


def solo_cifar_simclr(dataset: str = "cifar10", num_views: int = 2) -> ViewsConfig:
    """``solo_cifar_simclr`` (= ``solo_cifar_swav``): solo-learn's symmetric (strong) CIFAR
    views.

    Source: vturrisi/solo-learn ``scripts/pretrain/cifar/augmentations/symmetric.yaml``,
    used by ``simclr.yaml``, ``swav.yaml`` (and deepclusterv2, supcon): ``num_crops: 2``
    identical crops with crop_min_scale 0.08, ColorJitter(0.8, 0.8, 0.8, 0.2), grayscale
    0.2, blur 0.5, no solarization.
    Each crop as :func:`_solo_view` builds it (solo-learn's ``build_transform_pipeline``).
    """
    view = _solo_view(dataset, jitter=(0.8, 0.8, 0.8, 0.2), blur_p=0.5)
    return _repeat(view, num_views)


def solo_cifar_mocov2plus(dataset: str = "cifar10", num_views: int = 2) -> ViewsConfig:
    """``solo_cifar_mocov2plus`` (= ``solo_cifar_simsiam``): solo-learn's symmetric_weak
    CIFAR views.

    Source: vturrisi/solo-learn ``scripts/pretrain/cifar/augmentations/symmetric_weak.yaml``,
    used by ``mocov2plus.yaml`` and ``simsiam.yaml``: ``num_crops: 2`` identical crops with
    crop_min_scale 0.08, ColorJitter(0.4, 0.4, 0.4, 0.1), grayscale 0.2, blur 0.5, no
    solarization.
    Each crop as :func:`_solo_view` builds it (solo-learn's ``build_transform_pipeline``).
    """
    view = _solo_view(dataset, jitter=(0.4, 0.4, 0.4, 0.1), blur_p=0.5)
    return _repeat(view, num_views)


def solo_cifar_vicreg(dataset: str = "cifar10", num_views: int = 2) -> ViewsConfig:
    """``solo_cifar_vicreg``: solo-learn's VICReg CIFAR views (vibcreg's too).

    Source: vturrisi/solo-learn ``scripts/pretrain/cifar/vicreg.yaml`` (inline
    ``augmentations``): ``num_crops: 2`` identical crops with crop_min_scale 0.2,
    ColorJitter(0.4, 0.4, 0.2, 0.1), grayscale 0.2, no blur, solarization 0.1.
    Each crop as :func:`_solo_view` builds it (solo-learn's ``build_transform_pipeline``).
    """
    view = _solo_view(dataset, jitter=(0.4, 0.4, 0.2, 0.1), scale_min=0.2, solarize_p=0.1)
    return _repeat(view, num_views)


def solo_cifar_wmse(dataset: str = "cifar10", num_views: int = 2) -> ViewsConfig:
    """``solo_cifar_wmse``: solo-learn's W-MSE CIFAR views (W-MSE's own are ``wmse_cifar``).

    Source: vturrisi/solo-learn ``scripts/pretrain/cifar/wmse.yaml`` (inline
    ``augmentations``): ``num_crops: 2`` identical crops with crop_min_scale 0.2,
    ColorJitter(0.8, 0.8, 0.8, 0.2), grayscale 0.2, no blur, no solarization.
    Each crop as :func:`_solo_view` builds it (solo-learn's ``build_transform_pipeline``).
    """
    view = _solo_view(dataset, jitter=(0.8, 0.8, 0.8, 0.2), scale_min=0.2)
    return _repeat(view, num_views)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

#: A preset: ``(dataset, num_views) -> ViewsConfig`` (the legacy ones also take
#: ``solarize_p=``).
Preset = Callable[..., ViewsConfig]

#: Every preset by name (aliases share their function).
PRESETS: dict[str, Preset] = {
    "auto": auto_preset,
    "cifar": cifar_preset,
    "imagenet": imagenet_preset,
    "digits": digits_preset,
    "intl_cifar": intl_cifar,
    "intl_imagenet": intl_imagenet,
    "intl_multicrop": intl_multicrop,
    "wmse_cifar": wmse_cifar,
    "wmse_stl10": wmse_stl10,
    "wmse_tiny_imagenet": wmse_tiny_imagenet,
    "cwrgp_imagenet": cwrgp_imagenet,
    "solo_cifar_byol": solo_cifar_byol,
    "solo_cifar_barlow": solo_cifar_byol,
    "solo_cifar_dino": solo_cifar_byol,
    "solo_cifar_simclr": solo_cifar_simclr,
    "solo_cifar_swav": solo_cifar_simclr,
    "solo_cifar_mocov2plus": solo_cifar_mocov2plus,
    "solo_cifar_simsiam": solo_cifar_mocov2plus,
    "solo_cifar_vicreg": solo_cifar_vicreg,
    "solo_cifar_wmse": solo_cifar_wmse,
}

#: The project's original presets: they take ``solarize_p`` (YAML ``data.solarize_p``).
LEGACY_PRESETS = frozenset({"auto", "cifar", "imagenet", "digits"})


def preset_views(
    name: str, dataset: str = "cifar10", num_views: int = 2, **kwargs: Any
) -> ViewsConfig:
    """The views of preset ``name`` for ``dataset``; an unknown name raises a one-line
    :class:`PresetError` (key ``"views"``) listing the known ones."""
    if name not in PRESETS:
        raise PresetError("views", f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name](dataset, num_views, **kwargs)
