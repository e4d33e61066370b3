"""Methods by name: ``build_method(backbone, cfg)``."""

from __future__ import annotations

from torch import nn

from specssl.core import ConfigError
from specssl.methods.base import Method, MethodOutput
from specssl.methods.config import MethodConfig
from specssl.methods.contrastive import MoCoV2, SimCLR
from specssl.methods.momentum import DINO, INTLM
from specssl.methods.newer import EMPSSL, MEC, MMCR, CorInfoMax, FroSSL, LeJEPA, ReSA
from specssl.methods.redundancy import BarlowTwins, VICReg
from specssl.methods.siamese import BYOL, SimSiam
from specssl.methods.swav import SwAV
from specssl.methods.whitening import (
    CWRGP,
    INTL,
    WMSE,
    IterNormOnly,
    ShuffledDBN,
    STPower,
    ZeroCL,
)

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        INTL,
        INTLM,
        IterNormOnly,
        STPower,
        WMSE,
        CWRGP,
        ShuffledDBN,
        ZeroCL,
        SimCLR,
        MoCoV2,
        BarlowTwins,
        VICReg,
        SwAV,
        BYOL,
        SimSiam,
        DINO,
        MEC,
        CorInfoMax,
        EMPSSL,
        MMCR,
        FroSSL,
        LeJEPA,
        ReSA,
    )
}


def build_method(backbone: nn.Module, cfg: MethodConfig) -> Method:
    """The method named ``cfg.name`` around ``backbone`` (one-line error for unknown names)."""
    if cfg.name not in METHODS:
        raise ConfigError(
            f"config key 'method.name': unknown method {cfg.name!r}; choose one of "
            f"{sorted(METHODS)}"
        )
    return METHODS[cfg.name](backbone, cfg)


__all__ = [
    "BYOL",
    "CWRGP",
    "DINO",
    "EMPSSL",
    "INTL",
    "INTLM",
    "MEC",
    "METHODS",
    "MMCR",
    "WMSE",
    "BarlowTwins",
    "CorInfoMax",
    "FroSSL",
    "IterNormOnly",
    "LeJEPA",
    "Method",
    "MethodOutput",
    "MoCoV2",
    "ReSA",
    "STPower",
    "ShuffledDBN",
    "SimCLR",
    "SimSiam",
    "SwAV",
    "VICReg",
    "ZeroCL",
    "build_method",
]
