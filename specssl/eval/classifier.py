"""One classifier on a pretrained backbone, for linear evaluation (frozen) and fine-tuning.

:class:`ClassifierModule`: a backbone plus a new linear head ``(f -> C)``, cross-entropy, SGD
(or LARS) with momentum. ``frozen=True`` is the linear evaluation protocol (MoCo, SimSiam, BYOL,
the INTL paper: the backbone stays in eval mode without gradients, only the head trains);
``frozen=False`` semi-supervised fine-tuning (SimCLR Appendix B.5: backbone and head train with
their own learning rates). Schedules: ``"step"`` (``MultiStepLR`` at milestone epochs) or
``"cos"`` (``0.5 (1 + cos(π t / T))``, :func:`specssl.train.optim.warmup_cosine` without
warm-up, per epoch or per step). :func:`train_and_test` runs it on Lightning and returns the
test top-1 / top-5.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from specssl.eval.metrics import topk_metrics
from specssl.train.optim import LARS, warmup_cosine

__all__ = ["ClassifierModule", "SGDSettings", "train_and_test"]


@dataclass(frozen=True)
class SGDSettings:
    """Optimiser and schedule of :class:`ClassifierModule`.

    ``lr_head`` / ``lr_backbone`` (unused when frozen): for a global batch of 256, used as
    ``lr · batch_size · world_size / 256`` (``batch_size`` per device). ``interval``: the
    ``"cos"`` schedule advances per ``"epoch"`` or per optimiser ``"step"``. ``lars``:
    :class:`specssl.train.optim.LARS` with trust ``lars_trust`` (no Nesterov).
    """

    epochs: int
    lr_head: float
    batch_size: int
    lr_backbone: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "step"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    interval: str = "epoch"
    lars: bool = False
    lars_trust: float = 0.001


class ClassifierModule(L.LightningModule):
    """``backbone (B, 3, H, W) -> (B, f)`` plus a linear head ``(B, f) -> (B, C)``.

    Args:
        backbone: the pretrained network (its ``out_dim`` is ``f`` unless ``feat_dim`` is given).
        num_classes: ``C``.
        sgd: optimiser settings.
        normalize: maps un-augmented test images (uint8 or [0, 1]) to the backbone's input.
        frozen: linear evaluation (backbone fixed, eval mode) or fine-tuning.
        train_input: maps a training batch to the backbone's input (default ``normalize``;
            fine-tuning passes the on-device augmentation, which normalises too).
        head_init_std: head weight ~ N(0, std²) and zero bias; ``None``: ``nn.Linear``'s init.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        sgd: SGDSettings,
        *,
        normalize: nn.Module,
        frozen: bool,
        train_input: nn.Module | None = None,
        head_init_std: float | None = 0.01,
        feat_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.normalize, self.frozen, self.sgd = backbone, normalize, frozen, sgd
        self.train_input = train_input if train_input is not None else normalize
        self.head = nn.Linear(feat_dim or backbone.out_dim, num_classes)
        if head_init_std is not None:
            nn.init.normal_(self.head.weight, std=head_init_std)
            nn.init.zeros_(self.head.bias)
        if frozen:
            backbone.requires_grad_(False)
            backbone.eval()
        self.accuracy = topk_metrics(num_classes, torch.float64)
        self.test_accuracy: dict[str, float] = {}

    def train(self, mode: bool = True) -> ClassifierModule:
        """As ``nn.Module.train``, but a frozen backbone stays in eval mode."""
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` logits of backbone inputs ``x (B, 3, H, W)`` (already normalised)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            features = self.backbone(x).float()
        return self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` logits of un-augmented images (normalised here)."""
        return self.logits(self.normalize(images))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = F.cross_entropy(self.logits(self.train_input(images)), labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=labels.shape[0])
        return loss

    def on_test_epoch_start(self) -> None:
        for metric in self.accuracy.values():
            metric.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        for metric in self.accuracy.values():
            metric.update(logits, labels)

    def on_test_epoch_end(self) -> None:  # compute() synchronises over processes
        self.test_accuracy = {k: 100.0 * float(m.compute()) for k, m in self.accuracy.items()}

    def configure_optimizers(self):
        s = self.sgd
        try:
            trainer = self.trainer
        except RuntimeError:  # not attached (a unit test of the schedule)
            trainer = None
        scale = s.batch_size * max(1, getattr(trainer, "world_size", 1)) / 256
        groups = [] if self.frozen else [{"params": list(self.backbone.parameters()),
                                          "lr": s.lr_backbone * scale}]  # fmt: skip
        groups.append({"params": list(self.head.parameters()), "lr": s.lr_head * scale})
        common = {"lr": s.lr_head * scale, "momentum": s.momentum, "weight_decay": s.weight_decay}
        if s.lars:
            opt = LARS(groups, eta=s.lars_trust, **common)
        else:
            opt = torch.optim.SGD(groups, nesterov=s.nesterov, **common)
        interval = "epoch"
        if s.schedule == "cos":
            interval = s.interval
            total = s.epochs if interval == "epoch" else int(trainer.estimated_stepping_batches)
            total = max(1, total)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: warmup_cosine(t, total, 0))
        else:
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(s.milestones), gamma=s.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": interval}}


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Drop Lightning's start-up chatter and the warnings this use of it triggers on purpose
    (frozen backbone in eval mode, no validation loader, few workers)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for text in ("module\\(s\\) in eval mode", "no `val_dataloader`", "LeafSpec",
                     "does not have many workers"):  # fmt: skip
            warnings.filterwarnings("ignore", f".*{text}.*")
        yield


def train_and_test(
    module: ClassifierModule,
    train_set: Dataset,
    test_set: Dataset,
    *,
    seed: int = 0,
    max_steps: int = -1,
    eval_batch_size: int | None = None,
    num_workers: int = 0,
    accelerator: str = "auto",
    devices: int | str = 1,
    precision: str = "32-true",
    enable_progress_bar: bool = False,
    **trainer_options: Any,
) -> tuple[dict[str, float], int]:
    """Train ``module`` on ``train_set`` for ``module.sgd.epochs`` (or ``max_steps``), then
    test it on ``test_set``; returns ``({"top1", "top5"} in %, optimiser steps taken)``.

    Training batches of ``module.sgd.batch_size`` (at most the dataset), shuffled by a
    ``seed``-ed generator; when fine-tuning, a last batch of one image is dropped (BatchNorm).
    """
    batch = min(module.sgd.batch_size, len(train_set))
    loader_args = {
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
        "pin_memory": torch.cuda.is_available(),
    }
    train_loader = DataLoader(
        train_set,
        batch_size=batch,
        shuffle=True,
        drop_last=not module.frozen and len(train_set) % batch == 1,
        generator=torch.Generator().manual_seed(seed),
        **loader_args,
    )
    test_loader = DataLoader(test_set, batch_size=eval_batch_size or batch, **loader_args)
    trainer = L.Trainer(
        max_epochs=module.sgd.epochs,
        max_steps=max_steps,
        accelerator=accelerator,
        devices=int(devices) if str(devices).isdigit() else devices,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=enable_progress_bar,
        num_sanity_val_steps=0,
        log_every_n_steps=min(50, max(1, len(train_set) // batch)),
        **trainer_options,
    )
    with _quiet_lightning():
        trainer.fit(module, train_dataloaders=train_loader)
        trainer.test(module, dataloaders=test_loader, verbose=False)
    return dict(module.test_accuracy), int(trainer.global_step)
