"""NT-Xent: SimCLR's normalized temperature-scaled cross-entropy (Chen et al. 2020, Eqn. 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specssl.losses._views import parse_views
from specssl.losses.base import LossResult, SSLLoss
from specssl.spectral.common import compute_dtype, full_precision


def check_temperature(temperature: float, loss_name: str) -> None:
    """A softmax temperature must be a positive finite number (``ValueError`` otherwise)."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise ValueError(f"{loss_name} temperature must be a number, got {temperature!r}")
    if not 0 < temperature < float("inf"):  # also rejects NaN
        raise ValueError(f"{loss_name} temperature must be > 0 and finite, got {temperature}")


class NTXentLoss(SSLLoss):
    """SimCLR's NT-Xent over two or more views.

    The ``V`` views ``z_v: (m, d)`` are stacked into ``n = V m`` rows, each l2-normalised;
    ``s_ab = z_a^T z_b / (‖z_a‖ ‖z_b‖)`` is the cosine similarity. For an anchor ``a`` and a
    positive ``p`` (the same sample in another view), Eqn. 1 of Chen et al. (2020) is

        ℓ(a, p) = -log( exp(s_ap / τ) / Σ_{k ≠ a} exp(s_ak / τ) ),

    the denominator running over all other ``n - 1`` rows of all views (the other views of
    the same sample included). The loss is the mean of ``ℓ(a, p)`` over every anchor and each
    of its ``V - 1`` positives; with two views this is SimCLR's
    ``L = 1/(2N) Σ_k [ℓ(2k-1, 2k) + ℓ(2k, 2k-1)]``.

    Args:
        temperature: ``τ > 0`` (default 0.1; SimCLR's CIFAR recipes use 0.2-0.5).

    Call as ``loss(z1, z2)`` or ``loss([z1, z2, ...])`` with views ``(m, d)``. Returns a
    float32 (float64 for float64 input) scalar; the ``n x n`` similarity matrix is formed, so
    memory grows as ``(V m)^2``. The term ``pos_cos`` of :meth:`compute` is the detached mean
    cosine of the positive pairs.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        check_temperature(temperature, type(self).__name__)
        self.temperature = float(temperature)

    def compute(self, *views: torch.Tensor | list[torch.Tensor]) -> LossResult:
        zs = parse_views(views, type(self).__name__)
        m = zs[0].shape[0]
        with full_precision(zs[0]):
            z = F.normalize(torch.cat(zs).to(compute_dtype(zs[0])), dim=1)  # (n, d)
            n = z.shape[0]
            cos = z @ z.T  # (n, n)
            self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
            logits = (cos / self.temperature).masked_fill(self_mask, float("-inf"))
            log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
            sample = torch.arange(n, device=z.device) % m  # row -> sample index
            pos_mask = (sample[:, None] == sample[None, :]) & ~self_mask
            # Every anchor has exactly V - 1 positives, so the flat mean over the mask is the
            # mean over anchors of the mean over their positives.
            loss = -log_prob[pos_mask].mean()
        return LossResult(loss, {"pos_cos": cos.detach()[pos_mask].mean()})

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
