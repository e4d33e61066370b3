"""Hard-whitening losses with sub-batches: W-MSE (Ermolov et al. 2021), CW-RGP (Weng et al.)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from specssl.losses._views import normalized_mse, parse_views, view_pairs
from specssl.losses.base import LossResult, SSLLoss, Transform
from specssl.spectral import centre_channels, random_group_whiten, sub_batch_whiten, whiten
from specssl.spectral.common import Axis, check_axis, compute_dtype, full_precision

WhitenFn = Callable[[torch.Tensor], torch.Tensor]


def sub_batched_whitening_loss(
    zs: list[torch.Tensor],
    whiten_fn: WhitenFn,
    w_size: int | None,
    w_iter: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The W-MSE objective shared by W-MSE, CW-RGP and sub-batched ST-power.

    For each of ``w_iter`` rounds draw one permutation of the ``m`` rows, split it into
    sub-batches of ``w_size`` rows, whiten every view's sub-batches independently with
    ``whiten_fn`` (``(k, w, d) -> (k, w, d)``), and average the normalized MSE
    ``2 - 2 mean cos`` over all view pairs and rounds. No stop-gradient on either side
    (faithful to the W-MSE paper).
    """
    m = zs[0].shape[0]
    w_size = m if w_size is None else w_size
    if w_iter < 1:
        raise ValueError(f"w_iter must be >= 1, got {w_iter}")
    pairs = view_pairs(len(zs))
    total = zs[0].new_zeros((), dtype=compute_dtype(zs[0]))
    for _ in range(w_iter):
        perm = torch.randperm(m, generator=generator).to(zs[0].device)
        whitened = [sub_batch_whiten(z.to(compute_dtype(z)), w_size, perm, whiten_fn) for z in zs]
        total = total + sum(normalized_mse(whitened[i], whitened[j]) for i, j in pairs)
    return total / (w_iter * len(pairs))


class WMSELoss(SSLLoss):
    """W-MSE: Cholesky batch whitening of each view, then normalized MSE between views.

    ``Ẑ_v = Z_c L^{-T}`` with ``(1 - eps) Σ + eps I = L L^T`` computed on sub-batches of
    ``w_size`` rows, averaged over ``w_iter`` random sub-batch partitions (Ermolov et al.,
    Eqn. 2 and Algorithm 1). W-MSE's CIFAR setting: embedding 64, ``w_size = 128``,
    ``w_iter = 1``.

    Args:
        w_size: rows per whitening sub-batch (``None`` = whole batch); must divide ``m`` and
            exceed ``d`` on the batch axis.
        w_iter: number of random sub-batch partitions per step.
        eps: covariance shrinkage (W-MSE default 0).
        axis: ``"batch"`` (W-MSE) or ``"channel"``.
        method: whitening method name for :func:`specssl.spectral.whiten`.

    The monitored ``Ẑ`` is the whitening of the whole sample (:meth:`spectral_transform`).
    """

    def __init__(
        self,
        w_size: int | None = None,
        w_iter: int = 1,
        eps: float = 0.0,
        axis: Axis = "batch",
        method: str = "cholesky",
    ) -> None:
        super().__init__()
        check_axis(axis)
        self.w_size, self.w_iter, self.eps, self.axis, self.method = (
            w_size,
            w_iter,
            eps,
            axis,
            method,
        )

    def whiten_sub_batches(self, x: torch.Tensor) -> torch.Tensor:
        return whiten(x, self.method, self.axis, eps=self.eps, check_finite=False)

    def spectral_transform(self) -> Transform:
        return partial(whiten, method=self.method, axis=self.axis, eps=self.eps)

    def compute(self, *views: torch.Tensor | list[torch.Tensor]) -> LossResult:
        zs = parse_views(views, type(self).__name__)
        with full_precision(zs[0]):
            loss = sub_batched_whitening_loss(zs, self.whiten_sub_batches, self.w_size, self.w_iter)
        return LossResult(loss)

    def extra_repr(self) -> str:
        return (
            f"w_size={self.w_size}, w_iter={self.w_iter}, eps={self.eps}, axis={self.axis}, "
            f"method={self.method}"
        )


class CWRGPLoss(WMSELoss):
    """CW-RGP: channel whitening with random group partition (Weng et al., NeurIPS 2022).

    For every whitening sub-batch ``Z: (w, d)`` of every view (the CW-RGP poster's ``Z_C``
    formula and the authors' ``Whitening2d``): centre each sample over all ``d`` channels once,
    ``Z_C = Z - mean_j Z[:, j]``; draw a fresh random permutation of the channels and split it
    into ``groups`` contiguous groups; whiten each group ``Z_g: (w, d/g)`` with its own ``w x w``
    matrix ``Σ_g = Z_g Z_g^T / (d/g - 1)`` (ZCA, ``Σ_g^{-1/2} Z_g``, as the authors' code; no
    re-centring inside a group); un-permute; then the W-MSE normalized MSE between views,
    averaged over all view pairs and ``w_iter`` rounds.

    Args:
        groups: number of channel groups (``d`` must be divisible by it).
        w_size, w_iter, eps: as in :class:`WMSELoss`.
        axis: ``"channel"`` (CW) by default; ``"batch"`` gives batch whitening with groups.
        method: ``"zca"`` (authors' code) or any :func:`specssl.spectral.whiten` method.
        random_groups: ``False`` gives fixed contiguous groups (the poster's CW-GP ablation).
        centre: ``"global"`` (authors) centres over all ``d`` channels before grouping;
            ``"group"`` centres each group over its own ``d/g`` channels (this library before
            2026-12-02). Identical on the batch axis and for ``groups=1``.
        permute: ``"per_sub_batch"`` (authors) draws a permutation per sub-batch and view;
            ``"per_view"`` one per view per round, shared by its sub-batches (before
            2026-12-02). See docs/fidelity.md.
    """

    CENTRES = ("global", "group")
    PERMUTES = ("per_sub_batch", "per_view")

    def __init__(
        self,
        groups: int = 2,
        w_size: int | None = None,
        w_iter: int = 1,
        eps: float = 0.0,
        axis: Axis = "channel",
        method: str = "zca",
        random_groups: bool = True,
        centre: str = "global",
        permute: str = "per_sub_batch",
    ) -> None:
        super().__init__(w_size=w_size, w_iter=w_iter, eps=eps, axis=axis, method=method)
        if centre not in self.CENTRES:
            raise ValueError(f"centre must be one of {self.CENTRES}, got {centre!r}")
        if permute not in self.PERMUTES:
            raise ValueError(f"permute must be one of {self.PERMUTES}, got {permute!r}")
        self.groups, self.random_groups = groups, random_groups
        self.centre, self.permute = centre, permute

    def spectral_transform(self) -> Transform:
        """:meth:`whiten_sub_batches` of the sample as one sub-batch."""
        return self.whiten_sub_batches

    def whiten_sub_batches(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten ``x: (..., w, d)``; every leading index is one sub-batch."""
        pre_centre = self.centre == "global" and self.axis == "channel" and self.groups > 1
        if pre_centre:
            x = centre_channels(x)
        kwargs = {"eps": self.eps, "check_finite": False, "centre": not pre_centre}
        if self.random_groups and self.groups > 1:
            per_problem = self.permute == "per_sub_batch"
            return random_group_whiten(
                x, self.groups, self.method, self.axis, per_problem=per_problem, **kwargs
            )
        return whiten(x, self.method, self.axis, groups=self.groups, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"groups={self.groups}, random_groups={self.random_groups}, centre={self.centre}, "
            f"permute={self.permute}, " + super().extra_repr()
        )
