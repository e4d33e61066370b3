"""Semi-supervised evaluation: fine-tune the whole pretrained backbone on 1% / 10% of the labels.

Protocol (SimCLR, Chen et al. 2020, Appendix B.5; BYOL, Grill et al. 2020, Appendix C.2; the
INTL paper's Table 1 uses SimCLR's ImageNet subsets):

* start from the pretrained backbone, add a new linear classifier on its features;
* train both with cross-entropy on a fixed class-balanced subset of the training labels
  (:mod:`specssl.eval.splits`: shipped files for CIFAR-10, the same seeded generator for
  other in-memory datasets, SimCLR's lists for ImageNet);
* augmentation: random resized crop + horizontal flip only (no colour ops);
* SGD with Nesterov momentum 0.9, no weight decay or other regularisation, lr scaled as
  ``lr * batch / 256`` (SimCLR: ``0.05 x batch / 256``), cosine decay, no warm-up;
  SimCLR fine-tunes 60 epochs on 1% and 30 epochs on 10%;
* separate learning rates for the pretrained backbone and the freshly initialised head (the
  practice of SwAV's and Barlow Twins' semi-supervised evaluations; SimCLR/BYOL use one lr,
  i.e. ``lr_head = lr_backbone``). Our default head lr (10x) is a starting point to tune;
* report top-1 / top-5 on the test split with the un-augmented eval transform.

The INTL authors' own fine-tune (``evaluate.py --weights finetune``) differs: plain SGD
(no Nesterov), lr 0.2 head / 0.004–0.006 backbone, 20 epochs under a ``MultiStepLR([60, 80])``
that never fires (constant lr), head initialised N(0, 0.01²); ``schedule="step"``,
``nesterov=False`` and ``head_init_std`` express it, and the presets of
:mod:`specssl.eval.protocols` (``specssl finetune --preset intl_semisup_1pct``...) set them.

Everything runs through Lightning on any accelerator (``accelerator="auto"``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import Dataset

from specssl.data.augment import (
    AugmentConfig,
    BatchedAugment,
    build_transform,
    cifar_views,
    digits_views,
    imagenet_views,
)
from specssl.data.datasets import (
    IndexedImageDataset,
    TensorImageDataset,
    build_dataset,
    dataset_stats,
)
from specssl.eval.checkpoint import load_checkpoint
from specssl.eval.classifier import ClassifierModule, SGDSettings, train_and_test
from specssl.eval.features import eval_image_transform
from specssl.eval.splits import (
    SHIPPED,
    Split,
    indices_from_image_names,
    load_split,
    make_split,
    read_split_file,
)
from specssl.train.datamodule import Normalize

__all__ = [
    "FinetuneConfig",
    "FinetuneResult",
    "crop_flip_view",
    "finetune",
    "labelled_indices",
]

#: SimCLR Appendix B.5: 60 epochs on 1% of the labels, 30 on 10%.
SIMCLR_EPOCHS = {1: 60, 10: 30}


@dataclass
class FinetuneConfig:
    """Hyper-parameters of the semi-supervised fine-tune (sources in the module docstring)."""

    percent: float = 1.0  # labelled percentage: 1 | 10 (shipped splits) or any other
    split_file: str | None = None  # specssl split file or SimCLR's ImageNet image-name list
    split_seed: int = 0  # seed of the split (shipped files: 0)
    epochs: int | None = None  # default: SIMCLR_EPOCHS (60 for 1%, 30 for 10%)
    max_steps: int = -1  # stop early (tests, smoke runs)
    batch_size: int = 256
    lr_backbone: float = 0.05  # base lr for batch 256 (SimCLR B.5: 0.05 x B/256)
    lr_head: float = 0.5  # base lr of the new linear head (tune; SimCLR/BYOL: = lr_backbone)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0  # SimCLR: no regularisation
    schedule: str = "cos"  # "cos" (per step, to 0, SimCLR) | "step" (per epoch, x gamma)
    milestones: list[int] | None = None  # step: epochs (default 60% / 80% of the epochs)
    gamma: float = 0.1  # step: lr factor at each milestone
    head_init_std: float | None = None  # head weight ~ N(0, std²), bias 0; None: nn.Linear's
    preset: str | None = None  # name of the protocols.py preset these values came from (record)
    seed: int = 0
    num_workers: int = 0
    accelerator: str = "auto"
    precision: str = "32-true"
    eval_batch_size: int = 512
    enable_progress_bar: bool = False

    def resolved_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return SIMCLR_EPOCHS[1] if self.percent <= 1 else SIMCLR_EPOCHS[10]

    def resolved_milestones(self) -> list[int]:
        """The step schedule's milestone epochs (default 60% and 80% of the epochs)."""
        if self.milestones is not None:
            return sorted(int(m) for m in self.milestones)
        epochs = self.resolved_epochs()
        return [round(0.6 * epochs), round(0.8 * epochs)]

    def validate(self) -> None:
        checks = [
            (0 < self.percent <= 100, "percent", "must be in (0, 100]"),
            (self.epochs is None or self.epochs >= 1, "epochs", "must be >= 1"),
            (self.batch_size >= 2, "batch_size", "must be >= 2"),
            (self.lr_backbone >= 0, "lr_backbone", "must be >= 0"),
            (self.lr_head > 0, "lr_head", "must be > 0"),
            (self.weight_decay >= 0, "weight_decay", "must be >= 0"),
            (self.schedule in ("cos", "step"), "schedule", "must be 'cos' or 'step'"),
            (self.head_init_std is None or self.head_init_std > 0, "head_init_std", "must be > 0"),
        ]
        for ok, key, rule in checks:
            if not ok:
                raise ValueError(f"finetune {key} {rule}, got {getattr(self, key)!r}")

    def sgd(self) -> SGDSettings:
        """The classifier's optimiser settings (cosine per step)."""
        return SGDSettings(
            epochs=self.resolved_epochs(),
            lr_head=self.lr_head,
            lr_backbone=self.lr_backbone,
            batch_size=self.batch_size,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            milestones=tuple(self.resolved_milestones()),
            gamma=self.gamma,
            interval="step",
        )


@dataclass
class FinetuneResult:
    top1: float  # % on the test split
    top5: float
    num_labelled: int
    split: str  # where the labelled subset came from
    epochs: int
    steps: int
    wall_time_s: float  # training and test
    config: dict[str, Any]
    preset: dict[str, Any] | None = None  # protocols.record(): name, source, overrides

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


#: Every colour / photometric operation of :class:`AugmentConfig` switched off.
_NO_COLOUR_OPS = dict.fromkeys(
    ("brightness", "contrast", "saturation", "hue", "jitter_p", "gray_p", "blur_p", "solarize_p"),
    0.0,
)


def crop_flip_view(dataset: str) -> AugmentConfig:
    """The fine-tuning augmentation: the dataset's pretraining crop (size, scale) and flip,
    no colour jitter, grayscale, blur or solarisation (SimCLR B.5: crop + flip only)."""
    if dataset == "digits":
        base = digits_views(num_views=1)[0]  # no flip: a mirrored digit is another symbol
    elif dataset == "imagefolder":
        base = imagenet_views(num_views=1, blur_p=0.0, solarize_p=0.0)[0]
    else:
        stats = dataset if dataset in ("cifar10", "cifar100", "stl10") else "cifar10"
        size = 96 if dataset == "stl10" else 32
        base = cifar_views(stats, crop_size=size, num_views=1, solarize_p=0.0)[0]
    return base.replace(**_NO_COLOUR_OPS)


SIMCLR_SPLITS = Path(__file__).resolve().parents[1] / "splits" / "simclr"


def simclr_imagenet_split(train_set, percent: float) -> tuple[torch.Tensor, str]:
    """SimCLR's ImageNet 1% / 10% training image lists (12,811 / 128,116 file names, shipped as
    ``specssl/splits/simclr/imagenet_<pct>pct.txt``; the lists of google-research/simclr, which
    the INTL authors' ``evaluate.py`` reads from ``src/percent/``) as indices of ``train_set``.
    Any other percentage, or an image folder that is not ImageNet, needs ``--split-file``."""
    path = SIMCLR_SPLITS / f"imagenet_{percent:g}pct.txt"
    base = getattr(train_set, "base", None)
    if percent not in (1, 10) or base is None or not hasattr(base, "samples"):
        raise ValueError(
            f"imagefolder data at {percent:g}% labels needs --split-file (SimCLR's ImageNet "
            "lists are shipped for 1% and 10% only; for other image folders write one with "
            "specssl.eval.splits.write_split)"
        )
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    try:
        indices = indices_from_image_names(names, [str(p) for p, _ in base.samples])
    except ValueError as err:
        raise ValueError(
            f"SimCLR's ImageNet {percent:g}% split does not match this image folder ({err}); "
            "for an image folder that is not ImageNet pass --split-file"
        ) from err
    return indices, f"SimCLR ImageNet {percent:g}% ({path.name})"


def labelled_indices(
    dataset: str,
    train_set: TensorImageDataset | IndexedImageDataset,
    percent: float,
    *,
    split_file: str | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, str]:
    """Training indices of the labelled subset and a description of where they came from.

    ``split_file`` wins; else the shipped split of ``dataset`` at ``percent`` (seed 0);
    else, for in-memory datasets without a shipped split (CIFAR-100, digits, stl10, other
    percentages), :func:`make_split` on the training labels. ImageNet (``imagefolder``) at 1%
    or 10% uses SimCLR's image lists (:func:`simclr_imagenet_split`); other image folders
    need a split file.
    """
    targets = train_set.targets
    if split_file is not None:
        found = read_split_file(split_file)
        if isinstance(found, Split):
            found.check_labels(targets)
            return found.indices, f"file {split_file}"
        base = getattr(train_set, "base", None)
        if base is None or not hasattr(base, "samples"):
            raise ValueError(
                f"split file {split_file} lists image names: only for imagefolder datasets"
            )
        paths = [str(p) for p, _ in base.samples]
        return indices_from_image_names(found, paths), f"image list {split_file}"
    if percent in SHIPPED.get(dataset, ()) and seed == 0:
        split = load_split(dataset, percent, train_labels=targets)
        return split.indices, f"shipped {dataset} {percent:g}% seed 0"
    if dataset == "imagefolder":
        return simclr_imagenet_split(train_set, percent)
    indices = make_split(targets, percent / 100, seed, num_classes=train_set.num_classes)
    return indices, f"make_split({dataset}, {percent:g}%, seed {seed})"


def _subset(ds: TensorImageDataset | IndexedImageDataset, idx: torch.Tensor) -> Dataset:
    if isinstance(ds, TensorImageDataset):
        return TensorImageDataset(
            ds.images[idx], ds.labels[idx], ds.transform, classes=ds.classes,
            num_classes=ds.num_classes,
        )  # fmt: skip
    return IndexedImageDataset(ds.base, ds.targets, ds.classes, idx)


def finetune(
    checkpoint: str | Path,
    cfg: FinetuneConfig | None = None,
    *,
    data_root: str | None = None,
    out_dir: str | Path | None = None,
    preset: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Fine-tune the backbone of ``checkpoint`` on the labelled subset, test top-1/top-5.

    ``checkpoint``: a ``.ckpt`` file or a run directory (see
    :func:`specssl.eval.checkpoint.load_checkpoint`). ``data_root`` overrides the checkpoint's
    dataset directory. With ``out_dir``, writes ``finetune.json`` (the result) and
    ``finetuned.pt`` (``{"backbone", "head"}`` state dicts). ``preset``: the record of the
    protocol preset used (:func:`specssl.eval.protocols.record`), kept in the result.
    """
    cfg = cfg or FinetuneConfig()
    cfg.validate()
    loaded = load_checkpoint(checkpoint)
    backbone = loaded.backbone.train()  # loaded in eval mode; BatchNorm must train here
    data = loaded.config.data
    name, root = data.name, data_root if data_root is not None else data.root
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    on_device = name != "imagefolder"
    view = crop_flip_view(name)
    train_full = build_dataset(
        name, root, "train", transform=None if on_device else build_transform(view)
    )
    test_set = build_dataset(name, root, "test", transform=eval_image_transform(name))
    idx, source = labelled_indices(
        name, train_full, cfg.percent, split_file=cfg.split_file, seed=cfg.split_seed
    )
    train_set = _subset(train_full, idx)
    model = ClassifierModule(
        backbone,
        train_full.num_classes,
        cfg.sgd(),
        normalize=Normalize(*dataset_stats(name)),
        frozen=False,  # BatchedAugment normalises; the per-image transform did already
        train_input=BatchedAugment(view) if on_device else nn.Identity(),
        head_init_std=cfg.head_init_std,
    )
    start = time.perf_counter()
    accuracy, steps = train_and_test(
        model,
        train_set,
        test_set,
        seed=cfg.seed,
        max_steps=cfg.max_steps,
        eval_batch_size=cfg.eval_batch_size,
        num_workers=cfg.num_workers,
        accelerator=cfg.accelerator,
        precision=cfg.precision,
        enable_progress_bar=cfg.enable_progress_bar,
    )
    wall = time.perf_counter() - start
    result = FinetuneResult(
        top1=accuracy["top1"],
        top5=accuracy["top5"],
        num_labelled=len(train_set),
        split=source,
        epochs=cfg.resolved_epochs(),
        steps=steps,
        wall_time_s=wall,
        config={**asdict(cfg), "checkpoint": str(checkpoint), "dataset": name},
        preset=preset,
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "finetune.json").write_text(json.dumps(result.to_json(), indent=2))
        torch.save(
            {"backbone": model.backbone.state_dict(), "head": model.head.state_dict()},
            out / "finetuned.pt",
        )
    return result
