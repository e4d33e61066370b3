"""Redundancy-reduction methods: Barlow Twins (Zbontar et al. 2021) and VICReg (Bardes et al. 2022).

Both are siamese: every view through the same backbone and projector
(``Linear-BN-ReLU x 2 + Linear``, ``method.proj_layers: 3``), the loss on the projector outputs.
Their batch statistics (standardisation, variance, covariance) are computed on the *global*
batch: the embeddings are gathered across ranks before the loss under DDP.
"""

from __future__ import annotations

from torch import nn

from specssl.losses import BarlowTwinsLoss, VICRegLoss
from specssl.methods.base import SymmetricLossMethod
from specssl.methods.config import MethodConfig


class BarlowTwins(SymmetricLossMethod):
    """Barlow Twins. ``method.loss``: lambda_offdiag, scale, eps. No ``method.options``.

    The spectrum monitor's ``Ẑ`` is the batch-standardised embedding whose cross-correlation
    the loss drives to the identity.
    """

    name = "barlow_twins"
    loss_cls = BarlowTwinsLoss
    needs_global_batch = True


class VICReg(SymmetricLossMethod):
    """VICReg. ``method.loss``: sim_weight, var_weight, cov_weight, eps, gamma. No options.

    The loss regularises the raw projector output, so there is no transformation to monitor
    (:meth:`spectral_transform` is ``None``).
    """

    name = "vicreg"
    loss_cls = VICRegLoss
    needs_global_batch = True

    def __init__(self, backbone: nn.Module, cfg: MethodConfig) -> None:
        super().__init__(backbone, cfg)
