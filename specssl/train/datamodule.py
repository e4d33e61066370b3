"""The Lightning DataModule: datasets by name, multi-view augmentation, evaluation loaders."""

from __future__ import annotations

import pickle

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from torchvision.transforms import v2

from specssl.data.augment import (
    LEGACY_PRESETS,
    PRESETS,
    BatchedMultiView,
    MultiViewTransform,
    PresetError,
    ViewOverrideError,
    ViewsConfig,
    multicrop_views,
    override_views,
)
from specssl.data.datasets import DATASET_NAMES, TensorImageDataset, build_dataset
from specssl.train.config import Config, ConfigError, DataConfig

IMAGENET_EVAL_RESIZE, IMAGENET_CROP = 256, 224


class Normalize(nn.Module):
    """uint8 or [0, 1] float images ``(B, 3, H, W)`` -> float32 normalized (on their device)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


_DEFAULT_SOLARIZE_P = DataConfig().solarize_p


def resolve_views(d: DataConfig) -> ViewsConfig:
    """The training views of ``data``: preset ``d.views`` for ``d.name`` with ``d.num_views``
    views, then the per-view overrides ``d.augment``, then ``d.num_small_crops`` small crops
    (copies of the first view's settings at ``d.small_crop_size``).

    ``d.solarize_p`` is passed to the original presets (auto, cifar, imagenet; digits ignores
    it); set to anything but its default with another preset it is an error, since those set
    their own (change them with ``data.augment``). Every problem is a one-line
    :class:`ConfigError` naming the key (``data.augment[i].<field>`` for an override).
    """
    if d.views not in PRESETS:
        raise ConfigError(
            f"config key 'data.views': unknown preset {d.views!r}; known: {', '.join(PRESETS)}"
        )
    kwargs = {}
    if d.views in LEGACY_PRESETS:
        kwargs["solarize_p"] = list(d.solarize_p)
    elif list(d.solarize_p) != _DEFAULT_SOLARIZE_P:
        raise ConfigError(
            f"config key 'data.solarize_p': only for the presets auto|cifar|imagenet; preset "
            f"{d.views!r} sets its own per view (override it with data.augment, e.g. "
            "[{solarize_p: 0.1}])"
        )
    try:
        views = PRESETS[d.views](d.name, d.num_views, **kwargs)
    except PresetError as err:
        raise ConfigError(f"config key 'data.{err.key}': {err}") from err
    try:
        views = override_views(views, list(d.augment))
    except ViewOverrideError as err:
        key = "data.augment" if err.index is None else f"data.augment[{err.index}]"
        if err.key:
            key += f".{err.key}"
        raise ConfigError(f"config key '{key}': {err.rule}") from err
    if d.num_small_crops > 0:
        views = multicrop_views(views, d.num_small_crops, small_size=d.small_crop_size)
    return views


def _open_dataset(name: str, root: str | None, split: str, **kwargs) -> Dataset:
    """:func:`build_dataset`, with unreadable data (a truncated or corrupt file, an archive
    that cannot be downloaded) as a one-line :class:`ConfigError` naming the dataset."""
    try:
        return build_dataset(name, root, split, **kwargs)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, pickle.UnpicklingError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            f"data: cannot read {name!r} split {split!r} from {root}: {reason}"
        ) from None


class SSLDataModule(L.LightningDataModule):
    """Training views and evaluation data of ``cfg.data``.

    Datasets are opened in ``__init__`` so that a missing directory or bad name fails before
    any training starts. In-memory datasets (cifar10/100, stl10, digits) are augmented in
    batches on the training device when ``data.augment_on_device`` (the train loader then
    yields raw uint8 images); otherwise (and always for imagefolder) each image is augmented
    by torchvision transforms in the loader workers.
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg, self.data = cfg, cfg.data
        d = cfg.data
        if d.name not in DATASET_NAMES:
            raise ConfigError(
                f"config key 'data.name': unknown dataset {d.name!r}; choose one of "
                f"{list(DATASET_NAMES)}"
            )
        if d.name != "digits" and d.root is None:
            raise ConfigError(
                f"config key 'data.root': dataset {d.name!r} needs a data directory "
                "(data.root=/path/to/data, with data.download=true to fetch it)"
            )
        common = {"download": d.download, "seed": cfg.seed, "validate_images": d.validate_images}
        self.view_configs = self._views()
        self.on_device = d.augment_on_device and d.name != "imagefolder"
        train_tf = None if self.on_device else MultiViewTransform(self.view_configs)
        self.train_set = _open_dataset(
            d.name, d.root, d.train_split, subset=d.subset, transform=train_tf, **common
        )
        eval_tf = self._eval_image_transform()
        self.val_set = _open_dataset(
            d.name, d.root, d.val_split, subset=d.val_subset, transform=eval_tf, **common
        )
        bank_split = "train" if "unlabeled" in d.train_split else d.train_split
        self.knn_set = _open_dataset(
            d.name,
            d.root,
            bank_split,
            subset=cfg.monitor.knn_train_subset or d.subset,
            transform=eval_tf,
            **common,
        )
        self.num_classes = self.val_set.num_classes
        if len(self.train_set) < d.batch_size:
            raise ConfigError(
                f"config key 'data.batch_size': {d.batch_size} exceeds the {len(self.train_set)}"
                f" training images of {d.name!r} (batches are dropped when incomplete)"
            )

    @property
    def batch_size(self) -> int:
        """Per-process batch: ``data.batch_size`` is the global batch, split evenly over the
        trainer's processes (devices x nodes); the whole batch before a trainer is attached."""
        trainer = getattr(self, "trainer", None)
        world = max(1, trainer.world_size) if trainer is not None else 1
        return self.data.batch_size // world

    def _views(self) -> ViewsConfig:
        return resolve_views(self.data)

    def _eval_image_transform(self):
        """Per-image part of the evaluation transform (resize/crop to a fixed size for
        imagefolder; nothing for in-memory datasets). Normalisation runs on the device."""
        if self.data.name == "imagefolder":
            return v2.Compose(
                [
                    v2.ToImage(),
                    v2.Resize(IMAGENET_EVAL_RESIZE, antialias=True),
                    v2.CenterCrop(IMAGENET_CROP),
                ]
            )
        return None

    def train_augment(self) -> nn.Module | None:
        """The on-device batched augmentation (``None`` when augmenting per image)."""
        return BatchedMultiView(self.view_configs) if self.on_device else None

    def eval_transform(self) -> nn.Module:
        """Normalisation of evaluation images: the training views' (the first view's mean and
        std; for the presets auto / cifar / imagenet / digits these are the dataset's)."""
        first = self.view_configs[0]
        return Normalize(first.mean, first.std)

    # ------------------------------------------------------------------ loaders
    def _loader(self, dataset: Dataset, *, train: bool, batch_size: int) -> DataLoader:
        sampler = None
        trainer = getattr(self, "trainer", None)
        if not train and trainer is not None and trainer.world_size > 1:
            sampler = DistributedSampler(dataset, shuffle=False)
        workers = self.data.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            sampler=sampler,
            drop_last=train,
            num_workers=workers,
            persistent_workers=workers > 0 and train,
            pin_memory=torch.cuda.is_available(),
            # Evaluation loaders draw their worker seed from their own generator, so
            # monitoring never consumes the global RNG (exact resume needs that).
            generator=None if train else torch.Generator().manual_seed(0),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False, batch_size=max(256, self.data.batch_size))

    def knn_train_dataloader(self) -> DataLoader:
        return self._loader(self.knn_set, train=False, batch_size=max(256, self.data.batch_size))

    def spectrum_images(self, n: int) -> torch.Tensor:
        """``n`` fixed (seeded) un-augmented training images ``(n, 3, H, W)`` (uint8)."""
        source = self.knn_set
        gen = torch.Generator().manual_seed(self.cfg.seed)
        idx = torch.randperm(len(source), generator=gen)[: min(n, len(source))]
        if isinstance(source, TensorImageDataset) and source.transform is None:
            return source.images[idx]
        return torch.stack([torch.as_tensor(source[int(i)][0]) for i in idx])
