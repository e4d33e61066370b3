"""SwAV: online clustering with swapped prediction (Caron et al., NeurIPS 2020)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from specssl.core import ConfigError
from specssl.losses import SwAVLoss
from specssl.methods.base import Method, MethodOutput, build_loss, method_options
from specssl.methods.config import MethodConfig


class SwAV(Method):
    """SwAV: backbone -> projector -> l2-normalised ``z`` -> prototypes ``C`` (``Linear`` without
    bias, unit-norm rows) -> scores ``p = zᵀ C``; :class:`~specssl.losses.SwAVLoss` predicts
    each large view's Sinkhorn codes from the other views' scores.

    ``method.loss``: temperature, sinkhorn_iters, epsilon. ``method.options``:

    * ``num_prototypes`` (default 3000, the SwAV paper's and solo-learn's CIFAR value);
    * ``freeze_prototypes_epochs`` (default 1): the prototypes get no update during the first
      epochs (their gradients are dropped in :meth:`on_before_optimizer_step`, so neither the
      gradient, momentum nor weight decay moves them), as in the SwAV paper's first epoch.

    The prototypes are re-normalised to unit norm before every training forward and after every
    optimiser step (the paper's normalisation of ``C``). Views of the first view's resolution are
    *large* (teachers and students); views of another resolution (multi-crop small crops) are
    students only.

    No feature queue: this implementation computes the codes on the current global batch only
    (``B = 256`` per view on CIFAR, ``K = 3000``). The SwAV paper (Section 3.1) adds a queue of
    past features when ``B`` is small relative to ``K``, and solo-learn's CIFAR recipe starts a
    3840-feature queue at epoch 50; runs of this class omit it by design.

    Under DDP nothing is gathered: the Sinkhorn sums over the batch are all-reduced inside
    :func:`~specssl.losses.sinkhorn_knopp` and the cross-entropy is a per-sample mean.
    """

    name = "swav"
    needs_global_batch = False
    OPTIONS: ClassVar[dict[str, int]] = {"num_prototypes": 3000, "freeze_prototypes_epochs": 1}

    def __init__(self, backbone: nn.Module, cfg: MethodConfig) -> None:
        opts = method_options(cfg, self.name, self.OPTIONS)
        for key, low in (("num_prototypes", 1), ("freeze_prototypes_epochs", 0)):
            value = opts[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"config key 'method.options.{key}': must be an int >= {low}, got {value!r}"
                )
        super().__init__(backbone, cfg)
        self.loss_fn = build_loss(SwAVLoss, dict(cfg.loss), self.name)
        self.num_prototypes = opts["num_prototypes"]
        self.freeze_prototypes_epochs = opts["freeze_prototypes_epochs"]
        self.prototypes = nn.Linear(cfg.proj_output_dim, self.num_prototypes, bias=False)
        self.normalize_prototypes()

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Rescale every prototype (row of ``prototypes.weight: (K, d)``) to unit l2 norm."""
        w = self.prototypes.weight
        w.copy_(F.normalize(w, dim=1))

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        """Prototype scores ``(m, K)`` of projector outputs ``z: (m, d)`` (cosines)."""
        return self.prototypes(F.normalize(z, dim=1))

    def forward(self, views: list[torch.Tensor]) -> MethodOutput:
        if self.training:
            self.normalize_prototypes()
        feats, z = self.embed(views)
        scores = [self.scores(v) for v in z]
        large = [i for i, v in enumerate(views) if v.shape[1:] == views[0].shape[1:]]
        small = [i for i in range(len(views)) if i not in large]
        result = self.loss_fn.compute(
            [scores[i] for i in large], small_views=[scores[i] for i in small]
        )
        return MethodOutput(result.loss, embeddings=z, features=feats, terms=dict(result.terms))

    def on_before_optimizer_step(self, epoch: int, step: int) -> None:
        """Drop the prototypes' gradients while ``epoch < freeze_prototypes_epochs``."""
        if epoch < self.freeze_prototypes_epochs:
            for p in self.prototypes.parameters():
                p.grad = None

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        self.normalize_prototypes()

    def spectral_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The l2 normalisation of each embedding before the prototypes."""
        return partial(F.normalize, dim=1)
