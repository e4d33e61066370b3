"""Data layer: datasets by name and multi-view augmentation (per-image and batched on-device).

Framework-free (plain ``torch.utils.data.Dataset`` and ``nn.Module``); see
:mod:`specssl.data.datasets` and :mod:`specssl.data.augment` (which gathers the view config
:mod:`~specssl.data.views`, the named recipes :mod:`~specssl.data.presets` and the two engines
:mod:`~specssl.data.transforms` and :mod:`~specssl.data.batched`).
"""

from specssl.data.augment import (
    PRESETS,
    AugmentConfig,
    BatchedAugment,
    BatchedMultiView,
    MultiViewTransform,
    ViewsConfig,
    build_transform,
    cifar_views,
    digits_views,
    imagenet_views,
    multicrop_views,
    override_views,
    preset_views,
    views_from_dicts,
)
from specssl.data.datasets import (
    DATASET_NAMES,
    DATASET_STATS,
    IndexedImageDataset,
    TensorImageDataset,
    build_dataset,
    compute_channel_stats,
    dataset_stats,
    load_digits_tensors,
    read_cifar,
    stratified_subset_indices,
)

__all__ = [
    "DATASET_NAMES",
    "DATASET_STATS",
    "PRESETS",
    "AugmentConfig",
    "BatchedAugment",
    "BatchedMultiView",
    "IndexedImageDataset",
    "MultiViewTransform",
    "TensorImageDataset",
    "ViewsConfig",
    "build_dataset",
    "build_transform",
    "cifar_views",
    "compute_channel_stats",
    "dataset_stats",
    "digits_views",
    "imagenet_views",
    "load_digits_tensors",
    "multicrop_views",
    "override_views",
    "preset_views",
    "read_cifar",
    "stratified_subset_indices",
    "views_from_dicts",
]
