"""The standard linear evaluation: a linear layer on the frozen backbone, trained by SGD.

The protocol of the SSL papers (MoCo, SimSiam, BYOL and the INTL paper's Table 1/2 via
solo-learn's settings): a linear layer on the frozen backbone (kept in eval mode, so BatchNorm
statistics never change) trained on *augmented* images (random resized crop + horizontal flip),
SGD momentum 0.9, lr divided by 10 at epochs 60 and 80 of 100 (or a per-epoch cosine;
optionally with LARS as CW-RGP's ImageNet protocol); evaluated on the centre (un-augmented) test
images. Runs on Lightning (:class:`specssl.eval.classifier.ClassifierModule` with
``frozen=True``), so GPUs / DDP / mixed precision come from the trainer options. Named presets
of the authors' settings: :mod:`specssl.eval.protocols`. The fast probe on cached features is
:mod:`specssl.eval.probe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightning as L
from torch import nn
from torch.utils.data import Dataset

from specssl.eval.classifier import ClassifierModule, SGDSettings, train_and_test

__all__ = ["LinearSGDConfig", "linear_eval_sgd"]

_SGD_SCHEDULES = ("step", "cos")


@dataclass
class LinearSGDConfig:
    """Settings of :func:`linear_eval_sgd` (defaults: the ImageNet protocol of the papers).

    ``lr`` is for a global batch of 256 and scales linearly with the global batch.
    ``schedule="step"``: ``milestones`` default to 60% and 80% of ``epochs`` (60/80 of 100); the
    lr is multiplied by ``gamma`` at each. ``schedule="cos"``: ``0.5 (1 + cos(pi e / epochs))``
    at epoch ``e`` (MoCo's / CW-RGP's ``adjust_learning_rate``). ``lars``: the SGD step is
    taken by :class:`specssl.train.optim.LARS` (trust ``lars_trust``, unclipped, as apex's
    ``LARC(clip=False)``). ``crop_scale`` is the random-resized-crop area range.
    """

    epochs: int = 100
    milestones: list[int] | None = None
    gamma: float = 0.1
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 256
    crop_scale: tuple[float, float] = (0.08, 1.0)
    schedule: str = "step"
    lars: bool = False
    lars_trust: float = 0.001
    num_workers: int = 4
    accelerator: str = "auto"
    devices: str = "auto"
    precision: str = "32-true"
    enable_progress_bar: bool = True
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_milestones(self) -> list[int]:
        if self.milestones is not None:
            return sorted(int(m) for m in self.milestones)
        return [round(0.6 * self.epochs), round(0.8 * self.epochs)]

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.schedule not in _SGD_SCHEDULES:
            raise ValueError(
                f"linear-sgd schedule must be one of {list(_SGD_SCHEDULES)}, got {self.schedule!r}"
            )

    def sgd(self) -> SGDSettings:
        """The classifier's optimiser settings (cosine per epoch)."""
        return SGDSettings(
            epochs=self.epochs,
            lr_head=self.lr,
            batch_size=self.batch_size,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            milestones=tuple(self.resolved_milestones()),
            gamma=self.gamma,
            lars=self.lars,
            lars_trust=self.lars_trust,
        )


def linear_eval_sgd(
    backbone: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    normalize: nn.Module,
    num_classes: int,
    cfg: LinearSGDConfig | None = None,
) -> dict[str, float]:
    """The standard linear evaluation on a frozen ``backbone``; returns test top-1/top-5 (%).

    Args:
        backbone: ``(B, 3, H, W) -> (B, f)`` with ``out_dim = f``; frozen and kept in eval
            mode throughout (its BatchNorm running statistics are not updated).
        train_set: dataset of ``(augmented image tensor (3, H, W), label)`` (uint8 or float in
            [0, 1]; see :func:`specssl.eval.features.linear_train_transform`).
        test_set: dataset of un-augmented ``(image, label)`` of the same size.
        normalize: maps a batch of those images to the backbone's input (mean/std).
        num_classes: number of classes ``C``.
        cfg: the protocol's settings (:class:`LinearSGDConfig`).
    """
    cfg = cfg or LinearSGDConfig()
    cfg.validate()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = ClassifierModule(backbone, num_classes, cfg.sgd(), normalize=normalize, frozen=True)
    accuracy, _ = train_and_test(
        module,
        train_set,
        test_set,
        seed=cfg.seed,
        num_workers=cfg.num_workers,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        precision=cfg.precision,
        enable_progress_bar=cfg.enable_progress_bar,
        **cfg.extra,
    )
    return accuracy
