"""Frozen backbone features of a dataset split, with an on-disk cache.

Images get the evaluation transform of the run's data config (no augmentation): in-memory
datasets (cifar10/100, stl10, digits) as they are, imagefolder resized to 256 and centre-cropped
to 224; then the dataset's mean/std normalisation. Features ``(N, f)`` (float32, CPU) and labels
``(N,)`` (int64) are cached in a ``.pt`` file whose name hashes the checkpoint's resolved path,
modification time and size, the split, the subset and the data location, so re-evaluating a
checkpoint (e.g. the fast linear probe) re-reads instead of re-extracting, and a new checkpoint
at the same path never reuses stale features.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from specssl.data.datasets import build_dataset, dataset_stats
from specssl.eval.checkpoint import LoadedCheckpoint
from specssl.train.config import DataConfig
from specssl.train.datamodule import IMAGENET_CROP, IMAGENET_EVAL_RESIZE, Normalize

__all__ = [
    "cached_features",
    "eval_image_transform",
    "eval_splits",
    "extract_features",
    "linear_train_transform",
    "normalizer",
    "split_dataset",
]

CACHE_VERSION = 1


def normalizer(data: DataConfig) -> Normalize:
    """Per-channel mean/std normalisation of ``data.name`` (ImageNet's for imagefolder)."""
    return Normalize(*dataset_stats(data.name))


def eval_image_transform(dataset: str):
    """Per-image evaluation transform of dataset ``dataset``: resize 256 + centre crop 224 for
    ``imagefolder`` (normalisation runs batched on the device); ``None`` for in-memory data."""
    if dataset == "imagefolder":
        return v2.Compose(
            [
                v2.ToImage(),
                v2.Resize(IMAGENET_EVAL_RESIZE, antialias=True),
                v2.CenterCrop(IMAGENET_CROP),
            ]
        )
    return None


def linear_train_transform(data: DataConfig, crop_scale: tuple[float, float] = (0.08, 1.0)):
    """The linear protocol's training augmentation: random resized crop + horizontal flip.

    Crop size: 224 (imagefolder), 96 (stl10), 32 otherwise. Output: uint8 ``(3, H, W)``
    (normalisation runs batched on the device).
    """
    size = {"imagefolder": IMAGENET_CROP, "stl10": 96}.get(data.name, 32)
    steps = [v2.ToImage()] if data.name == "imagefolder" else []
    return v2.Compose(
        [
            *steps,
            v2.RandomResizedCrop(size, scale=tuple(crop_scale), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    )


def eval_splits(data: DataConfig) -> tuple[str, str]:
    """``(train, test)`` labelled splits to evaluate on: the pretraining split without
    ``unlabeled`` parts (stl10's ``train+unlabeled`` -> ``train``) and ``data.val_split``."""
    train = "train" if "unlabeled" in data.train_split else data.train_split
    return train, data.val_split


def split_dataset(
    data: DataConfig,
    split: str,
    *,
    root: str | None = None,
    subset: int | None = None,
    transform=None,
    seed: int = 0,
) -> Dataset:
    """The dataset of ``data.name`` for ``split`` (root overridable), with ``transform`` or the
    evaluation transform; ``subset`` keeps that many images (stratified, seeded)."""
    return build_dataset(
        data.name,
        root if root is not None else data.root,
        split,
        subset=subset,
        seed=seed,
        transform=transform if transform is not None else eval_image_transform(data.name),
    )


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    dataset: Dataset,
    normalize: nn.Module,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(N, f)`` (float32, CPU) and labels ``(N,)`` (int64) of ``dataset``'s
    ``(image, label)`` items, in order, with ``backbone`` in eval mode (mode restored)."""
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = backbone.training
    backbone.eval().to(device)
    feats, labels = [], []
    try:
        for images, target in loader:
            images = normalize(images.to(device, non_blocking=True))
            feats.append(backbone(images).float().cpu())
            labels.append(torch.as_tensor(target).long())
    finally:
        backbone.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def _cache_key(ckpt: LoadedCheckpoint, split: str, root: str | None, subset: int | None) -> str:
    stat = ckpt.path.stat()
    data = ckpt.config.data
    fields = {
        "version": CACHE_VERSION,
        "checkpoint": str(ckpt.path),
        "mtime_ns": stat.st_mtime_ns,
        "size": stat.st_size,
        "dataset": data.name,
        "root": str(Path(root).expanduser().resolve()) if root else None,
        "split": split,
        "subset": subset,
        "seed": ckpt.config.seed,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def cached_features(
    ckpt: LoadedCheckpoint,
    split: str,
    *,
    root: str | None = None,
    subset: int | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features and labels of ``split`` for a loaded checkpoint, cached on disk.

    The cache file is ``<cache_dir>/<checkpoint stem>-<split>-<hash>.pt`` (default
    ``cache_dir``: ``feature_cache/`` beside the checkpoint file); see the module docstring
    for what the hash covers. ``use_cache=False`` neither reads nor writes it.
    """
    data = ckpt.config.data
    root = root if root is not None else data.root
    cache_file = None
    if use_cache:
        directory = Path(cache_dir) if cache_dir is not None else ckpt.path.parent / "feature_cache"
        key = _cache_key(ckpt, split, root, subset)
        cache_file = directory / f"{ckpt.path.stem}-{split.replace('+', '_')}-{key}.pt"
        if cache_file.is_file():
            cached = torch.load(cache_file, map_location="cpu", weights_only=True)
            return cached["features"], cached["labels"]
    dataset = split_dataset(data, split, root=root, subset=subset, seed=ckpt.config.seed)
    feats, labels = extract_features(
        ckpt.backbone,
        dataset,
        normalizer(data),
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
    )
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(cache_file.name + ".tmp")
        torch.save({"features": feats, "labels": labels}, tmp)
        tmp.replace(cache_file)
    return feats, labels
