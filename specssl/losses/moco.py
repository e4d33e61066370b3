"""MoCo's InfoNCE against a queue of negative keys (He et al. 2020, Eqn. 1; MoCo v2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specssl.losses.base import LossResult, SSLLoss
from specssl.losses.ntxent import check_temperature
from specssl.spectral.common import check_embedding, compute_dtype, full_precision


def check_query_key_queue(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> None:
    """``q, k: (m, d)`` of one shape and ``queue: (K, d)``; ``ValueError`` naming the problem."""
    for name, t in (("queries q", q), ("keys k", k), ("queue", queue)):
        check_embedding(t, name=f"MoCoLoss {name}")
        if t.dim() != 2:
            raise ValueError(f"MoCoLoss {name} must be 2-D, got shape {tuple(t.shape)}")
    if k.shape != q.shape:
        raise ValueError(
            f"MoCoLoss keys k must match queries q (m, d): q is {tuple(q.shape)}, "
            f"k is {tuple(k.shape)}"
        )
    if queue.shape[1] != q.shape[1]:
        raise ValueError(
            f"MoCoLoss queue must have shape (K, d) with d={q.shape[1]} like q, "
            f"got {tuple(queue.shape)}"
        )


class MoCoLoss(SSLLoss):
    """InfoNCE of MoCo: one positive key per query, the queue as negatives.

    With l2-normalised query ``q_i``, its key ``k_i`` and the queue ``{k_j^-}``, Eqn. 1 of
    He et al. (2020) is

        L_i = -log( exp(q_i·k_i / τ) / (exp(q_i·k_i / τ) + Σ_j exp(q_i·k_j^- / τ)) ),

    averaged over the ``m`` queries. Keys and queue are detached: only the query branch
    receives a gradient (the key encoder is a momentum copy).

    Args:
        temperature: ``τ > 0`` (default 0.2, MoCo v2, Chen et al. 2020).

    Call as ``loss(q, k, queue)`` with ``q, k: (m, d)`` and ``queue: (K, d)``; all three are
    l2-normalised here, so raw projector outputs may be passed. Returns a float32 (float64 for
    float64 ``q``) scalar; :meth:`compute` adds the detached mean cosine of the positive pairs
    (``pos_cos``) and of the query-queue pairs (``neg_cos``).
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        check_temperature(temperature, type(self).__name__)
        self.temperature = float(temperature)

    def compute(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> LossResult:
        check_query_key_queue(q, k, queue)
        dtype = compute_dtype(q)
        with full_precision(q):
            qn = F.normalize(q.to(dtype), dim=1)  # (m, d)
            kn = F.normalize(k.detach().to(dtype), dim=1)  # (m, d)
            neg = F.normalize(queue.detach().to(dtype), dim=1)  # (K, d)
            pos_cos = (qn * kn).sum(dim=1, keepdim=True)  # (m, 1)
            neg_cos = qn @ neg.T  # (m, K)
            logits = torch.cat([pos_cos, neg_cos], dim=1) / self.temperature
            loss = -F.log_softmax(logits, dim=1)[:, 0].mean()
        terms = {"pos_cos": pos_cos.detach().mean(), "neg_cos": neg_cos.detach().mean()}
        return LossResult(loss, terms)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
