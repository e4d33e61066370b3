"""Spectrum metrics: see collapse instead of guessing it.

All metrics take eigenvalues ``(..., k)`` in descending order (as :func:`spectrum` returns) and
reduce the last dimension:

* condition indicator ``c^{-1} = λ_min / λ_max`` (INTL paper, Figure 2(b)); 0 when collapsed;
* stable rank ``Σ λ_i / λ_max`` (= ``‖Z‖_F² / ‖Z‖_2²``), *normalized* by the attainable rank
  ``min(c, n - 1)`` so a whitened output scores 1 (CW-RGP poster: "normalized stable-rank");
* effective rank ``exp(H(λ / Σλ))`` (Roy & Vetterli, 2007).
"""

from __future__ import annotations

import torch

from specssl.spectral._common import (
    Axis,
    center,
    check_embedding,
    covariance,
    full_precision,
    to_groups,
)


def spectrum(
    z: torch.Tensor,
    axis: Axis = "batch",
    *,
    dtype: torch.dtype = torch.float64,
    check_finite: bool = True,
) -> torch.Tensor:
    """Eigenvalues of the covariance of ``z: (..., m, d)``, descending, clamped at 0.

    ``axis="batch"``: the ``d x d`` covariance over samples (``d`` values); ``axis="channel"``:
    the ``m x m`` covariance over channels (``m`` values). Divisor ``n - 1``. Computed in
    ``dtype`` (float64 by default, so tiny eigenvalues of a collapsing embedding are resolved).
    Differentiable. Returns ``(..., d)`` or ``(..., m)``.

    LAPACK's symmetric eigensolver can fail to converge on a covariance with a huge dynamic
    range and many (near-)repeated eigenvalues (seen on 2048-d embeddings at random init); the
    eigenvalues are then the squared singular values of the centred data (``σ² / (n - 1)``, a
    different LAPACK algorithm on a better-conditioned problem). Only if that fails too is a
    ``ValueError`` raised.
    """
    check_embedding(z, check_finite=check_finite)
    with full_precision(z):
        x = to_groups(z.to(dtype), axis, 1)[..., 0, :, :]
        if x.shape[-2] < 2:
            raise ValueError(f"spectrum on the {axis} axis needs at least 2 observations")
        centred = center(x)
        try:
            evals = torch.linalg.eigvalsh(covariance(centred)).flip(-1)
        except torch.linalg.LinAlgError:
            evals = _spectrum_by_svd(centred, axis)
    return evals.clamp_min(0)


def _spectrum_by_svd(centred: torch.Tensor, axis: Axis) -> torch.Tensor:
    """Descending covariance eigenvalues ``σ_i² / (n - 1)`` of centred observations
    ``(..., n, c)``, zero-padded to ``c`` values."""
    n, c = centred.shape[-2:]
    try:
        sigma = torch.linalg.svdvals(centred)
    except torch.linalg.LinAlgError as err:
        raise ValueError(
            f"spectrum on the {axis} axis: neither eigvalsh nor svdvals converged on a "
            f"{n} x {c} embedding ({err})"
        ) from err
    evals = sigma.square() / (n - 1)
    if evals.shape[-1] < c:
        evals = torch.nn.functional.pad(evals, (0, c - evals.shape[-1]))
    return evals


def _positive_or_one(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x > 0, x with non-positive entries replaced by 1)``: a denominator that is safe in
    every dtype (``clamp_min(1e-300)`` underflows to 0 in float32) and in backward."""
    positive = x > 0
    return positive, torch.where(positive, x, torch.ones_like(x))


def condition_indicator(evals: torch.Tensor) -> torch.Tensor:
    """``λ_min / λ_max`` of descending eigenvalues ``(..., k)``; 0 for an all-zero spectrum."""
    positive, lam_max = _positive_or_one(evals[..., 0])
    return torch.where(positive, evals[..., -1] / lam_max, torch.zeros_like(lam_max))


def stable_rank(evals: torch.Tensor, *, normalize_by: int | None = None) -> torch.Tensor:
    """``Σ λ_i / λ_max`` (divided by ``normalize_by`` if given); 0 for an all-zero spectrum."""
    positive, lam_max = _positive_or_one(evals[..., 0])
    rank = torch.where(positive, evals.sum(-1) / lam_max, torch.zeros_like(lam_max))
    return rank / normalize_by if normalize_by else rank


def effective_rank(evals: torch.Tensor) -> torch.Tensor:
    """``exp(-Σ p_i log p_i)`` with ``p = λ / Σλ`` (Roy & Vetterli); in ``[1, k]`` if ``Σλ > 0``.

    Zero eigenvalues contribute ``0 log 0 = 0`` (finite value and gradient in every dtype); an
    all-zero spectrum has effective rank 0.
    """
    positive, total = _positive_or_one(evals.sum(-1, keepdim=True))
    p = evals / total
    nonzero, safe_p = _positive_or_one(p)
    entropy = -torch.where(nonzero, p * torch.log(safe_p), torch.zeros_like(p)).sum(-1)
    return torch.where(positive[..., 0], torch.exp(entropy), torch.zeros_like(entropy))


def spectral_summary(z: torch.Tensor, axis: Axis = "batch") -> dict[str, float]:
    """Scalar summary of one embedding batch ``z: (m, d)`` for logging.

    Keys: ``condition_indicator``, ``stable_rank`` (normalized by ``min(c, n - 1)``),
    ``effective_rank``, ``lambda_max``, ``lambda_min``, ``trace``.
    """
    if z.dim() != 2:
        raise ValueError(f"spectral_summary expects z of shape (m, d), got {tuple(z.shape)}")
    with torch.no_grad():
        evals = spectrum(z.detach(), axis)
    m, d = z.shape
    c, n = (d, m) if axis == "batch" else (m, d)
    return {
        "condition_indicator": float(condition_indicator(evals)),
        "stable_rank": float(stable_rank(evals, normalize_by=min(c, n - 1))),
        "effective_rank": float(effective_rank(evals)),
        "lambda_max": float(evals[0]),
        "lambda_min": float(evals[-1]),
        "trace": float(evals.sum()),
    }
