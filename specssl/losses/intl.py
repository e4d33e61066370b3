"""INTL: IterNorm with trace loss (INTL paper, Section 4, Eqn. 6), and IterNorm-only."""

from __future__ import annotations

import math
import warnings
from functools import partial

import torch

from specssl.losses._views import mean_pairwise_normalized_mse, normalized_mse, parse_views
from specssl.losses.base import LossResult, SSLLoss, Transform
from specssl.spectral import covariance_diagonal, iternorm
from specssl.spectral.common import Axis, check_axis, compute_dtype, full_precision
from specssl.spectral.iternorm import Iteration, check_iteration


def default_trace_weight(n: int) -> float:
    """The INTL authors' rule ``β = 0.01 (log2 n - 3)``, clamped at 0 for ``n <= 8``.

    ``n`` is the batch size for the channel axis and the embedding dimension for the batch
    axis (the size of the whitened covariance).
    """
    return max(0.0, 0.01 * (math.log2(n) - 3))


def trace_loss(zhat: torch.Tensor, axis: Axis, groups: int = 1) -> torch.Tensor:
    """Eqn. 6: ``Σ_j (1 - (Σ_Ẑ)_jj)^2`` for one whitened view ``zhat: (m, d)``.

    With groups, the per-group terms are summed.
    """
    return (1 - covariance_diagonal(zhat, axis, groups)).pow(2).sum()


PAIRINGS = ("anchor", "all_pairs")


class INTLLoss(SSLLoss):
    """IterNorm with trace loss (INTL).

    Per view ``Ẑ_v = IterNorm_T(z_v)`` (Eqn. 3), ``ℓ(a, b) = 2 - 2 mean_i cos(a_i, b_i)`` and
    ``TL(Ẑ) = Σ_j (1 - (Σ_Ẑ)_jj)^2`` (Eqn. 6). With ``V`` views:

    * ``pairing="anchor"`` (default; the INTL authors' ``methods/intl.py``): every view
      ``i >= 1`` is paired with view 0 only,
      ``L = 1/(V-1) Σ_{i>=1} [ℓ(Ẑ_i, Ẑ_0) + β (TL(Ẑ_i) + TL(Ẑ_0))]``;
    * ``pairing="all_pairs"`` (this library before 2026-12-02): ``ℓ`` averaged over all
      unordered view pairs plus ``β Σ_v TL(Ẑ_v)``.

    Both are ``ℓ(Ẑ_1, Ẑ_0) + β (TL(Ẑ_0) + TL(Ẑ_1))`` for two views. :meth:`momentum` is the
    INTL-M objective (online views against one EMA-target view).

    Args:
        T: IterNorm iterations (paper default 4).
        beta: trace-loss weight; ``None`` uses :func:`default_trace_weight` of the whitened
            covariance size (batch size on the channel axis, ``d`` on the batch axis); that
            rule gives 0 for sizes <= 8, which warns (INTL would be IterNorm-only). For small
            batches pass ``beta`` explicitly (docs/results/table4_batch_dim/cpu.md).
        axis: ``"channel"`` (authors' code, default) or ``"batch"`` (paper's text).
        groups: channel groups whitened independently (default 1).
        pairing: ``"anchor"`` or ``"all_pairs"`` (above).
        iteration: how Eqn. 3 is evaluated, ``"coupled"`` (default, stable) or ``"plain"``
            (the authors' uncoupled form, the unstable reference of the paper's Fig. 3(d));
            see :func:`specssl.spectral.iternorm`. From the command line:
            ``method.loss.iteration=plain``.

    Call as ``loss(z1, z2)`` or ``loss([z1, z2, ...])`` with views ``(m, d)``. Returns a
    float32 (float64 for float64 input) scalar; :meth:`compute` adds the detached
    ``invariance`` (the mean ``ℓ``) and ``trace`` (the sum multiplying ``β``).
    """

    def __init__(
        self,
        T: int = 4,
        beta: float | None = None,
        axis: Axis = "channel",
        groups: int = 1,
        pairing: str = "anchor",
        iteration: Iteration = "coupled",
    ) -> None:
        super().__init__()
        check_axis(axis)
        check_iteration(iteration)
        if beta is not None and beta < 0:
            raise ValueError(f"trace-loss weight beta must be >= 0, got {beta}")
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
        self.T, self.beta, self.axis, self.groups, self.pairing = T, beta, axis, groups, pairing
        self.iteration = iteration
        self._warned_zero_beta = False

    def trace_weight(self, z: torch.Tensor) -> float:
        """``β`` for embeddings ``z: (m, d)``."""
        if self.beta is not None:
            return self.beta
        m, d = z.shape
        n = m if self.axis == "channel" else d // self.groups
        beta = default_trace_weight(n)
        if beta == 0 and not self._warned_zero_beta:
            self._warned_zero_beta = True
            warnings.warn(
                f"INTLLoss: the default trace-loss weight 0.01 (log2 n - 3) is 0 for n={n} "
                f"<= 8 ({'batch size' if self.axis == 'channel' else 'dimension'} on the "
                f"{self.axis} axis), so INTL reduces to IterNorm-only; pass beta explicitly",
                stacklevel=4,
            )
        return beta

    def whiten(self, z: torch.Tensor) -> torch.Tensor:
        """``IterNorm_T(z)`` in float32/64 (upcast first: the spectral op computes in full
        precision anyway and then keeps it)."""
        return iternorm(
            z.to(compute_dtype(z)),
            self.T,
            self.axis,
            groups=self.groups,
            check_finite=False,
            iteration=self.iteration,
        )

    def spectral_transform(self) -> Transform:
        """``IterNorm_T`` with this loss's ``T``, axis, groups and iteration form: the monitor's
        Ẑ is what the loss sees, also under ``iteration="plain"``."""
        return partial(
            iternorm, T=self.T, axis=self.axis, groups=self.groups, iteration=self.iteration
        )

    def trace_loss(self, zhat: torch.Tensor) -> torch.Tensor:
        """Eqn. 6 for one whitened view."""
        return trace_loss(zhat, self.axis, self.groups)

    def compute(self, *views: torch.Tensor | list[torch.Tensor]) -> LossResult:
        zs = parse_views(views, type(self).__name__)
        with full_precision(zs[0]):
            whitened = [self.whiten(z) for z in zs]
            traces = [self.trace_loss(w) for w in whitened]
            if self.pairing == "anchor":
                anchor, others = whitened[0], whitened[1:]
                invariance = sum(normalized_mse(w, anchor) for w in others) / len(others)
                trace = traces[0] + sum(traces[1:]) / len(others)
            else:
                invariance = mean_pairwise_normalized_mse(whitened)
                trace = sum(traces)
            return self._combine(invariance, trace, zs[0])

    def momentum(self, online: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """INTL-M (the INTL authors' ``methods/intl_m.py``): online views ``z_i: (m, d)``
        against the EMA target's embedding ``target: (m, d)`` of one view (no gradient),

            L = 1/n Σ_i [ℓ(Ẑ_i, Ẑ_target) + β TL(Ẑ_i)],   n = len(online),

        with ``Ẑ = IterNorm_T(·)`` for the target too and no trace loss on the target."""
        return self.compute_momentum(online, target).loss

    def compute_momentum(self, online: list[torch.Tensor], target: torch.Tensor) -> LossResult:
        """:meth:`momentum` with its terms (``invariance``: the mean ``ℓ``, ``trace``: the
        mean ``TL`` of the online views)."""
        zs = parse_views((*online, target), f"{type(self).__name__}.momentum")
        online, target = zs[:-1], zs[-1].detach()
        with full_precision(target):
            target_hat = self.whiten(target)
            whitened = [self.whiten(z) for z in online]
            invariance = sum(normalized_mse(w, target_hat) for w in whitened) / len(whitened)
            trace = sum(self.trace_loss(w) for w in whitened) / len(whitened)
            return self._combine(invariance, trace, target)

    def _combine(
        self, invariance: torch.Tensor, trace: torch.Tensor, z: torch.Tensor
    ) -> LossResult:
        terms = {"invariance": invariance.detach(), "trace": trace.detach()}
        return LossResult(invariance + self.trace_weight(z) * trace, terms)

    def extra_repr(self) -> str:
        return (
            f"T={self.T}, beta={self.beta}, axis={self.axis}, groups={self.groups}, "
            f"pairing={self.pairing}, iteration={self.iteration}"
        )


class IterNormLoss(INTLLoss):
    """IterNorm-only whitening loss: :class:`INTLLoss` with ``β = 0``.

    The paper's failing baseline (Section 4.2): without the trace loss the embedding suffers
    dimensional collapse. Kept as a loss so the failure can be reproduced and monitored.
    """

    def __init__(
        self,
        T: int = 4,
        axis: Axis = "channel",
        groups: int = 1,
        pairing: str = "anchor",
        iteration: Iteration = "coupled",
    ) -> None:
        super().__init__(
            T=T, beta=0.0, axis=axis, groups=groups, pairing=pairing, iteration=iteration
        )
