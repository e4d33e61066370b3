"""INTL-M: INTL with a momentum (EMA) target encoder, as in the INTL authors' ImageNet code."""

from __future__ import annotations

from collections.abc import Callable
from itertools import permutations

import torch
from torch import nn

from specssl.losses import INTLLoss
from specssl.methods.base import Method, MethodOutput, build_loss
from specssl.methods.whitening import iternorm_of
from specssl.models import cosine_momentum, ema_update_, make_target
from specssl.train.config import MethodConfig
from specssl.train.distributed import gather_with_grad


class INTLM(Method):
    """Online network vs EMA target: ``L = mean_{i != j} INTL(z_online_i, z_target_j)``.

    The target (backbone + projector) follows ``θ' <- τ θ' + (1 - τ) θ`` after every optimiser
    step with ``τ`` on the BYOL cosine schedule from ``method.base_tau`` to ``method.final_tau``.
    Target embeddings carry no gradient.
    """

    name = "intl_m"
    needs_global_batch = True

    def __init__(self, backbone: nn.Module, cfg: MethodConfig) -> None:
        super().__init__(backbone, cfg)
        self.loss_fn = build_loss(INTLLoss, dict(cfg.loss), self.name)
        self.target_backbone = make_target(self.backbone)
        self.target_projector = make_target(self.projector)
        self.tau = cfg.base_tau

    def forward(self, views: list[torch.Tensor]) -> MethodOutput:
        feats, z = self.embed(views)
        with torch.no_grad():
            sizes = [v.shape[0] for v in views]
            target = self.target_projector(self.target_backbone(torch.cat(views))).split(sizes)
        online = [gather_with_grad(v) for v in z]
        target = [gather_with_grad(t) for t in target]
        pairs = list(permutations(range(len(views)), 2))
        loss = sum(self.loss_fn(online[i], target[j]) for i, j in pairs) / len(pairs)
        terms = dict(self.loss_fn.last_terms)
        terms["tau"] = torch.tensor(self.tau)
        return MethodOutput(loss=loss, embeddings=z, features=feats, terms=terms)

    @torch.no_grad()
    def on_train_step_end(self, step: int, total_steps: int) -> None:
        ema_update_(self.target_backbone, self.backbone, self.tau)
        ema_update_(self.target_projector, self.projector, self.tau)
        self.tau = cosine_momentum(step, total_steps, self.cfg.base_tau, self.cfg.final_tau)

    def spectral_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return iternorm_of(self.loss_fn)
