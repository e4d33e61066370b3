"""CorInfoMax: correlative information maximisation (Ozsoy et al., NeurIPS 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specssl.losses._views import parse_views, view_pairs
from specssl.losses.base import LossResult, SSLLoss, Transform, normalize_rows
from specssl.spectral.common import compute_dtype, full_precision

#: The estimates are kept and computed in float64, as the authors' ``CovarianceLoss`` does.
STATE_DTYPE = torch.float64


def spd_log_det(a: torch.Tensor) -> torch.Tensor:
    """``log det A`` of a symmetric positive-definite ``a: (d, d)`` (Cholesky: ``2 Σ log L_ii``)."""
    return 2 * torch.log(torch.diagonal(torch.linalg.cholesky(a))).sum()


class CorInfoMaxLoss(SSLLoss):
    """CorInfoMax loss (Ozsoy et al. 2022), as the authors' ``cifars-tiny/loss.py`` computes it.

    Per view ``v`` with embedding ``z_v: (m, d)`` (l2-normalised rows when ``normalize``, the
    authors' ``--normalize_on``), the mean and correlation estimates follow an EMA whose
    current-batch part carries gradient:

        μ_v ← λ_μ μ_v + (1 - λ_μ) mean_b z_v,b
        R_v ← λ_R R_v + (1 - λ_R) (z_v - μ_v)ᵀ (z_v - μ_v) / m

    and the loss (the paper's objective: an MSE attraction term regularised by the log-det of
    the feature correlation, Section 3; its equation number is not checked here) is

        L = α · mean_pairs ‖z_i - z_j‖² / (m d)  -  (2 / V) Σ_v log det(R_v + ε I) / d

    which for two views is the authors' ``α · F.mse_loss(z1, z2) - (logdet(R1 + εI) +
    logdet(R2 + εI)) / d``. (``λ_R`` weighs the *previous* estimate: the authors' "forgetting
    factor" 0.01 keeps 1% of it.)

    State: the buffers ``R: (V, d, d)`` and ``mu: (V, d)`` (float64, one estimate per view
    index), created at ``R_ini · I`` and ``0`` on the first call (or by :meth:`init_state`)
    and replaced by their detached new values after every call in training mode; in eval mode
    the estimates are used but not updated. They are saved in the state dict (a checkpoint
    restores them; loading resizes empty buffers). The number of views and ``d`` are fixed by
    the first call.

    Args:
        sim_weight: ``α``, weight of the invariance (MSE) term (authors' CIFAR-10 command: 250;
            parser default 500).
        cov_weight: weight of the log-det term (authors: 1).
        la_R: EMA weight ``λ_R`` of the previous correlation estimate (authors: 0.01).
        la_mu: EMA weight ``λ_μ`` of the previous mean estimate (authors: 0.01).
        R_ini: initial estimate ``R_ini · I`` (authors: 1.0).
        R_eps_weight: diagonal ``ε`` added before the log-det (authors' commands: 1e-8).
        normalize: l2-normalise each embedding row first (authors' ``--normalize_on``).

    Call as ``loss(z1, z2)`` or ``loss([z1, z2, ...])`` with views ``(m, d)``, ``m >= 2``, on
    the global batch (the method gathers it). Returns a float32 (float64 for float64 input)
    scalar; :meth:`compute` adds the detached ``invariance`` (mean pair MSE) and ``logdet``
    (the mean over views of ``log det(R_v + εI) / d``). The monitored ``Ẑ`` is the
    l2-normalised embedding when ``normalize`` (else ``Z`` itself).
    """

    R: torch.Tensor
    mu: torch.Tensor

    def __init__(
        self,
        sim_weight: float = 250.0,
        cov_weight: float = 1.0,
        la_R: float = 0.01,
        la_mu: float = 0.01,
        R_ini: float = 1.0,
        R_eps_weight: float = 1e-8,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        for key, value in (("sim_weight", sim_weight), ("cov_weight", cov_weight)):
            if value < 0:
                raise ValueError(f"{key} must be >= 0, got {value}")
        for key, value in (("la_R", la_R), ("la_mu", la_mu)):
            if not 0 <= value < 1:
                raise ValueError(f"{key} must be in [0, 1), got {value}")
        if not R_ini > 0:
            raise ValueError(f"R_ini must be > 0, got {R_ini}")
        if R_eps_weight < 0:
            raise ValueError(f"R_eps_weight must be >= 0, got {R_eps_weight}")
        self.sim_weight, self.cov_weight = sim_weight, cov_weight
        self.la_R, self.la_mu, self.R_ini, self.R_eps_weight = la_R, la_mu, R_ini, R_eps_weight
        self.normalize = bool(normalize)
        self.register_buffer("R", torch.empty(0, dtype=STATE_DTYPE))
        self.register_buffer("mu", torch.empty(0, dtype=STATE_DTYPE))

    def spectral_transform(self) -> Transform | None:
        return normalize_rows if self.normalize else None

    def init_state(self, n_views: int, dim: int, device: torch.device | None = None) -> None:
        """(Re)set the estimates to ``R_v = R_ini · I_d`` and ``μ_v = 0`` for ``n_views`` views."""
        device = self.R.device if device is None else device
        eye = torch.eye(dim, dtype=STATE_DTYPE, device=device)
        self.R = (self.R_ini * eye).expand(n_views, dim, dim).clone()
        self.mu = torch.zeros(n_views, dim, dtype=STATE_DTYPE, device=device)

    def _state_for(self, n_views: int, dim: int, device: torch.device) -> None:
        if self.R.numel() == 0:
            self.init_state(n_views, dim, device)
        elif tuple(self.R.shape) != (n_views, dim, dim):
            raise ValueError(
                f"{type(self).__name__} keeps estimates for {self.R.shape[0]} views of dimension "
                f"{self.R.shape[-1]}, got {n_views} views of dimension {dim}"
            )

    def compute(self, *views: torch.Tensor | list[torch.Tensor]) -> LossResult:
        zs = parse_views(
            views, type(self).__name__, min_batch=2, batch_use=" for the correlation estimate"
        )
        n_views, (m, d) = len(zs), zs[0].shape
        out_dtype = compute_dtype(zs[0])
        self._state_for(n_views, d, zs[0].device)
        with full_precision(zs[0]):
            zs = [z.to(STATE_DTYPE) for z in zs]
            if self.normalize:
                zs = [F.normalize(z, dim=-1) for z in zs]
            eye = torch.eye(d, dtype=STATE_DTYPE, device=zs[0].device)
            new_mu, new_R, logdets = [], [], []
            for v, z in enumerate(zs):
                mu = self.la_mu * self.mu[v] + (1 - self.la_mu) * z.mean(dim=0)
                zc = z - mu
                r = self.la_R * self.R[v] + (1 - self.la_R) * (zc.T @ zc) / m
                new_mu.append(mu)
                new_R.append(r)
                logdets.append(spd_log_det(r + self.R_eps_weight * eye) / d)
            pairs = view_pairs(n_views)
            invariance = sum(F.mse_loss(zs[i], zs[j]) for i, j in pairs) / len(pairs)
            logdet = sum(logdets) / n_views
            loss = self.sim_weight * invariance - self.cov_weight * 2 * logdet
        if self.training:
            self.mu = torch.stack(new_mu).detach()
            self.R = torch.stack(new_R).detach()
        terms = {"invariance": invariance.detach(), "logdet": logdet.detach()}
        return LossResult(loss.to(out_dtype), terms)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in ("R", "mu"):  # estimates created lazily: take the checkpoint's shape
            saved = state_dict.get(prefix + name)
            current = getattr(self, name)
            if saved is not None and saved.shape != current.shape:
                setattr(self, name, current.new_empty(saved.shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"sim_weight={self.sim_weight}, cov_weight={self.cov_weight}, la_R={self.la_R}, "
            f"la_mu={self.la_mu}, R_ini={self.R_ini}, R_eps_weight={self.R_eps_weight}, "
            f"normalize={self.normalize}"
        )
