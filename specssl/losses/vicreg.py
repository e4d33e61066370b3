"""VICReg: variance-invariance-covariance regularisation (Bardes, Ponce & LeCun, ICLR 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specssl.losses._views import parse_views, view_pairs
from specssl.losses.base import LossResult, SSLLoss
from specssl.spectral.common import compute_dtype, full_precision


def variance_term(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Eqns. 1-2: ``v(Z) = 1/d Σ_j max(0, γ - sqrt(Var(z^j) + ε))`` for ``z: (n, d)``.

    ``Var`` is the unbiased (divisor ``n - 1``) variance of column ``j`` over the batch.
    """
    std = (z.var(dim=0, unbiased=True) + eps).sqrt()
    return F.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """Eqns. 3-4: ``c(Z) = 1/d Σ_{i≠j} C(Z)_ij²`` with ``C(Z) = (Z - Z̄)ᵀ(Z - Z̄) / (n - 1)``."""
    n, d = z.shape
    zc = z - z.mean(dim=0, keepdim=True)
    cov = zc.T @ zc / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))  # exact zeros on the diagonal
    return off.pow(2).sum() / d


def invariance_term(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """Eqn. 5, ``s(Z, Z')``, as the paper's Algorithm 1 computes it: ``F.mse_loss(Z, Z')``.

    That is ``1/(n d) Σ_i ‖z_i - z'_i‖²``: the mean over the ``d`` dimensions too. Eqn. 5 as
    printed divides by ``n`` only; the weights λ = μ = 25, ν = 1 were tuned with the
    Algorithm 1 / released-code form (also solo-learn's), so that form is used here.
    """
    return F.mse_loss(za, zb)


class VICRegLoss(SSLLoss):
    """VICReg loss (Bardes et al. 2022, Eqn. 6).

        ℓ(Z, Z') = λ s(Z, Z') + μ [v(Z) + v(Z')] + ν [c(Z) + c(Z')]

    with ``s`` (Eqn. 5, see :func:`invariance_term`), ``v`` (Eqns. 1-2, target std ``γ = 1``)
    and ``c`` (Eqns. 3-4). The variance terms of the two views are *summed* as in Eqn. 6 and
    Algorithm 1 (solo-learn does the same); the authors' released code and lightly average them
    (``μ/2`` here). For ``V > 2`` views the loss is averaged over all view pairs, i.e.
    ``λ mean_pairs s + (2/V) Σ_v (μ v(Z_v) + ν c(Z_v))``.

    Args:
        sim_weight: ``λ`` (paper: 25).
        var_weight: ``μ`` (paper: 25).
        cov_weight: ``ν`` (paper: 1).
        eps: ``ε`` inside the square root of Eqn. 1 (paper: 1e-4).
        gamma: target standard deviation ``γ`` (paper: 1).

    Call as ``loss(z1, z2)`` or ``loss([z1, z2, ...])`` with views ``(n, d)``, ``n >= 2``,
    computed on the global batch (the method gathers it under DDP). Returns a float32 (float64
    for float64 input) scalar; :meth:`compute` adds the detached, unweighted ``invariance``
    (mean over pairs of ``s``), ``variance`` and ``covariance`` (mean over pairs of
    ``v(Z) + v(Z')`` and ``c(Z) + c(Z')``). VICReg regularises the raw embedding (no
    monitored transform).
    """

    def __init__(
        self,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        eps: float = 1e-4,
        gamma: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("sim_weight", sim_weight),
            ("var_weight", var_weight),
            ("cov_weight", cov_weight),
            ("eps", eps),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.sim_weight, self.var_weight, self.cov_weight = sim_weight, var_weight, cov_weight
        self.eps, self.gamma = eps, gamma

    def compute(self, *views: torch.Tensor | list[torch.Tensor]) -> LossResult:
        zs = parse_views(
            views, type(self).__name__, min_batch=2, batch_use=" for the batch variance"
        )
        pairs = view_pairs(len(zs))
        with full_precision(zs[0]):
            zs = [z.to(compute_dtype(z)) for z in zs]
            invariance = sum(invariance_term(zs[i], zs[j]) for i, j in pairs) / len(pairs)
            # Each view is in V - 1 of the V (V - 1) / 2 pairs: mean over pairs of
            # v(Z_a) + v(Z_b) is (2 / V) Σ_v v(Z_v); likewise for c.
            share = 2 / len(zs)
            variance = share * sum(variance_term(z, self.gamma, self.eps) for z in zs)
            covariance = share * sum(covariance_term(z) for z in zs)
            loss = (
                self.sim_weight * invariance
                + self.var_weight * variance
                + self.cov_weight * covariance
            )
        terms = {
            "invariance": invariance.detach(),
            "variance": variance.detach(),
            "covariance": covariance.detach(),
        }
        return LossResult(loss, terms)

    def extra_repr(self) -> str:
        return (
            f"sim_weight={self.sim_weight}, var_weight={self.var_weight}, "
            f"cov_weight={self.cov_weight}, eps={self.eps}, gamma={self.gamma}"
        )
