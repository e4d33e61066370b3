"""Configuration of the 2-D toy study, in plain Python (no torch import).

Kept apart from :mod:`specssl.toy.study` so the command line can parse and validate its
arguments — and ``specssl --help`` can start — without importing torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: The settings of the issue / the paper's Figure 2(a), plus IterNorm-only and INTL.
DEFAULT_SETTINGS: tuple[str, ...] = (
    "p=0",
    "p=0.3",
    "p=0.4",
    "p=0.45",
    "p=0.5",
    "p=0.55",
    "p=1.5",
    "iternorm",
    "intl",
)

#: A condition indicator below this counts as collapsed (one eigenvalue < 5% of the other).
COLLAPSE_THRESHOLD = 0.05

GRID_SIDE = 4  # the inputs are GRID_SIDE x GRID_SIDE Gaussian blobs

SETTING_KINDS = ("power", "iternorm", "intl")

_P_PATTERN = re.compile(r"p=([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


@dataclass(frozen=True)
class ToyConfig:
    """Everything of the study except the settings, the number of steps and the seed.

    Attributes:
        n_points: size of the data set (all of it is used for the final measurement).
        blob_std: standard deviation of each of the 16 input blobs.
        jitter: per-axis standard deviation ``(σ_x, σ_y)`` of the Gaussian view jitter.
        hidden: width of the two hidden layers of the ``2 -> h -> h -> 2`` ReLU MLP.
        batch_size: ``m``, samples per step (both views of the same ``m`` points).
        lr: Adam learning rate.
        T: IterNorm iterations for ``iternorm`` and ``intl`` (paper default 4).
        beta: INTL trace-loss weight. Set explicitly: :func:`specssl.losses.default_trace_weight`
            gives 0 for a 2 x 2 covariance, which would silently turn INTL into IterNorm-only.
    """

    n_points: int = 1024
    blob_std: float = 0.08
    jitter: tuple[float, float] = (0.1, 0.7)
    hidden: int = 64
    batch_size: int = 256
    lr: float = 3e-3
    T: int = 4
    beta: float = 2.0

    def __post_init__(self) -> None:
        for name, low in (("n_points", 2), ("batch_size", 2), ("hidden", 1), ("T", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        jitter = tuple(self.jitter)
        if len(jitter) != 2 or not all(_finite(s) and s >= 0 for s in jitter):
            raise ValueError(f"jitter must be two finite stds (σ_x, σ_y) >= 0, got {self.jitter!r}")
        object.__setattr__(self, "jitter", (float(jitter[0]), float(jitter[1])))
        for name in ("blob_std", "beta"):
            value = getattr(self, name)
            if not (_finite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (_finite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Setting:
    """One objective of the study.

    ``kind="power"`` with a finite ``p`` (ST with ``g(λ) = λ^{-p}``), ``"iternorm"`` or
    ``"intl"`` (``p`` must then be ``None``; their ``T`` and ``β`` live in :class:`ToyConfig`).
    """

    kind: str
    p: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in SETTING_KINDS:
            raise ValueError(f"setting kind must be one of {SETTING_KINDS}, got {self.kind!r}")
        if self.kind == "power":
            if not _finite(self.p):
                raise ValueError(f"a power setting needs a finite number p, got {self.p!r}")
            object.__setattr__(self, "p", float(self.p))
        elif self.p is not None:
            raise ValueError(f"setting {self.kind!r} takes no power p, got p={self.p!r}")

    @property
    def name(self) -> str:
        return f"p={self.p:g}" if self.kind == "power" else self.kind


def parse_setting(text: str) -> Setting:
    """``"p=0.45"`` -> power ST with ``p = 0.45``; ``"iternorm"``; ``"intl"`` (case-insensitive).

    Raises ``ValueError`` with the accepted syntax for anything else.
    """
    token = text.strip().lower().replace(" ", "")
    if token in ("iternorm", "intl"):
        return Setting(token)
    match = _P_PATTERN.fullmatch(token)
    if match:
        return Setting("power", float(match.group(1)))
    raise ValueError(f"unknown setting {text!r}; use p=<number> (e.g. p=0.5), iternorm or intl")


def parse_settings(text: str | Iterable[str | Setting]) -> list[Setting]:
    """A comma-separated string, or an iterable of names / :class:`Setting` -> settings.

    Order is kept; ``"all"`` expands to :data:`DEFAULT_SETTINGS`. Raises ``ValueError`` on an
    empty list, an empty item, an unknown name or a duplicate.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    settings: list[Setting] = []
    for item in items:
        if isinstance(item, Setting):
            group: Sequence[str | Setting] = (item,)
        elif not item.strip():
            raise ValueError(f"settings must be a comma-separated list, got {text!r}")
        else:
            group = DEFAULT_SETTINGS if item.strip().lower() == "all" else (item,)
        for entry in group:
            setting = entry if isinstance(entry, Setting) else parse_setting(entry)
            if setting in settings:
                raise ValueError(f"setting {setting.name!r} is given twice")
            settings.append(setting)
    if not settings:
        raise ValueError("at least one setting is needed")
    return settings
