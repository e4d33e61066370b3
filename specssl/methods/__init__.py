"""Methods by name: ``build_method(backbone, cfg)``."""

from __future__ import annotations

from torch import nn

from specssl.methods.base import Method, MethodOutput
from specssl.methods.momentum import INTLM
from specssl.methods.whitening import CWRGP, INTL, WMSE, IterNormOnly, STPower
from specssl.train.config import ConfigError, MethodConfig

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (INTL, INTLM, IterNormOnly, STPower, WMSE, CWRGP)
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
    "CWRGP",
    "INTL",
    "INTLM",
    "METHODS",
    "WMSE",
    "IterNormOnly",
    "Method",
    "MethodOutput",
    "STPower",
    "build_method",
]
