"""Datasets by name, from any directory: CIFAR-10/100, STL-10, an image folder, and digits.

Every builder returns a plain ``torch.utils.data.Dataset`` whose items are ``(image, label)``
and which carries ``num_classes``, ``classes``, ``targets`` (int64, ``-1`` = unlabeled) and
``image_size`` (``(H, W)``, or ``None`` when images differ in size).

* ``cifar10`` / ``cifar100``: the standard python-pickle layout (``cifar-10-batches-py/`` or
  ``cifar-100-python/``) is read here, straight into one uint8 tensor ``(N, 3, 32, 32)``. There is
  no md5 check, so a local copy whose files differ from the official archive (e.g. re-written
  ``filenames`` entries) loads as well as the official extraction. ``download=True`` fetches the
  official archive with torchvision (which does check md5) when the folder is missing.
* ``stl10``: torchvision's ``STL10`` (md5-checked, downloads on request); its in-memory array is
  exposed without copying as a :class:`TensorImageDataset`.
* ``imagefolder``: torchvision's ``ImageFolder`` on ``root/<split>``; images decode on access,
  and empty or undecodable files never stop a run (:mod:`specssl.data.imagefolder`).
* ``digits``: scikit-learn's bundled 8x8 digits (no download), turned into CIFAR-like
  ``(N, 3, 32, 32)`` uint8 images; the library's offline default.

In-memory datasets (:class:`TensorImageDataset`) return the uint8 ``(3, H, W)`` tensor when no
transform is given: the fast path where whole batches are augmented on the training device by
:class:`specssl.data.augment.BatchedMultiView`.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = [
    "DATASET_NAMES",
    "DATASET_STATS",
    "DIGITS_IMAGE_SIZE",
    "DIGITS_TEST_SIZE",
    "IndexedImageDataset",
    "TensorImageDataset",
    "build_dataset",
    "compute_channel_stats",
    "dataset_stats",
    "load_digits_tensors",
    "read_cifar",
    "stratified_subset_indices",
]

DATASET_NAMES = ("cifar10", "cifar100", "stl10", "imagefolder", "digits")

_SPLITS: dict[str, tuple[str, ...]] = {
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "stl10": ("train", "test", "unlabeled", "train+unlabeled"),
    "imagefolder": ("train", "val", "test"),
    "digits": ("train", "test"),
}

#: Per-channel ``(mean, std)`` of pixel values scaled to ``[0, 1]``, train split.
#: cifar10: measured on the original train set (matches the published values);
#: cifar100 / stl10: the values published with those datasets' common training recipes;
#: imagefolder: ImageNet's; digits: measured on this module's 32x32 conversion, train split
#: (the three channels are equal since the images are gray).
DATASET_STATS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "imagefolder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "digits": ((0.3054, 0.3054, 0.3054), (0.3237, 0.3237, 0.3237)),
}

#: Side of the square images the 8x8 digits are upsampled to (CIFAR's size).
DIGITS_IMAGE_SIZE = 32
#: Test-split size of digits (1797 = 1437 train + 360 test, stratified by class).
DIGITS_TEST_SIZE = 360
#: The digits train/test split is fixed (independent of ``build_dataset(seed=...)``), so every
#: run evaluates on the same 360 images.
_DIGITS_SPLIT_SEED = 0


def dataset_stats(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel ``(mean, std)`` on the ``[0, 1]`` pixel scale for a dataset name."""
    if name not in DATASET_STATS:
        raise ValueError(f"no statistics for dataset {name!r}; known: {sorted(DATASET_STATS)}")
    return DATASET_STATS[name]


# ---------------------------------------------------------------------------------------------
# Dataset classes
# ---------------------------------------------------------------------------------------------


class TensorImageDataset(Dataset):
    """Images held in memory as one uint8 tensor.

    Args:
        images: ``(N, C, H, W)`` uint8 tensor.
        labels: ``(N,)`` integer labels (``-1`` marks an unlabeled sample).
        transform: optional callable applied to each ``(C, H, W)`` uint8 image tensor
            (e.g. :class:`specssl.data.augment.MultiViewTransform`). ``None`` returns the raw
            uint8 tensor, for batched on-device augmentation.
        classes: class names; default ``["0", ..., str(num_classes - 1)]``.
        num_classes: default ``len(classes)`` or ``labels.max() + 1``.

    Items are ``(image, label)`` with ``label`` a Python ``int``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | Sequence[int] | np.ndarray,
        transform: Callable[[torch.Tensor], Any] | None = None,
        *,
        classes: Sequence[str] | None = None,
        num_classes: int | None = None,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            got = (
                f"{images.dtype} tensor of shape {tuple(images.shape)}"
                if isinstance(images, torch.Tensor)
                else type(images).__name__
            )
            raise ValueError(f"images must be a uint8 tensor of shape (N, C, H, W), got {got}")
        labels = torch.as_tensor(labels)
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"labels must have shape ({images.shape[0]},) to match images, "
                f"got {tuple(labels.shape)}"
            )
        if labels.is_floating_point() or labels.is_complex():
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.transform = transform
        if num_classes is None:
            if classes is not None:
                num_classes = len(classes)
            else:
                num_classes = int(self.labels.max()) + 1 if self.labels.numel() else 0
        self.num_classes = int(num_classes)
        self.classes = (
            list(classes) if classes is not None else [str(i) for i in range(self.num_classes)]
        )

    @property
    def targets(self) -> torch.Tensor:
        """``(N,)`` int64 labels (``-1`` = unlabeled)."""
        return self.labels

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of every image."""
        return (int(self.images.shape[-2]), int(self.images.shape[-1]))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def subset(self, n: int, seed: int = 0) -> TensorImageDataset:
        """A new dataset with ``n`` samples drawn by :func:`stratified_subset_indices`."""
        idx = stratified_subset_indices(self.labels, n, seed)
        return TensorImageDataset(
            self.images[idx],
            self.labels[idx],
            self.transform,
            classes=self.classes,
            num_classes=self.num_classes,
        )

    def __repr__(self) -> str:
        return (
            f"TensorImageDataset(n={len(self)}, image_size={self.image_size}, "
            f"num_classes={self.num_classes}, transform={self.transform!r})"
        )


class IndexedImageDataset(Dataset):
    """A view of a file-backed torchvision dataset (``ImageFolder``) with the common attributes.

    Args:
        base: dataset whose items are ``(image, label)``.
        targets: ``(len(base),)`` labels of ``base``.
        classes: class names.
        indices: optional subset of ``base`` to expose (in this order).
    """

    image_size: tuple[int, int] | None = None

    def __init__(
        self,
        base: Dataset,
        targets: torch.Tensor | Sequence[int],
        classes: Sequence[str],
        indices: torch.Tensor | None = None,
    ) -> None:
        self.base = base
        self._base_targets = torch.as_tensor(targets, dtype=torch.int64)
        self.indices = (
            torch.arange(self._base_targets.shape[0])
            if indices is None
            else torch.as_tensor(indices, dtype=torch.int64)
        )
        self.classes = list(classes)
        self.num_classes = len(self.classes)

    @property
    def targets(self) -> torch.Tensor:
        """``(N,)`` int64 labels of the exposed samples."""
        return self._base_targets[self.indices]

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.base[int(self.indices[index])]

    def subset(self, n: int, seed: int = 0) -> IndexedImageDataset:
        """A new view with ``n`` samples drawn by :func:`stratified_subset_indices`."""
        idx = stratified_subset_indices(self.targets, n, seed)
        return IndexedImageDataset(self.base, self._base_targets, self.classes, self.indices[idx])


def stratified_subset_indices(
    labels: torch.Tensor | Sequence[int], n: int, seed: int = 0
) -> torch.Tensor:
    """Sorted indices of ``n`` samples, drawn at random with class proportions kept.

    Each class contributes ``round(n * share)`` samples up to +-1 (largest-remainder style):
    samples are ranked by ``(rank within class in a random order + u) / class size`` with
    ``u ~ U(0, 1)``, and the ``n`` smallest keys are kept. With one class (e.g. all ``-1``,
    unlabeled) this is a plain random subset. Deterministic given ``seed``.

    Args:
        labels: ``(N,)`` integer labels.
        n: number of samples to keep, ``1 <= n <= N``.
        seed: random seed.

    Returns:
        ``(n,)`` int64 indices, ascending.
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    total = int(labels.shape[0])
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= total:
        raise ValueError(f"subset must be an integer in [1, {total}], got {n!r}")
    if n == total:
        return torch.arange(total)
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(total, generator=gen)
    perm_labels = labels[perm]
    # Rank of each permuted sample among the earlier samples of its class.
    order = torch.argsort(perm_labels, stable=True)
    sorted_labels = perm_labels[order]
    _, counts = torch.unique_consecutive(sorted_labels, return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    rank = torch.empty(total, dtype=torch.float64)
    rank[order] = (torch.arange(total) - starts).to(torch.float64)
    size = torch.empty(total, dtype=torch.float64)
    size[order] = torch.repeat_interleave(counts, counts).to(torch.float64)
    key = (rank + torch.rand(total, generator=gen, dtype=torch.float64)) / size
    keep = perm[torch.argsort(key, stable=True)[:n]]
    return torch.sort(keep).values


# ---------------------------------------------------------------------------------------------
# CIFAR (python-pickle layout)
# ---------------------------------------------------------------------------------------------

_CIFAR_LAYOUT: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": "labels",
        "meta": ("batches.meta", "label_names"),
        "num_classes": 10,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "label_key": "fine_labels",
        "meta": ("meta", "fine_label_names"),
        "num_classes": 100,
    },
}

# Globals a CIFAR pickle may reference: numpy's array reconstruction, nothing else. Loading with
# this allow-list means a tampered file cannot run code.
_CIFAR_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"unexpected global {module}.{name}")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR file {path} is missing (incomplete extraction?)")
    try:
        with path.open("rb") as f:
            obj = _CifarUnpickler(f, encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        OverflowError,
    ) as e:
        raise ValueError(f"corrupt CIFAR file {path}: cannot unpickle ({e})") from e
    if not isinstance(obj, dict):
        raise ValueError(f"corrupt CIFAR file {path}: expected a dict, got {type(obj).__name__}")
    return obj


def _resolve_cifar_folder(root: Path, name: str, download: bool) -> Path:
    layout = _CIFAR_LAYOUT[name]
    folder_name, first_file = layout["folder"], layout["test"][0]
    if (root / folder_name).is_dir():
        return root / folder_name
    if (root / first_file).is_file():  # root is the batches folder itself
        return root
    parent = root.parent if root.name == folder_name else root
    folder = parent / folder_name
    if not download:
        raise FileNotFoundError(
            f"{name} not found: expected folder {folder} (or pass it as root); "
            f"use download=True to fetch the official archive into {parent}"
        )
    from torchvision import datasets as tvd

    fetch = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    parent.mkdir(parents=True, exist_ok=True)
    with _download_errors(name, parent, folder):
        fetch(str(parent), train=True, download=True)
    return folder


@contextmanager
def _download_errors(name: str, parent: Path, folder: Path) -> Iterator[None]:
    """A failed download (no network, proxy, HTTP error) as one ``OSError`` line that says
    where to put the data by hand, instead of urllib's traceback."""
    try:
        yield
    except OSError as err:  # urllib.error.URLError and socket errors are OSErrors
        reason = getattr(err, "reason", None) or err.strerror or str(err).splitlines()[0]
        raise OSError(
            f"download of {name} into {parent} failed ({type(err).__name__}: {reason}); "
            f"without a network, put the extracted {folder.name} folder there by hand"
        ) from None


def read_cifar(
    root: str | Path, name: str = "cifar10", split: str = "train", *, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Read CIFAR-10/100 from the python-pickle layout, without an md5 check.

    Args:
        root: the parent directory of ``cifar-10-batches-py`` / ``cifar-100-python``, or that
            folder itself.
        name: ``"cifar10"`` or ``"cifar100"`` (fine labels).
        split: ``"train"`` or ``"test"``.
        download: fetch the official archive with torchvision when the folder is missing.

    Returns:
        ``images (N, 3, 32, 32)`` uint8, ``labels (N,)`` int64, class names.

    Raises:
        FileNotFoundError: the folder (or one of its files) is missing.
        ValueError: a file is corrupt (not a CIFAR pickle, wrong shape or label range).
    """
    if name not in _CIFAR_LAYOUT:
        raise ValueError(f"name must be one of {sorted(_CIFAR_LAYOUT)}, got {name!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split for {name} must be 'train' or 'test', got {split!r}")
    layout = _CIFAR_LAYOUT[name]
    folder = _resolve_cifar_folder(Path(root).expanduser(), name, download)
    num_classes = layout["num_classes"]
    datas, labels = [], []
    for fname in layout[split]:
        path = folder / fname
        batch = _load_pickle(path)
        data, lab = batch.get("data"), batch.get(layout["label_key"])
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or (data.shape[1] != 3 * 32 * 32)
        ):
            desc = (
                f"{data.dtype} array of shape {data.shape}"
                if isinstance(data, np.ndarray)
                else type(data).__name__
            )
            raise ValueError(
                f"corrupt CIFAR file {path}: 'data' must be uint8 (N, 3072), got {desc}"
            )
        if lab is None or len(lab) != data.shape[0]:
            raise ValueError(
                f"corrupt CIFAR file {path}: '{layout['label_key']}' missing or not one per image"
            )
        lab_arr = np.asarray(lab, dtype=np.int64)
        if lab_arr.size and (lab_arr.min() < 0 or lab_arr.max() >= num_classes):
            raise ValueError(
                f"corrupt CIFAR file {path}: labels outside [0, {num_classes - 1}] "
                f"(min {lab_arr.min()}, max {lab_arr.max()})"
            )
        datas.append(data)
        labels.append(lab_arr)
    images = torch.from_numpy(np.concatenate(datas)).reshape(-1, 3, 32, 32)
    targets = torch.from_numpy(np.concatenate(labels))
    meta_file, meta_key = layout["meta"]
    classes = [str(i) for i in range(num_classes)]
    if (folder / meta_file).is_file():
        names = _load_pickle(folder / meta_file).get(meta_key)
        if isinstance(names, list) and len(names) == num_classes:
            classes = [str(c) for c in names]
    return images, targets, classes


# ---------------------------------------------------------------------------------------------
# digits (scikit-learn, offline)
# ---------------------------------------------------------------------------------------------


def load_digits_tensors(size: int = DIGITS_IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 scikit-learn digits as CIFAR-like images.

    The 8x8 values ``0..16`` are scaled to ``0..255``, upsampled to ``size x size`` with
    **bilinear** interpolation (``align_corners=False``, computed in float64 then rounded) and
    repeated over 3 channels. Bilinear rather than nearest: the strokes stay smooth instead of
    turning into 4x4 blocks, so random crops and rescaling behave as on natural images.

    Returns:
        ``images (1797, 3, size, size)`` uint8, ``labels (1797,)`` int64 in ``0..9``.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(np.asarray(bunch.images, dtype=np.float64)).unsqueeze(1) * (255.0 / 16.0)
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    images = x.round_().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    return images, labels


def _digits_split_indices(labels: torch.Tensor, split: str) -> torch.Tensor:
    from sklearn.model_selection import train_test_split

    idx = np.arange(labels.shape[0])
    train_idx, test_idx = train_test_split(
        idx,
        test_size=DIGITS_TEST_SIZE,
        stratify=labels.numpy(),
        random_state=_DIGITS_SPLIT_SEED,
    )
    chosen = train_idx if split == "train" else test_idx
    return torch.from_numpy(np.sort(chosen))


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def compute_channel_stats(
    images: torch.Tensor, chunk_size: int = 4096
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of ``images`` on the ``[0, 1]`` scale.

    Args:
        images: ``(N, C, H, W)`` uint8 (scaled by 1/255) or float tensor.
        chunk_size: images per chunk (bounds the float64 working memory).

    Returns:
        ``(mean, std)``, each a tuple of ``C`` floats.
    """
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(
            f"images must be a non-empty (N, C, H, W) tensor, got {tuple(images.shape)}"
        )
    c = images.shape[1]
    count = images.shape[0] * images.shape[2] * images.shape[3]
    if images.dtype == torch.uint8:
        # Exact and fast: a 256-bin histogram per channel.
        values = torch.arange(256, dtype=torch.float64) / 255.0
        hist = torch.stack(
            [torch.bincount(images[:, k].reshape(-1), minlength=256) for k in range(c)]
        ).to(torch.float64)
        s1, s2 = hist @ values, hist @ values.square()
    else:
        s1 = torch.zeros(c, dtype=torch.float64)
        s2 = torch.zeros(c, dtype=torch.float64)
        for start in range(0, images.shape[0], chunk_size):
            x = images[start : start + chunk_size].to(torch.float64)
            s1 += x.sum(dim=(0, 2, 3)).cpu()
            s2 += x.square().sum(dim=(0, 2, 3)).cpu()
    mean = s1 / count
    std = (s2 / count - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


# ---------------------------------------------------------------------------------------------
# build_dataset
# ---------------------------------------------------------------------------------------------


def _build_stl10(
    root: Path, split: str, download: bool, transform: Callable | None
) -> TensorImageDataset:
    from torchvision.datasets import STL10

    folder = root / STL10.base_folder
    if not folder.is_dir() and not download:
        raise FileNotFoundError(
            f"stl10 not found: expected folder {folder}; use download=True to fetch it into {root}"
        )
    try:
        with _download_errors("stl10", root, folder):
            base = STL10(str(root), split=split, download=download)
    except RuntimeError as e:  # torchvision's "Dataset not found or corrupted"
        raise ValueError(f"stl10 folder {folder} is incomplete or corrupt: {e}") from e
    images = torch.from_numpy(base.data)
    labels = torch.from_numpy(np.asarray(base.labels, dtype=np.int64))
    classes = getattr(base, "classes", None)  # set only when class_names.txt is present
    return TensorImageDataset(images, labels, transform, classes=classes, num_classes=10)


def _build_imagefolder(
    root: Path, split: str, transform: Callable | None, validate: bool = False
) -> IndexedImageDataset:
    from specssl.data.imagefolder import SafeImageFolder

    folder = root / split
    if split == "test" and not folder.is_dir():
        folder = root / "val"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"imagefolder split {split!r} not found: expected folder {root / split}"
            + (f" (or {root / 'val'})" if split == "test" else "")
            + " with one sub-folder per class"
        )
    base = SafeImageFolder(folder, transform=transform, validate=validate)
    return IndexedImageDataset(base, base.targets, base.classes)


def build_dataset(
    name: str,
    root: str | Path | None,
    split: str = "train",
    *,
    download: bool = False,
    subset: int | None = None,
    seed: int = 0,
    transform: Callable | None = None,
    validate_images: bool = False,
) -> TensorImageDataset | IndexedImageDataset:
    """Build a dataset by name.

    Args:
        name: one of :data:`DATASET_NAMES`.
        root: data directory (ignored by ``digits``, which ships with scikit-learn).
            cifar10: ``root/cifar-10-batches-py`` or that folder itself; cifar100:
            ``root/cifar-100-python``; stl10: ``root/stl10_binary``; imagefolder:
            ``root/<split>/<class>/*.jpg``.
        split: ``"train"`` / ``"test"``; stl10 also ``"unlabeled"``, ``"train+unlabeled"``
            (unlabeled samples have label ``-1``); imagefolder also ``"val"`` (and ``"test"``
            falls back to ``root/val`` when ``root/test`` is absent).
        download: fetch cifar10 / cifar100 / stl10 when missing (torchvision downloaders).
        subset: keep this many samples (stratified by class, seeded) for CPU-scale runs.
        seed: seed of the subset draw (the digits train/test split itself is fixed).
        transform: applied to each image: a uint8 ``(3, H, W)`` tensor for in-memory datasets,
            a PIL image for imagefolder. ``None`` returns those as they are.
        validate_images: imagefolder only: decode every image now and leave out those that
            fail (:class:`specssl.data.imagefolder.SafeImageFolder`; empty files are always
            left out, and a file that fails when drawn is skipped with a warning).

    Returns:
        A :class:`TensorImageDataset` (cifar10, cifar100, stl10, digits) or an
        :class:`IndexedImageDataset` (imagefolder).
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASET_NAMES)}")
    if split not in _SPLITS[name]:
        raise ValueError(f"split for {name} must be one of {list(_SPLITS[name])}, got {split!r}")
    if name != "digits" and root is None:
        raise ValueError(f"root is required for dataset {name!r}")
    path = Path(root).expanduser() if root is not None else None

    dataset: TensorImageDataset | IndexedImageDataset
    if name in ("cifar10", "cifar100"):
        assert path is not None
        images, labels, classes = read_cifar(path, name, split, download=download)
        dataset = TensorImageDataset(images, labels, transform, classes=classes)
    elif name == "stl10":
        assert path is not None
        dataset = _build_stl10(path, split, download, transform)
    elif name == "imagefolder":
        assert path is not None
        dataset = _build_imagefolder(path, split, transform, validate_images)
    else:
        images, labels = load_digits_tensors()
        idx = _digits_split_indices(labels, split)
        dataset = TensorImageDataset(
            images[idx], labels[idx], transform, classes=[str(i) for i in range(10)]
        )
    if subset is not None:
        dataset = dataset.subset(subset, seed)
    return dataset
