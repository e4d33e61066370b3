"""Top-1 / top-5 classification accuracy, by torchmetrics' ``MulticlassAccuracy``.

Accuracy@k is the share of samples whose label is among the ``k`` largest logits
(``average="micro"``: over samples, not per class); "top-5" is top-``min(5, C)``. torchmetrics
ranks top-k with ``torch.topk``, as the hand-written accumulators it replaced did (same numbers,
ties included); top-1 is ``argmax``, which on a tie for the largest logit takes the lowest class
index (the replaced code took ``topk``'s first, an unspecified one of the tied classes).
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

__all__ = ["topk_accuracy", "topk_metrics"]


def topk_metrics(num_classes: int, dtype: torch.dtype = torch.int64) -> nn.ModuleDict:
    """``{"top1", "top5"}`` accumulating ``MulticlassAccuracy`` metrics (synchronised across
    processes by torchmetrics). ``dtype=torch.float64`` keeps the counts in float64, so the
    accuracy is ``hits / n`` to float64 rounding; by default it is a float32 ratio."""
    metrics = {
        name: MulticlassAccuracy(num_classes, top_k=k, average="micro")
        for name, k in (("top1", 1), ("top5", min(5, num_classes)))
    }
    if dtype != torch.int64:
        metrics = {name: m.set_dtype(dtype) for name, m in metrics.items()}
    return nn.ModuleDict(metrics)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 and top-``min(5, C)`` accuracy (%) of ``logits (n, C)`` for ``labels (n,)``: the
    float32 ratio times 100 (the rounding the committed probe records carry)."""
    metrics = topk_metrics(logits.shape[1]).to(logits.device)
    labels = labels.to(logits.device)
    return {name: 100.0 * float(m(logits, labels)) for name, m in metrics.items()}
