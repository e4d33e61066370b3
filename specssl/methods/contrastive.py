"""Contrastive baselines: SimCLR (Chen et al. 2020) and MoCo v2 (Chen, Fan, Girshick, He 2020).

Both use the two-layer projector of their papers and of solo-learn's CIFAR recipes,
``Linear - ReLU - Linear`` without batch norm (``method.proj_layers`` Linear layers;
``method.options.proj_batch_norm: true`` puts BN after the hidden Linears, as SimCLR's own
TensorFlow code does).
"""

from __future__ import annotations

from itertools import permutations
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from specssl.core import ConfigError
from specssl.core.distributed import all_gather_rows
from specssl.losses import MoCoLoss, NTXentLoss, mean_result
from specssl.methods.base import (
    MethodOutput,
    SymmetricLossMethod,
    build_loss,
    method_options,
    projection_head,
)
from specssl.methods.config import MethodConfig
from specssl.methods.momentum import MomentumMethod
from specssl.models import MLPHead


def contrastive_projector(in_dim: int, cfg: MethodConfig, batch_norm: bool) -> MLPHead:
    """``cfg.proj_layers`` Linear layers ``in_dim -> proj_hidden_dim -> ... -> proj_output_dim``."""
    if not isinstance(batch_norm, bool):
        raise ConfigError(
            "config key 'method.options.proj_batch_norm': must be true or false, "
            f"got {batch_norm!r}"
        )
    return projection_head(
        in_dim,
        cfg,
        batch_norm=batch_norm,
    )


class SimCLR(SymmetricLossMethod):
    """SimCLR: NT-Xent (Eqn. 1) between the views' projector embeddings.

    Embeddings are gathered across ranks with autograd (``gather_with_grad``), so every sample
    of the global batch is a negative for every anchor, as in SimCLR's cross-replica setup.
    ``method.loss``: temperature. ``method.options``: proj_batch_norm (default false).
    """

    name = "simclr"
    loss_cls = NTXentLoss
    needs_global_batch = True
    OPTIONS: ClassVar[dict[str, Any]] = {"proj_batch_norm": False}

    def __init__(self, backbone: nn.Module, cfg: MethodConfig) -> None:
        super().__init__(backbone, cfg)
        opts = method_options(cfg, self.name, self.OPTIONS)
        self.projector = contrastive_projector(backbone.out_dim, cfg, opts["proj_batch_norm"])


class MoCoV2(MomentumMethod):
    """MoCo v2 with a symmetric loss: online queries vs momentum keys and a queue of negatives.

    For views ``v != w``: ``L = mean_{(v, w)} MoCoLoss(q_v, k_w, queue)`` (He et al. 2020,
    Eqn. 1), ``q`` from the online backbone + projector, ``k`` from their EMA target (no
    gradient). The symmetric form (both views serve as query and as key) is MoCo v2 as
    trained on CIFAR by solo-learn (``mocov2plus``) and by the MoCo authors' CIFAR-10 demo.

    After the loss, in training mode, the l2-normalised keys of every view, gathered from all
    ranks (rank order within a view, then view order), are written into the FIFO queue: every
    rank holds the identical queue, equal to that of one process on the concatenated batch. The
    queue ``(K, d)`` and its write pointer are buffers, so they are checkpointed. One shared
    queue is used for all views (the MoCo demo's symmetric variant; solo-learn keeps one queue
    per view). Any ``K`` works: writes wrap around, and when one step brings ``>= K`` keys only
    the newest ``K`` are kept.

    The target (backbone + projector) follows the :class:`MomentumMethod` EMA
    ``θ' <- τ θ' + (1 - τ) θ`` after every optimiser step, ``τ`` on the cosine schedule from
    ``method.base_tau`` to ``method.final_tau``. No shuffling BN (as in solo-learn): the
    target's forward is a separate BN batch from the online forward.

    ``method.loss``: temperature (MoCo v2: 0.2). ``method.options``:

    * ``queue_size`` (default 4096): the MoCo authors' CIFAR-10 demo
      (facebookresearch/moco, colab/moco_cifar10_demo.ipynb) finds the kNN accuracy saturated
      at K = 4096 on CIFAR; ImageNet MoCo uses 65536, solo-learn's CIFAR recipe 32768.
    * ``proj_batch_norm`` (default false): BN in the projector (MoCo v2's head has none).
    """

    name = "mocov2"
    OPTIONS: ClassVar[dict[str, Any]] = {"queue_size": 4096, "proj_batch_norm": False}

    queue: torch.Tensor
    queue_ptr: torch.Tensor

    def build_heads(self) -> None:
        cfg = self.cfg
        size = self.options["queue_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(
                f"config key 'method.options.queue_size': must be a positive int, got {size!r}"
            )
        batch_norm = self.options["proj_batch_norm"]
        self.projector = contrastive_projector(self.backbone.out_dim, cfg, batch_norm)
        self.loss_fn = build_loss(MoCoLoss, dict(cfg.loss), self.name)
        queue = F.normalize(torch.randn(size, cfg.proj_output_dim), dim=1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def queue_size(self) -> int:
        return self.queue.shape[0]

    def forward(self, views: list[torch.Tensor]) -> MethodOutput:
        feats, z = self.embed(views)
        keys = self.target_embed(views)
        queue = self.queue.clone()  # the loss keeps it for backward; the enqueue edits in place
        pairs = permutations(range(len(views)), 2)
        result = mean_result([self.loss_fn.compute(z[i], keys[j], queue) for i, j in pairs])
        if self.training:
            self.enqueue(torch.cat([all_gather_rows(k) for k in keys]))
        terms = {**result.terms, "tau": torch.tensor(self.tau)}
        return MethodOutput(result.loss, embeddings=z, features=feats, terms=terms)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """FIFO-write ``keys: (n, d)`` (l2-normalised here) at the pointer, wrapping around.

        Equivalent to writing the keys one by one: when ``n >= K`` only the newest ``K`` are
        kept, in the slots they would have ended in. The pointer advances by ``n`` mod ``K``.
        """
        if keys.dim() != 2 or keys.shape[1] != self.queue.shape[1]:
            raise ValueError(
                f"keys must have shape (n, {self.queue.shape[1]}), got {tuple(keys.shape)}"
            )
        n, size = keys.shape[0], self.queue_size
        ptr = int(self.queue_ptr)
        first = max(0, n - size)  # earlier keys would be overwritten within this same call
        slots = (ptr + torch.arange(first, n, device=self.queue.device)) % size
        self.queue[slots] = F.normalize(keys[first:].float(), dim=1).to(self.queue.dtype)
        self.queue_ptr.fill_((ptr + n) % size)
