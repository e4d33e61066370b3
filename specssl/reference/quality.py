"""Independent float64 references for the label-free quality metrics (tests only).

Written from the papers' definitions with numpy, scipy and plain Python loops, deliberately
*not* with :mod:`specssl.spectral.quality` (nor any other spectral code of the library), so
a test comparing the two can fail:

* RankMe (Garrido et al., ICML 2023): ``exp(-Σ p_k log p_k)``, ``p_k = σ_k / ‖σ‖_1 + ε``
  with ``σ`` from ``numpy.linalg.svd`` and a loop over the singular values;
* LiDAR (Thilak et al., ICLR 2024): the class means and both covariances accumulated with
  loops over images and views, and the eigenvalues of ``Σ_w^{-1/2} Σ_b Σ_w^{-1/2}`` obtained
  as the *generalized* eigenvalues of ``Σ_b v = λ Σ_w v`` (``scipy.linalg.eigh``), a
  different algorithm than the library's explicit inverse square root;
* α-ReQ (Agrawal et al., NeurIPS 2022): the least-squares slope of ``log λ_k`` on ``log k``
  from the closed-form normal equations, summed in loops;
* NESum (He & Ozay, ICML 2022): ``Σ λ_i / λ_1`` with ``λ`` from ``numpy.linalg.eigvalsh``
  of ``numpy.cov``.

Every function takes and returns numpy / Python floats.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg


def reference_rankme(z: np.ndarray, eps: float = 1e-7) -> float:
    """RankMe of the embedding matrix ``z: (n, d)`` (not centred)."""
    sigma = np.linalg.svd(np.asarray(z, dtype=np.float64), compute_uv=False)
    total = sum(float(s) for s in sigma)
    entropy = 0.0
    for s in sigma:
        p = (float(s) / total if total > 0 else 0.0) + eps
        entropy -= p * math.log(p)
    return math.exp(entropy)


def reference_lidar(views: np.ndarray, delta: float = 1e-4, eps: float = 1e-8) -> float:
    """LiDAR of ``views: (n, q, d)``: ``q`` augmentations of each of ``n`` images."""
    e = np.asarray(views, dtype=np.float64)
    n, q, d = e.shape
    means = np.zeros((n, d))
    for i in range(n):
        for j in range(q):
            means[i] += e[i, j]
        means[i] /= q
    grand = np.zeros(d)
    for i in range(n):
        grand += means[i]
    grand /= n
    sigma_b = np.zeros((d, d))
    for i in range(n):
        diff = means[i] - grand
        sigma_b += np.outer(diff, diff)
    sigma_b /= n - 1
    sigma_w = np.zeros((d, d))
    for i in range(n):
        for j in range(q):
            diff = e[i, j] - means[i]
            sigma_w += np.outer(diff, diff)
    sigma_w /= n * (q - 1)
    sigma_w += delta * np.eye(d)
    lam = scipy.linalg.eigh(sigma_b, sigma_w, eigvals_only=True)
    lam = [max(float(x), 0.0) for x in lam]
    total = sum(lam)
    entropy = 0.0
    for x in lam:
        p = (x / total if total > 0 else 0.0) + eps
        entropy -= p * math.log(p)
    return math.exp(entropy)


def reference_covariance_eigenvalues(z: np.ndarray) -> np.ndarray:
    """Descending eigenvalues of the ``d x d`` covariance (divisor ``n - 1``) of ``z: (n, d)``."""
    cov = np.atleast_2d(np.cov(np.asarray(z, dtype=np.float64), rowvar=False))
    return np.linalg.eigvalsh(cov)[::-1].clip(0)


def reference_alpha_req(
    evals: np.ndarray,
    fit_range: tuple[int, int] = (6, 100),
    rank: int | None = None,
    weighted: bool = False,
) -> float:
    """α-ReQ: ``-slope`` of least squares ``log λ_k ~ c - α log k`` over the 1-based ranks
    ``fit_range`` inside ``rank`` and the positive eigenvalues (weights ``1/k`` if
    ``weighted``); NaN with fewer than 2 ranks."""
    lam = [float(x) for x in np.asarray(evals, dtype=np.float64)]
    limit = len(lam) if rank is None else min(rank, len(lam))
    ks = [k for k in range(fit_range[0], fit_range[1] + 1) if k <= limit and lam[k - 1] > 0]
    if len(ks) < 2:
        return math.nan
    sw = sx = sy = sxx = sxy = 0.0
    for k in ks:
        w = 1.0 / k if weighted else 1.0
        x, y = math.log(k), math.log(lam[k - 1])
        sw += w
        sx += w * x
        sy += w * y
        sxx += w * x * x
        sxy += w * x * y
    slope = (sw * sxy - sx * sy) / (sw * sxx - sx * sx)
    return -slope


def reference_nesum(z: np.ndarray) -> float:
    """NESum ``Σ λ_i / λ_1`` of the covariance of ``z: (n, d)``."""
    lam = reference_covariance_eigenvalues(z)
    total = 0.0
    for x in lam:
        total += float(x)
    return total / float(lam[0]) if lam[0] > 0 else 0.0


__all__ = [
    "reference_alpha_req",
    "reference_covariance_eigenvalues",
    "reference_lidar",
    "reference_nesum",
    "reference_rankme",
]
