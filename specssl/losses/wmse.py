"""Hard-whitening losses with sub-batches: W-MSE (Ermolov et al. 2021), CW-RGP (Weng et al.)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from specssl.losses._views import normalized_mse, parse_views, view_pairs
from specssl.spectral import random_group_whiten, sub_batch_whiten, whiten
from specssl.spectral._common import Axis, check_axis, compute_dtype, full_precision

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


class WMSELoss(nn.Module):
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

    def forward(self, *views: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        zs = parse_views(views, type(self).__name__)
        with full_precision(zs[0]):
            return sub_batched_whitening_loss(zs, self.whiten_sub_batches, self.w_size, self.w_iter)

    def extra_repr(self) -> str:
        return (
            f"w_size={self.w_size}, w_iter={self.w_iter}, eps={self.eps}, axis={self.axis}, "
            f"method={self.method}"
        )


class CWRGPLoss(WMSELoss):
    """CW-RGP: channel whitening with random group partition (Weng et al., NeurIPS 2022).

    Each view's (sub-)batch is centred over channels, its channels randomly permuted and split
    into ``groups`` groups, each group whitened with its own ``m x m`` covariance (ZCA, as in the
    authors' code), un-permuted; then the W-MSE normalized MSE between views. A fresh channel
    permutation is drawn per view and per round.

    Args:
        groups: number of channel groups (``d`` must be divisible by it).
        w_size, w_iter, eps: as in :class:`WMSELoss`.
        axis: ``"channel"`` (CW) by default; ``"batch"`` gives batch whitening with groups.
        method: ``"zca"`` (authors' code) or any :func:`specssl.spectral.whiten` method.
        random_groups: ``False`` gives fixed contiguous groups (the poster's CW-GP ablation).
    """

    def __init__(
        self,
        groups: int = 2,
        w_size: int | None = None,
        w_iter: int = 1,
        eps: float = 0.0,
        axis: Axis = "channel",
        method: str = "zca",
        random_groups: bool = True,
    ) -> None:
        super().__init__(w_size=w_size, w_iter=w_iter, eps=eps, axis=axis, method=method)
        self.groups, self.random_groups = groups, random_groups

    def whiten_sub_batches(self, x: torch.Tensor) -> torch.Tensor:
        kwargs = {"eps": self.eps, "check_finite": False}
        if self.random_groups and self.groups > 1:
            return random_group_whiten(x, self.groups, self.method, self.axis, **kwargs)
        return whiten(x, self.method, self.axis, groups=self.groups, **kwargs)

    def extra_repr(self) -> str:
        return f"groups={self.groups}, random_groups={self.random_groups}, " + super().extra_repr()
