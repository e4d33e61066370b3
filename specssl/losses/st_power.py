"""Whitening loss with the explicit power spectral transformation (INTL paper, Section 3.2)."""

from __future__ import annotations

import torch
from torch import nn

from specssl.losses._views import mean_pairwise_normalized_mse, parse_views
from specssl.spectral import power_transform
from specssl.spectral._common import Axis, check_axis, compute_dtype, full_precision


class STPowerLoss(nn.Module):
    """``L = mean over view pairs (2 - 2 mean_i cos(Ẑ_a[i], Ẑ_b[i]))``, ``Ẑ_v = Z_v g(Σ_v)``.

    ``g(λ) = (λ + eps)^{-p}`` (Definition 1), so the output spectrum is ``λ^{1-2p}``: ``p = 0.5``
    is ZCA whitening; the paper finds collapse is avoided for ``p`` near 0.5 (0.45-0.55) and
    appears as ``p`` moves away (Figure 2).

    Args:
        p: power of the transformation.
        axis: ``"batch"`` (the paper's Section 3.2, default) or ``"channel"``.
        eps: eigenvalue regulariser (0 = pseudo-inverse semantics on the null space).
        groups: channel groups transformed independently.
    """

    def __init__(
        self, p: float = 0.5, axis: Axis = "batch", eps: float = 0.0, groups: int = 1
    ) -> None:
        super().__init__()
        check_axis(axis)
        self.p, self.axis, self.eps, self.groups = p, axis, eps, groups

    def forward(self, *views: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        zs = parse_views(views, type(self).__name__)
        with full_precision(zs[0]):
            transformed = [
                power_transform(
                    z.to(compute_dtype(z)),
                    self.p,
                    self.axis,
                    self.eps,
                    groups=self.groups,
                    check_finite=False,
                )
                for z in zs
            ]
            return mean_pairwise_normalized_mse(transformed)

    def extra_repr(self) -> str:
        return f"p={self.p}, axis={self.axis}, eps={self.eps}, groups={self.groups}"
