"""Drop-in self-supervised losses: plain ``nn.Module``s that are pure functions of embeddings.

Each loss takes two or more views ``(m, d)`` as ``loss(z1, z2)`` or ``loss([z1, z2, ...])``.
"""

from specssl.losses.intl import INTLLoss, IterNormLoss, default_trace_weight, trace_loss
from specssl.losses.st_power import STPowerLoss
from specssl.losses.wmse import CWRGPLoss, WMSELoss, sub_batched_whitening_loss

__all__ = [
    "CWRGPLoss",
    "INTLLoss",
    "IterNormLoss",
    "STPowerLoss",
    "WMSELoss",
    "default_trace_weight",
    "sub_batched_whitening_loss",
    "trace_loss",
]
