"""Networks: ResNet backbones (torchvision-compatible), MLP heads, momentum (EMA) targets."""

from __future__ import annotations

from specssl.models.backbones import (
    BACKBONE_CONFIGS,
    ResNetBackbone,
    backbone_from_state_dict,
    build_backbone,
    load_torchvision_state_dict,
    to_torchvision_state_dict,
)
from specssl.models.heads import MLPHead
from specssl.models.momentum import cosine_momentum, ema_update_, make_target
from specssl.models.utils import count_parameters

__all__ = [
    "BACKBONE_CONFIGS",
    "MLPHead",
    "ResNetBackbone",
    "backbone_from_state_dict",
    "build_backbone",
    "cosine_momentum",
    "count_parameters",
    "ema_update_",
    "load_torchvision_state_dict",
    "make_target",
    "to_torchvision_state_dict",
]
