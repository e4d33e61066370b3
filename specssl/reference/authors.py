"""Independent transcriptions of the authors' computations, for fidelity tests and
``bench/fidelity.py`` (never used in training).

Written from the semantics of the authors' public code — winci-ai/INTL (``methods/intl.py``,
``methods/intl_m.py``, ``methods/whitening.py``, ``methods/base.py``) and winci-ai/CW-RGP
(``base/methods/whitening.py``, ``base/methods/cwrgp.py``) — with plain loops, the plain
Newton iteration and an eigendecomposition, deliberately *not* with the library's spectral
code, so a test comparing the two can fail. Run them in float64 for a reference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def authors_iternorm_channel(z: torch.Tensor, T: int) -> torch.Tensor:
    """Whitening2dIterNorm with axis 0 (channel): centre each sample over its d channels,
    Σ = Xc Xc^T / (d - 1) (m x m), Σ_N = Σ / tr Σ, P_{k+1} = 1.5 P_k - 0.5 P_k^3 Σ_N from
    P_0 = I, W = P_T / sqrt(tr Σ), Ẑ = W Xc."""
    m, d = z.shape
    xc = z - z.mean(dim=1, keepdim=True)
    sigma = xc @ xc.T / (d - 1)
    trace = torch.trace(sigma)
    sigma_n = sigma / trace
    p = torch.eye(m, dtype=z.dtype)
    for _ in range(T):
        p = 1.5 * p - 0.5 * torch.linalg.matrix_power(p, 3) @ sigma_n
    return (p / trace.sqrt()) @ xc


def authors_trace_loss_channel(zhat: torch.Tensor) -> torch.Tensor:
    """TL with axis 0: x = Ẑ^T (d, m), centred over its d rows, diag = Σ x^2 / (d - 1),
    Σ_j (diag_j - 1)^2."""
    x = zhat.T
    x = x - x.mean(dim=0)
    diag = x.pow(2).sum(dim=0) / (x.shape[0] - 1)
    return (diag - 1).pow(2).sum()


def authors_norm_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    return 2 - 2 * (a * b).sum(dim=1).mean()


def authors_trade_off(batch: int) -> float:
    return (math.log2(batch) - 3) * 0.01


def authors_intl(views: list[torch.Tensor], T: int) -> torch.Tensor:
    """methods/intl.py: L = 1/(V-1) Σ_{i>=1} [ℓ(t_i, t_0) + β (TL_i + TL_0)]."""
    t = [authors_iternorm_channel(v, T) for v in views]
    tl = [authors_trace_loss_channel(x) for x in t]
    beta = authors_trade_off(views[0].shape[0])
    loss = 0
    for i in range(1, len(views)):
        loss = loss + authors_norm_mse(t[i], t[0]) + beta * (tl[i] + tl[0])
    return loss / (len(views) - 1)


def authors_intl_m(online: list[torch.Tensor], target: torch.Tensor, T: int) -> torch.Tensor:
    """methods/intl_m.py: L = 1/(V-1) Σ_i [ℓ(tq_i, tk) + β TL(tq_i)], tk of view 0 only."""
    tk = authors_iternorm_channel(target.detach(), T)
    beta = authors_trade_off(target.shape[0])
    loss = 0
    for z in online:
        tq = authors_iternorm_channel(z, T)
        loss = loss + authors_norm_mse(tq, tk) + beta * authors_trace_loss_channel(tq)
    return loss / len(online)


def authors_cwrgp_whiten(x: torch.Tensor, groups: int, shuffle: list[int]) -> torch.Tensor:
    """Whitening2dZCA, axis 0: centre each sample over all d channels once, permute the
    channels by ``shuffle``, per group f_cov = X_g^T X_g / (d/g - 1) (w x w), ZCA
    U diag(λ^-1/2) U^T, whiten, un-permute."""
    d = x.shape[1]
    xn = x - x.mean(dim=1, keepdim=True)
    c = d // groups
    out = torch.empty_like(xn)
    for g in range(groups):
        cols = shuffle[g * c : (g + 1) * c]
        xg = xn[:, cols].T  # (c, w): observations are channels
        f_cov = xg.T @ xg / (c - 1)
        evals, evecs = torch.linalg.eigh(f_cov)
        wm = evecs @ torch.diag(evals.rsqrt()) @ evecs.T
        out[:, cols] = (xg @ wm).T
    return out


def authors_cwrgp(
    views: list[torch.Tensor], groups: int, w_size: int, w_iter: int, drawn: Iterable[torch.Tensor]
) -> torch.Tensor:
    """methods/cwrgp.py with the permutations the library drew (``drawn``, in its order: per
    round the row permutation, then per view one channel permutation per sub-batch)."""
    drawn = iter(drawn)
    loss = 0
    pairs = [(i, j) for i in range(len(views)) for j in range(i + 1, len(views))]
    for _ in range(w_iter):
        rows = next(drawn).view(-1, w_size)
        shuffles = [[next(drawn).tolist() for _ in rows] for _ in views]
        z = [torch.empty_like(v) for v in views]
        for k, idx in enumerate(rows):
            for v, view in enumerate(views):
                z[v][idx] = authors_cwrgp_whiten(view[idx], groups, shuffles[v][k])
        loss = loss + sum(authors_norm_mse(z[i], z[j]) for i, j in pairs)
    return loss / (w_iter * len(pairs))
