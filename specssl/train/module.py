"""The Lightning module: one method, its online linear probe, optimiser and LR schedule."""

from __future__ import annotations

import warnings
from dataclasses import asdict

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from specssl.core import ConfigError, NonFiniteError
from specssl.methods import Method, MethodOutput, build_method
from specssl.models import build_backbone
from specssl.spectral import spectral_summary
from specssl.train.config import Config
from specssl.train.optim import build_optimizer, lr_multipliers


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite value.

    Attributes: ``step`` and ``epoch`` where it happened, ``stage`` (the first non-finite
    tensor of the step: ``"input"``, ``"backbone output"``, ``"embedding"``, a loss term's name
    or ``"loss"``), ``last_finite_spectrum`` (summary of the last finite embedding and its
    step, empty if none) and ``checkpoint`` (the last good checkpoint, set by
    :func:`specssl.train.run.pretrain`; ``None`` when there is none). ``str(err)`` is the
    one-paragraph diagnosis.
    """

    def __init__(
        self,
        step: int,
        epoch: int,
        stage: str,
        detail: str,
        last_finite_spectrum: str = "",
        bad_weights: str = "",
    ) -> None:
        self.step, self.epoch, self.stage, self.detail = step, epoch, stage, detail
        self.last_finite_spectrum, self.bad_weights = last_finite_spectrum, bad_weights
        self.checkpoint_note = ""
        self.checkpoint: str | None = None
        super().__init__(self._message())

    def with_checkpoint(self, path: str | None, note: str) -> TrainingDivergedError:
        """The same error, its message ending with what :func:`last_good_checkpoint` found."""
        self.checkpoint, self.checkpoint_note = path, note
        self.args = (self._message(),)
        return self

    def _message(self) -> str:
        parts = [
            f"training diverged at step {self.step} (epoch {self.epoch}): the first non-finite "
            f"tensor is the {self.stage} ({self.detail})"
        ]
        if self.bad_weights:
            parts.append(f"non-finite weights: {self.bad_weights}")
        parts.append(
            f"last finite embedding: {self.last_finite_spectrum}"
            if self.last_finite_spectrum
            else "no finite embedding was seen in this run segment"
        )
        if self.checkpoint_note:
            parts.append(self.checkpoint_note)
        parts.append("try a lower optim.lr, trainer.gradient_clip_val, or full precision")
        return "; ".join(parts) + "."


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
        try:
            backbone = build_backbone(
                cfg.backbone.name,
                cifar_stem=cfg.backbone.cifar_stem,
                width=cfg.backbone.width,
                zero_init_residual=cfg.backbone.zero_init_residual,
                **cfg.backbone.kwargs,
            )
        except (ValueError, TypeError) as err:  # unknown name, a constructor argument it lacks
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"config key 'backbone': {first}") from err
        self.method: Method = build_method(backbone, cfg.method)
        self.memory_format = (
            torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format
        )
        if cfg.trainer.channels_last:
            self.method.to(memory_format=torch.channels_last)
        if cfg.trainer.compile:
            backbone.compile()  # in place: parameter names and checkpoints stay the same
        warn_if_rank_deficient_by_construction(self.method, cfg.data.batch_size)
        self.classifier = nn.Linear(backbone.out_dim, num_classes)
        self.augment = augment
        self.eval_transform = eval_transform
        self.num_classes = num_classes
        self._stage_outputs: dict[str, list[torch.Tensor]] = {}
        self._last_finite: tuple[int, torch.Tensor] | None = None
        self._last_loss: torch.Tensor | None = None
        backbone.register_forward_hook(self._trace_stage("backbone output"))
        projector = getattr(self.method, "projector", None)
        if isinstance(projector, nn.Module):
            projector.register_forward_hook(self._trace_stage("embedding"))

    @property
    def backbone(self) -> nn.Module:
        return self.method.backbone

    # ----------------------------------------------------------------- training
    def views_of(self, images: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
        if isinstance(images, list | tuple):
            views = list(images)
        elif self.augment is None:
            raise ValueError("batch is a single image tensor but no on-device augmentation is set")
        else:
            with torch.no_grad():
                views = self.augment(images)
        return [v.contiguous(memory_format=self.memory_format) for v in views]

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        views = self.views_of(images)
        self._stage_outputs.clear()
        try:
            out = self.method(views)
        except NonFiniteError as err:  # a spectral op met a non-finite embedding
            raise self._diverged(views, None, str(err).splitlines()[0]) from err
        self._check_finite(views, out)
        self._stage_outputs.clear()
        self._last_finite = (self.global_step, out.embeddings[0].detach())
        self._last_loss = out.loss.detach()
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

    def _check_finite(self, views: list[torch.Tensor], out: MethodOutput) -> None:
        if torch.isfinite(out.loss):
            return
        raise self._diverged(views, out, "the loss is not finite")

    def _trace_stage(self, stage: str):
        """Forward hook keeping ``stage``'s outputs of this step (detached references, no copy
        and no device sync), so a divergence can name the first non-finite one."""

        def hook(module: nn.Module, args, output) -> None:
            if module.training and torch.is_grad_enabled() and isinstance(output, torch.Tensor):
                self._stage_outputs.setdefault(stage, []).append(output.detach())

        return hook

    def _diverged(
        self, views: list[torch.Tensor], out: MethodOutput | None, detail: str
    ) -> TrainingDivergedError:
        """The diagnosis of a non-finite step: the first non-finite tensor in the order the
        step computes them (input views, backbone output, embedding, each loss term, the
        total loss), the parameters that are non-finite, and the spectrum of the last finite
        embedding of this run segment."""
        stages: list[tuple[str, list[torch.Tensor]]] = [
            ("input", list(views)),
            ("backbone output", self._stage_outputs.get("backbone output", [])),
            ("embedding", self._stage_outputs.get("embedding", [])),
        ]
        if out is not None:
            stages += [(f"loss term {k!r}", [v]) for k, v in out.terms.items()]
            stages.append(("loss", [out.loss]))
        stage, count = "loss", 0
        for name, tensors in stages:
            count = sum(int((~torch.isfinite(t)).sum()) for t in tensors)
            if count:
                stage = name
                break
        if count:
            detail = f"{count} non-finite entries; {detail}"
        bad = [n for n, p in self.named_parameters() if not bool(torch.isfinite(p).all())]
        bad_weights = ""
        if bad:
            bad_weights = f"{len(bad)} parameter tensors, first {bad[0]}"
        spectrum = ""
        if self._last_finite is not None:
            step, z = self._last_finite
            s = spectral_summary(z.float(), self.method.spectral_axis)
            spectrum = f"step {step}, " + ", ".join(f"{k}={v:.3g}" for k, v in s.items())
        return TrainingDivergedError(
            self.global_step, self.current_epoch, stage, detail, spectrum, bad_weights
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the last training loss, so a checkpoint's health can be judged without
        running it (:func:`specssl.train.rundir.last_good_checkpoint`)."""
        loss = self._last_loss
        checkpoint["specssl_train_loss"] = None if loss is None else float(loss)

    # --------------------------------------------------------------- validation
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(B, feat_dim)`` of un-augmented images (eval transform applied)."""
        if self.eval_transform is not None:
            images = self.eval_transform(images)
        return self.backbone(images.contiguous(memory_format=self.memory_format))

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
