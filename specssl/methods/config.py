"""The ``method`` section of a run configuration: which method, its heads, loss and options.

A plain dataclass that the methods read; the trainer's :class:`specssl.train.config.Config`
holds one. ``loss`` is passed to the method's loss constructor, ``options`` to the method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class MethodConfig:
    name: str = "intl"
    proj_hidden_dim: int = 2048
    proj_output_dim: int = 2048
    proj_layers: int = 3
    pred_hidden_dim: int = 512  # predictor heads (BYOL, SimSiam)
    loss: dict[str, Any] = field(default_factory=dict)  # loss constructor kwargs
    options: dict[str, Any] = field(default_factory=dict)  # method-specific network options
    # Which views share a BatchNorm batch: auto (the method's authors) | per_view | joint |
    # backbone_per_view (see specssl.methods.base.encode_views)
    forward: str = "auto"
    base_tau: float = 0.99  # momentum methods: EMA start (cosine to final_tau)
    final_tau: float = 1.0
