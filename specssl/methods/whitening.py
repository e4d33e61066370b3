"""Whitening / spectral-transformation methods: INTL, IterNorm-only, ST-power, W-MSE, CW-RGP,
Shuffled-DBN and Zero-CL.

Each is a :class:`~specssl.methods.base.SymmetricLossMethod` around its loss; the spectrum
monitor's ``Ẑ`` is the loss's :meth:`~specssl.losses.SSLLoss.spectral_transform`.
"""

from __future__ import annotations

from specssl.losses import (
    CWRGPLoss,
    INTLLoss,
    IterNormLoss,
    ShuffledDBNLoss,
    STPowerLoss,
    WMSELoss,
    ZeroCLLoss,
)
from specssl.methods.base import SymmetricLossMethod


class INTL(SymmetricLossMethod):
    """IterNorm with trace loss (INTL paper, Section 4). ``method.loss``: T, beta, axis, groups.

    The monitored ``Ẑ`` is ``IterNorm_T`` of the embedding."""

    name = "intl"
    loss_cls = INTLLoss


class IterNormOnly(INTL):
    """IterNorm without trace loss: the paper's failing baseline (Section 4.2)."""

    name = "iternorm"
    loss_cls = IterNormLoss


class STPower(SymmetricLossMethod):
    """Whitening loss with the power ST ``g(λ) = λ^-p`` (Section 3.2).

    ``method.loss``: p, axis, eps, groups, w_size, w_iter, precision. The spectral transform
    (monitoring) is applied to the whole sample, not in sub-batches.
    """

    name = "st_power"
    loss_cls = STPowerLoss


class WMSE(SymmetricLossMethod):
    """W-MSE (Ermolov et al. 2021). ``method.loss``: w_size, w_iter, eps, axis."""

    name = "wmse"
    loss_cls = WMSELoss
    authors_forward = "backbone_per_view"  # htdt/self-supervised, winci-ai/CW-RGP: one head pass


class CWRGP(WMSE):
    """CW-RGP (Weng et al. 2022). ``method.loss``: groups, w_size, w_iter, eps, axis, method."""

    name = "cwrgp"
    loss_cls = CWRGPLoss


class ShuffledDBN(SymmetricLossMethod):
    """Shuffled-DBN (Hua et al., ICCV 2021). ``method.loss``: groups, shuffle, loss, eps.

    The spectral transform is the loss's shuffled group ZCA batch whitening (a fresh channel
    permutation per call, the group count of the last training step when ``groups`` is auto).
    """

    name = "shuffled_dbn"
    loss_cls = ShuffledDBNLoss
    authors_forward = "joint"  # not checked against the authors' code (docs/fidelity.md)


class ZeroCL(SymmetricLossMethod):
    """Zero-CL (Zhang et al., ICLR 2022). ``method.loss``: instance_weight, feature_weight,
    shrinkage, eps, detach_whitening.

    The spectral transform is the feature-wise (batch-axis, ``d x d``) whitening, or the
    instance-wise (channel-axis, ``m x m``) one when ``feature_weight = 0``.
    """

    name = "zero_cl"
    loss_cls = ZeroCLLoss
