"""Spectrum metrics: see collapse instead of guessing it.

All metrics take eigenvalues ``(..., k)`` in descending order (as :func:`spectrum` returns) and
reduce the last dimension. Every covariance has a *rank bound* ``r`` fixed by its shape
(:func:`rank_bound`): the ``d x d`` batch-axis covariance of ``m`` samples has rank at most
``min(d, m - 1)``, the ``m x m`` channel-axis covariance of ``d`` channels at most
``min(m, d - 1)`` (``min(m, d - g)`` when ``g`` channel groups are centred separately). The
eigenvalues beyond ``r`` are zero for *every* input, healthy or collapsed, so the metrics are
taken inside the bound:

* condition indicator ``c^{-1} = λ_r / λ_1`` (INTL paper, Figure 2(b), over the ``r``
  eigenvalues the matrix can have); 0 when collapsed inside the bound. The full-spectrum
  ratio ``λ_k / λ_1`` is ``condition_indicator_raw`` (0 by construction whenever ``r < k``);
* stable rank ``Σ λ_i / λ_1`` (= ``‖Z‖_F² / ‖Z‖_2²``), *normalized* by the rank bound ``r``
  so a whitened output scores 1 (CW-RGP poster: "normalized stable-rank"). This is the one
  normalisation used everywhere (monitor, ``specssl spectrum``, zoo, experiments);
* effective rank ``exp(H(λ / Σλ))`` (Roy & Vetterli, 2007).

:func:`spectrum_metrics` gives all scalars of one spectrum (these, NESum and α-ReQ of
:mod:`specssl.spectral.quality`); :func:`embedding_spectra` is the one function that computes
the spectra and summary metrics of an embedding ``Z``, its transformed output ``Ẑ`` and,
optionally, backbone features and LiDAR views: the training monitor, ``specssl spectrum``, the
zoo and the experiments all call it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from specssl.spectral.common import (
    Axis,
    center,
    check_axis,
    check_embedding,
    covariance,
    full_precision,
    to_groups,
)
from specssl.spectral.quality import alpha_req, lidar, nesum, rankme


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


def rank_bound(
    m: int, d: int, axis: Axis = "batch", *, groups: int = 1, sub_batches: int = 1
) -> int:
    """The largest rank the covariance of an ``(m, d)`` embedding on ``axis`` can have.

    * ``"batch"``: the ``d x d`` covariance of ``m`` samples centred over the samples has rank
      ``≤ min(d, m - 1)``; an output whose ``sub_batches`` row blocks were each centred (and
      transformed) separately, e.g. W-MSE's sub-batch whitening, has ``sub_batches`` linear
      constraints on its rows: ``≤ min(d, m - sub_batches)``. Channel groups do not lower it.
    * ``"channel"``: the ``m x m`` covariance over ``d`` channels, each sample centred over its
      channels, has rank ``≤ min(m, d - 1)``; an output whose ``groups`` channel groups were
      each centred over their own channels (IterNorm / ST-power with groups on the channel
      axis) has one constraint per group: ``≤ min(m, d - groups)``. Sub-batches do not
      lower it.

    At least 1 (a covariance of one observation is all-zero; its metrics are then 0).
    """
    check_axis(axis)
    if m < 1 or d < 1 or groups < 1 or sub_batches < 1:
        raise ValueError(
            f"rank_bound needs positive sizes, got m={m}, d={d}, groups={groups}, "
            f"sub_batches={sub_batches}"
        )
    if axis == "batch":
        return max(1, min(d, m - sub_batches))
    return max(1, min(m, d - groups))


def condition_indicator(evals: torch.Tensor, rank: int | None = None) -> torch.Tensor:
    """``λ_r / λ_1`` of descending eigenvalues ``(..., k)`` with ``r = min(rank, k)``, the
    rank bound of the matrix (:func:`rank_bound`); ``rank=None`` gives the full-spectrum
    ratio ``λ_k / λ_1``. 0 for an all-zero spectrum."""
    k = evals.shape[-1] if rank is None else max(1, min(int(rank), evals.shape[-1]))
    positive, lam_max = _positive_or_one(evals[..., 0])
    return torch.where(positive, evals[..., k - 1] / lam_max, torch.zeros_like(lam_max))


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


def spectrum_metrics(evals: torch.Tensor, rank: int | None = None) -> dict[str, float]:
    """Scalar metrics of one descending spectrum ``evals: (k,)`` with rank bound ``rank``
    (:func:`rank_bound`; ``None``: ``k``).

    Keys: ``condition_indicator`` (``λ_r / λ_1``), ``condition_indicator_raw``
    (``λ_k / λ_1``), ``stable_rank`` (``Σλ / λ_1 / r``), ``effective_rank``, ``nesum``
    (``Σλ / λ_1``, He & Ozay 2022), ``alpha_req`` (power-law exponent over ranks 6..100 inside
    the bound, Agrawal et al. 2022; left out where fewer than 2 ranks are positive),
    ``lambda_max``, ``lambda_min`` (``λ_k``), ``lambda_min_in_rank`` (``λ_r``), ``trace`` and
    ``rank_bound`` (``r``, as a float).
    """
    if evals.dim() != 1 or evals.numel() == 0:
        raise ValueError(
            f"spectrum_metrics expects eigenvalues of shape (k,), got {tuple(evals.shape)}"
        )
    k = evals.numel()
    r = k if rank is None else max(1, min(int(rank), k))
    evals = evals.detach()
    out = {
        "condition_indicator": float(condition_indicator(evals, r)),
        "condition_indicator_raw": float(condition_indicator(evals)),
        "stable_rank": float(stable_rank(evals, normalize_by=r)),
        "effective_rank": float(effective_rank(evals)),
        "nesum": float(nesum(evals)),
        "lambda_max": float(evals[0]),
        "lambda_min": float(evals[-1]),
        "lambda_min_in_rank": float(evals[r - 1]),
        "trace": float(evals.sum()),
        "rank_bound": float(r),
    }
    alpha = float(alpha_req(evals, rank=r))
    if math.isfinite(alpha):
        out["alpha_req"] = alpha
    return out


def spectral_summary(z: torch.Tensor, axis: Axis = "batch") -> dict[str, float]:
    """Scalar summary of one embedding batch ``z: (m, d)`` for logging:
    :func:`spectrum_metrics` of its covariance spectrum on ``axis``, inside the rank bound
    ``min(d, m - 1)`` (batch) or ``min(m, d - 1)`` (channel)."""
    if z.dim() != 2:
        raise ValueError(f"spectral_summary expects z of shape (m, d), got {tuple(z.shape)}")
    with torch.no_grad():
        evals = spectrum(z.detach(), axis)
    m, d = z.shape
    return spectrum_metrics(evals, rank_bound(m, d, axis))


@dataclass
class EmbeddingSpectra:
    """Spectra and summary metrics of one embedding (:func:`embedding_spectra`).

    ``z``: ``(d,)`` eigenvalues of the ``d x d`` covariance of ``Z``, descending, float64;
    ``zhat``: eigenvalues of cov(Ẑ) on ``zhat_axis``, averaged over ``zhat_chunks`` chunks of
    ``zhat_chunk`` rows (``None`` without a transformation); ``metrics``: ``"<which>/<name>"``
    scalars, ``which`` in ``z``, ``zhat``, ``features``.
    """

    z: torch.Tensor
    zhat: torch.Tensor | None
    metrics: dict[str, float] = field(default_factory=dict)
    zhat_axis: str | None = None
    zhat_chunk: int | None = None
    zhat_chunks: int = 0
    zhat_groups: int = 1


def embedding_spectra(
    z: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    axis: Axis = "batch",
    chunk: int | None = None,
    *,
    groups: int = 1,
    features: torch.Tensor | None = None,
    views: Mapping[str, torch.Tensor] | None = None,
) -> EmbeddingSpectra:
    """The spectra and summary metrics of a ``(Z, Ẑ)`` pair: the one function behind the
    training monitor, ``specssl spectrum``, the zoo and the experiments.

    Args:
        z: ``(n, d)`` embedding (projector output) of ``n`` images.
        transform: the method's transformation ``φ`` (``Ẑ = φ(Z)``), or ``None``.
        axis: the covariance axis of ``Ẑ`` (the method's ``spectral_axis``).
        chunk: ``φ`` is applied to each consecutive chunk of ``chunk`` rows, as the loss sees
            a training batch (incomplete last chunk dropped; one chunk of all ``n`` rows when
            ``n < chunk``; ``None``: all rows), and the eigenvalues are averaged over chunks.
        groups: channel groups that ``φ`` centres separately (lowers the channel-axis rank
            bound of ``Ẑ`` to ``min(chunk, d - groups)``, :func:`rank_bound`).
        features: optional ``(n, f)`` backbone features of the same images.
        views: optional LiDAR views ``{"z": (n_l, q, d), "features": (n_l, q, f)}``: ``q``
            augmentations of each of ``n_l`` images.

    Metrics (``"<which>/<name>"``): for ``z`` (rank bound ``min(d, n - 1)``), ``zhat`` (rank
    bound of one chunk on ``axis``) and ``features`` (``min(f, n - 1)``) every key of
    :func:`spectrum_metrics`; for ``z`` and ``features`` also ``rankme``
    (:func:`~specssl.spectral.quality.rankme` of the matrix) and, with ``views``, ``lidar``
    (:func:`~specssl.spectral.quality.lidar`).
    """
    if z.dim() != 2 or z.shape[0] < 2:
        raise ValueError(f"z must have shape (n >= 2, d), got {tuple(z.shape)}")
    n, d = z.shape
    z_evals = spectrum(z, "batch", check_finite=False).cpu()
    metrics = _prefixed("z", spectrum_metrics(z_evals, rank_bound(n, d, "batch")))
    metrics["z/rankme"] = float(rankme(z))
    out = EmbeddingSpectra(z=z_evals, zhat=None, metrics=metrics)
    if features is not None:
        if features.dim() != 2 or features.shape[0] != n:
            raise ValueError(
                f"features must have shape ({n}, f) like z, got {tuple(features.shape)}"
            )
        f_evals = spectrum(features, "batch", check_finite=False).cpu()
        f_dim = features.shape[1]
        metrics.update(_prefixed("features", spectrum_metrics(f_evals, rank_bound(n, f_dim))))
        metrics["features/rankme"] = float(rankme(features))
    for which, v in (views or {}).items():
        metrics[f"{which}/lidar"] = float(lidar(v))
    if transform is None:
        return out
    size = min(chunk or n, n)
    parts = [p for p in z.split(size) if p.shape[0] == size]
    with torch.no_grad():
        evals = torch.stack([spectrum(transform(p), axis, check_finite=False) for p in parts])
    out.zhat = evals.mean(0).cpu()
    out.zhat_axis, out.zhat_chunk, out.zhat_chunks, out.zhat_groups = axis, size, len(parts), groups
    bound = rank_bound(size, d, axis, groups=groups if axis == "channel" else 1)
    metrics.update(_prefixed("zhat", spectrum_metrics(out.zhat, bound)))
    return out


def _prefixed(which: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{which}/{k}": v for k, v in metrics.items()}
