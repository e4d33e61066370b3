"""Networks: backbones by name (specssl ResNets, timm, torchvision), MLP heads, EMA targets."""

from __future__ import annotations

from specssl.models.backbones import (
    BACKBONE_CONFIGS,
    ResNetBackbone,
    backbone_from_state_dict,
    backbone_spec,
    build_backbone,
    load_torchvision_state_dict,
    to_torchvision_state_dict,
)
from specssl.models.external import (
    BACKBONE_PRESETS,
    BackbonePreset,
    BackboneSpec,
    register_backbone,
)
from specssl.models.heads import MLPHead
from specssl.models.momentum import cosine_momentum, ema_update_, make_target
from specssl.models.utils import count_parameters

__all__ = [
    "BACKBONE_CONFIGS",
    "BACKBONE_PRESETS",
    "BackbonePreset",
    "BackboneSpec",
    "MLPHead",
    "ResNetBackbone",
    "backbone_from_state_dict",
    "backbone_spec",
    "build_backbone",
    "cosine_momentum",
    "count_parameters",
    "ema_update_",
    "load_torchvision_state_dict",
    "make_target",
    "register_backbone",
    "to_torchvision_state_dict",
]
