"""Drop-in self-supervised losses: plain ``nn.Module``s that are pure functions of embeddings.

Each loss takes two or more views ``(m, d)`` as ``loss(z1, z2)`` or ``loss([z1, z2, ...])``.
"""

from specssl.losses.barlow import BarlowTwinsLoss
from specssl.losses.byol import NegativeCosineLoss, negative_cosine
from specssl.losses.dino import DINOLoss
from specssl.losses.intl import INTLLoss, IterNormLoss, default_trace_weight, trace_loss
from specssl.losses.moco import MoCoLoss
from specssl.losses.ntxent import NTXentLoss
from specssl.losses.shuffled_dbn import ShuffledDBNLoss
from specssl.losses.st_power import STPowerLoss
from specssl.losses.swav import SwAVLoss, sinkhorn_knopp
from specssl.losses.vicreg import VICRegLoss
from specssl.losses.wmse import CWRGPLoss, WMSELoss, sub_batched_whitening_loss
from specssl.losses.zero_cl import ZeroCLLoss

__all__ = [
    "BarlowTwinsLoss",
    "CWRGPLoss",
    "DINOLoss",
    "INTLLoss",
    "IterNormLoss",
    "MoCoLoss",
    "NTXentLoss",
    "NegativeCosineLoss",
    "STPowerLoss",
    "ShuffledDBNLoss",
    "SwAVLoss",
    "VICRegLoss",
    "WMSELoss",
    "ZeroCLLoss",
    "default_trace_weight",
    "negative_cosine",
    "sinkhorn_knopp",
    "sub_batched_whitening_loss",
    "trace_loss",
]
