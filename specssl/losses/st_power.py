"""Whitening loss with the explicit power spectral transformation (INTL paper, Section 3.2)."""

from __future__ import annotations

import torch

from specssl.losses._views import mean_pairwise_normalized_mse, parse_views
from specssl.losses.base import LossResult, SSLLoss, Transform
from specssl.losses.wmse import sub_batched_whitening_loss
from specssl.spectral import power_transform
from specssl.spectral.common import Axis, check_axis, compute_dtype, full_precision

PRECISIONS = {"float32", "float64"}


class STPowerLoss(SSLLoss):
    """``L = mean over view pairs (2 - 2 mean_i cos(Ẑ_a[i], Ẑ_b[i]))``, ``Ẑ_v = Z_v g(Σ_v)``.

    ``g(λ) = (λ + eps)^{-p}`` (Definition 1), so the output spectrum is ``λ^{1-2p}``: ``p = 0.5``
    is ZCA whitening; the paper finds collapse is avoided for ``p`` near 0.5 (0.45-0.55) and
    appears as ``p`` moves away (Figure 2).

    Args:
        p: power of the transformation.
        axis: ``"batch"`` (the paper's Section 3.2, default) or ``"channel"``.
        eps: eigenvalue regulariser (0 = pseudo-inverse semantics on the null space).
        groups: channel groups transformed independently.
        w_size: rows per transformation sub-batch (``None`` = the whole batch, default), as
            in W-MSE: each round draws a random partition of the ``m`` rows into sub-batches
            of ``w_size``, each transformed with its own covariance. The whitening-loss code
            of the seeds' authors (github.com/winci-ai/CW-RGP, ``--w_size`` default 128) works
            this way (whole batch vs sub-batches at the CPU budget:
            docs/results/cifar10_cpu.md, row ``st_power@whole_batch``).
        w_iter: random sub-batch partitions averaged per step.
        precision: ``"float32"`` (default; float64 inputs stay float64) or ``"float64"``:
            the dtype of the covariance, its eigendecomposition and the transform. In
            float32, eigenvalues below ``d · eps_32 · λ_max`` are rounding noise and are
            treated as null space (mapped to 0), so the whitened output of an ill-conditioned
            embedding loses rank; float64 keeps them resolved (cheap for the small ``d`` of
            batch whitening). Condition numbers met in training:
            docs/results/sec33_eig_instability/README.md.

    The monitored ``Ẑ`` is :meth:`transform` of the whole sample (not in sub-batches), cast
    back to the embedding's dtype.
    """

    def __init__(
        self,
        p: float = 0.5,
        axis: Axis = "batch",
        eps: float = 0.0,
        groups: int = 1,
        w_size: int | None = None,
        w_iter: int = 1,
        precision: str = "float32",
    ) -> None:
        super().__init__()
        check_axis(axis)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.p, self.axis, self.eps, self.groups = p, axis, eps, groups
        self.w_size, self.w_iter, self.precision = w_size, w_iter, precision

    def compute_dtype(self, z: torch.Tensor) -> torch.dtype:
        """The dtype of the spectral math for an embedding ``z``."""
        return torch.float64 if self.precision == "float64" else compute_dtype(z)

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        """``Ẑ = Z_c g(Σ)`` of ``z: (..., m, d)`` in the compute dtype (no sub-batching)."""
        return power_transform(
            z.to(self.compute_dtype(z)),
            self.p,
            self.axis,
            self.eps,
            groups=self.groups,
            check_finite=False,
        )

    def spectral_transform(self) -> Transform:
        return lambda z: self.transform(z).to(z.dtype)

    def compute(self, *views: torch.Tensor | list[torch.Tensor]) -> LossResult:
        zs = parse_views(views, type(self).__name__)
        with full_precision(zs[0]):
            if self.w_size is None and self.w_iter == 1:  # whole batch: no permutation drawn
                loss = mean_pairwise_normalized_mse([self.transform(z) for z in zs])
            else:
                loss = sub_batched_whitening_loss(zs, self.transform, self.w_size, self.w_iter)
            return LossResult(loss.to(compute_dtype(zs[0])))

    def extra_repr(self) -> str:
        return (
            f"p={self.p}, axis={self.axis}, eps={self.eps}, groups={self.groups}, "
            f"w_size={self.w_size}, w_iter={self.w_iter}, precision={self.precision}"
        )
