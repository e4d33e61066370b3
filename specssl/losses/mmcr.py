"""MMCR: maximum manifold capacity representations (Yerxa et al., NeurIPS 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specssl.losses._views import parse_views
from specssl.losses.base import LossResult, SSLLoss, Transform, normalize_rows
from specssl.spectral.common import compute_dtype, full_precision


class MMCRLoss(SSLLoss):
    """MMCR loss (Yerxa et al. 2023), as the authors' ``mmcr/cifar_stl/loss_mmcr.py`` computes it.

    The ``V`` views ``z_v: (m, d)`` are l2-normalised row-wise; image ``b`` has the ``d x V``
    matrix ``Z_b`` of its normalised views and the centroid ``c_b = 1/V Σ_v z̄_v,b``. With the
    centroid matrix ``C = [c_1 .. c_m]ᵀ: (m, d)`` and the nuclear norm ``‖·‖_*`` (sum of
    singular values),

        L = -‖C‖_*  +  λ / m · Σ_b ‖Z_b‖_*

    (the paper's objective: maximise the nuclear norm of the centroids, optionally shrinking
    each image's manifold; the authors' CIFAR runs use ``λ = 0``).

    Args:
        lmbda: ``λ``, weight of the per-image nuclear norms (authors' ``--lmbda`` default 0;
            the per-image SVDs are skipped when it is 0).

    Call as ``loss(z1, z2, ...)`` or ``loss([z1, ..., zV])`` with views ``(m, d)`` on the global
    batch. The singular values come from ``torch.linalg.svdvals`` in float32 (float64 for
    float64 input) with autocast off. :meth:`compute` adds the detached ``centroid_nuclear``
    (``‖C‖_*``) and, when ``λ > 0``, ``local_nuclear`` (``Σ_b ‖Z_b‖_* / m``). The monitored
    ``Ẑ`` is the l2-normalised embedding.
    """

    def __init__(self, lmbda: float = 0.0) -> None:
        super().__init__()
        if lmbda < 0:
            raise ValueError(f"lmbda must be >= 0, got {lmbda}")
        self.lmbda = lmbda

    def spectral_transform(self) -> Transform:
        return normalize_rows

    def compute(self, *views: torch.Tensor | list[torch.Tensor]) -> LossResult:
        zs = parse_views(views, type(self).__name__)
        with full_precision(zs[0]):
            z = F.normalize(torch.stack(zs).to(compute_dtype(zs[0])), dim=-1)  # (V, m, d)
            centroid_nuclear = torch.linalg.svdvals(z.mean(dim=0)).sum()
            loss = -centroid_nuclear
            terms = {"centroid_nuclear": centroid_nuclear.detach()}
            if self.lmbda != 0:
                per_image = z.permute(1, 2, 0)  # (m, d, V): Z_b
                local_nuclear = torch.linalg.svdvals(per_image).sum() / z.shape[1]
                loss = loss + self.lmbda * local_nuclear
                terms["local_nuclear"] = local_nuclear.detach()
        return LossResult(loss, terms)

    def extra_repr(self) -> str:
        return f"lmbda={self.lmbda}"
