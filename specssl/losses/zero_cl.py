"""Zero-CL (Zhang et al., "Zero-CL: Instance and Feature Decorrelation for Negative-free
Symmetric Contrastive Learning", ICLR 2022).

Two whitenings of each view's embedding ``z: (m, d)``, both ZCA with shrinkage:

* instance-wise (ICL, the ``"channel"`` axis of this package): standardize each row over its
  ``d`` channels, whiten the ``m x m`` instance covariance, ``Ẑ_I = Σ_I^{-1/2} Z_s``;
* feature-wise (FCL, the ``"batch"`` axis): standardize each column over the ``m`` samples,
  whiten the ``d x d`` feature covariance, ``Ẑ_F = Z_s Σ_F^{-1/2}``;

and the combined loss, for views ``a, b``,

    L_ICL = Σ_i (1 - ⟨Ẑ_I^a[i,:], Ẑ_I^b[i,:]⟩ / d)²     (diagonal of the m x m cross-correlation)
    L_FCL = Σ_j (1 - ⟨Ẑ_F^a[:,j], Ẑ_F^b[:,j]⟩ / m)²     (diagonal of the d x d cross-correlation)
    L     = w_I L_ICL + w_F L_FCL,                     averaged over view pairs.

Whitening detail (the paper's full text was not available to us; these follow the only public
re-implementation we found, the CW-RGP authors' ``Zero-ICL`` baseline,
github.com/winci-ai/CW-RGP ``base/methods/zero_icl.py``): standardization with the unbiased
std, covariance ``x^T x / (n - 1)`` of the standardized data, shrinkage
``Σ_s = (1 - s) Σ + s I`` with ``s = 0.1``, whitening matrix ``(Σ_s + eps I)^{-1/2}`` with
``eps = 1e-5``, and **no gradient through the whitening matrix** (``detach_whitening=True``:
gradients flow through the standardized embedding only). ``L_FCL`` is written by symmetry with
that code (the feature-wise cross-correlation divided by ``m``, as ``L_ICL`` divides by ``d``).
The equal weights ``w_I = w_F = 1`` are this package's choice.

The matrix function ``(Σ_s + eps I)^{-1/2}`` is :func:`specssl.spectral.symmetric_matrix_function`
with :func:`specssl.spectral.power_function` (``p = 1/2``): the spectral layer's ZCA code, with
its Daleckii–Krein backward when the matrix is not detached. Without detaching, when the
covariance side exceeds the number of observations the equivalent ``n x n`` Gram form is used
(push-through identity); a detached whitening matrix is always the ``c x c`` one of the
reference code (the two forms have equal values but different gradients once detached).
"""

from __future__ import annotations

import torch

from specssl.losses._views import parse_views, view_pairs
from specssl.losses.base import LossResult, SSLLoss, Transform
from specssl.spectral import power_function, symmetric_matrix_function
from specssl.spectral.common import (
    Axis,
    check_axis,
    compute_dtype,
    covariance,
    full_precision,
    gram,
)


def standardize(z: torch.Tensor, axis: Axis) -> torch.Tensor:
    """Zero-mean, unit-(unbiased-)std along the observations of ``axis`` for ``z: (m, d)``.

    ``"batch"``: each column over the ``m`` samples; ``"channel"``: each row over the ``d``
    channels. A constant column/row has its std clamped to the dtype's eps (it maps to 0).
    """
    dim = 0 if axis == "batch" else 1
    zc = z - z.mean(dim=dim, keepdim=True)
    var = zc.pow(2).sum(dim=dim, keepdim=True) / (z.shape[dim] - 1)
    return zc / var.clamp_min(torch.finfo(z.dtype).eps ** 2).sqrt()


def shrunk_zca(
    z: torch.Tensor,
    axis: Axis,
    shrinkage: float = 0.1,
    eps: float = 1e-5,
    detach_whitening: bool = True,
) -> torch.Tensor:
    """Zero-CL whitening of ``z: (m, d)`` on ``axis`` -> ``(m, d)``.

    ``x`` = :func:`standardize` ``(z, axis)`` in the observation layout ``(n, c)`` (``z`` for
    ``"batch"``, ``z^T`` for ``"channel"``), ``Σ = x^T x / (n - 1)``,
    ``W = ((1 - s) Σ + s I + eps I)^{-1/2}``, ``Ẑ = x W`` (returned in ``z``'s layout).
    With ``detach_whitening`` the gradient treats ``W`` as a constant.
    """
    check_axis(axis)
    x = standardize(z, axis)
    x = x if axis == "batch" else x.mT  # (n, c): n observations of c variables
    n, c = x.shape
    # X g(XᵀX) = g(XXᵀ) X: decompose the smaller matrix. Only in value, not in the gradient of
    # a detached W (x·W_cov vs W_gram·x differ in x's gradient), so detached W is always c x c.
    use_gram = c > n and not detach_whitening
    s = gram(x) if use_gram else covariance(x)
    eye = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device)
    s = (1 - shrinkage) * s + shrinkage * eye
    if detach_whitening:
        s = s.detach()
    w = symmetric_matrix_function(s, *power_function(0.5, eps))
    out = w @ x if use_gram else x @ w
    return out if axis == "batch" else out.mT


class ZeroCLLoss(SSLLoss):
    """Zero-CL: instance-wise + feature-wise shrunk ZCA whitening, cross-correlation diagonals.

    Args:
        instance_weight: weight ``w_I`` of the instance-wise term ``L_ICL`` (0 disables it).
        feature_weight: weight ``w_F`` of the feature-wise term ``L_FCL`` (0 disables it).
        shrinkage: ``s`` in ``(1 - s) Σ + s I``, in ``[0, 1)``.
        eps: added to every eigenvalue before the inverse square root.
        detach_whitening: stop the gradient through the whitening matrices.

    Call as ``loss(z1, z2)`` or ``loss([z1, z2, ...])`` with views ``(m, d)``; returns a float32
    (float64 for float64 input) scalar; :meth:`compute` adds the detached ``instance`` and
    ``feature`` terms (averaged over view pairs, unweighted). The monitored ``Ẑ`` is
    :meth:`transform`.
    """

    def __init__(
        self,
        instance_weight: float = 1.0,
        feature_weight: float = 1.0,
        shrinkage: float = 0.1,
        eps: float = 1e-5,
        detach_whitening: bool = True,
    ) -> None:
        super().__init__()
        if instance_weight < 0 or feature_weight < 0:
            raise ValueError(
                f"instance_weight and feature_weight must be >= 0, got {instance_weight}, "
                f"{feature_weight}"
            )
        if instance_weight == 0 and feature_weight == 0:
            raise ValueError("ZeroCLLoss needs instance_weight > 0 or feature_weight > 0")
        if not 0.0 <= shrinkage < 1.0:
            raise ValueError(f"shrinkage must be in [0, 1), got {shrinkage}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.instance_weight, self.feature_weight = instance_weight, feature_weight
        self.shrinkage, self.eps, self.detach_whitening = shrinkage, eps, detach_whitening

    @property
    def axis(self) -> Axis:
        """Axis of :meth:`transform`: ``"batch"`` (FCL) unless only the ICL term is used."""
        return "batch" if self.feature_weight > 0 else "channel"

    def whiten(self, z: torch.Tensor, axis: Axis) -> torch.Tensor:
        """Zero-CL whitening of one view ``z: (m, d)`` on ``axis`` (see :func:`shrunk_zca`)."""
        return shrunk_zca(z, axis, self.shrinkage, self.eps, self.detach_whitening)

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        """The whitening on :attr:`axis` (what the spectrum monitor shows as ``Ẑ``)."""
        return self.whiten(z, self.axis)

    def spectral_transform(self) -> Transform:
        return self.transform

    def compute(self, *views: torch.Tensor | list[torch.Tensor]) -> LossResult:
        zs = parse_views(views, type(self).__name__)
        m, d = zs[0].shape
        if m < 2 or d < 2:
            raise ValueError(f"ZeroCLLoss needs at least 2 samples and 2 channels, got {(m, d)}")
        pairs = view_pairs(len(zs))
        with full_precision(zs[0]):
            zs = [z.to(compute_dtype(z)) for z in zs]
            zero = zs[0].new_zeros(())
            instance = feature = zero
            if self.instance_weight > 0:
                wi = [self.whiten(z, "channel") for z in zs]
                instance = sum(diagonal_term(wi[i], wi[j], 1) for i, j in pairs) / len(pairs)
            if self.feature_weight > 0:
                wf = [self.whiten(z, "batch") for z in zs]
                feature = sum(diagonal_term(wf[i], wf[j], 0) for i, j in pairs) / len(pairs)
            loss = self.instance_weight * instance + self.feature_weight * feature
        return LossResult(loss, {"instance": instance.detach(), "feature": feature.detach()})

    def extra_repr(self) -> str:
        return (
            f"instance_weight={self.instance_weight}, feature_weight={self.feature_weight}, "
            f"shrinkage={self.shrinkage}, eps={self.eps}, "
            f"detach_whitening={self.detach_whitening}"
        )


def diagonal_term(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """``Σ_k (1 - C_kk)²`` with ``C_kk = ⟨a_k, b_k⟩ / n``: rows (``dim=1``, ``n = d``) or
    columns (``dim=0``, ``n = m``) of ``a, b: (m, d)``."""
    c = (a * b).sum(dim=dim) / a.shape[dim]
    return (1 - c).pow(2).sum()
