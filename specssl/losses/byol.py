"""Negative cosine similarity: SimSiam's ``D(p, z)`` and, up to an affine map, BYOL's loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specssl.losses.base import LossResult, SSLLoss
from specssl.spectral.common import check_embedding, compute_dtype


def _check_pair(p: torch.Tensor, z: torch.Tensor, loss_name: str) -> None:
    """Both finite floating ``(m, d)`` tensors of one shape; else a ``ValueError`` naming it."""
    for name, t in (("p", p), ("z", z)):
        check_embedding(t, name=f"{loss_name} {name}")
        if t.dim() != 2:
            raise ValueError(f"{loss_name} {name} must have shape (m, d), got {tuple(t.shape)}")
    if p.shape != z.shape:
        raise ValueError(
            f"{loss_name} p and z must share one shape (m, d); p is {tuple(p.shape)}, "
            f"z is {tuple(z.shape)}"
        )


def negative_cosine(p: torch.Tensor, z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``-(1/m) Σ_i <p_i, z_i> / (max(‖p_i‖, eps) max(‖z_i‖, eps))`` for ``p, z: (m, d)``.

    Computed in float32 (float64 for float64 input); no input validation, no stop-gradient.
    """
    dtype = compute_dtype(p)
    p_n = F.normalize(p.to(dtype), dim=-1, eps=eps)
    z_n = F.normalize(z.to(dtype), dim=-1, eps=eps)
    return -(p_n * z_n).sum(-1).mean()


class NegativeCosineLoss(SSLLoss):
    """SimSiam Eqn. 1: ``D(p, z) = -(p / ‖p‖₂) · (z / ‖z‖₂)``, averaged over the batch.

    Call as ``loss(p, z)`` with ``p, z: (m, d)`` (row ``i`` of ``p`` is compared with row ``i``
    of ``z``); returns the scalar ``mean_i -cos(p_i, z_i)`` in ``[-1, 1]`` (float32, or float64
    for float64 input). Identical rows give ``-1``, orthogonal rows ``0``.

    BYOL's loss (Grill et al. 2020, Eqn. 2) is the normalized MSE
    ``‖p̄ - z̄‖² = 2 - 2 cos(p, z)``, i.e. ``BYOL = 2 + 2 · NegativeCosineLoss()(p, z)``.

    No stop-gradient is applied here: gradients flow into both arguments. The *method* decides
    which side is a target (SimSiam passes ``z.detach()``; BYOL's target comes from the EMA
    network, which has no gradient).

    Args:
        eps: lower bound on each row norm before dividing (a zero row has cosine 0).
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.eps = eps

    def compute(self, p: torch.Tensor, z: torch.Tensor) -> LossResult:
        _check_pair(p, z, type(self).__name__)
        return LossResult(negative_cosine(p, z, self.eps))

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
