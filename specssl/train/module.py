"""The Lightning module: one method, its online linear probe, optimiser and LR schedule."""

from __future__ import annotations

import warnings
from dataclasses import asdict

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from specssl.methods import Method, MethodOutput, build_method
from specssl.models import build_backbone
from specssl.spectral import spectral_summary
from specssl.train.config import Config
from specssl.train.optim import build_optimizer, lr_multipliers


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite value; the message says which step, term and spectrum."""


def warn_if_rank_deficient_by_construction(method: Method, batch: int) -> None:
    """Warn (once per run) when a batch-axis whitening sees more channels than its rows allow:
    a ``c x c`` covariance from ``n`` centred rows has rank <= ``n - 1``, so for ``c > n - 1``
    its smallest eigenvalues are 0 and the condition indicator is 0 for every network."""
    loss = getattr(method, "loss_fn", None)
    if loss is None or getattr(loss, "axis", None) != "batch":
        return
    rows = getattr(loss, "w_size", None) or batch
    channels = method.embedding_dim // max(1, getattr(loss, "groups", 1) or 1)
    if channels > rows - 1:
        warnings.warn(
            f"{method.name}: batch-axis whitening of {channels} channels from {rows} rows: the "
            f"covariance has rank <= {rows - 1} < {channels} by construction (its condition "
            "indicator is 0 for any network); use the channel axis, more groups or more rows",
            stacklevel=2,
        )


class SSLModule(L.LightningModule):
    """Pretrains ``cfg.method`` on ``cfg.backbone`` with an online linear probe.

    Batches are ``(views, labels)`` where ``views`` is either a uint8/float image batch
    ``(B, 3, H, W)`` to be augmented on the device by ``augment`` (a callable returning the list
    of views), or an already augmented list of views. Labels are used only by the online probe,
    on detached features, so they never influence the representation.
    """

    def __init__(
        self,
        cfg: Config,
        num_classes: int,
        augment: nn.Module | None = None,
        eval_transform: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.save_hyperparameters({"config": _plain(cfg), "num_classes": num_classes})
        backbone = build_backbone(
            cfg.backbone.name,
            cifar_stem=cfg.backbone.cifar_stem,
            width=cfg.backbone.width,
            zero_init_residual=cfg.backbone.zero_init_residual,
        )
        self.method: Method = build_method(backbone, cfg.method)
        warn_if_rank_deficient_by_construction(self.method, cfg.data.batch_size)
        self.classifier = nn.Linear(backbone.out_dim, num_classes)
        self.augment = augment
        self.eval_transform = eval_transform
        self.num_classes = num_classes

    @property
    def backbone(self) -> nn.Module:
        return self.method.backbone

    # ----------------------------------------------------------------- training
    def views_of(self, images: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
        if isinstance(images, list | tuple):
            return list(images)
        if self.augment is None:
            raise ValueError("batch is a single image tensor but no on-device augmentation is set")
        with torch.no_grad():
            return self.augment(images)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        views = self.views_of(images)
        try:
            out = self.method(views)
        except ValueError as err:  # a spectral op met a non-finite embedding
            if "non-finite" in str(err):
                raise TrainingDivergedError(self._diagnosis("embedding", None, str(err))) from err
            raise
        self._check_finite(out)
        logits = self.classifier(out.features[0].detach())
        labeled = labels >= 0  # stl10's unlabeled images carry label -1
        if bool(labeled.any()):
            probe_loss = F.cross_entropy(logits[labeled], labels[labeled])
            acc = (logits[labeled].argmax(1) == labels[labeled]).float().mean()
        else:
            probe_loss = logits.sum() * 0.0
            acc = torch.zeros((), device=logits.device)
        bs = labels.shape[0]
        self.log("train/loss", out.loss, prog_bar=True, batch_size=bs)
        for name, value in out.terms.items():
            self.log(f"train/{name}", value.float(), batch_size=bs)
        self.log("train/probe_loss", probe_loss, batch_size=bs)
        self.log("train/probe_acc", acc * 100, prog_bar=True, batch_size=bs)
        return out.loss + probe_loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.method.on_train_step_end(self.global_step, self.trainer.estimated_stepping_batches)

    def on_before_optimizer_step(self, optimizer) -> None:
        self.method.on_before_optimizer_step(self.current_epoch, self.global_step)

    def _check_finite(self, out: MethodOutput) -> None:
        if torch.isfinite(out.loss):
            return
        bad = [k for k, v in out.terms.items() if not torch.isfinite(v).all()]
        term = ", ".join(bad) if bad else "the total loss"
        raise TrainingDivergedError(self._diagnosis(term, out.embeddings[0], "loss is not finite"))

    def _diagnosis(self, term: str, z: torch.Tensor | None, detail: str) -> str:
        where = f"step {self.global_step} (epoch {self.current_epoch})"
        spectrum = "unavailable"
        if z is not None and bool(torch.isfinite(z).all()):
            s = spectral_summary(z.float())
            spectrum = ", ".join(f"{k}={v:.3g}" for k, v in s.items())
        elif z is not None:
            spectrum = f"embedding itself non-finite ({int((~torch.isfinite(z)).sum())} entries)"
        return (
            f"training diverged at {where}: {detail} (term: {term}); embedding spectrum: "
            f"{spectrum}. The last good checkpoint is kept; try a lower optim.lr, "
            "trainer.gradient_clip_val, or full precision."
        )

    # --------------------------------------------------------------- validation
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(B, feat_dim)`` of un-augmented images (eval transform applied)."""
        if self.eval_transform is not None:
            images = self.eval_transform(images)
        return self.backbone(images)

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        logits = self.classifier(self.features(images))
        top1 = (logits.argmax(1) == labels).float().mean() * 100
        top5 = (logits.topk(min(5, self.num_classes), 1).indices == labels[:, None]).any(1)
        bs = labels.shape[0]
        self.log("val/probe_top1", top1, prog_bar=True, batch_size=bs, sync_dist=True)
        self.log("val/probe_top5", top5.float().mean() * 100, batch_size=bs, sync_dist=True)

    # --------------------------------------------------------------- optimiser
    def configure_optimizers(self):
        optim_cfg = self.cfg.optim
        global_batch = self.cfg.data.batch_size  # the global batch (split over processes)
        lr = optim_cfg.lr * global_batch / 256
        optimizer = build_optimizer(self.method, self.classifier, optim_cfg, lr)
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        warmup = round(optim_cfg.warmup_epochs * steps_per_epoch)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_multipliers(optimizer, total, warmup, optim_cfg.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _plain(cfg: Config) -> dict:
    return asdict(cfg)
