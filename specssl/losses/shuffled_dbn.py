"""Shuffled-DBN (Hua et al., "On Feature Decorrelation in Self-Supervised Learning", ICCV 2021).

Each view's embedding ``z: (m, d)`` goes through *shuffled decorrelated batch normalisation*:
the ``d`` channels are randomly permuted (a fresh permutation per view and per call), split into
``g`` contiguous groups of ``d / g`` permuted channels, each group is ZCA-whitened over the batch
(its own ``d/g x d/g`` covariance, DBN of Huang et al. 2018), and the channels are put back in
their original order. The loss is the squared distance between the whitened views,

    L = mean_i ‖ẑ_a[i] - ẑ_b[i]‖²                       (Hua et al., Sec. 5; authors' ``l22``)

averaged over all view pairs; ``loss="nmse"`` uses W-MSE's normalized MSE ``2 - 2 mean cos``
instead (the setting of the CW-RGP authors' re-implementation). The whitening is
:func:`specssl.spectral.random_group_whiten` (ZCA on the batch axis), the same code every other
whitening loss of this package runs.

Conventions versus the authors' code (github.com/PatrickHua/FeatureDecorrelationSSL,
``models/utils/shuffled_group_whitening.py``):

* covariance divisor ``m - 1`` (this package's spectral layer) instead of ``m``: our ``Ẑ`` is
  ``sqrt((m-1)/m)`` times theirs, so ``loss="mse"`` is ``(m-1)/m`` times theirs (a constant
  factor, same gradient direction); ``"nmse"`` is identical;
* ``groups=None`` is their automatic rule ``g = ceil(2d / m)`` (group width about half the batch
  size), rounded up to the next divisor of ``d`` so that every group has the same width;
* no eigenvalue regulariser by default (``eps=0``); rank-deficient groups (``d/g >= m``) are
  whitened on their range (pseudo-inverse semantics of the spectral layer) instead of
  producing ``inf``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

import torch

from specssl.losses._views import normalized_mse, parse_views, view_pairs
from specssl.losses.base import LossResult, SSLLoss, Transform
from specssl.spectral import random_group_whiten, whiten
from specssl.spectral.common import compute_dtype, full_precision

Distance = Literal["mse", "nmse"]
DISTANCES = ("mse", "nmse")


def auto_groups(m: int, d: int) -> int:
    """The authors' automatic group count ``ceil(2d / m)``, rounded up to a divisor of ``d``.

    Gives groups of width ``d / g <= m / 2`` (when ``m >= 4``), so each group's ``d/g x d/g``
    batch covariance is estimated from at least twice as many samples as it has channels.
    """
    if m < 1 or d < 1:
        raise ValueError(f"auto_groups needs m >= 1 and d >= 1, got m={m}, d={d}")
    g = max(1, math.ceil(2 * d / m))
    while d % g:
        g += 1
    return g


def squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``mean_i ‖a_i - b_i‖²`` for ``a, b: (m, d)`` (sum over channels, mean over samples)."""
    return (a - b).pow(2).sum(dim=-1).mean()


class ShuffledDBNLoss(SSLLoss):
    """Shuffled-DBN: random-group ZCA batch whitening of each view, then MSE between views.

    Args:
        groups: number of channel groups whitened independently (must divide ``d``); ``None``
            uses :func:`auto_groups` of the batch (the authors' default rule).
        shuffle: draw a fresh channel permutation per view and per call (Shuffled-DBN);
            ``False`` keeps fixed contiguous groups (plain group DBN, the paper's ablation).
        loss: ``"mse"`` — ``mean_i ‖ẑ_a[i] - ẑ_b[i]‖²`` (paper / authors' code) — or
            ``"nmse"`` — ``2 - 2 mean_i cos(ẑ_a[i], ẑ_b[i])``.
        eps: eigenvalue regulariser of the ZCA whitening (``(λ + eps)^{-1/2}``).
        generator: optional ``torch.Generator`` for the permutations (default: the global RNG,
            one ``torch.randperm(d)`` per view in view order).

    Call as ``loss(z1, z2)`` or ``loss([z1, z2, ...])`` with views ``z: (m, d)``; returns a
    float32 (float64 for float64 input) scalar. ``last_groups`` is the group count of the last
    call. The monitored ``Ẑ`` is :meth:`transform` (a fresh channel permutation per call) with
    ``groups``, or with the group count of the last call when ``groups`` is automatic.
    """

    axis = "batch"

    def __init__(
        self,
        groups: int | None = None,
        shuffle: bool = True,
        loss: Distance = "mse",
        eps: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if groups is not None and (
            isinstance(groups, bool) or not isinstance(groups, int) or groups < 1
        ):
            raise ValueError(f"groups must be a positive int or None, got {groups!r}")
        if loss not in DISTANCES:
            raise ValueError(f"loss must be one of {DISTANCES}, got {loss!r}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.groups, self.shuffle, self.loss, self.eps = groups, shuffle, loss, eps
        self.generator = generator
        self.last_groups: int | None = None

    def resolve_groups(self, z: torch.Tensor) -> int:
        """Group count for embeddings ``z: (m, d)``; a ``ValueError`` if it does not divide d."""
        m, d = z.shape[-2:]
        g = auto_groups(m, d) if self.groups is None else int(self.groups)
        if d % g:
            raise ValueError(f"ShuffledDBNLoss: groups={g} must divide the dimension d={d}")
        return g

    def transform(self, z: torch.Tensor, groups: int | None = None) -> torch.Tensor:
        """Shuffled group ZCA batch whitening of one view ``z: (m, d) -> (m, d)``.

        A fresh channel permutation is drawn per call unless ``shuffle=False`` or ``g = 1``.
        """
        g = self.resolve_groups(z) if groups is None else groups
        kwargs = {"eps": self.eps, "check_finite": False}
        if self.shuffle and g > 1:
            return random_group_whiten(z, g, "zca", "batch", generator=self.generator, **kwargs)
        return whiten(z, "zca", "batch", groups=g, **kwargs)

    def spectral_transform(self) -> Transform:
        return partial(self.transform, groups=self.groups or self.last_groups)

    def compute(self, *views: torch.Tensor | list[torch.Tensor]) -> LossResult:
        zs = parse_views(views, type(self).__name__)
        g = self.resolve_groups(zs[0])
        self.last_groups = g
        with full_precision(zs[0]):
            whitened = [self.transform(z.to(compute_dtype(z)), g) for z in zs]
            dist = squared_distance if self.loss == "mse" else normalized_mse
            pairs = view_pairs(len(zs))
            return LossResult(sum(dist(whitened[i], whitened[j]) for i, j in pairs) / len(pairs))

    def extra_repr(self) -> str:
        return f"groups={self.groups}, shuffle={self.shuffle}, loss={self.loss}, eps={self.eps}"
