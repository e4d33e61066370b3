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
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from specssl.data.augment import (
    AugmentConfig,
    BatchedAugment,
    BatchedMultiView,
    MultiViewTransform,
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
    aug = BatchedMultiView(views)
    with torch.device("meta"):
        out_gen = aug(x, torch.Generator().manual_seed(0))
        out_default = aug(x)
    assert [o.device.type for o in out_gen + out_default] == ["cpu"] * 12
    assert [o.shape[-1] for o in out_gen] == [24, 24, 32, 32, 16, 16]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_input_stays_on_cuda_and_matches_cpu():
    x = IMG.expand(32, -1, -1, -1).contiguous()
    aug = BatchedMultiView(imagenet_views(crop_size=24))
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
