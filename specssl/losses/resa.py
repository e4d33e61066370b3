"""ReSA: representation self-assignment, positive-feedback SSL (Weng et al., ICML 2025)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from specssl.losses._views import parse_views
from specssl.losses.base import LossResult, SSLLoss, Transform, normalize_rows
from specssl.spectral.common import check_embedding, compute_dtype, full_precision


@torch.no_grad()
def self_assignment(
    scores: torch.Tensor, temperature: float = 0.05, n_iters: int = 3
) -> torch.Tensor:
    """ReSA's Sinkhorn–Knopp assignment of ``scores: (B, K)`` (samples x targets) -> ``(B, K)``.

    The authors' ``sinkhorn_knopp`` (winci-ai/resa ``method/base.py``): ``Q = exp(S / T)`` of
    total mass 1, then ``n_iters`` rounds of (every target column sums to ``1/K``, every
    sample row to ``1/B``), returned times ``B`` (rows sum to 1). Run in the log domain (each
    normalisation subtracts a log-sum-exp), in float32 or float64, without gradient. Unlike
    :func:`specssl.losses.sinkhorn_knopp` nothing is all-reduced: ``scores`` must already be
    the matrix of the global batch (the method gathers it).
    """
    check_embedding(scores, name="self_assignment scores")
    if scores.dim() != 2:
        raise ValueError(f"self_assignment scores must be (B, K), got {tuple(scores.shape)}")
    with full_precision(scores):
        log_q = scores.to(compute_dtype(scores)) / temperature
        b, k = log_q.shape
        log_q = log_q - torch.logsumexp(log_q.flatten(), dim=0)
        for _ in range(n_iters):
            log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)
            log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(b)
        return torch.exp(log_q + math.log(b))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``mean_b -Σ_k targets_bk log softmax(logits)_bk`` for ``(B, K)`` inputs."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


class ReSALoss(SSLLoss):
    """ReSA loss (Weng et al., "Clustering Properties of Self-Supervised Learning", ICML 2025),
    as the authors' code computes it (winci-ai/resa and winci-ai/resa_cifar, ``method/resa.py``
    and ``method/base.py``).

    The encoder's output of view 0 (``encoding``, not the projector's embedding) is clustered
    online: with l2-normalised encodings ``h`` (online network, detached) and ``h'`` (EMA
    network) of view 0,

        A = SK(h h'ᵀ)   (:func:`self_assignment`, temperature 0.05, 3 iterations)

    is a soft assignment of every sample to the samples of the batch. With l2-normalised
    embeddings ``e_q`` of the online views and ``e'_v`` of the target views,

        L = mean over pairs (q, v), q != v, of  mean_b -Σ_k A_bk log softmax(e_q e'_vᵀ / τ)_bk

    (:meth:`momentum`). The formula is written from the authors' code; the paper's own
    statement of it (and its equation numbers) could not be read here.

    :meth:`forward` is the form without an EMA network (the authors' early
    ``methods/resa_no_ema.py``, which does not run as published): ``h' = h`` from ``encoding``
    and the targets are the online views themselves (with gradient), over ordered pairs. Called
    without ``encoding`` it clusters view 0's *embedding* instead: that is not ReSA as
    published (the paper's point is that the encoding clusters better), only a stand-in that
    keeps ``loss(z1, z2)`` usable.

    Args:
        temperature: ``τ`` of the embedding similarities (authors: 0.4).
        sinkhorn_temperature: temperature of ``SK`` (authors: 0.05).
        sinkhorn_iterations: Sinkhorn rounds (authors: 3).

    Views are ``(m, d)`` embeddings, encodings ``(m, f)``, all of the global batch. Computed in
    float32 (float64 for float64 input) with autocast off. Terms (:meth:`compute`,
    :meth:`compute_momentum`): the detached ``cross_entropy`` and ``self_weight`` (mean
    diagonal of ``A``: the weight each sample gives to itself). The monitored ``Ẑ`` is the
    l2-normalised embedding.
    """

    def __init__(
        self,
        temperature: float = 0.4,
        sinkhorn_temperature: float = 0.05,
        sinkhorn_iterations: int = 3,
    ) -> None:
        super().__init__()
        for key, value in (
            ("temperature", temperature),
            ("sinkhorn_temperature", sinkhorn_temperature),
        ):
            if not value > 0:
                raise ValueError(f"{key} must be > 0, got {value}")
        n = sinkhorn_iterations
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"sinkhorn_iterations must be an int >= 1, got {n!r}")
        self.temperature = temperature
        self.sinkhorn_temperature, self.sinkhorn_iterations = sinkhorn_temperature, n

    def spectral_transform(self) -> Transform:
        return normalize_rows

    def compute(
        self, *views: torch.Tensor | list[torch.Tensor], encoding: torch.Tensor | None = None
    ) -> LossResult:
        zs = parse_views(views, type(self).__name__)
        h = zs[0] if encoding is None else encoding
        return self._loss(zs, zs, h, h, type(self).__name__)

    def momentum(
        self,
        online: list[torch.Tensor],
        targets: list[torch.Tensor],
        encoding: torch.Tensor,
        target_encoding: torch.Tensor,
    ) -> torch.Tensor:
        """Online views ``online[q]: (m, d)`` against target views ``targets[v]: (m, d)`` (the
        same images' views ``0 .. len(targets) - 1``, detached), ``v != q``; the assignment
        from the online ``encoding: (m, f)`` and the target ``target_encoding: (m, f)`` of
        view 0 (both detached)."""
        return self.compute_momentum(online, targets, encoding, target_encoding).loss

    def compute_momentum(
        self,
        online: list[torch.Tensor],
        targets: list[torch.Tensor],
        encoding: torch.Tensor,
        target_encoding: torch.Tensor,
    ) -> LossResult:
        """:meth:`momentum` with its terms."""
        name = f"{type(self).__name__}.momentum"
        targets = [t.detach() for t in targets]
        return self._loss(online, targets, encoding, target_encoding, name)

    def _loss(
        self,
        online: list[torch.Tensor],
        targets: list[torch.Tensor],
        encoding: torch.Tensor,
        target_encoding: torch.Tensor,
        name: str,
    ) -> LossResult:
        zs = parse_views((*online, *targets), name)
        online, targets = zs[: len(online)], zs[len(online) :]
        encs = parse_views((encoding, target_encoding), f"{name} encodings")
        if encs[0].shape[0] != zs[0].shape[0]:
            raise ValueError(
                f"{name}: encodings have {encs[0].shape[0]} rows, the views {zs[0].shape[0]}"
            )
        pairs = [(q, v) for q in range(len(online)) for v in range(len(targets)) if q != v]
        if not pairs:
            raise ValueError(f"{name} needs an online view q and a target view v with q != v")
        dtype = compute_dtype(zs[0])
        with full_precision(zs[0]):
            h, h_t = (F.normalize(e.detach().to(dtype), dim=-1) for e in encs)
            assign = self_assignment(h @ h_t.T, self.sinkhorn_temperature, self.sinkhorn_iterations)
            e_on = [F.normalize(z.to(dtype), dim=-1) for z in online]
            e_tg = [F.normalize(z.to(dtype), dim=-1) for z in targets]
            loss = sum(
                soft_cross_entropy(e_on[q] @ e_tg[v].T / self.temperature, assign) for q, v in pairs
            ) / len(pairs)
        terms = {"cross_entropy": loss.detach(), "self_weight": torch.diagonal(assign).mean()}
        return LossResult(loss, terms)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, sinkhorn_temperature={self.sinkhorn_temperature}, "
            f"sinkhorn_iterations={self.sinkhorn_iterations}"
        )
