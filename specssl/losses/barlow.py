"""Barlow Twins: redundancy reduction of the cross-correlation (Zbontar et al., ICML 2021)."""

from __future__ import annotations

from functools import partial

import torch

from specssl.losses._views import parse_views, view_pairs
from specssl.losses.base import LossResult, SSLLoss, Transform
from specssl.spectral.common import compute_dtype, full_precision


def batch_standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``(z - mean) / sqrt(var + eps)`` per column of ``z: (m, d)`` over the batch.

    ``var`` is the biased (divisor ``m``) batch variance, as in ``BatchNorm1d(affine=False)``
    in training mode, which the Barlow Twins authors use for this step. With ``eps = 0`` the
    columns have mean 0 and ``mean_b z_bi^2 = 1`` exactly.
    """
    zc = z - z.mean(dim=0, keepdim=True)
    return zc / (zc.pow(2).mean(dim=0, keepdim=True) + eps).sqrt()


def cross_correlation(za: torch.Tensor, zb: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins Eqn. 2: ``C = ẑ_aᵀ ẑ_b / m`` of standardised views ``(m, d)`` -> ``(d, d)``.

    With ``eps = 0`` this is exactly Eqn. 2, ``C_ij = Σ_b z^A_bi z^B_bj /
    (sqrt(Σ_b (z^A_bi)²) sqrt(Σ_b (z^B_bj)²))`` of the batch-centred columns.
    """
    m = za.shape[0]
    return batch_standardize(za, eps).T @ batch_standardize(zb, eps) / m


def barlow_terms(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqn. 1's two sums for a cross-correlation ``c: (d, d)``: ``Σ_i (1 - C_ii)²`` and
    ``Σ_{i≠j} C_ij²``."""
    diag = torch.diagonal(c)
    on_diag = (1 - diag).pow(2).sum()
    off_diag = (c - torch.diag(diag)).pow(2).sum()  # exact zeros on the diagonal
    return on_diag, off_diag


class BarlowTwinsLoss(SSLLoss):
    """Barlow Twins loss (Zbontar et al. 2021, Eqns. 1-2).

        L = scale · ( Σ_i (1 - C_ii)²  +  λ Σ_{i≠j} C_ij² ),   C = cross_correlation(z_A, z_B)

    For more than two views the loss is averaged over all view pairs.

    Args:
        lambda_offdiag: ``λ``, the weight of the redundancy-reduction term (paper: 5e-3; the
            authors' code: 0.0051).
        scale: overall factor (1 in the paper; solo-learn's ``scale_loss``, 0.1 on CIFAR).
        eps: added to the batch variance before standardising (1e-5, the BatchNorm default the
            authors' code uses); ``eps = 0`` is Eqn. 2 exactly but divides by zero on a constant
            column.

    Call as ``loss(z1, z2)`` or ``loss([z1, z2, ...])`` with views ``(m, d)``, ``m >= 2``,
    computed on the global batch (the method gathers it under DDP). Returns a float32 (float64
    for float64 input) scalar; :meth:`compute` adds the detached, unweighted ``on_diag`` and
    ``off_diag`` sums (averaged over view pairs). The monitored ``Ẑ`` is the
    batch-standardised embedding (:func:`batch_standardize`) whose cross-correlation the loss
    drives to the identity.
    """

    def __init__(self, lambda_offdiag: float = 0.0051, scale: float = 1.0, eps: float = 1e-5):
        super().__init__()
        if lambda_offdiag < 0:
            raise ValueError(f"lambda_offdiag must be >= 0, got {lambda_offdiag}")
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.lambda_offdiag, self.scale, self.eps = lambda_offdiag, scale, eps

    def spectral_transform(self) -> Transform:
        return partial(batch_standardize, eps=self.eps)

    def compute(self, *views: torch.Tensor | list[torch.Tensor]) -> LossResult:
        zs = parse_views(
            views, type(self).__name__, min_batch=2, batch_use=" to standardise over the batch"
        )
        pairs = view_pairs(len(zs))
        with full_precision(zs[0]):
            zs = [z.to(compute_dtype(z)) for z in zs]
            on_diag = off_diag = zs[0].new_zeros(())
            for i, j in pairs:
                on, off = barlow_terms(cross_correlation(zs[i], zs[j], self.eps))
                on_diag, off_diag = on_diag + on, off_diag + off
            on_diag, off_diag = on_diag / len(pairs), off_diag / len(pairs)
            loss = self.scale * (on_diag + self.lambda_offdiag * off_diag)
        return LossResult(loss, {"on_diag": on_diag.detach(), "off_diag": off_diag.detach()})

    def extra_repr(self) -> str:
        return f"lambda_offdiag={self.lambda_offdiag}, scale={self.scale}, eps={self.eps}"
