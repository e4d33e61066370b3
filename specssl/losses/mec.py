"""MEC: maximum entropy coding by a Taylor-expanded log-det (Liu et al., NeurIPS 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specssl.losses._views import parse_views, view_pairs
from specssl.losses.base import LossResult, SSLLoss, Transform, normalize_rows
from specssl.spectral.common import compute_dtype, full_precision


def taylor_log_det_trace(c: torch.Tensor, order: int) -> torch.Tensor:
    """``tr Σ_{k=1}^{n} (-1)^{k+1} / k · C^k`` for a square ``c: (s, s)``, ``n = order``.

    The order-``n`` Taylor series of ``tr log(I + C) = log det(I + C)``, which converges for
    ``‖C‖₂ < 1`` (MEC, Eqns. 2-3).
    """
    power = c
    total = torch.diagonal(c).sum()
    for k in range(2, order + 1):
        power = power @ c
        total = total + (-1) ** (k + 1) / k * torch.diagonal(power).sum()
    return total


def mec_trace(za: torch.Tensor, zb: torch.Tensor, lam: torch.Tensor, order: int) -> torch.Tensor:
    """``tr T_n(λ Z̄_aᵀ Z̄_b)`` of two views ``za, zb: (m, d)`` with l2-normalised rows ``z̄``.

    ``T_n`` is :func:`taylor_log_det_trace`. ``tr((AᵀB)^k) = tr((BAᵀ)^k)``, so the ``d x d``
    feature-wise and the ``m x m`` batch-wise forms (the authors' ``p @ z.T``) have one trace;
    the smaller matrix is formed.
    """
    a, b = F.normalize(za, dim=-1), F.normalize(zb, dim=-1)
    m, d = a.shape
    c = a @ b.T if m <= d else b.T @ a
    return taylor_log_det_trace(lam * c, order)


class MECLoss(SSLLoss):
    """Maximum entropy coding (Liu et al., NeurIPS 2022, Eqn. 3), the authors' implementation.

    For two views ``Z_1, Z_2: (m, d)`` with l2-normalised rows, Eqn. 3 reads

        L_MEC = -μ log det(I_m + λ Z_1 Z_2ᵀ) ≈ -μ tr Σ_{k=1}^{n} (-1)^{k+1} / k · (λ Z_1 Z_2ᵀ)^k

    with ``μ = (m + d) / 2``, ``λ = d / (m ε²)`` and Taylor order ``n``. This loss returns the
    value the authors' ``main_pretrain.py`` optimises (``loss = -mec_loss * lamda_inv`` with
    ``mec_loss`` the trace over ``m``):

        L = -(s / (λ m)) · mean_pairs tr T_n((λ / s) C_pair),   C_pair = Z̄_a Z̄_bᵀ

    i.e. Eqn. 3 divided by ``μ λ m / s`` (a constant: it rescales the learning rate only).
    ``s`` is :attr:`lambda_inv_scale`, the authors' warm-up of ``1/λ`` (``lamda_inv`` from
    ``8/λ`` to ``1/λ`` over the first 10 epochs, set each step by the method; 1 outside it).
    The terms of :meth:`compute`: ``coding_length``, the authors' logged ``MEC = μ · tr / m``,
    and ``trace``, the mean ``tr T_n`` (unweighted). The monitored ``Ẑ`` is the
    l2-normalised embedding ``Z̄``.

    Pairs: :meth:`forward` treats all views alike and averages over unordered pairs (the trace
    is symmetric in its two views); :meth:`momentum` (:meth:`compute_momentum` with the terms)
    is the authors' asymmetric form, each student view against the EMA teacher's embedding of
    every other view.

    Args:
        eps_sq: ``ε²``, the squared distortion (the authors' ``--eps``, default 64; the paper's
            ``ε_d² = ε² / d`` is then 1/32 at ``d = 2048``).
        order: Taylor order ``n`` (the authors' ``order=4``).

    Call as ``loss(z1, z2)`` or ``loss([z1, z2, ...])`` with views ``(m, d)`` (the method
    gathers the global batch: ``m`` in ``λ`` is the global batch, as in the authors'
    ``gather_from_all``). Computed in float32 (float64 for float64 input) with autocast off.
    """

    lambda_inv_scale: torch.Tensor

    def __init__(self, eps_sq: float = 64.0, order: int = 4) -> None:
        super().__init__()
        if not eps_sq > 0:
            raise ValueError(f"eps_sq must be > 0, got {eps_sq}")
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an int >= 1, got {order!r}")
        self.eps_sq, self.order = float(eps_sq), order
        # the authors' warm-up factor of 1/λ; a buffer so a resumed run continues it
        self.register_buffer("lambda_inv_scale", torch.tensor(1.0, dtype=torch.float64))

    def spectral_transform(self) -> Transform:
        return normalize_rows

    def compute(self, *views: torch.Tensor | list[torch.Tensor]) -> LossResult:
        zs = parse_views(views, type(self).__name__)
        return self._loss([(zs[i], zs[j]) for i, j in view_pairs(len(zs))])

    def momentum(self, online: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
        """The authors' form: student (predictor) outputs ``online[j]: (m, d)`` against the EMA
        teacher's outputs ``targets[i]: (m, d)`` (detached) of the same views, over ordered
        pairs ``i != j``; for two views ``½ (tr(p1, z2) + tr(p2, z1))`` as in
        ``main_pretrain.py``."""
        return self.compute_momentum(online, targets).loss

    def compute_momentum(
        self, online: list[torch.Tensor], targets: list[torch.Tensor]
    ) -> LossResult:
        """:meth:`momentum` with its terms."""
        if len(online) != len(targets):
            raise ValueError(
                f"{type(self).__name__}.momentum needs one target per online view, got "
                f"{len(online)} online and {len(targets)} target views"
            )
        zs = parse_views((*online, *targets), f"{type(self).__name__}.momentum")
        n = len(online)
        if n < 2:
            raise ValueError(f"{type(self).__name__}.momentum needs at least 2 views, got {n}")
        online, targets = zs[:n], [t.detach() for t in zs[n:]]
        pairs = [(targets[i], online[j]) for i in range(n) for j in range(n) if i != j]
        return self._loss(pairs)

    def _loss(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> LossResult:
        z0 = pairs[0][0]
        m, d = z0.shape
        dtype = compute_dtype(z0)
        with full_precision(z0):
            scale = self.lambda_inv_scale.to(device=z0.device, dtype=dtype)
            lam = d / (m * self.eps_sq) / scale
            trace = sum(
                mec_trace(a.to(dtype), b.to(dtype), lam, self.order) for a, b in pairs
            ) / len(pairs)
            loss = -trace / (lam * m)
        mu = (m + d) / 2
        terms = {"trace": trace.detach(), "coding_length": (mu * trace / m).detach()}
        return LossResult(loss, terms)

    def extra_repr(self) -> str:
        return f"eps_sq={self.eps_sq}, order={self.order}"
