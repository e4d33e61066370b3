"""Drop-in self-supervised losses: plain ``nn.Module``s that are pure functions of embeddings.

Each loss takes two or more views ``(m, d)`` as ``loss(z1, z2)`` or ``loss([z1, z2, ...])``
and returns the scalar; ``loss.compute(...)`` returns a :class:`LossResult` with the named terms
too, and ``loss.spectral_transform()`` the transformation whose spectrum the monitor measures.
"""

from specssl.losses.barlow import BarlowTwinsLoss
from specssl.losses.base import LossResult, SSLLoss, mean_result
from specssl.losses.byol import NegativeCosineLoss, negative_cosine
from specssl.losses.corinfomax import CorInfoMaxLoss
from specssl.losses.dino import DINOLoss
from specssl.losses.frossl import FroSSLLoss
from specssl.losses.intl import INTLLoss, IterNormLoss, default_trace_weight, trace_loss
from specssl.losses.mec import MECLoss
from specssl.losses.mmcr import MMCRLoss
from specssl.losses.moco import MoCoLoss
from specssl.losses.ntxent import NTXentLoss
from specssl.losses.resa import ReSALoss, self_assignment
from specssl.losses.shuffled_dbn import ShuffledDBNLoss
from specssl.losses.sigreg import SIGRegLoss, epps_pulley
from specssl.losses.st_power import STPowerLoss
from specssl.losses.swav import SwAVLoss, sinkhorn_knopp
from specssl.losses.tcr import TCRLoss, total_coding_rate
from specssl.losses.vicreg import VICRegLoss
from specssl.losses.wmse import CWRGPLoss, WMSELoss, sub_batched_whitening_loss
from specssl.losses.zero_cl import ZeroCLLoss

__all__ = [
    "BarlowTwinsLoss",
    "CWRGPLoss",
    "CorInfoMaxLoss",
    "DINOLoss",
    "FroSSLLoss",
    "INTLLoss",
    "IterNormLoss",
    "LossResult",
    "MECLoss",
    "MMCRLoss",
    "MoCoLoss",
    "NTXentLoss",
    "NegativeCosineLoss",
    "ReSALoss",
    "SIGRegLoss",
    "SSLLoss",
    "STPowerLoss",
    "ShuffledDBNLoss",
    "SwAVLoss",
    "TCRLoss",
    "VICRegLoss",
    "WMSELoss",
    "ZeroCLLoss",
    "default_trace_weight",
    "epps_pulley",
    "mean_result",
    "negative_cosine",
    "self_assignment",
    "sinkhorn_knopp",
    "sub_batched_whitening_loss",
    "total_coding_rate",
    "trace_loss",
]
