"""Explicit spectral transformations by eigendecomposition, and Cholesky whitening.

* :func:`power_transform` — ST with ``g(λ) = λ^{-p}`` (INTL paper, Definition 1 and Sec. 3.2):
  ``Ẑ = Z_c U g(Λ) U^T``, whose covariance has eigenvalues ``λ^{1-2p}``. ``p = 0.5`` is ZCA.
* :func:`pca_whiten` — ``Ẑ = Z_c U Λ^{-1/2}`` (output in the eigenbasis, descending order);
  whitened but with a sign/order-volatile basis, the CW-RGP paper's failing case.
* :func:`cholesky_whiten` — ``Ẑ = Z_c L^{-T}`` with ``Σ = L L^T`` (W-MSE).

Gradients of the matrix function ``g(Σ)`` use the Daleckii–Krein formula with divided
differences (a custom backward): ``∂g(Σ)[E] = U (L ∘ U^T E U) U^T`` with
``L_ij = (g(λ_i) - g(λ_j)) / (λ_i - λ_j)`` and ``L_ii = g'(λ_i)``. Unlike differentiating
through ``eigh``'s eigenvectors it stays finite when eigenvalues repeat (rank deficiency,
duplicated channels). :func:`pca_whiten` depends on individual eigenvectors, so its gradient is
undefined for repeated eigenvalues (documented; that instability is part of the paper's point).

Null space: eigenvalues ``<= c * eps * λ_max`` are treated as exact zeros; for ``p > 0`` they
map to ``g = 0`` (pseudo-inverse semantics) unless ``eps > 0`` regularises ``λ -> λ + eps``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from specssl.core.errors import SingularCovarianceError
from specssl.spectral.common import (
    Axis,
    center,
    centred_moments,
    covariance,
    grouped_apply,
    should_use_gram,
)

ScalarFn = Callable[[torch.Tensor], torch.Tensor]


def null_space_mask(evals: torch.Tensor) -> torch.Tensor:
    """Eigenvalues ``(..., k)`` that are zero up to rounding: ``λ <= k eps max(λ)``."""
    k = evals.shape[-1]
    eps = torch.finfo(evals.dtype).eps
    lam_max = evals.abs().amax(dim=-1, keepdim=True)
    return evals <= k * eps * lam_max


def _loewner(evals: torch.Tensor, g: torch.Tensor, dg: torch.Tensor) -> torch.Tensor:
    """Divided-difference matrix ``L_ij`` of ``g`` at ``evals (..., k)`` -> ``(..., k, k)``.

    ``L_ij = (g(λ_i) - g(λ_j)) / (λ_i - λ_j)``, replaced by the midpoint derivative
    ``(g'(λ_i) + g'(λ_j)) / 2`` when the pair is close *relative to its own size*,
    ``|λ_i - λ_j| <= sqrt(eps) max(|λ_i|, |λ_j|)``: there the quotient loses more digits to
    cancellation than the midpoint derivative loses to curvature. (Closeness relative to
    ``λ_max`` instead would lump together all eigenvalues below ``sqrt(eps) λ_max`` — for
    ``g = λ^-p`` the small ones, whose divided differences differ by orders of magnitude.)
    """
    lam_i, lam_j = evals[..., :, None], evals[..., None, :]
    diff = lam_i - lam_j
    size = torch.maximum(lam_i.abs(), lam_j.abs())
    close = diff.abs() <= torch.finfo(evals.dtype).eps ** 0.5 * size
    quotient = (g[..., :, None] - g[..., None, :]) / torch.where(close, torch.ones_like(diff), diff)
    mean_dg = 0.5 * (dg[..., :, None] + dg[..., None, :])
    return torch.where(close, mean_dg, quotient)


class _SymmetricMatrixFunction(torch.autograd.Function):
    """``g(S) = U g(Λ) U^T`` for symmetric ``S (..., k, k)`` with a Daleckii–Krein backward."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, fn: Callable, dfn: Callable) -> torch.Tensor:  # type: ignore[override]
        evals, evecs = torch.linalg.eigh(s)
        g = fn(evals)
        ctx.save_for_backward(evals, evecs, g, dfn(evals))
        return (evecs * g[..., None, :]) @ evecs.mT

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        evals, evecs, g, dg = ctx.saved_tensors
        sym = 0.5 * (grad_out + grad_out.mT)
        inner = evecs.mT @ sym @ evecs
        grad_s = evecs @ (_loewner(evals, g, dg) * inner) @ evecs.mT
        return grad_s, None, None


def symmetric_matrix_function(s: torch.Tensor, fn: ScalarFn, dfn: ScalarFn) -> torch.Tensor:
    """Apply the scalar function ``fn`` (derivative ``dfn``) to symmetric ``s: (..., k, k)``.

    ``fn`` and ``dfn`` map eigenvalues ``(..., k)`` elementwise; the gradient follows the
    Daleckii–Krein formula (module docstring), finite for repeated eigenvalues.
    """
    return _SymmetricMatrixFunction.apply(s, fn, dfn)


def power_function(p: float, eps: float = 0.0) -> tuple[ScalarFn, ScalarFn]:
    """``g(λ) = (λ + eps)^{-p}`` and its derivative on covariance eigenvalues (Definition 1).

    Negative rounding noise is clamped to 0; null-space eigenvalues (:func:`null_space_mask`)
    get ``g = 0`` and ``g' = 0`` when ``p > 0`` and ``eps == 0`` (pseudo-inverse semantics).
    """

    def prepare(evals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam = evals.clamp_min(0) + eps
        null = null_space_mask(evals) if eps == 0 else torch.zeros_like(evals, dtype=torch.bool)
        return torch.where(null, torch.ones_like(lam), lam), null

    def g(evals: torch.Tensor) -> torch.Tensor:
        lam, null = prepare(evals)
        out = lam.pow(-p)
        return torch.where(null & (p > 0), torch.zeros_like(out), out)

    def dg(evals: torch.Tensor) -> torch.Tensor:
        lam, null = prepare(evals)
        out = -p * lam.pow(-p - 1)
        return torch.where(null, torch.zeros_like(out), out)

    return g, dg


def power_transform(
    z: torch.Tensor,
    p: float = 0.5,
    axis: Axis = "batch",
    eps: float = 0.0,
    *,
    groups: int = 1,
    use_gram: bool | None = None,
    check_finite: bool = True,
    centre: bool = True,
) -> torch.Tensor:
    """Spectral transformation ``Ẑ = Z_c g(Σ)``, ``g(λ) = (λ + eps)^{-p}`` (Definition 1).

    Args:
        z: embeddings ``(..., m, d)``.
        p: power; the output covariance has eigenvalues ``λ^{1-2p}`` (Sec. 3.2), so
            ``p = 0.5`` is ZCA whitening, ``p = 0`` the identity (centring only).
        axis, groups, check_finite, centre: as in :func:`specssl.spectral.iternorm`.
        eps: added to every eigenvalue (regularisation). With ``eps = 0`` null-space
            directions map to 0.
        use_gram: decompose the ``n x n`` Gram instead of the ``c x c`` covariance (same
            result by the push-through identity; ``None`` picks the smaller).

    Returns ``Ẑ`` with ``z``'s shape and dtype (computed in float32/float64, autocast off).
    A numerically constant group maps to zeros.
    """
    g, dg = power_function(p, eps)

    def run(x: torch.Tensor) -> torch.Tensor:
        gram_side = should_use_gram(x, use_gram)
        xc, s, _, zero = centred_moments(x, gram_side, centre)
        g_s = symmetric_matrix_function(s, g, dg)
        out = g_s @ xc if gram_side else xc @ g_s
        return torch.where(zero, torch.zeros_like(out), out)

    return grouped_apply(
        z, run, axis=axis, groups=groups, op="power_transform", check_finite=check_finite
    )


def zca_whiten(z: torch.Tensor, axis: Axis = "batch", eps: float = 0.0, **kwargs) -> torch.Tensor:
    """ZCA whitening ``Ẑ = Z_c Σ^{-1/2}``: :func:`power_transform` with ``p = 0.5``."""
    return power_transform(z, 0.5, axis, eps, **kwargs)


def pca_whiten(
    z: torch.Tensor,
    axis: Axis = "batch",
    eps: float = 0.0,
    *,
    groups: int = 1,
    check_finite: bool = True,
    centre: bool = True,
) -> torch.Tensor:
    """PCA whitening ``Ẑ = Z_c U (Λ + eps)^{-1/2}``, components in descending eigenvalue order.

    Output shape ``(..., m, d)`` like the input; null-space components are 0. The gradient
    flows through individual eigenvectors (``torch.linalg.eigh``), so it is undefined when
    eigenvalues repeat — use :func:`zca_whiten` or :func:`~specssl.spectral.iternorm` there.
    """
    g, _ = power_function(0.5, eps)

    def run(x: torch.Tensor) -> torch.Tensor:
        xc, s, _, zero = centred_moments(x, use_gram=False, centre=centre)
        evals, evecs = torch.linalg.eigh(s)
        evals, evecs = evals.flip(-1), evecs.flip(-1)
        out = (xc @ evecs) * g(evals)[..., None, :]
        return torch.where(zero, torch.zeros_like(out), out)

    return grouped_apply(
        z, run, axis=axis, groups=groups, op="pca_whiten", check_finite=check_finite
    )


def raise_not_positive_definite(axis: str, n: int, c: int) -> None:
    raise SingularCovarianceError(
        f"cholesky_whiten on the {axis} axis: the {c}x{c} covariance is not positive "
        f"definite (estimated from n={n} observations; needs c <= n - 1 and no "
        "collinear or constant channels). Use eps > 0, more groups, the other axis, "
        "or iternorm/zca, which handle rank deficiency."
    )


def cholesky_whiten(
    z: torch.Tensor,
    axis: Axis = "batch",
    eps: float = 0.0,
    *,
    groups: int = 1,
    check_finite: bool = True,
    centre: bool = True,
) -> torch.Tensor:
    """Cholesky whitening as in W-MSE: ``Σ_ε = (1 - eps) Σ + eps I = L L^T``, ``Ẑ = Z_c L^{-T}``.

    Requires a positive-definite ``Σ_ε``: with ``eps = 0`` that needs ``c <= n - 1``
    (``d/g < m`` on the batch axis), checked from the shapes, and a condition number below
    ``1 / (c eps_dtype)`` (checked on the Cholesky pivots). Otherwise raises ``ValueError``
    naming the sizes instead of returning NaN or rounding noise.
    """
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"cholesky_whiten shrinkage eps must be in [0, 1), got {eps}")

    def run(x: torch.Tensor) -> torch.Tensor:
        xc = center(x) if centre else x
        n, c = xc.shape[-2:]
        if eps == 0 and c > n - 1:
            # Singular by shape alone. Checked up front: in float32 rounding can leave a tiny
            # positive pivot, so cholesky_ex may "succeed" with a wrong whitening.
            raise_not_positive_definite(axis, n, c)
        s = covariance(xc)
        if eps:
            eye = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device)
            s = (1 - eps) * s + eps * eye
        chol, info = torch.linalg.cholesky_ex(s)
        # A pivot ratio below sqrt(c eps) means a numerically singular covariance (condition
        # number > 1 / (c eps)) whose "whitening" would be rounding noise.
        pivots = chol.diagonal(dim1=-2, dim2=-1).abs()
        tiny = pivots.amin(-1) ** 2 <= c * torch.finfo(s.dtype).eps * pivots.amax(-1) ** 2
        if bool((info > 0).any()) or bool(tiny.any()):
            raise_not_positive_definite(axis, n, c)
        return torch.linalg.solve_triangular(chol, xc.mT, upper=False).mT

    return grouped_apply(
        z, run, axis=axis, groups=groups, op="cholesky_whiten", check_finite=check_finite
    )
