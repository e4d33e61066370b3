"""The loss contract: :meth:`SSLLoss.compute` returns a :class:`LossResult` (value and named
terms), ``loss(...)`` the value alone, so every loss stays a drop-in ``nn.Module``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LossResult:
    """The scalar ``loss`` to optimise and its detached, named ``terms`` (for logging)."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


def mean_result(results: Sequence[LossResult]) -> LossResult:
    """``1/n Σ_i L_i`` and each term averaged alike over ``n`` results with the same term names
    (a method that calls its loss once per view pair)."""
    if not results:
        raise ValueError("mean_result needs at least one LossResult")
    n = len(results)
    terms = {k: sum(r.terms[k] for r in results) / n for k in results[0].terms}
    return LossResult(sum(r.loss for r in results) / n, terms)


def normalize_rows(z: torch.Tensor) -> torch.Tensor:
    """``z: (m, d)`` with every row (sample) scaled to unit l2 norm."""
    return F.normalize(z, dim=-1)


def normalize_columns(z: torch.Tensor) -> torch.Tensor:
    """``z: (m, d)`` with every column (embedding dimension) scaled to unit l2 norm."""
    return F.normalize(z, dim=0)


class SSLLoss(nn.Module):
    """Base class of the losses: subclasses implement :meth:`compute`; ``forward`` is
    ``compute(...).loss``."""

    def compute(self, *args: Any, **kwargs: Any) -> LossResult:
        raise NotImplementedError

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.compute(*args, **kwargs).loss

    def spectral_transform(self) -> Transform | None:
        """``φ`` with ``Ẑ = φ(Z)`` for one view ``(m, d) -> (m, d)``, the transformation of the
        embedding whose spectrum the monitor measures (covariance on the loss's ``axis``,
        ``"batch"`` when it has none); ``None`` when the loss acts on ``Z`` itself."""
        return None
