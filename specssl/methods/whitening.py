"""Whitening / spectral-transformation methods: INTL, IterNorm-only, ST-power, W-MSE, CW-RGP,
Shuffled-DBN and Zero-CL."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

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
from specssl.spectral import iternorm, whiten


class INTL(SymmetricLossMethod):
    """IterNorm with trace loss (INTL paper, Section 4). ``method.loss``: T, beta, axis, groups."""

    name = "intl"
    loss_cls = INTLLoss

    def spectral_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return iternorm_of(self.loss_fn)


def iternorm_of(loss: INTLLoss) -> Callable[[torch.Tensor], torch.Tensor]:
    """The IterNorm transformation an :class:`INTLLoss` applies to each view."""
    return partial(iternorm, T=loss.T, axis=loss.axis, groups=loss.groups)


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

    def spectral_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        transform = self.loss_fn.transform
        return lambda z: transform(z).to(z.dtype)


class WMSE(SymmetricLossMethod):
    """W-MSE (Ermolov et al. 2021). ``method.loss``: w_size, w_iter, eps, axis."""

    name = "wmse"
    loss_cls = WMSELoss
    authors_forward = "backbone_per_view"  # htdt/self-supervised, winci-ai/CW-RGP: one head pass

    def spectral_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        loss = self.loss_fn
        return partial(whiten, method=loss.method, axis=loss.axis, eps=loss.eps)


class CWRGP(WMSE):
    """CW-RGP (Weng et al. 2022). ``method.loss``: groups, w_size, w_iter, eps, axis, method."""

    name = "cwrgp"
    loss_cls = CWRGPLoss

    def spectral_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return self.loss_fn.whiten_sub_batches


class ShuffledDBN(SymmetricLossMethod):
    """Shuffled-DBN (Hua et al., ICCV 2021). ``method.loss``: groups, shuffle, loss, eps.

    The spectral transform is the loss's shuffled group ZCA batch whitening (a fresh channel
    permutation per call, the group count of the last training step when ``groups`` is auto).
    """

    name = "shuffled_dbn"
    loss_cls = ShuffledDBNLoss
    authors_forward = "joint"  # not checked against the authors' code (docs/fidelity.md)

    def spectral_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        loss = self.loss_fn
        return partial(loss.transform, groups=loss.groups or loss.last_groups)


class ZeroCL(SymmetricLossMethod):
    """Zero-CL (Zhang et al., ICLR 2022). ``method.loss``: instance_weight, feature_weight,
    shrinkage, eps, detach_whitening.

    The spectral transform is the feature-wise (batch-axis, ``d x d``) whitening, or the
    instance-wise (channel-axis, ``m x m``) one when ``feature_weight = 0``.
    """

    name = "zero_cl"
    loss_cls = ZeroCLLoss

    def spectral_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return self.loss_fn.transform
