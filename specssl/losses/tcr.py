"""Total coding rate with many patches: EMP-SSL (Tong, Chen, Ma & LeCun, 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specssl.losses._views import parse_views
from specssl.losses.base import LossResult, SSLLoss, Transform, normalize_rows
from specssl.losses.corinfomax import spd_log_det
from specssl.spectral.common import compute_dtype, full_precision


def total_coding_rate(z: torch.Tensor, eps_sq: float) -> torch.Tensor:
    """``R(Z) = ½ log det(I_d + d / (m ε²) · ZᵀZ)`` for ``z: (m, d)``.

    The total coding rate of MCR² (Yu et al. 2020) that EMP-SSL maximises per patch (the
    authors' ``loss.py`` ``TotalCodingRate``; the paper's equation numbers are not checked).

    By Sylvester's identity ``det(I_d + α ZᵀZ) = det(I_m + α ZZᵀ)``: the smaller of the two
    matrices is formed.
    """
    m, d = z.shape
    alpha = d / (m * eps_sq)
    gram = z @ z.T if m < d else z.T @ z
    eye = torch.eye(gram.shape[0], dtype=z.dtype, device=z.device)
    return spd_log_det(eye + alpha * gram) / 2


class TCRLoss(SSLLoss):
    """EMP-SSL's objective (Tong et al. 2023), as the authors' ``main.py`` computes it.

    For ``n`` patch embeddings ``z_1 .. z_n: (m, d)`` of the same ``m`` images (l2-normalised
    rows when ``normalize``: the authors' encoder ends in ``F.normalize``) and their mean
    ``z̄ = 1/n Σ_i z_i`` (not detached),

        L = -tcr_weight · 1/n Σ_i R(Z_i)  -  inv_weight · 1/n Σ_i mean_b cos(z_i,b, z̄_b)

    with the total coding rate ``R`` of :func:`total_coding_rate` (``ε²`` = the authors'
    ``--eps``): the paper's ``max 1/n Σ_i (R(Z_i) + λ D(Z_i, Z̄))`` with ``D`` the mean
    cosine similarity, minimised.

    Args:
        eps_sq: ``ε²`` of the coding rate (authors' ``--eps`` default 0.2).
        inv_weight: weight of the invariance term (authors' ``--patch_sim`` 200).
        tcr_weight: weight of the coding-rate term (authors' ``--tcr`` 1).
        normalize: l2-normalise each embedding row first.

    Call as ``loss(z1, z2, ...)`` or ``loss([z1, ..., zn])`` with patches ``(m, d)`` (from the
    data layer's views: ``data.num_views`` patches per image). Returns a float32 (float64 for
    float64 input) scalar; :meth:`compute` adds the detached ``coding_rate`` (mean ``R``) and
    ``similarity`` (mean cosine to the patch mean). The monitored ``Ẑ`` is the l2-normalised
    embedding when ``normalize`` (else ``Z`` itself).
    """

    def __init__(
        self,
        eps_sq: float = 0.2,
        inv_weight: float = 200.0,
        tcr_weight: float = 1.0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if not eps_sq > 0:
            raise ValueError(f"eps_sq must be > 0, got {eps_sq}")
        for key, value in (("inv_weight", inv_weight), ("tcr_weight", tcr_weight)):
            if value < 0:
                raise ValueError(f"{key} must be >= 0, got {value}")
        self.eps_sq, self.inv_weight, self.tcr_weight = eps_sq, inv_weight, tcr_weight
        self.normalize = bool(normalize)

    def spectral_transform(self) -> Transform | None:
        return normalize_rows if self.normalize else None

    def compute(self, *views: torch.Tensor | list[torch.Tensor]) -> LossResult:
        zs = parse_views(views, type(self).__name__)
        with full_precision(zs[0]):
            zs = [z.to(compute_dtype(z)) for z in zs]
            if self.normalize:
                zs = [F.normalize(z, dim=-1) for z in zs]
            mean = torch.stack(zs).mean(dim=0)
            similarity = sum(F.cosine_similarity(z, mean, dim=1).mean() for z in zs) / len(zs)
            coding_rate = sum(total_coding_rate(z, self.eps_sq) for z in zs) / len(zs)
            loss = -self.tcr_weight * coding_rate - self.inv_weight * similarity
        terms = {"coding_rate": coding_rate.detach(), "similarity": similarity.detach()}
        return LossResult(loss, terms)

    def extra_repr(self) -> str:
        return (
            f"eps_sq={self.eps_sq}, inv_weight={self.inv_weight}, tcr_weight={self.tcr_weight}, "
            f"normalize={self.normalize}"
        )
