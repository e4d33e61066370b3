"""SwAV: swapped prediction of online cluster codes (Caron et al., NeurIPS 2020)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from specssl.core.distributed import all_reduce_, is_distributed
from specssl.losses._views import parse_views
from specssl.losses.base import LossResult, SSLLoss
from specssl.spectral.common import check_embedding, compute_dtype, full_precision


def _logsumexp(x: torch.Tensor, dim: int | None, across_ranks: bool) -> torch.Tensor:
    """``log Σ exp(x)`` over ``dim`` (all entries for ``None``), keeping dims; with
    ``across_ranks`` the sum also runs over every rank's ``x`` (two all-reduces)."""
    m = x.amax() if dim is None else x.amax(dim=dim, keepdim=True)
    if across_ranks:
        m = all_reduce_(m.clone(), "max")
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(x - m)
    total = e.sum() if dim is None else e.sum(dim=dim, keepdim=True)
    if across_ranks:
        total = all_reduce_(total)
    return m + torch.log(total)


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, n_iters: int = 3, epsilon: float = 0.05) -> torch.Tensor:
    """SwAV codes by Sinkhorn-Knopp (Caron et al. 2020, Eqn. 3 and Algorithm 1).

    Solves ``max_Q Tr(Qᵀ Cᵀ Z) + ε H(Q)`` over the transportation polytope of ``K x B``
    matrices with prototype marginals ``Q 1_B = 1_K / K`` and sample marginals
    ``Qᵀ 1_K = 1_B / B``. The solution is ``Q* = Diag(u) exp(Cᵀ Z / ε) Diag(v)``; starting
    from ``exp(Cᵀ Z / ε)`` normalised to total mass 1, ``n_iters`` rounds of (prototype
    marginal, then sample marginal) normalisation estimate ``u`` and ``v``.

    Args:
        scores: ``(B, K)`` prototype scores ``z_b · c_k`` of this rank's samples (cosine scores
            in SwAV). Treated as constants (no gradient).
        n_iters: Sinkhorn iterations (paper: 3).
        epsilon: entropy weight ``ε`` (paper: 0.05).

    Returns:
        Codes ``(B, K)``, float32 (float64 for float64 input), equal to ``B · Qᵀ``: every row
        (sample) sums to 1 (the last normalisation is the sample marginal), every column
        (prototype) sums over the *global* batch to ``B / K`` once the iteration has converged
        (approximately after ``n_iters``).

    Computed in float32 or higher with autocast off, and in the log domain (each normalisation
    subtracts a log-sum-exp), so no score range over- or underflows; mathematically this is
    the paper's algorithm exactly. Under DDP the sums over the batch axis (the total mass and
    the per-prototype sums) and ``B`` are all-reduced, so every rank gets its rows of the
    codes of the concatenated global batch.
    """
    check_embedding(scores, name="sinkhorn_knopp scores")
    if scores.dim() != 2:
        raise ValueError(f"sinkhorn_knopp scores must have shape (B, K), got {tuple(scores.shape)}")
    if isinstance(n_iters, bool) or not isinstance(n_iters, int) or n_iters < 1:
        raise ValueError(f"sinkhorn_knopp n_iters must be an int >= 1, got {n_iters!r}")
    if epsilon <= 0:
        raise ValueError(f"sinkhorn_knopp epsilon must be > 0, got {epsilon}")
    dist_on = is_distributed()
    with full_precision(scores):
        log_q = (scores.detach().to(compute_dtype(scores)) / epsilon).T  # (K, B) as in the paper
        n = torch.tensor(float(log_q.shape[1]), dtype=log_q.dtype, device=log_q.device)
        log_b = torch.log(all_reduce_(n))  # global batch size B
        log_k = math.log(log_q.shape[0])
        log_q = log_q - _logsumexp(log_q, None, dist_on)  # total mass 1
        for _ in range(n_iters):
            log_q = log_q - _logsumexp(log_q, 1, dist_on) - log_k  # prototype sums 1/K
            log_q = log_q - _logsumexp(log_q, 0, False) - log_b  # sample sums 1/B
        return torch.exp(log_q + log_b).T


def swapped_cross_entropy(
    codes: torch.Tensor, scores: torch.Tensor, temperature: float
) -> torch.Tensor:
    """SwAV Eqn. 2: ``ℓ(z, q) = -mean_b Σ_k q_bk log softmax(z_b · C / τ)_k``, ``(B, K)`` each."""
    return -(codes * F.log_softmax(scores / temperature, dim=1)).sum(dim=1).mean()


class SwAVLoss(SSLLoss):
    """SwAV swapped-prediction loss (Caron et al. 2020, Eqn. 1 with multi-crop).

    Every *large* view ``s`` is a teacher: its codes ``q_s = sinkhorn_knopp(p_s)`` (no
    gradient) are predicted from the scores of every other view ``v`` (large or small):

        L = mean_s [ 1/(V - 1) Σ_{v ≠ s} ℓ(p_v, q_s) ],   ℓ = swapped cross-entropy (Eqn. 2)

    ``V`` counts all views; with two large views this is Eqn. 1 averaged over the two swaps.
    Small multi-crop views are students only (the SwAV paper computes codes on the full-resolution
    crops only).

    Args:
        temperature: softmax temperature ``τ`` (paper: 0.1).
        sinkhorn_iters: Sinkhorn iterations (paper: 3).
        epsilon: Sinkhorn entropy weight ``ε`` (paper: 0.05).

    Call as ``loss(p1, p2)``, ``loss([p1, p2])`` or ``loss(p1, p2, small_views=[p3, ...])``
    with prototype scores ``(B, K)`` per view (all of one shape). Under DDP pass this rank's rows
    only: the codes are computed on the global batch inside :func:`sinkhorn_knopp` and the
    cross-entropy is a per-sample mean (DDP's gradient averaging makes it the global mean).
    Returns a float32 (float64 for float64 input) scalar; :meth:`compute` adds the detached
    mean entropy of the codes (``code_entropy``, at most ``log K``).
    """

    def __init__(
        self, temperature: float = 0.1, sinkhorn_iters: int = 3, epsilon: float = 0.05
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        iters_ok = isinstance(sinkhorn_iters, int) and not isinstance(sinkhorn_iters, bool)
        if not iters_ok or sinkhorn_iters < 1:
            raise ValueError(f"sinkhorn_iters must be an int >= 1, got {sinkhorn_iters!r}")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        self.temperature, self.sinkhorn_iters, self.epsilon = temperature, sinkhorn_iters, epsilon

    def compute(
        self,
        *views: torch.Tensor | list[torch.Tensor],
        small_views: Sequence[torch.Tensor] = (),
    ) -> LossResult:
        large = views
        if (
            len(large) == 1
            and isinstance(large[0], Sequence)
            and not isinstance(large[0], torch.Tensor)
        ):
            large = tuple(large[0])
        if len(large) < 1:
            raise ValueError("SwAVLoss needs at least 1 large view to compute codes, got 0")
        scores = parse_views(tuple(large) + tuple(small_views), type(self).__name__)
        n_large, n_views = len(large), len(scores)
        with full_precision(scores[0]):
            scores = [p.to(compute_dtype(p)) for p in scores]
            loss = scores[0].new_zeros(())
            entropy = scores[0].new_zeros(())
            for s in range(n_large):
                q = sinkhorn_knopp(scores[s], self.sinkhorn_iters, self.epsilon)
                entropy = entropy + torch.special.entr(q).sum(dim=1).mean()
                students = [v for v in range(n_views) if v != s]
                sub = sum(swapped_cross_entropy(q, scores[v], self.temperature) for v in students)
                loss = loss + sub / len(students)
            loss = loss / n_large
        return LossResult(loss, {"code_entropy": (entropy / n_large).detach()})

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, sinkhorn_iters={self.sinkhorn_iters}, "
            f"epsilon={self.epsilon}"
        )
