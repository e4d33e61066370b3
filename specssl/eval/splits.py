"""Fixed, seeded, class-balanced label subsets for semi-supervised fine-tuning.

The semi-supervised protocol (SimCLR, Chen et al. 2020, Section 6 / Appendix B.5; BYOL,
Grill et al. 2020, Appendix C.2; INTL paper, Table 1) fine-tunes on 1% or 10% of the
training labels. Numbers are only comparable on the *same* subset, so the subsets are files
shipped with the package (``specssl/splits/<dataset>_<pct>pct_seed<seed>.json``), made once by
:func:`make_split` from the real training labels and verified on every load.

File format (JSON)::

    {
    "format": "specssl label split v2",
    "dataset": "cifar10", "fraction": 0.01, "seed": 0,
    "num_train": 50000, "num_classes": 10, "per_class": 50,
    "labels_sha256": "<sha256 of all num_train training labels, int64 little-endian>",
    "sha256": "<sha256 of the 'index label' lines of the subset, utf-8, '\\n'-terminated>",
    "indices": [41, 52, ...],
    "labels": [2, 7, ...]
    }

``indices`` are positions in the training split in its original order (the order of
``data_batch_1..5`` for CIFAR-10, of ``train`` for CIFAR-100), ascending; ``labels`` their
classes. ``sha256`` is the digest of the lines ``f"{index} {label}\\n"`` (the v1 text files'
``body_sha256``, kept when they were converted). :func:`read_split` rejects a file whose
format, count, class balance, index range, ordering or checksum is off; given the training
labels it also checks that they are the ones the split was made from (same dataset version
and order).

ImageNet: SimCLR's published subsets (one image file name such as ``n01440764_10026.JPEG`` per
line) are shipped in ``specssl/splits/simclr``; any other list can be passed with
``--split-file``; :func:`indices_from_image_names` matches the names against an ``imagefolder``
training set by file name.

Regenerate the shipped files, or make the CIFAR-100 ones (needs the datasets;
``SPECSSL_DATA`` or ``--data-root``), then add new files to :data:`SHIPPED`::

    python -m specssl.eval.splits --data-root /path/to/data --dataset cifar10 cifar100
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "FORMAT",
    "SHIPPED",
    "STANDARD",
    "Split",
    "content_digest",
    "indices_from_image_names",
    "labels_digest",
    "load_split",
    "make_split",
    "read_split",
    "read_split_file",
    "split_path",
    "write_split",
]

FORMAT = "specssl label split v2"
#: The standard splits :func:`main` writes: dataset -> percentages (seed 0).
STANDARD: dict[str, tuple[int, ...]] = {"cifar10": (1, 10), "cifar100": (1, 10)}
#: The split files shipped in ``specssl/splits`` (seed 0). CIFAR-100 is not among them yet: the
#: project's data folder has no CIFAR-100, and a file is only ever made from the real labels.
#: Until it is, a CIFAR-100 fine-tune takes ``make_split(labels, pct / 100, seed=0)``, the very
#: subset the file would hold (:func:`write_split` writes exactly that), without the file's
#: check that the user's labels are the ones it was made from.
SHIPPED: dict[str, tuple[int, ...]] = {"cifar10": (1, 10)}
_KEYS = ("dataset", "fraction", "seed", "num_train", "num_classes", "per_class",
         "labels_sha256", "sha256", "indices", "labels")  # fmt: skip


@dataclass(frozen=True)
class Split:
    """A verified label subset.

    Attributes:
        dataset: dataset name.
        fraction: labelled fraction of the training set (0.01 = 1%).
        seed: seed of :func:`make_split`.
        num_train: size of the full training split.
        num_classes: number of classes.
        per_class: labelled images per class.
        indices: ``(count,)`` int64 training-set indices, ascending.
        labels: ``(count,)`` int64 classes of those images.
        labels_sha256: :func:`labels_digest` of all training labels.
    """

    dataset: str
    fraction: float
    seed: int
    num_train: int
    num_classes: int
    per_class: int
    indices: torch.Tensor
    labels: torch.Tensor
    labels_sha256: str

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def check_labels(self, train_labels: torch.Tensor | Sequence[int] | np.ndarray) -> None:
        """Raise ``ValueError`` unless ``train_labels (num_train,)`` are the labels this split
        was made from (same dataset version, same order)."""
        y = _as_labels(train_labels)
        if y.shape[0] != self.num_train:
            raise ValueError(
                f"split {self.dataset} {self.fraction:g} was made for {self.num_train} training "
                f"images, the dataset has {y.shape[0]}"
            )
        if labels_digest(y) != self.labels_sha256:
            raise ValueError(
                f"split {self.dataset} {self.fraction:g}: the training labels differ from those "
                "the split was made from (another dataset version or image order)"
            )
        if not torch.equal(torch.from_numpy(y[self.indices.numpy()]), self.labels):
            raise ValueError(f"split {self.dataset} {self.fraction:g}: labels do not match")


def _as_labels(labels: torch.Tensor | Sequence[int] | np.ndarray) -> np.ndarray:
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.min() < 0:
        raise ValueError("labels must be >= 0 (unlabelled samples cannot be in a label split)")
    return y.astype(np.int64)


def labels_digest(labels: torch.Tensor | Sequence[int] | np.ndarray) -> str:
    """sha256 hex digest of ``labels (N,)`` as int64 little-endian bytes."""
    return hashlib.sha256(_as_labels(labels).astype("<i8").tobytes()).hexdigest()


def content_digest(indices: Sequence[int], labels: Sequence[int]) -> str:
    """sha256 hex digest of a subset: the utf-8 lines ``f"{index} {label}\\n"``."""
    body = "".join(f"{int(i)} {int(k)}\n" for i, k in zip(indices, labels, strict=True))
    return hashlib.sha256(body.encode()).hexdigest()


def make_split(
    labels: torch.Tensor | Sequence[int] | np.ndarray,
    fraction: float,
    seed: int = 0,
    *,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Stratified random subset of ``per_class · C`` images, ``per_class = round(fraction N/C)``.

    scikit-learn's ``train_test_split(stratify=labels, random_state=seed)``
    (``StratifiedShuffleSplit``: per class ``c = 0 .. C-1`` in turn, the first entries of a
    ``numpy.random.RandomState(seed)`` permutation of that class's indices). On a training set
    with equal class sizes (CIFAR-10/100, STL-10) every class gets exactly ``per_class`` images.

    Args:
        labels: ``(N,)`` integer training labels in ``[0, C)``.
        fraction: labelled fraction in ``(0, 1]`` (0.01 for 1%).
        seed: random seed.
        num_classes: ``C`` (default ``labels.max() + 1``); every class must have at least
            ``per_class`` images.

    Returns:
        ``(per_class * C,)`` int64 indices into ``labels``, ascending.
    """
    from sklearn.model_selection import train_test_split

    y = _as_labels(labels)
    if isinstance(fraction, bool) or not 0 < float(fraction) <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    c = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if y.max() >= c:
        raise ValueError(f"labels reach {int(y.max())} but num_classes is {c}")
    per_class = round(float(fraction) * y.shape[0] / c)
    if per_class < 1:
        raise ValueError(
            f"fraction {fraction:g} of {y.shape[0]} images over {c} classes is less than one "
            "image per class"
        )
    counts = np.bincount(y, minlength=c)
    if counts.min() < per_class:
        worst = int(counts.argmin())
        raise ValueError(
            f"class {worst} has {int(counts[worst])} images, fewer than the {per_class} per "
            "class a balanced split needs"
        )
    everything = np.arange(y.shape[0])
    if per_class * c == y.shape[0]:
        return torch.from_numpy(everything)
    chosen, _ = train_test_split(
        everything, train_size=per_class * c, stratify=y, random_state=int(seed)
    )
    return torch.from_numpy(np.sort(chosen)).to(torch.int64)


def _pct_name(fraction: float) -> str:
    pct = float(fraction) * 100
    return f"{round(pct)}" if abs(pct - round(pct)) < 1e-9 else f"{pct:g}".replace(".", "p")


def split_path(dataset: str, pct: float, seed: int = 0) -> Path:
    """Path of the shipped split file ``specssl/splits/<dataset>_<pct>pct_seed<seed>.json``."""
    return Path(str(files("specssl") / "splits")) / (
        f"{dataset}_{_pct_name(pct / 100)}pct_seed{seed}.json"
    )


def _dump(record: dict) -> str:
    """JSON, one key per line (the index lists on one line each)."""
    lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in record.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_split(
    path: str | Path,
    dataset: str,
    labels: torch.Tensor | Sequence[int] | np.ndarray,
    fraction: float,
    seed: int = 0,
    *,
    num_classes: int | None = None,
) -> Split:
    """Make the split of ``labels (N,)`` with :func:`make_split`, write it to ``path``, and
    return it as read back (verified) by :func:`read_split`."""
    y = _as_labels(labels)
    c = int(y.max()) + 1 if num_classes is None else int(num_classes)
    idx = make_split(y, fraction, seed, num_classes=c).numpy()
    record = {
        "format": FORMAT,
        "dataset": dataset,
        "fraction": float(fraction),
        "seed": int(seed),
        "num_train": int(y.shape[0]),
        "num_classes": c,
        "per_class": int(idx.shape[0] // c),
        "labels_sha256": labels_digest(y),
        "sha256": content_digest(idx, y[idx]),
        "indices": idx.tolist(),
        "labels": y[idx].tolist(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dump(record))
    return read_split(path)


def read_split(path: str | Path) -> Split:
    """Read and verify a split file (see the module docstring for the format).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is malformed or inconsistent (names the problem): not JSON,
            another format, a missing key, length != ``per_class * num_classes``, a class with
            a different number of images, duplicate / unsorted / out-of-range indices,
            checksum mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")

    def bad(problem: str) -> ValueError:
        return ValueError(f"split file {path}: {problem}")

    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise bad(f"not JSON ({err})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise bad(f"format must be {FORMAT!r}")
    missing = [k for k in _KEYS if k not in record]
    if missing:
        raise bad(f"lacks {', '.join(missing)}")
    try:
        num_train, num_classes, per_class = (
            int(record[k]) for k in ("num_train", "num_classes", "per_class")
        )
        idx = np.asarray(record["indices"], dtype=np.int64)
        lab = np.asarray(record["labels"], dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise bad(f"non-integer value ({err})") from None
    if idx.ndim != 1 or idx.shape != lab.shape or idx.shape[0] != per_class * num_classes:
        raise bad(
            f"{idx.size} indices and {lab.size} labels, expected per_class {per_class} "
            f"x num_classes {num_classes}"
        )
    if content_digest(idx, lab) != record["sha256"]:
        raise bad("checksum mismatch (sha256): the indices or labels were modified or truncated")
    if idx.min() < 0 or idx.max() >= num_train:
        raise bad(f"indices outside [0, {num_train})")
    if np.any(np.diff(idx) <= 0):
        raise bad("indices must be strictly ascending (no duplicates)")
    if lab.min() < 0 or lab.max() >= num_classes:
        raise bad(f"labels outside [0, {num_classes})")
    per = np.bincount(lab, minlength=num_classes)
    if np.any(per != per_class):
        k = int(np.flatnonzero(per != per_class)[0])
        raise bad(f"not class-balanced: class {k} has {int(per[k])} images, expected {per_class}")
    return Split(
        dataset=str(record["dataset"]),
        fraction=float(record["fraction"]),
        seed=int(record["seed"]),
        num_train=num_train,
        num_classes=num_classes,
        per_class=per_class,
        indices=torch.from_numpy(idx),
        labels=torch.from_numpy(lab),
        labels_sha256=str(record["labels_sha256"]),
    )


def load_split(
    dataset: str,
    pct: float,
    *,
    seed: int = 0,
    train_labels: torch.Tensor | Sequence[int] | np.ndarray | None = None,
) -> Split:
    """The shipped ``pct``% split of ``dataset``, verified (and checked against
    ``train_labels (N,)`` when given, see :meth:`Split.check_labels`)."""
    path = split_path(dataset, pct, seed)
    if not path.is_file():
        shipped = ", ".join(f"{d} {p}%" for d, ps in SHIPPED.items() for p in ps)
        raise FileNotFoundError(
            f"no shipped split for {dataset} at {pct:g}% (seed {seed}); shipped: {shipped}. "
            "Pass a split file with --split-file (see specssl.eval.splits)"
        )
    split = read_split(path)
    if split.dataset != dataset or abs(split.fraction * 100 - pct) > 1e-9:
        raise ValueError(
            f"split file {path}: it holds {split.dataset} {split.fraction:g}, "
            f"expected {dataset} {pct / 100:g}"
        )
    if train_labels is not None:
        split.check_labels(train_labels)
    return split


def read_split_file(path: str | Path) -> Split | list[str]:
    """A user-given split file: a specssl split (JSON, :class:`Split`) or a list of image file
    names (SimCLR's ImageNet ``1percent.txt`` format, one name per line; returned as a list)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    text = path.read_text()
    if text.lstrip().startswith("{"):
        return read_split(path)
    if text.startswith("# specssl label split v1"):
        raise ValueError(f"{path} is a v1 text split: write it again with write_split (JSON)")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ValueError(f"split file {path} is empty")
    return names


def indices_from_image_names(names: Sequence[str], image_paths: Sequence[str]) -> torch.Tensor:
    """Indices ``(len(names),)`` (ascending) of the images whose file name is in ``names``.

    ``image_paths``: the training set's image paths in dataset order (an ``ImageFolder``'s
    ``[p for p, _ in samples]``). Names match on the file name alone (``n01440764_10026.JPEG``),
    so any directory layout works. Every name must be found exactly once.
    """
    position: dict[str, int] = {}
    duplicated: set[str] = set()
    for i, p in enumerate(image_paths):
        key = os.path.basename(p)
        if key in position:
            duplicated.add(key)
        position[key] = i
    wanted = [os.path.basename(n) for n in names]
    if len(set(wanted)) != len(wanted):
        raise ValueError("split file lists some image names more than once")
    missing = [n for n in wanted if n not in position]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(wanted)} split images are not in the training set "
            f"(e.g. {', '.join(missing[:3])})"
        )
    ambiguous = [n for n in wanted if n in duplicated]
    if ambiguous:
        raise ValueError(f"image names occur twice in the training set: {ambiguous[:3]}")
    return torch.sort(torch.tensor([position[n] for n in wanted], dtype=torch.int64)).values


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the shipped split files from the real training labels."""
    parser = argparse.ArgumentParser(prog="python -m specssl.eval.splits", description=__doc__)
    parser.add_argument("--data-root", default=os.environ.get("SPECSSL_DATA"))
    parser.add_argument("--dataset", nargs="+", default=list(STANDARD), choices=list(STANDARD))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="directory (default: the package's splits folder)")
    args = parser.parse_args(argv)
    if args.data_root is None:
        parser.error("--data-root (or SPECSSL_DATA) is required")
    from specssl.data.datasets import read_cifar

    for name in args.dataset:
        try:
            _, labels, _ = read_cifar(args.data_root, name, "train")
        except (FileNotFoundError, ValueError) as err:
            parser.error(str(err).splitlines()[0])
        for pct in STANDARD[name]:
            path = split_path(name, pct, args.seed)
            if args.out:
                path = Path(args.out) / path.name
            split = write_split(path, name, labels, pct / 100, args.seed)
            print(f"{path}: {len(split)} images, {split.per_class} per class")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
