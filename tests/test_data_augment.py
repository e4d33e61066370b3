"""Augmentation: the batched engine against torchvision's per-image pipeline.

Three layers of evidence:

1. each batched op with per-sample parameters equals torchvision's functional op applied image
   by image (deterministic, tight tolerances);
2. the random parameters have torchvision's distributions (crop sampler vs
   ``RandomResizedCrop.get_params``, jitter factor ranges, op-order permutations,
   probabilities of flip / grayscale / solarize / blur);
3. end to end, the batched and per-image pipelines give the same distribution of per-view
   statistics on a fixed structured image (two-sample Kolmogorov-Smirnov), while deliberately
   wrong configs (jitter 0.8 instead of 0.4, hue missing, ...) are rejected by the same test.

Thresholds: KS distance below ``2.0 * sqrt((n + m) / (n m))`` (a ~1e-3 level per statistic);
proportions within 4.5 binomial standard deviations. Seeds are fixed, so the tests are
deterministic. Measured when written (statistic / threshold): crop sampler KS <= 0.029 / 0.045
(wrong scale 0.15-0.63, wrong ratio 0.23-0.58); jitter-only max KS 0.029 / 0.057 (brightness
0.8: 0.25, contrast 0.8: 0.18, hue 0: 0.097, jitter_p 0.6: 0.28; saturation 0 is too subtle
for this statistic, 0.031, and is covered by the op and factor-range tests); CIFAR recipe max
KS 0.047 / 0.070 (brightness 0.8: 0.19).

4. every preset of :data:`PRESETS` (crops above 32 scaled down to a largest crop of 32) gives
   the same distribution of per-view statistics in both engines: channel means and stds of the
   normalised output, left-right asymmetry (flip) and sharpness (interpolation, blur), with
   ``c = 2.3`` (~5e-5 per statistic, < 1% over the ~160 statistics of all presets' views),
   and the same grayscale fraction. Bicubic resizing and ``color_first`` each have an
   end-to-end test whose power check fails when one engine lacks the feature. Measured when
   written: presets max KS 0.075 / 0.114 at 512 / 2048 samples; bicubic 0.062 / 0.070
   (bilinear in one engine: 0.94); color_first 0.035 / 0.070 (crop first in one engine:
   0.135, 0.152).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from specssl.data.augment import (
    PRESETS,
    AugmentConfig,
    BatchedAugment,
    BatchedMultiView,
    MultiViewTransform,
    PresetError,
    ViewOverrideError,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    build_transform,
    cifar_views,
    digits_views,
    gaussian_blur,
    imagenet_views,
    multicrop_views,
    override_views,
    preset_views,
    random_resized_crop_params,
    resized_crop,
    rgb_to_grayscale,
    solarize,
    views_from_dicts,
)

IDENTITY_CROP = {"scale_min": 1.0, "scale_max": 1.0, "ratio_min": 1.0, "ratio_max": 1.0}
NO_NORM = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
PLAIN = {
    **IDENTITY_CROP,
    **NO_NORM,
    "flip_p": 0.0,
    "jitter_p": 0.0,
    "gray_p": 0.0,
    "blur_p": 0.0,
    "solarize_p": 0.0,
}


def structured_image(size: int = 32) -> torch.Tensor:
    """A fixed colourful, left-right asymmetric uint8 ``(3, size, size)`` image."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    r = torch.where(xx < 0.4, 0.9, 0.15 + 0.3 * yy)
    g = 0.1 + 0.8 * yy * (xx > 0.25)
    b = torch.where(((xx * 4).floor() + (yy * 4).floor()) % 2 == 0, 0.85, 0.2)
    return (torch.stack([r, g, b]) * 255).round().to(torch.uint8)


IMG = structured_image()


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    """These tests push many tiny images through small ops, where one intra-op thread is
    fastest; on a busy 2-core machine two OpenMP threads stall at every op's barrier (~100x
    slower). The previous setting is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def ks_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``sup |F_a - F_b|``."""
    a, b = a.sort().values, b.sort().values
    grid = torch.cat([a, b])
    fa = torch.searchsorted(a, grid, right=True) / a.numel()
    fb = torch.searchsorted(b, grid, right=True) / b.numel()
    return float((fa - fb).abs().max())


def ks_threshold(n: int, m: int, c: float = 2.0) -> float:
    return c * math.sqrt((n + m) / (n * m))


def view_features(views: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """``(N, 6)``: per-view channel means and stds on the [0, 1] scale."""
    x = views * torch.tensor(cfg.std).view(1, 3, 1, 1) + torch.tensor(cfg.mean).view(1, 3, 1, 1)
    return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def per_image_views(cfg: AugmentConfig, n: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    t = build_transform(cfg)
    return torch.stack([t(IMG) for _ in range(n)])


def batched_views(cfg: AugmentConfig, n: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return BatchedAugment(cfg)(IMG.expand(n, -1, -1, -1), gen)


def max_ks(fa: torch.Tensor, fb: torch.Tensor) -> float:
    return max(ks_distance(fa[:, k], fb[:, k]) for k in range(fa.shape[1]))


def assert_proportion(count: int, n: int, p: float, what: str) -> None:
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(count / n - p) < 4.5 * sd, f"{what}: {count}/{n} = {count / n:.4f}, expected {p}"


# ---------------------------------------------------------------------------------------------
# 1. batched ops == torchvision functional ops, sample by sample
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rand_batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 20, 24, generator=g)
    x[0] = x[0, :1]  # a gray image (hue undefined)
    x[1, :, :5] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)  # saturated red block
    x[2, :, :, :4] = 1.0  # white: all channels at the max
    return x


@pytest.mark.parametrize(
    ("ours", "ref", "lo", "hi"),
    [
        (adjust_brightness, TF.adjust_brightness, 0.0, 2.0),
        (adjust_contrast, TF.adjust_contrast, 0.0, 2.0),
        (adjust_saturation, TF.adjust_saturation, 0.0, 2.0),
        (adjust_hue, TF.adjust_hue, -0.5, 0.5),
    ],
    ids=["brightness", "contrast", "saturation", "hue"],
)
def test_color_ops_match_torchvision_per_sample(rand_batch, ours, ref, lo, hi):
    factors = torch.linspace(lo, hi, rand_batch.shape[0])
    got = ours(rand_batch, factors)
    want = torch.stack([ref(img, float(f)) for img, f in zip(rand_batch, factors, strict=True)])
    assert got.shape == rand_batch.shape
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)


def test_grayscale_solarize_blur_match_torchvision(rand_batch):
    torch.testing.assert_close(
        rgb_to_grayscale(rand_batch), TF.rgb_to_grayscale(rand_batch, 3), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(solarize(rand_batch, 0.5), TF.solarize(rand_batch, 0.5))
    # threshold 0.5 on [0, 1] inverts exactly the uint8 levels torchvision inverts at 128
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    ref = TF.solarize(levels, 128).float() / 255
    torch.testing.assert_close(solarize(levels.float() / 255, 0.5), ref, atol=1e-6, rtol=0)
    sigma = torch.linspace(0.1, 2.0, rand_batch.shape[0])
    got = gaussian_blur(rand_batch, sigma, 9)
    want = torch.stack(
        [
            TF.gaussian_blur(img, [9, 9], [float(s)] * 2)
            for img, s in zip(rand_batch, sigma, strict=True)
        ]
    )
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)


def test_resized_crop_matches_torchvision(rand_batch):
    # upsampling (every CIFAR-size crop): exactly torchvision's bilinear resize
    boxes = torch.tensor(
        [[2, 3, 10, 12], [0, 0, 20, 24], [5, 1, 7, 9], [1, 4, 15, 6], [0, 4, 20, 20], [3, 3, 3, 3]]
    )
    got = resized_crop(rand_batch, boxes, 32)
    want = torch.stack(
        [
            TF.resized_crop(img, *b.tolist(), [32, 32], antialias=True)
            for img, b in zip(rand_batch, boxes, strict=True)
        ]
    )
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)
    # downsampling a smooth image: box prefilter ~ torchvision's antialias filter
    g = torch.Generator().manual_seed(1)
    smooth = torch.nn.functional.interpolate(
        torch.rand(6, 3, 8, 8, generator=g), size=(64, 64), mode="bilinear"
    )
    boxes = torch.tensor(
        [
            [2, 3, 40, 50],
            [0, 0, 64, 64],
            [5, 1, 30, 30],
            [1, 4, 60, 20],
            [0, 4, 50, 60],
            [3, 3, 33, 33],
        ]
    )
    got = resized_crop(smooth, boxes, 16)
    want = torch.stack(
        [
            TF.resized_crop(img, *b.tolist(), [16, 16], antialias=True)
            for img, b in zip(smooth, boxes, strict=True)
        ]
    )
    assert float((got - want).abs().mean()) < 0.01
    assert float((got - want).abs().max()) < 0.06


# ---------------------------------------------------------------------------------------------
# 2. parameter distributions
# ---------------------------------------------------------------------------------------------


def _crop_stats(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    top, left, h, w = boxes.to(torch.float64).unbind(1)
    return torch.stack(
        [
            h * w / (height * width),  # area fraction
            torch.log(w / h),  # log aspect ratio
            (top + h / 2) / height,  # centre y
            (left + w / 2) / width,  # centre x
        ],
        dim=1,
    )


@pytest.mark.parametrize(("height", "width"), [(32, 32), (16, 80)])
def test_crop_sampler_matches_torchvision_get_params(height, width):
    n = 4000
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    torch.manual_seed(0)
    dummy = torch.empty(3, height, width)
    ref = torch.tensor([T.RandomResizedCrop.get_params(dummy, scale, ratio) for _ in range(n)])
    gen = torch.Generator().manual_seed(1)
    ours = random_resized_crop_params(n, height, width, scale, ratio, generator=gen)
    assert ours.shape == (n, 4) and ours.dtype == torch.int64
    top, left, h, w = ours.unbind(1)
    assert bool(((top >= 0) & (left >= 0) & (h >= 1) & (w >= 1)).all())
    assert bool(((top + h <= height) & (left + w <= width)).all())
    fr, fo = _crop_stats(ref, height, width), _crop_stats(ours, height, width)
    limit = ks_threshold(n, n)
    assert max_ks(fr, fo) < limit
    # fallback (central crop) rate agrees; torchvision's box for the 16x80 strip is 16x21
    fallback = torch.tensor([0, (80 - 21) // 2, 16, 21])
    rate_ref = (ref == fallback).all(1).double().mean().item()
    rate_ours = (ours == fallback).all(1).double().mean().item()
    if width == 80:
        assert rate_ref > 0.05 and abs(rate_ref - rate_ours) < 4.5 * math.sqrt(2 * rate_ref / n)
    # power: a wrong scale or ratio range is rejected
    gen = torch.Generator().manual_seed(1)
    wrong_scale = random_resized_crop_params(n, height, width, (0.2, 1.0), ratio, generator=gen)
    assert ks_distance(fr[:, 0], _crop_stats(wrong_scale, height, width)[:, 0]) > limit
    gen = torch.Generator().manual_seed(1)
    wrong_ratio = random_resized_crop_params(n, height, width, scale, (0.5, 2.0), generator=gen)
    assert ks_distance(fr[:, 1], _crop_stats(wrong_ratio, height, width)[:, 1]) > limit


def test_jitter_factors_and_order_follow_torchvision_ranges():
    cfg = AugmentConfig()  # jitter (0.4, 0.4, 0.2, 0.1)
    n = 24000
    p = BatchedAugment(cfg).sample_params(n, 32, 32, torch.Generator().manual_seed(0))
    f = p["factors"]
    lo = torch.tensor([0.6, 0.6, 0.8, -0.1])
    hi = torch.tensor([1.4, 1.4, 1.2, 0.1])
    assert bool((f >= lo).all()) and bool((f <= hi).all())
    # uniform over the range: min/max near the ends, mean at the centre, variance (hi-lo)^2/12
    assert bool((f.min(0).values - lo < 1e-3).all()) and bool((hi - f.max(0).values < 1e-3).all())
    torch.testing.assert_close(f.mean(0), (lo + hi) / 2, atol=0.006, rtol=0)
    torch.testing.assert_close(f.var(0), (hi - lo) ** 2 / 12, atol=0.0, rtol=0.05)
    # every op order equally likely (24 permutations, ~1000 each)
    codes = (p["order"] * torch.tensor([64, 16, 4, 1])).sum(1)
    counts = torch.unique(codes, return_counts=True)[1]
    assert counts.numel() == 24
    sd = math.sqrt(n / 24 * (1 - 1 / 24))
    assert float((counts - n / 24).abs().max()) < 4.5 * sd
    sig = p["sigma"]
    assert 0.1 <= float(sig.min()) < 0.11 and 1.99 < float(sig.max()) <= 2.0


def test_flip_gray_solarize_blur_probabilities():
    n = 4000
    x = IMG.float() / 255
    cases = {
        "flip": ({"flip_p": 0.5}, lambda v: (v - x.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-6),
        "gray": ({"gray_p": 0.2}, lambda v: (v - v[:, :1]).abs().amax(dim=(1, 2, 3)) < 1e-6),
        "solarize": (
            {"solarize_p": 0.2},
            lambda v: (v - solarize(x[None], 0.5)).abs().amax(dim=(1, 2, 3)) < 1e-6,
        ),
        "blur": (
            {"blur_p": 0.3, "blur_kernel_size": 5, "blur_sigma": (1.0, 2.0)},  # all visible
            lambda v: (v - x).abs().amax(dim=(1, 2, 3)) > 1e-3,
        ),
    }
    for k, (what, (change, detect)) in enumerate(cases.items()):
        cfg = AugmentConfig(**{**PLAIN, **change})
        views = batched_views(cfg, n, seed=10 + k)
        unchanged = (views - x).abs().amax(dim=(1, 2, 3)) < 1e-6
        hit = detect(views)
        assert bool((hit | unchanged).all()), f"{what}: outputs other than identity / the op"
        p = next(iter(change.values()))
        assert_proportion(int(hit.sum()), n, p, what)


# ---------------------------------------------------------------------------------------------
# 3. end to end: batched vs per-image pipelines on the same image
# ---------------------------------------------------------------------------------------------


def test_color_jitter_distribution_matches_per_image():
    cfg = AugmentConfig(
        **{**IDENTITY_CROP, **NO_NORM, "flip_p": 0.0, "gray_p": 0.0, "jitter_p": 1.0}
    )
    n_ref, n_ours = 1536, 6144
    ref = view_features(per_image_views(cfg, n_ref), cfg)
    ours = view_features(batched_views(cfg, n_ours), cfg)
    limit = ks_threshold(n_ref, n_ours)
    assert max_ks(ref, ours) < limit
    # power: wrong ranges / a missing op are caught by the same statistic
    for wrong in ({"brightness": 0.8}, {"contrast": 0.8}, {"hue": 0.0}, {"jitter_p": 0.6}):
        bad = cfg.replace(**wrong)
        assert max_ks(ref, view_features(batched_views(bad, n_ours, seed=3), bad)) > limit, wrong


def test_cifar_recipe_distribution_matches_per_image():
    cfg = cifar_views()[1]  # crop, flip, jitter p 0.8, gray 0.2, solarize 0.2, normalize
    n_ref, n_ours = 1024, 4096
    ref_views, our_views = per_image_views(cfg, n_ref), batched_views(cfg, n_ours)
    assert ref_views.shape[1:] == our_views.shape[1:] == (3, 32, 32)
    ref, ours = view_features(ref_views, cfg), view_features(our_views, cfg)
    limit = ks_threshold(n_ref, n_ours)
    assert max_ks(ref, ours) < limit
    # pooled per-channel pixel mean and std of all outputs agree (z-score of the difference)
    m_ref, m_ours = ref[:, :3].mean(0), ours[:, :3].mean(0)
    se = (ref[:, :3].var(0) / n_ref + ours[:, :3].var(0) / n_ours).sqrt()
    assert bool(((m_ref - m_ours).abs() / se < 4.5).all())
    s_ref = ref_views.transpose(0, 1).reshape(3, -1).std(1)
    s_ours = our_views.transpose(0, 1).reshape(3, -1).std(1)
    torch.testing.assert_close(s_ours, s_ref, atol=0.0, rtol=0.06)  # seed spread ~2.5%
    # grayscale outputs: 20% in both engines
    for views, n in ((ref_views, n_ref), (our_views, n_ours)):
        x = views * torch.tensor(cfg.std).view(1, 3, 1, 1) + torch.tensor(cfg.mean).view(1, 3, 1, 1)
        gray = (x - x[:, :1]).abs().amax(dim=(1, 2, 3)) < 1e-5
        assert_proportion(int(gray.sum()), n, 0.2, "grayscale")
    bad = cfg.replace(brightness=0.8)
    assert max_ks(ref, view_features(batched_views(bad, n_ours, seed=3), bad)) > limit


# ---------------------------------------------------------------------------------------------
# 4. bicubic resizing and colour-before-crop, op by op and end to end
# ---------------------------------------------------------------------------------------------

BICUBIC = TF.InterpolationMode.BICUBIC


def test_bicubic_resized_crop_matches_torchvision(rand_batch):
    boxes = torch.tensor(
        [[2, 3, 10, 12], [0, 0, 20, 24], [5, 1, 7, 9], [1, 4, 15, 6], [0, 4, 20, 20], [3, 3, 3, 3]]
    )

    def reference(images: torch.Tensor, size: int) -> torch.Tensor:
        return torch.stack(
            [
                TF.resized_crop(img, *b.tolist(), [size, size], BICUBIC, antialias=True)
                for img, b in zip(images, boxes, strict=True)
            ]
        )

    # float: torchvision's filter exactly, up- (32) and downsampling (8, 5: antialiased)
    for size in (32, 8, 5):
        got = resized_crop(rand_batch, boxes, size, "bicubic")
        torch.testing.assert_close(got, reference(rand_batch, size), atol=2e-6, rtol=0)
    # uint8 (the training path): torchvision's uint8 kernel clamps after each pass, as
    # clamp=255 does; it also rounds, hence one level of tolerance (random pixels, the worst
    # case for the cubic overshoot that the clamping removes)
    levels = (rand_batch * 255).round()
    got = resized_crop(levels, boxes, 32, "bicubic", clamp=255.0)
    want = reference(levels.to(torch.uint8), 32).float()
    assert float((got - want).abs().max()) <= 1.5
    unclamped = resized_crop(levels, boxes, 32, "bicubic")
    assert float((unclamped - want).abs().max()) > 5  # the clamping matters
    # bicubic is not bilinear
    bilinear = resized_crop(rand_batch, boxes, 32)
    assert float((bilinear - reference(rand_batch, 32)).abs().max()) > 0.05
    with pytest.raises(ValueError, match=r"interpolation must be one of bilinear\|bicubic"):
        resized_crop(rand_batch, boxes, 32, "nearest")


def test_per_image_pipeline_uses_the_interpolation():
    for mode, want in (("bilinear", TF.InterpolationMode.BILINEAR), ("bicubic", BICUBIC)):
        t = build_transform(AugmentConfig(interpolation=mode))
        crop = next(op for op in t.transforms if isinstance(op, v2.RandomResizedCrop))
        assert crop.interpolation == want


def test_color_first_op_order_in_both_engines():
    cfg = AugmentConfig(interpolation="bicubic", color_first=True, blur_p=0.5, solarize_p=0.5)
    kinds = [type(op).__name__ for op in build_transform(cfg).transforms]
    assert kinds == [
        "ToImage",
        "ToDtype",
        "RandomApply",  # colour jitter on the whole image
        "RandomGrayscale",
        "ToDtype",  # back to uint8, as the authors' PIL pipeline
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "ToDtype",
        "RandomApply",  # blur
        "RandomSolarize",
        "Normalize",
        "ToPureTensor",
    ]
    default = [
        type(op).__name__ for op in build_transform(cfg.replace(color_first=False)).transforms
    ]
    assert default[:5] == [
        "ToImage",
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "ToDtype",
        "RandomApply",
    ]
    # batched: contrast (the one colour op that does not commute with cropping) blends towards
    # the whole image's mean luma, then the crop is taken; samples one by one against
    # torchvision's functional ops
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 20, 24, generator=g)
    only_contrast = {**NO_NORM, "brightness": 0.0, "saturation": 0.0, "hue": 0.0, "gray_p": 0.0}
    aug = BatchedAugment(AugmentConfig(**only_contrast, jitter_p=1.0, flip_p=0.0, color_first=True))
    params = aug.sample_params(4, 20, 24, generator=torch.Generator().manual_seed(1))
    got = aug.apply(x.clone(), params)
    factors = params["factors"][:, 1]
    want = torch.stack(
        [
            TF.resized_crop(
                TF.adjust_contrast(img, float(f)), *b.tolist(), [32, 32], antialias=True
            )
            for img, f, b in zip(x, factors, params["boxes"], strict=True)
        ]
    )
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)
    crop_first = BatchedAugment(aug.config.replace(color_first=False)).apply(x.clone(), params)
    assert float((crop_first - want).abs().max()) > 0.01
    # the input batch is not modified (views share it)
    torch.testing.assert_close(
        x, torch.rand(4, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    )


def rich_features(views: torch.Tensor) -> torch.Tensor:
    """``(N, 8)`` per-view statistics of normalised outputs: channel means (3) and stds (3),
    left-right asymmetry of the mean (flip; the test image's left side is red) and mean
    squared horizontal gradient (sharpness: interpolation, blur)."""
    half = views.shape[-1] // 2
    asym = views[..., :half].mean(dim=(1, 2, 3)) - views[..., -half:].mean(dim=(1, 2, 3))
    sharp = (views[..., 1:] - views[..., :-1]).square().mean(dim=(1, 2, 3))
    mean, std = views.mean(dim=(2, 3)), views.std(dim=(2, 3))
    return torch.cat([mean, std, asym[:, None], sharp[:, None]], dim=1)


def test_bicubic_distribution_matches_per_image_and_bilinear_is_rejected():
    cfg = AugmentConfig(
        **{**NO_NORM, "flip_p": 0.0, "jitter_p": 0.0, "gray_p": 0.0, "interpolation": "bicubic"}
    )
    n_ref, n_ours = 1024, 4096
    limit = ks_threshold(n_ref, n_ours)
    ref = rich_features(per_image_views(cfg, n_ref))
    assert max_ks(ref, rich_features(batched_views(cfg, n_ours))) < limit
    # power: bilinear in either engine is caught by the same statistics
    bilinear = cfg.replace(interpolation="bilinear")
    assert max_ks(ref, rich_features(batched_views(bilinear, n_ours))) > limit
    assert max_ks(rich_features(per_image_views(bilinear, n_ref)), ref) > limit


def test_color_first_distribution_matches_per_image_and_crop_first_is_rejected():
    # contrast 0.9: strong enough for the order to show in 512 samples
    cfg = AugmentConfig(
        **{
            **NO_NORM,
            "flip_p": 0.0,
            "gray_p": 0.0,
            "jitter_p": 1.0,
            "brightness": 0.0,
            "contrast": 0.9,
            "saturation": 0.0,
            "hue": 0.0,
            "interpolation": "bicubic",
            "color_first": True,
        }
    )
    n_ref, n_ours = 512, 2048
    limit = ks_threshold(n_ref, n_ours)
    ref = rich_features(per_image_views(cfg, n_ref))
    assert max_ks(ref, rich_features(batched_views(cfg, n_ours))) < limit
    # power: colour after the crop in either engine is caught
    crop_first = cfg.replace(color_first=False)
    assert max_ks(ref, rich_features(batched_views(crop_first, n_ours))) > limit
    ref_crop_first = rich_features(per_image_views(crop_first, n_ref))
    assert max_ks(ref_crop_first, rich_features(batched_views(cfg, n_ours))) > limit


# ---------------------------------------------------------------------------------------------
# 5. every preset: both engines give the same distribution
# ---------------------------------------------------------------------------------------------

_PRESET_MAX_CROP = 32
_AGREEMENT: dict[AugmentConfig, float] = {}  # aliases and shared views are measured once


def preset_test_views(name: str) -> list[AugmentConfig]:
    """The distinct views of preset ``name`` (CIFAR-10 statistics), with crops scaled so the
    largest is 32 (12 at least: the 23-tap blur needs it)."""
    fn = PRESETS[name]
    views = fn("cifar10", 6) if name == "intl_multicrop" else fn("cifar10", 2)
    top = max(v.crop_size for v in views)
    if top > _PRESET_MAX_CROP:
        views = [
            v.replace(crop_size=max(12, round(v.crop_size * _PRESET_MAX_CROP / top))) for v in views
        ]
    return list(dict.fromkeys(views))


def _gray_count(views: torch.Tensor, cfg: AugmentConfig) -> int:
    x = views * torch.tensor(cfg.std).view(1, 3, 1, 1) + torch.tensor(cfg.mean).view(1, 3, 1, 1)
    return int(((x - x[:, :1]).abs().amax(dim=(1, 2, 3)) < 1e-5).sum())


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_gives_the_same_distribution_in_both_engines(name):
    n_ref, n_ours = 256, 1024
    limit = ks_threshold(n_ref, n_ours, c=2.3)
    for cfg in preset_test_views(name):
        if cfg not in _AGREEMENT:
            ref_views, our_views = per_image_views(cfg, n_ref), batched_views(cfg, n_ours)
            assert ref_views.shape[1:] == our_views.shape[1:] == (3, cfg.crop_size, cfg.crop_size)
            ref, ours = rich_features(ref_views), rich_features(our_views)
            # pooled channel means agree (z-score of the difference)
            se = (ref[:, :3].var(0) / n_ref + ours[:, :3].var(0) / n_ours).sqrt()
            assert bool(((ref[:, :3].mean(0) - ours[:, :3].mean(0)).abs() / se < 4.5).all()), cfg
            for views, n in ((ref_views, n_ref), (our_views, n_ours)):
                gray = _gray_count(views, cfg)
                if cfg.gray_p == 0:
                    assert gray == 0, cfg
                else:
                    assert_proportion(gray, n, cfg.gray_p, f"{name} grayscale")
            _AGREEMENT[cfg] = max_ks(ref, ours)
        assert _AGREEMENT[cfg] < limit, (name, cfg)


# ---------------------------------------------------------------------------------------------
# API: dtypes, shapes, reproducibility, device
# ---------------------------------------------------------------------------------------------


def test_uint8_and_float_inputs_give_the_same_views():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 40, 36), dtype=torch.uint8, generator=g)
    aug = BatchedMultiView(cifar_views())
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x.float() / 255, torch.Generator().manual_seed(5))
    c = aug(x.double() / 255, torch.Generator().manual_seed(5))
    assert len(a) == 2
    for va, vb, vc in zip(a, b, c, strict=True):
        assert va.shape == (16, 3, 32, 32) and va.dtype == torch.float32
        assert vc.dtype == torch.float32
        torch.testing.assert_close(va, vb, atol=1e-5, rtol=0)
        torch.testing.assert_close(va, vc, atol=1e-5, rtol=0)


def test_reproducible_with_a_seeded_generator():
    x = IMG.expand(64, -1, -1, -1)
    aug = BatchedMultiView(imagenet_views(crop_size=24))  # blur and solarize included
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    c = aug(x, torch.Generator().manual_seed(4))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])  # views are independent draws
    torch.manual_seed(0)
    d = aug(x)
    torch.manual_seed(0)
    assert torch.equal(d[1], aug(x)[1])  # the default generator works too


def test_device_agnostic_every_tensor_follows_the_input():
    # Any tensor created without device=... would land on "meta" here and the op mixing it
    # with the CPU batch would raise: the module must take the device from its input.
    x = torch.randint(0, 256, (8, 3, 48, 48), dtype=torch.uint8)
    views = [*imagenet_views(crop_size=24), *multicrop_views(cifar_views(), 2, small_size=16)]
    views.append(
        PRESETS["wmse_cifar"]("cifar10", 1)[0].replace(crop_size=20)
    )  # bicubic, colour first
    aug = BatchedMultiView(views)
    with torch.device("meta"):
        out_gen = aug(x, torch.Generator().manual_seed(0))
        out_default = aug(x)
    assert [o.device.type for o in out_gen + out_default] == ["cpu"] * 14
    assert [o.shape[-1] for o in out_gen] == [24, 24, 32, 32, 16, 16, 20]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_input_stays_on_cuda_and_matches_cpu():
    x = IMG.expand(32, -1, -1, -1).contiguous()
    views = [*imagenet_views(crop_size=24), PRESETS["wmse_cifar"]("cifar10", 1)[0]]
    aug = BatchedMultiView(views)
    cpu = aug(x, torch.Generator().manual_seed(0))
    gpu = aug(x.cuda(), torch.Generator().manual_seed(0))
    assert all(v.is_cuda for v in gpu)
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=0)


def test_presets_and_multicrop():
    cifar = cifar_views()
    assert [c.solarize_p for c in cifar] == [0.0, 0.2] and cifar[0].crop_size == 32
    assert (cifar[0].scale_min, cifar[0].jitter_p, cifar[0].gray_p) == (0.08, 0.8, 0.2)
    assert (cifar[0].brightness, cifar[0].contrast, cifar[0].saturation, cifar[0].hue) == (
        0.4,
        0.4,
        0.2,
        0.1,
    )
    assert cifar_views("cifar100")[0].mean[0] == pytest.approx(0.5071)
    inet = imagenet_views()
    assert [c.blur_p for c in inet] == [1.0, 0.1] and [c.solarize_p for c in inet] == [0.0, 0.2]
    assert inet[0].crop_size == 224 and inet[0].blur_kernel_size == 23
    dig = digits_views()
    assert dig[0].flip_p == 0.0 and dig[0].hue == 0.0 and dig[0].scale_min == 0.3
    mc = multicrop_views(inet, 6, large_scale=(0.14, 1.0))
    assert [c.crop_size for c in mc] == [224, 224] + [96] * 6
    assert mc[0].scale_min == 0.14 and mc[2].scale_max == 0.14
    x = IMG.expand(4, -1, -1, -1)
    small = multicrop_views(cifar, 3, small_size=12)
    out = BatchedMultiView(small)(x)
    per_image = MultiViewTransform(small)(IMG)
    assert [v.shape for v in out] == [(4, 3, 32, 32)] * 2 + [(4, 3, 12, 12)] * 3
    assert [v.shape for v in per_image] == [(3, 32, 32)] * 2 + [(3, 12, 12)] * 3
    # per-image pipelines contain exactly the configured ops
    kinds = [type(t).__name__ for t in build_transform(cifar[0]).transforms]
    assert "RandomSolarize" not in kinds and "RandomApply" in kinds
    assert "RandomSolarize" in [type(t).__name__ for t in build_transform(cifar[1]).transforms]


def test_multiview_transform_accepts_pil_and_tensors():
    mv = MultiViewTransform(cifar_views())
    pil = Image.fromarray(IMG.permute(1, 2, 0).numpy())
    for image in (pil, IMG, IMG.float() / 255):
        views = mv(image)
        assert len(views) == 2
        assert all(type(v) is torch.Tensor and v.dtype == torch.float32 for v in views)
        assert all(v.shape == (3, 32, 32) for v in views)


def test_config_validation_names_the_key():
    with pytest.raises(ValueError, match=r"AugmentConfig\.flip_p must be a probability"):
        AugmentConfig(flip_p=1.5)
    with pytest.raises(ValueError, match=r"AugmentConfig\.hue"):
        AugmentConfig(hue=0.7)
    with pytest.raises(ValueError, match=r"AugmentConfig\.scale_min"):
        AugmentConfig(scale_min=0.0)
    with pytest.raises(ValueError, match=r"AugmentConfig\.blur_kernel_size"):
        AugmentConfig(blur_kernel_size=4)
    with pytest.raises(ValueError, match=r"AugmentConfig\.std"):
        AugmentConfig(std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="unknown AugmentConfig key 'jitter'"):
        AugmentConfig.from_dict({"jitter": 0.4})
    views = views_from_dicts([{"crop_size": 16, "mean": [0.5, 0.5, 0.5]}, AugmentConfig()])
    assert views[0].crop_size == 16 and views[0].mean == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="solarize_p must be a float or 2 floats"):
        cifar_views(solarize_p=(0.0, 0.1, 0.2))


def test_bad_input_raises_one_line_value_error():
    aug = BatchedAugment(AugmentConfig())
    for bad in (torch.zeros(3, 32, 32), torch.zeros(2, 1, 32, 32), torch.zeros(2, 3, 8, 8).long()):
        with pytest.raises(ValueError, match="images must") as err:
            aug(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"images must be a torch\.Tensor"):
        aug([[0.0]])


def test_per_image_pipeline_is_torchvision_v2():
    t = build_transform(imagenet_views(crop_size=24)[0])
    assert isinstance(t, v2.Compose)
    kinds = [type(op).__name__ for op in t.transforms]
    assert kinds[:2] == ["ToImage", "RandomResizedCrop"] and kinds[-2:] == [
        "Normalize",
        "ToPureTensor",
    ]


# ---------------------------------------------------------------------------------------------
# Presets: values, sources, view counts
# ---------------------------------------------------------------------------------------------

#: "Source: owner/repo ``path/file.py``" (or the project itself, for the digits).
_SOURCE = re.compile(r"Source: (this project|[\w-]+/[\w.-]+ ``[\w./-]+\.(py|yaml)``)")


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_docstring_names_its_source(name):
    doc = PRESETS[name].__doc__ or ""
    assert _SOURCE.search(doc), f"preset {name!r}: no 'Source: owner/repo ``path``' line"
    assert f"``{name}``" in doc, f"preset {name!r}: its docstring does not name it"


def _summary(v: AugmentConfig) -> tuple:
    return (
        v.crop_size,
        (v.scale_min, v.scale_max),
        v.interpolation,
        (v.brightness, v.contrast, v.saturation, v.hue, v.jitter_p),
        v.gray_p,
        v.color_first,
        v.blur_p,
        v.solarize_p,
        v.flip_p,
    )


def test_preset_values_follow_their_sources():
    # (brightness, contrast, saturation, hue, jitter_p)
    jit_byol = (0.4, 0.4, 0.2, 0.1, 0.8)
    jit_weak = (0.4, 0.4, 0.4, 0.1, 0.8)
    jit_strong = (0.8, 0.8, 0.8, 0.2, 0.8)
    full = (0.08, 1.0)
    expected = {
        "intl_cifar": [
            (32, full, "bicubic", jit_byol, 0.2, False, 0.0, 0.0, 0.5),
            (32, full, "bicubic", jit_byol, 0.2, False, 0.0, 0.2, 0.5),
        ],
        "intl_imagenet": [
            (224, full, "bicubic", jit_byol, 0.2, False, 1.0, 0.0, 0.5),
            (224, full, "bicubic", jit_byol, 0.2, False, 0.1, 0.2, 0.5),
        ],
        "wmse_cifar": [(32, (0.2, 1.0), "bicubic", jit_weak, 0.1, True, 0.0, 0.0, 0.5)] * 2,
        "wmse_stl10": [(64, (0.2, 1.0), "bicubic", jit_weak, 0.1, True, 0.0, 0.0, 0.5)] * 2,
        "wmse_tiny_imagenet": [(64, (0.2, 1.0), "bicubic", jit_weak, 0.1, True, 0.0, 0.0, 0.5)] * 2,
        "cwrgp_imagenet": [(224, (0.2, 1.0), "bilinear", jit_weak, 0.2, False, 0.5, 0.0, 0.5)] * 4,
        "solo_cifar_byol": [
            (32, full, "bicubic", jit_byol, 0.2, False, 0.0, 0.0, 0.5),
            (32, full, "bicubic", jit_byol, 0.2, False, 0.0, 0.2, 0.5),
        ],
        "solo_cifar_simclr": [(32, full, "bicubic", jit_strong, 0.2, False, 0.5, 0.0, 0.5)] * 2,
        "solo_cifar_mocov2plus": [(32, full, "bicubic", jit_weak, 0.2, False, 0.5, 0.0, 0.5)] * 2,
        "solo_cifar_vicreg": [(32, (0.2, 1.0), "bicubic", jit_byol, 0.2, False, 0.0, 0.1, 0.5)] * 2,
        "solo_cifar_wmse": [(32, (0.2, 1.0), "bicubic", jit_strong, 0.2, False, 0.0, 0.0, 0.5)] * 2,
    }
    for name, views in expected.items():
        got = PRESETS[name]("cifar10", len(views))
        assert [_summary(v) for v in got] == views, name
    for alias, target in (
        ("solo_cifar_barlow", "solo_cifar_byol"),
        ("solo_cifar_dino", "solo_cifar_byol"),
        ("solo_cifar_swav", "solo_cifar_simclr"),
        ("solo_cifar_simsiam", "solo_cifar_mocov2plus"),
    ):
        assert PRESETS[alias] is PRESETS[target]
    mc = PRESETS["intl_multicrop"]("imagefolder", 6)
    assert [v.crop_size for v in mc] == [224, 224, 192, 160, 128, 96]
    assert [v.scale_min for v in mc] == [0.2, 0.2, 0.171, 0.143, 0.114, 0.086]
    assert [v.scale_max for v in mc] == [1.0, 1.0, 0.857, 0.714, 0.571, 0.429]
    assert {(v.blur_p, v.solarize_p, v.interpolation) for v in mc} == {(0.5, 0.1, "bicubic")}
    # normalisation: the sources' own
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for name in ("intl_imagenet", "intl_multicrop", "cwrgp_imagenet"):
        assert {(v.mean, v.std) for v in PRESETS[name]("cifar10", 6 if "multi" in name else 2)} == {
            imagenet
        }
    assert PRESETS["wmse_cifar"]("cifar10")[0].std == (0.2023, 0.1994, 0.2010)
    assert PRESETS["wmse_cifar"]("cifar100")[0].mean == (0.5071, 0.4867, 0.4408)
    assert PRESETS["wmse_stl10"]("stl10")[0].std == (0.27, 0.26, 0.27)
    assert PRESETS["wmse_tiny_imagenet"]("imagefolder")[0].mean == (0.480, 0.448, 0.398)
    assert PRESETS["intl_cifar"]("cifar100")[0].std == (0.2673, 0.2564, 0.2762)
    assert PRESETS["solo_cifar_simclr"]("cifar10")[0].std == (0.2470, 0.2435, 0.2616)
    # blur: sigma U(0.1, 2) pixels with a 23-tap kernel (PIL's GaussianBlur(radius=sigma))
    assert PRESETS["solo_cifar_simclr"]()[0].blur_sigma == (0.1, 2.0)
    assert PRESETS["solo_cifar_simclr"]()[0].blur_kernel_size == 23
    # W-MSE's ratio range
    w = PRESETS["wmse_cifar"]()[0]
    assert (w.ratio_min, w.ratio_max) == (0.75, 4 / 3)


def test_original_presets_are_unchanged():
    # data.views: auto | cifar | imagenet | digits mean what they meant before the registry
    assert PRESETS["cifar"]("cifar10", 2) == cifar_views("cifar10")
    assert PRESETS["cifar"]("stl10", 2) == cifar_views("stl10", crop_size=96)
    assert PRESETS["cifar"]("digits", 2) == cifar_views("cifar10")
    assert PRESETS["cifar"]("cifar10", 2, solarize_p=[0.1, 0.3]) == cifar_views(
        solarize_p=(0.1, 0.3)
    )
    assert PRESETS["imagenet"]("imagefolder", 2) == imagenet_views()
    assert PRESETS["digits"]("digits", 3) == digits_views(num_views=3)
    assert PRESETS["auto"]("digits", 2) == digits_views()
    assert PRESETS["auto"]("imagefolder", 2) == imagenet_views()
    assert PRESETS["auto"]("cifar100", 2) == cifar_views("cifar100")
    legacy = cifar_views()[0]
    assert (legacy.interpolation, legacy.color_first) == ("bilinear", False)


def test_fixed_count_presets_reject_another_num_views():
    for name, n in (
        ("intl_multicrop", 6),
        ("intl_cifar", 2),
        ("intl_imagenet", 2),
        ("solo_cifar_byol", 2),
    ):
        assert len(PRESETS[name]("cifar10", n)) == n
        with pytest.raises(PresetError, match=f"preset '{name}' defines exactly {n} views") as err:
            PRESETS[name]("cifar10", n + 2)
        assert err.value.key == "num_views" and "\n" not in str(err.value)
    assert len(PRESETS["wmse_cifar"]("cifar10", 4)) == 4  # symmetric presets repeat their view
    assert len(PRESETS["cwrgp_imagenet"]()) == 4  # CW-RGP ImageNet: num_samples 4
    with pytest.raises(PresetError, match="unknown preset 'nope'; known: auto, cifar") as err:
        preset_views("nope")
    assert err.value.key == "views"


def test_override_views():
    views = PRESETS["intl_cifar"]("cifar10", 2)
    assert override_views(views, []) == views
    both = override_views(views, [{"interpolation": "bilinear", "gray_p": 0.5}])
    assert [(v.interpolation, v.gray_p, v.solarize_p) for v in both] == [
        ("bilinear", 0.5, 0.0),
        ("bilinear", 0.5, 0.2),
    ]
    each = override_views(views, [{"solarize_p": 0.1}, {"color_first": True, "mean": [0.5] * 3}])
    assert [v.solarize_p for v in each] == [0.1, 0.2] and each[1].color_first
    assert each[1].mean == (0.5, 0.5, 0.5) and each[0].mean == views[0].mean
    cases = [
        ([{}, {}, {}], None, "", "3 entries for 2 views"),
        ([{"jitter": 0.4}], 0, "jitter", "unknown field; known: crop_size"),
        ([{}, {"gray_p": 1.5}], 1, "gray_p", "must be a probability in"),
        ([{"interpolation": "nearest"}], 0, "interpolation", "must be one of bilinear|bicubic"),
        ([{"crop_size": "big"}], 0, "crop_size", "must be an integer"),
        ([{"color_first": "yes"}], 0, "color_first", "must be true or false"),
        ([{"brightness": "lots"}], 0, "brightness", "must be a number"),
        ([{"mean": 0.5}], 0, "mean", "must be a sequence of numbers"),
        ([[0.1]], 0, "", "must be a mapping"),
    ]
    for overrides, index, key, rule in cases:
        with pytest.raises(ViewOverrideError) as err:
            override_views(views, overrides)
        e = err.value
        assert (e.index, e.key) == (index, key) and rule in e.rule, (overrides, e.rule)
        assert "\n" not in str(e)
