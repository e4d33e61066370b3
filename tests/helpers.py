"""Small input builders shared by the loss tests (imported as ``from helpers import ...``)."""

from __future__ import annotations

import torch

F64 = torch.float64


def make_views(
    n_views: int,
    m: int,
    d: int,
    seed: int,
    noise: float = 0.3,
    dtype: torch.dtype = F64,
    *,
    min_scale: float = 0.5,
    anisotropic: bool = True,
) -> list[torch.Tensor]:
    """``n_views`` correlated views ``(m, d)``: a shared signal (column scales from
    ``min_scale`` to 2 and a random offset when ``anisotropic``) plus independent noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(m, d, generator=g, dtype=F64)
    if anisotropic:
        base = base * torch.linspace(min_scale, 2.0, d, dtype=F64) + torch.randn(d, generator=g)
    views = [base + noise * torch.randn(m, d, generator=g, dtype=F64) for _ in range(n_views)]
    return [v.to(dtype) for v in views]
