"""FroSSL: Frobenius-norm minimisation for multiview SSL (Skean et al., ECCV 2024)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specssl.losses._views import parse_views
from specssl.losses.base import LossResult, SSLLoss, Transform, normalize_columns
from specssl.spectral.common import compute_dtype, full_precision


def log_frobenius_sq(z: torch.Tensor) -> torch.Tensor:
    """``log ‖ZᵀZ / tr(ZᵀZ)‖_F²`` for ``z: (m, d)``, no eigendecomposition.

    ``‖ZᵀZ‖_F = ‖ZZᵀ‖_F``: the smaller Gram matrix is formed. The trace is a constant
    (detached, as the authors' ``torch.trace(cov).item()``); after the column normalisation
    of :class:`FroSSLLoss` it equals ``d``.
    """
    m, d = z.shape
    k = z.T @ z if m > d else z @ z.T
    k = k / torch.diagonal(k).sum().detach()
    return torch.log(k.pow(2).sum())


class FroSSLLoss(SSLLoss):
    """FroSSL loss (Skean et al. 2024), as the authors' ``multiview_frossl_loss_func``
    (OFSkean/FroSSL ``solo/losses/frossl.py``, commit 4942ce5) computes it.

    Each view ``z_v: (m, d)`` is normalised column-wise, ``Z̃_v = z_v / ‖z_v‖_col`` (every
    embedding dimension a unit vector over the batch), ``Z̄ = 1/V Σ_v Z̃_v``, and

        L = Σ_v [ log ‖Z̃_vᵀZ̃_v / tr(Z̃_vᵀZ̃_v)‖_F²  +  w · V d · mean_{b,j} (Z̃_v - Z̄)²_bj ]

    the regulariser (the paper's Eqn. 6, a log-Frobenius surrogate of the covariance entropy,
    bringing the square outside the log as the code does) and the invariance term (Eqn. 3)
    per view, summed over views; the equation numbers are the authors' code comments.

    Args:
        invariance_weight: ``w`` (authors' ``invariance_weight`` default 1.0).

    Call as ``loss(z1, z2, ...)`` or ``loss([z1, ..., zV])`` with views ``(m, d)``, ``m >= 2``,
    on the global batch. Returns a float32 (float64 for float64 input) scalar; :meth:`compute`
    adds the detached, unweighted means over views of ``log_frobenius`` and ``invariance``
    (``V d · mean (Z̃_v - Z̄)²``). The monitored ``Ẑ`` is the column-normalised ``Z̃``, whose
    Frobenius norm the loss regularises.
    """

    def __init__(self, invariance_weight: float = 1.0) -> None:
        super().__init__()
        if invariance_weight < 0:
            raise ValueError(f"invariance_weight must be >= 0, got {invariance_weight}")
        self.invariance_weight = invariance_weight

    def spectral_transform(self) -> Transform:
        return normalize_columns

    def compute(self, *views: torch.Tensor | list[torch.Tensor]) -> LossResult:
        zs = parse_views(
            views, type(self).__name__, min_batch=2, batch_use=" to normalise over the batch"
        )
        n_views, d = len(zs), zs[0].shape[1]
        with full_precision(zs[0]):
            zs = [F.normalize(z.to(compute_dtype(z)), dim=0) for z in zs]
            mean = torch.stack(zs).mean(dim=0)
            frob = [log_frobenius_sq(z) for z in zs]
            inv = [n_views * d * F.mse_loss(z, mean) for z in zs]
            loss = sum(frob) + self.invariance_weight * sum(inv)
        terms = {
            "log_frobenius": (sum(frob) / n_views).detach(),
            "invariance": (sum(inv) / n_views).detach(),
        }
        return LossResult(loss, terms)

    def extra_repr(self) -> str:
        return f"invariance_weight={self.invariance_weight}"
