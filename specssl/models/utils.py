"""Small helpers for inspecting networks."""

from __future__ import annotations

from torch import nn

__all__ = ["count_parameters"]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module`` (only ``requires_grad`` ones if asked).

    Parameters shared between submodules are counted once.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
