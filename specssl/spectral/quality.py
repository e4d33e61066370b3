"""Label-free quality metrics of a representation: RankMe, LiDAR, α-ReQ, NESum.

Each function follows the definition of its paper (quoted in its docstring, with the paper's
constants as defaults) and computes in float64. Shapes:

* :func:`rankme` takes the embedding matrix ``z: (..., n, d)`` (``n`` samples);
* :func:`lidar` takes ``views: (n, q, d)``, ``q`` augmentations of each of ``n`` images;
* :func:`alpha_req` and :func:`nesum` take covariance eigenvalues ``(..., k)`` in descending
  order, as :func:`specssl.spectral.spectrum` returns them.

The independent float64 reference the tests compare against is
:mod:`specssl.reference.quality` (numpy and scipy, no code shared with this module).

Where the papers' public code differs from the paper, the docstring says so; the defaults are
the paper's. Sources: Garrido et al., "RankMe: Assessing the Downstream Performance of
Pretrained Self-Supervised Representations by Their Rank", ICML 2023; Thilak et al., "LiDAR:
Sensing Linear Probing Performance in Joint Embedding SSL Architectures", ICLR 2024; Agrawal
et al., "α-ReQ: Assessing Representation Quality in Self-Supervised Learning by measuring
eigenspectrum decay", NeurIPS 2022; He & Ozay, "Exploring the Gap between Collapsed and
Whitened Features in Self-Supervised Learning", ICML 2022.
"""

from __future__ import annotations

import math

import torch

from specssl.spectral.common import check_embedding, full_precision

#: RankMe's ε (Garrido et al. 2023): ``p_k = σ_k / ‖σ‖_1 + ε``.
RANKME_EPS = 1e-7
#: LiDAR's regularisation of the within-class covariance, ``Σ_w + δ I`` (Thilak et al. 2024).
LIDAR_DELTA = 1e-4
#: LiDAR's ε in ``p_i = λ_i / ‖λ‖_1 + ε`` (the value of stable-pretraining's LiDAR callback).
LIDAR_EPS = 1e-8
#: α-ReQ's fit range: 1-based eigenvalue ranks ``k = 6 .. 100`` (inclusive), the default of the
#: α-ReQ authors' ``reptrix.alpha.get_alpha`` (0-based indices ``5 .. 99``); the first ranks are
#: left out because the power law describes the tail of the spectrum.
ALPHA_REQ_FIT_RANGE = (6, 100)


def _entropy_rank(values: torch.Tensor, eps: float) -> torch.Tensor:
    """``exp(-Σ_k p_k log p_k)`` with ``p_k = v_k / ‖v‖_1 + ε`` over the last dimension of
    non-negative ``values (..., k)``; an all-zero ``v`` gives ``p_k = ε``."""
    total = values.sum(-1, keepdim=True)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    p = values / safe + eps
    return torch.exp(-(p * torch.log(p)).sum(-1))


def rankme(z: torch.Tensor, *, eps: float = RANKME_EPS) -> torch.Tensor:
    """RankMe of an embedding matrix ``z: (..., n, d)`` -> ``(...)`` float64.

    Garrido et al. (ICML 2023), the definition of RankMe::

        RankMe(Z) = exp( - Σ_{k=1}^{min(n, d)} p_k log p_k ),   p_k = σ_k(Z) / ‖σ(Z)‖_1 + ε

    with ``σ(Z)`` the singular values of the (not centred) embedding matrix and their
    ``ε = 1e-7``. A smooth count of the singular values in use: ``min(n, d)`` for equal singular
    values, 1 for a rank-one ``Z`` (up to the ``ε`` terms, which are not renormalised, as in
    the paper). stable-pretraining's ``RankMe`` callback adds ``1e-5`` instead of ``1e-7``.
    """
    check_embedding(z)
    with full_precision(z):
        sigma = torch.linalg.svdvals(z.detach().to(torch.float64))
    return _entropy_rank(sigma, eps)


def lidar_matrix(views: torch.Tensor, *, delta: float = LIDAR_DELTA) -> torch.Tensor:
    """LiDAR's LDA matrix ``Σ_w^{-1/2} Σ_b Σ_w^{-1/2}`` of ``views: (n, q, d)`` -> ``(d, d)``.

    Thilak et al. (ICLR 2024), the definition of the LDA matrix: each of the ``n`` images is
    a surrogate class whose ``q`` samples are its augmentations ``e_ij``; with class means
    ``μ_i = (1/q) Σ_j e_ij`` and ``μ = (1/n) Σ_i μ_i``::

        Σ_b = 1/(n-1) Σ_i (μ_i - μ)(μ_i - μ)^T
        Σ_w = 1/(n(q-1)) Σ_i Σ_j (e_ij - μ_i)(e_ij - μ_i)^T + δ I_d
        Σ_lidar = Σ_w^{-1/2} Σ_b Σ_w^{-1/2}

    The paper writes the two covariances as expectations; the divisors here are the unbiased
    ones (as stable-pretraining's ``LiDAR`` callback). ``δ = 1e-4`` keeps ``Σ_w`` invertible.
    ``Σ_w^{-1/2}`` comes from the eigendecomposition of ``Σ_w``. Float64.
    """
    if views.dim() != 3:
        raise ValueError(f"views must have shape (n, q, d), got {tuple(views.shape)}")
    n, q, d = views.shape
    if n < 2 or q < 2:
        raise ValueError(f"LiDAR needs n >= 2 images and q >= 2 views each, got n={n}, q={q}")
    check_embedding(views)
    with full_precision(views):
        e = views.detach().to(torch.float64)
        class_means = e.mean(1)  # (n, d)
        between = class_means - class_means.mean(0)
        sigma_b = between.T @ between / (n - 1)
        within = (e - class_means[:, None]).reshape(n * q, d)
        sigma_w = within.T @ within / (n * (q - 1))
        sigma_w = sigma_w + delta * torch.eye(d, dtype=e.dtype, device=e.device)
        w_evals, w_vecs = torch.linalg.eigh(sigma_w)
        inv_sqrt = (w_vecs * w_evals.rsqrt()) @ w_vecs.T
        out = inv_sqrt @ sigma_b @ inv_sqrt
        return (out + out.T) / 2


def lidar(
    views: torch.Tensor, *, delta: float = LIDAR_DELTA, eps: float = LIDAR_EPS
) -> torch.Tensor:
    """LiDAR of ``views: (n, q, d)`` (``q`` augmentations of each of ``n`` images) -> ``()``.

    Thilak et al. (ICLR 2024), the definition of LiDAR: the effective rank of the LDA matrix
    :func:`lidar_matrix`, in RankMe's form::

        LiDAR(e) = exp( - Σ_i p_i log p_i ),   p_i = λ_i / ‖λ‖_1 + ε

    with ``λ`` the eigenvalues of ``Σ_lidar`` (clamped at 0), ``δ = 1e-4`` and ``ε = 1e-8``.
    At most ``min(d, n - 1)``: ``Σ_b`` has rank ``≤ n - 1``. stable-pretraining's callback
    normalises ``(λ_i + ε) / Σ_j (λ_j + ε)`` instead (a difference of order ``d ε``).
    """
    evals = torch.linalg.eigvalsh(lidar_matrix(views, delta=delta)).clamp_min(0)
    return _entropy_rank(evals, eps)


def alpha_req(
    evals: torch.Tensor,
    *,
    fit_range: tuple[int, int] = ALPHA_REQ_FIT_RANGE,
    rank: int | None = None,
    weighted: bool = False,
) -> torch.Tensor:
    """α-ReQ: the power-law decay exponent of descending eigenvalues ``(..., k)`` -> ``(...)``.

    Agrawal et al. (NeurIPS 2022), the definition of α: the covariance eigenspectrum decays as
    ``λ_k ∝ k^{-α}``; ``α`` is the negative slope of the least-squares line through
    ``(log k, log λ_k)``::

        log λ_k ≈ c - α log k,   k = k_lo .. k_hi

    over the 1-based ranks ``fit_range = (k_lo, k_hi)`` (default ``(6, 100)``, the authors'
    ``reptrix`` default), clipped to the ``rank`` bound of the matrix (eigenvalues beyond it
    are zero by construction) and to the positive eigenvalues. Ordinary least squares;
    ``weighted=True`` weights rank ``k`` by ``1/k`` as ``reptrix.alpha.get_powerlaw`` does.
    NaN where fewer than 2 ranks are left. Float64.
    """
    lo, hi = fit_range
    if lo < 1 or hi < lo:
        raise ValueError(f"fit_range must be 1 <= k_lo <= k_hi, got {fit_range}")
    lam = evals.detach().to(torch.float64)
    k_max = lam.shape[-1] if rank is None else min(int(rank), lam.shape[-1])
    flat = lam.reshape(-1, lam.shape[-1])
    out = torch.full((flat.shape[0],), math.nan, dtype=torch.float64)
    for row, values in enumerate(flat):
        positive = int((values > 0).sum())
        top = min(hi, k_max, positive)
        if top - lo + 1 < 2:
            continue
        k = torch.arange(lo, top + 1, dtype=torch.float64, device=values.device)
        x, y = torch.log(k), torch.log(values[lo - 1 : top])
        w = 1.0 / k if weighted else torch.ones_like(k)
        xm, ym = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
        slope = (w * (x - xm) * (y - ym)).sum() / (w * (x - xm).square()).sum()
        out[row] = -slope.cpu()
    return out.reshape(lam.shape[:-1])


def nesum(evals: torch.Tensor) -> torch.Tensor:
    """NESum of descending covariance eigenvalues ``(..., k)`` -> ``(...)``.

    He & Ozay (ICML 2022), the normalised eigenvalue sum::

        NESum = Σ_i λ_i / λ_1

    with ``λ_1`` the largest eigenvalue: 1 for a rank-one covariance, ``k`` for a whitened
    one (the un-normalised stable rank). 0 for an all-zero spectrum. Float64.
    """
    lam = evals.to(torch.float64)
    top = lam[..., 0]
    safe = torch.where(top > 0, top, torch.ones_like(top))
    return torch.where(top > 0, lam.sum(-1) / safe, torch.zeros_like(top))


__all__ = [
    "ALPHA_REQ_FIT_RANGE",
    "LIDAR_DELTA",
    "LIDAR_EPS",
    "RANKME_EPS",
    "alpha_req",
    "lidar",
    "lidar_matrix",
    "nesum",
    "rankme",
]
