"""The batched augmentation engine: a whole ``(B, 3, H, W)`` batch on its own device.

:class:`BatchedAugment` / :class:`BatchedMultiView` run an :class:`AugmentConfig` with a few
tensor ops per batch (no per-image Python loop), drawing every random parameter per sample from
the same distributions as torchvision's transforms in :mod:`specssl.data.transforms`; the op
order, and the known differences from the per-image engine, are listed in
:mod:`specssl.data.augment`. The functional ops (``x`` float ``(B, 3, H, W)`` in [0, 1],
factors ``(B,)`` per sample) are exported for reuse and for the tests that compare them with
torchvision's, sample by sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from specssl.data.views import INTERPOLATIONS, AugmentConfig

__all__ = [
    "BatchedAugment",
    "BatchedMultiView",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "gaussian_blur",
    "random_resized_crop_params",
    "resized_crop",
    "rgb_to_grayscale",
    "solarize",
]

# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


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


def resized_crop(
    images: torch.Tensor,
    boxes: torch.Tensor,
    size: int,
    interpolation: str = "bilinear",
    *,
    clamp: float | None = None,
) -> torch.Tensor:
    """Crop ``boxes`` from ``images`` and resize each crop to ``size x size``.

    Matches ``torchvision.transforms.v2.functional.resized_crop(..., interpolation,
    antialias=True)``.

    * ``"bilinear"``: samples sit at the output pixel centres (``align_corners=False``) and
      are clamped to the box, as when cropping first. Upsampling (box side <= ``size``) is
      exact bilinear. Downsampling by ``f = ceil(box side / size)`` averages ``f`` bilinear
      samples per output pixel and axis (a box prefilter standing in for torchvision's
      triangle antialias filter). Samples are grouped by their ``f``; one ``grid_sample`` per
      group (a single one when no crop is downsampled).
    * ``"bicubic"``: exactly torchvision's (= PIL's) separable antialiased cubic filter
      (Keys, ``a = -0.5``; support widened by the scale when downsampling; taps outside the
      box dropped and the weights renormalized), as two batched matrix products per batch
      with ``(B, S, H)`` / ``(B, S, W)`` per-sample weight matrices: horizontal pass first,
      then vertical, like torchvision's uint8 kernel.

    Args:
        images: float ``(B, C, H, W)``.
        boxes: ``(B, 4)`` ``[top, left, h, w]`` in pixels, inside the image.
        size: output side ``S``.
        interpolation: ``"bilinear"`` or ``"bicubic"``.
        clamp: bicubic only: clamp the result of each pass to ``[0, clamp]`` (the value range;
            torchvision's uint8 kernel clamps its intermediate and final uint8 results, which
            removes the cubic overshoot). ``None``: no clamping, as torchvision on float input.

    Returns:
        ``(B, C, S, S)``, dtype of ``images``.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {'|'.join(INTERPOLATIONS)}, got {interpolation!r}"
        )
    if interpolation == "bicubic":
        return _resized_crop_bicubic(images, boxes, size, clamp)
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


def _cubic_aa(t: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with ``a = -0.5`` (PIL's and torch's antialiased
    bicubic)."""
    a = -0.5
    t = t.abs()
    near = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    far = (((t - 5.0) * t + 8.0) * t - 4.0) * a
    return torch.where(t < 1.0, near, torch.where(t < 2.0, far, torch.zeros_like(t)))


def _cubic_weights(
    start: torch.Tensor, length: torch.Tensor, size: int, extent: int
) -> torch.Tensor:
    """``(n, size, extent)`` resampling weights of one axis: row ``i`` holds the normalized
    cubic weights of output pixel ``i`` of the box ``[start, start + length)`` over the input
    positions ``0 .. extent - 1`` (zero outside the box), as torch's
    ``_compute_weights_aa``."""
    scale = length / size  # (n,)
    wide = scale >= 1.0
    support = torch.where(wide, 2.0 * scale, torch.full_like(scale, 2.0))
    inv = torch.where(wide, 1.0 / scale, torch.ones_like(scale))
    i = torch.arange(size, device=start.device, dtype=start.dtype)
    center = scale[:, None] * (i[None, :] + 0.5)  # (n, S), box coordinates
    lo = torch.floor(center - support[:, None] + 0.5).clamp_(min=0)
    hi = torch.minimum(torch.floor(center + support[:, None] + 0.5), length[:, None])
    j = torch.arange(extent, device=start.device, dtype=start.dtype)
    j = j[None, None, :] - start[:, None, None]  # (n, 1, E): input positions in the box
    w = _cubic_aa((j - center[..., None] + 0.5) * inv[:, None, None])
    w = torch.where((j >= lo[..., None]) & (j < hi[..., None]), w, torch.zeros_like(w))
    return w / w.sum(dim=-1, keepdim=True)


def _resized_crop_bicubic(
    images: torch.Tensor, boxes: torch.Tensor, size: int, clamp: float | None
) -> torch.Tensor:
    _, _, hgt, wid = images.shape
    top, left, h, w = boxes.to(device=images.device, dtype=images.dtype).unbind(1)
    wx = _cubic_weights(left, w, size, wid)  # (B, S, W)
    wy = _cubic_weights(top, h, size, hgt)  # (B, S, H)
    out = torch.einsum("bchw,bsw->bchs", images, wx)  # horizontal pass
    if clamp is not None:
        out = out.clamp_(0, clamp)
    out = torch.einsum("bth,bchs->bcts", wy, out)  # vertical pass
    if clamp is not None:
        out = out.clamp_(0, clamp)
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
        ``value_scale`` lie in [0, 1] (``x`` is not modified). Returns ``(B, 3, S, S)``
        float32, normalized. Op order as in :mod:`specssl.data.augment`: crop, flip, colour
        jitter and grayscale, blur, solarize, normalize; with ``color_first`` the colour ops
        run on the whole images before the crop."""
        c = self.config
        if c.color_first:
            # Colour ops on the whole image, then the crop of the (clamped) result; x is
            # shared between views, so it is copied before the in-place colour ops.
            out = (x * value_scale).clamp_(0, 1)
            out = self._colour(out, params)
            out = resized_crop(out, params["boxes"], c.crop_size, c.interpolation, clamp=1.0)
        else:
            clamp = 1.0 / value_scale
            out = resized_crop(x, params["boxes"], c.crop_size, c.interpolation, clamp=clamp)
            if value_scale != 1.0:
                out = out.mul_(value_scale)
        out = out.clamp_(0, 1)
        if c.flip_p > 0:
            out = torch.where(params["flip"].view(-1, 1, 1, 1), out.flip(-1), out)
        if not c.color_first:
            out = self._colour(out, params)
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

    def _colour(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Colour jitter then grayscale of ``x`` (float in [0, 1]; modified in place)."""
        c = self.config
        if c.jitter_enabled:
            x = self._color_jitter(x, params)
        if c.gray_p > 0:
            x = torch.where(params["gray"].view(-1, 1, 1, 1), rgb_to_grayscale(x), x)
        return x

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
