"""Predictor methods on a negative-cosine loss: BYOL (EMA target) and SimSiam (stop-gradient)."""

from __future__ import annotations

from itertools import permutations

import torch
import torch.nn.functional as F
from torch import nn

from specssl.losses import NegativeCosineLoss
from specssl.methods.base import Method, MethodOutput, build_loss, projection_head
from specssl.methods.config import MethodConfig
from specssl.methods.momentum import MomentumMethod
from specssl.models import MLPHead


def predictor_for(cfg: MethodConfig) -> MLPHead:
    """``Linear - BN - ReLU - Linear``: ``proj_output_dim -> pred_hidden_dim -> proj_output_dim``
    (BYOL Section 3.3, SimSiam Section 4 "prediction MLP")."""
    return MLPHead(cfg.proj_output_dim, cfg.pred_hidden_dim, cfg.proj_output_dim, num_layers=2)


def mean_negative_cosine(
    loss_fn: nn.Module, p: list[torch.Tensor], targets: list[torch.Tensor]
) -> torch.Tensor:
    """``mean over ordered view pairs (i, j), i != j, of loss_fn(p_i, targets_j)``."""
    pairs = list(permutations(range(len(p)), 2))
    return sum(loss_fn(p[i], targets[j]) for i, j in pairs) / len(pairs)


def normalized_std(z: list[torch.Tensor]) -> torch.Tensor:
    """SimSiam's collapse indicator: per-channel std of ``z / ‖z‖`` averaged over channels and
    views (``1/sqrt(d)`` for a well-spread embedding, 0 for a collapsed one)."""
    return torch.stack([F.normalize(v.detach().float(), dim=1).std(0).mean() for v in z]).mean()


class BYOL(MomentumMethod):
    """BYOL (Grill et al. 2020): online predictor regresses the EMA target's projection.

    For views ``v = 1..V`` with online predictions ``p_v = q(g(f(x_v)))`` and target projections
    ``z'_v = g'(f'(x_v))`` (no gradient), the loss is BYOL Eqn. 2 symmetrised over all ordered
    pairs,

        L = 1/(V - 1) Σ_{i != j} ‖p̄_i - z̄'_j‖² = 1/(V - 1) Σ_{i != j} (2 + 2 D(p_i, z'_j)),

    which for two views is BYOL's ``L + L~``. ``D`` is :class:`NegativeCosineLoss`
    (``method.loss``: eps). The projector is ``method.proj_layers`` deep (BYOL: 2, i.e.
    Linear-BN-ReLU-Linear), the predictor ``proj_output_dim -> pred_hidden_dim ->
    proj_output_dim``. The target (backbone + projector) follows the :class:`MomentumMethod` EMA.
    ``MethodOutput.embeddings`` are the online projections ``z`` (not the predictions).
    """

    name = "byol"

    def build_heads(self) -> None:
        self.predictor = predictor_for(self.cfg)
        self.loss_fn = build_loss(NegativeCosineLoss, dict(self.cfg.loss), self.name)

    def forward(self, views: list[torch.Tensor]) -> MethodOutput:
        feats, z = self.embed(views)
        p = self.apply_head(self.predictor, z)
        target = self.target_embed(views)
        neg_cos = mean_negative_cosine(self.loss_fn, p, target)
        loss = len(views) * (2 + 2 * neg_cos)  # = Σ_{i != j} (2 - 2 cos) / (V - 1)
        terms = {
            "neg_cos": neg_cos.detach(),
            "z_std": normalized_std(z),
            "tau": torch.tensor(self.tau),
        }
        return MethodOutput(loss=loss, embeddings=z, features=feats, terms=terms)


class SimSiam(Method):
    """SimSiam (Chen & He 2021): predictor + stop-gradient, no momentum encoder.

    ``L = mean over ordered view pairs (i, j), i != j, of D(p_i, stopgrad(z_j))`` (Eqn. 4;
    for two views ``½ D(p1, sg(z2)) + ½ D(p2, sg(z1))``), ``D`` = :class:`NegativeCosineLoss`
    (``method.loss``: eps). The projector has BN after every Linear, including the output one
    (affine-free, the last Linear without bias), ``method.proj_layers`` deep (SimSiam's CIFAR
    variant: 2; ImageNet: 3). Predictor: ``proj_output_dim -> pred_hidden_dim ->
    proj_output_dim`` with BN on the hidden layer. ``MethodOutput.embeddings`` are ``z``.
    """

    name = "simsiam"

    def __init__(self, backbone: nn.Module, cfg: MethodConfig) -> None:
        super().__init__(backbone, cfg)
        self.projector = projection_head(
            backbone.out_dim,
            cfg,
            last_batch_norm=True,
            last_bias=False,
        )
        self.predictor = predictor_for(cfg)
        self.loss_fn = build_loss(NegativeCosineLoss, dict(cfg.loss), self.name)

    def forward(self, views: list[torch.Tensor]) -> MethodOutput:
        feats, z = self.embed(views)
        p = self.apply_head(self.predictor, z)
        loss = mean_negative_cosine(self.loss_fn, p, [v.detach() for v in z])  # stop-gradient
        terms = {"neg_cos": loss.detach(), "z_std": normalized_std(z)}
        return MethodOutput(loss=loss, embeddings=z, features=feats, terms=terms)
