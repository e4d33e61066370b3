"""Shared helpers of the multi-view losses: view parsing, validation, pairing, cosine terms."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
import torch.nn.functional as F

from specssl.spectral.common import check_embedding


def parse_views(
    views: tuple, loss_name: str, *, min_batch: int = 1, batch_use: str = ""
) -> list[torch.Tensor]:
    """Accept ``loss(z1, z2, ...)`` or ``loss([z1, z2, ...])``; validate and return the list.

    Every view must be a finite floating ``(m, d)`` tensor, all of the same shape, with
    ``m >= min_batch`` (``batch_use`` says why, for the message); at least two views. Raises
    ``ValueError`` naming the offending view.
    """
    if (
        len(views) == 1
        and isinstance(views[0], Sequence)
        and not isinstance(views[0], torch.Tensor)
    ):
        views = tuple(views[0])
    if len(views) < 2:
        raise ValueError(f"{loss_name} needs at least 2 views, got {len(views)}")
    for i, z in enumerate(views):
        check_embedding(z, name=f"{loss_name} view {i}")
        if z.dim() != 2:
            raise ValueError(f"{loss_name} view {i} must have shape (m, d), got {tuple(z.shape)}")
        if z.shape != views[0].shape:
            raise ValueError(
                f"{loss_name} views must share one shape (m, d); view 0 is "
                f"{tuple(views[0].shape)}, view {i} is {tuple(z.shape)}"
            )
    if views[0].shape[0] < min_batch:
        raise ValueError(
            f"{loss_name} needs at least {min_batch} samples per view{batch_use}, got shape "
            f"{tuple(views[0].shape)}"
        )
    return list(views)


def view_pairs(n_views: int) -> list[tuple[int, int]]:
    """All unordered pairs ``(i, j)``, ``i < j``, of ``n_views`` views."""
    return list(combinations(range(n_views), 2))


def normalized_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``mean_i ‖a_i/‖a_i‖ - b_i/‖b_i‖‖² = 2 - 2 mean_i cos(a_i, b_i)`` for ``a, b: (m, d)``.

    Computed in float32 or higher. Rows of zeros have cosine 0 (``F.normalize``'s eps).
    """
    dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    a_n = F.normalize(a.to(dtype), dim=-1)
    b_n = F.normalize(b.to(dtype), dim=-1)
    return 2 - 2 * (a_n * b_n).sum(-1).mean()


def mean_pairwise_normalized_mse(views: list[torch.Tensor]) -> torch.Tensor:
    """Average of :func:`normalized_mse` over all view pairs."""
    pairs = view_pairs(len(views))
    return sum(normalized_mse(views[i], views[j]) for i, j in pairs) / len(pairs)
