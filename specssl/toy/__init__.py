"""The INTL paper's 2-D study (Figure 2(a)): collapse of a 2-D embedding, runnable in seconds.

``from specssl.toy import run_toy_study`` — see :mod:`specssl.toy.study` for the set-up and
:mod:`specssl.toy.command` for ``specssl toy``. The torch-based names are imported on first
use (PEP 562), so the command line can build its parser without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from specssl.toy.config import (
    COLLAPSE_THRESHOLD,
    DEFAULT_SETTINGS,
    Setting,
    ToyConfig,
    parse_setting,
    parse_settings,
)

if TYPE_CHECKING:
    from specssl.toy.plot import plot_toy_study, save_toy_figure
    from specssl.toy.study import ToyResult, format_table, run_toy_study, train_setting

_LAZY = {
    "ToyResult": "specssl.toy.study",
    "format_table": "specssl.toy.study",
    "run_toy_study": "specssl.toy.study",
    "train_setting": "specssl.toy.study",
    "plot_toy_study": "specssl.toy.plot",
    "save_toy_figure": "specssl.toy.plot",
}

__all__ = [
    "COLLAPSE_THRESHOLD",
    "DEFAULT_SETTINGS",
    "Setting",
    "ToyConfig",
    "ToyResult",
    "format_table",
    "parse_setting",
    "parse_settings",
    "plot_toy_study",
    "run_toy_study",
    "save_toy_figure",
    "train_setting",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
