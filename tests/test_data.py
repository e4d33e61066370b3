"""Datasets by name: digits (offline), CIFAR-10 (from SPECSSL_DATA), fakes for the rest; the
training views that the YAML config (``data.views``, ``data.augment``) gives the data module.

CIFAR-10 is looked up only through the ``SPECSSL_DATA`` environment variable (default: the
``shared/data`` folder beside the checkout, when it exists); its tests skip with the reason when
it is absent. Everything else runs offline on scikit-learn's digits or tiny files written to
``tmp_path`` in the official layouts.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from specssl.data import (
    DATASET_NAMES,
    DATASET_STATS,
    TensorImageDataset,
    build_dataset,
    compute_channel_stats,
    dataset_stats,
    load_digits_tensors,
    read_cifar,
    stratified_subset_indices,
)
from specssl.data.augment import (
    PRESETS,
    MultiViewTransform,
    cifar_views,
    digits_views,
    imagenet_views,
    multicrop_views,
)
from specssl.train.config import ConfigError, load_config
from specssl.train.datamodule import SSLDataModule, resolve_views


def _data_root() -> Path:
    env = os.environ.get("SPECSSL_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


_ROOT = _data_root()
DATA = _ROOT if (_ROOT / "cifar-10-batches-py").is_dir() else None
needs_cifar = pytest.mark.skipif(
    DATA is None,
    reason=f"CIFAR-10 not found in {_ROOT}: set SPECSSL_DATA to a directory containing "
    "cifar-10-batches-py (default: ../shared/data beside the repository)",
)


# ---------------------------------------------------------------------------------------------
# digits (offline default)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> tuple[TensorImageDataset, TensorImageDataset]:
    return build_dataset("digits", None, "train"), build_dataset("digits", None, "test")


def test_digits_shapes_classes_and_pixel_range(digits):
    train, test = digits
    assert (len(train), len(test)) == (1437, 360)
    for ds in (train, test):
        assert ds.images.dtype == torch.uint8
        assert ds.images.shape[1:] == (3, 32, 32)
        assert ds.image_size == (32, 32)
        assert ds.num_classes == 10 and ds.classes == [str(i) for i in range(10)]
        # gray: the three channels are equal; the full 0..255 range is used
        assert torch.equal(ds.images[:, 0], ds.images[:, 1])
        assert torch.equal(ds.images[:, 0], ds.images[:, 2])
    assert int(train.images.min()) == 0 and int(train.images.max()) == 255
    # stratified: every class has 35-37 of the 360 test images
    counts = torch.bincount(test.labels, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37
    image, label = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and isinstance(label, int)


def test_digits_split_is_a_deterministic_partition(digits):
    train, test = digits
    again = build_dataset("digits", "/nonexistent/ignored", "test", seed=123)
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    images, labels = load_digits_tensors()
    assert images.shape == (1797, 3, 32, 32)

    def multiset(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.cat([x.reshape(x.shape[0], -1).to(torch.int64), y[:, None]], dim=1)
        return torch.unique(rows, dim=0, return_counts=True)

    split = multiset(torch.cat([train.images, test.images]), torch.cat([train.labels, test.labels]))
    full = multiset(images, labels)
    assert torch.equal(split[0], full[0]) and torch.equal(split[1], full[1])


def test_digits_upsampling_is_bilinear_of_the_8x8_values():
    from sklearn.datasets import load_digits

    small, _ = load_digits_tensors(size=8)
    raw = torch.from_numpy(load_digits().images)
    assert torch.equal(small[:, 0].to(torch.float64), (raw * 255 / 16).round())
    big, _ = load_digits_tensors(size=32)
    # bilinear (not nearest): the 32x32 image has intermediate values between 4x4 blocks
    assert len(torch.unique(big[0, 0])) > len(torch.unique(small[0, 0])) + 5


def test_digits_stats_match_published_table(digits):
    mean, std = compute_channel_stats(digits[0].images)
    ref_mean, ref_std = dataset_stats("digits")
    assert np.allclose(mean, ref_mean, atol=1e-3) and np.allclose(std, ref_std, atol=1e-3)


def test_digits_with_multiview_transform(digits):
    ds = build_dataset("digits", None, "train", transform=MultiViewTransform(digits_views()))
    views, label = ds[5]
    assert len(views) == 2 and all(v.shape == (3, 32, 32) for v in views)
    assert views[0].dtype == torch.float32 and label == int(digits[0].labels[5])


# ---------------------------------------------------------------------------------------------
# subsets
# ---------------------------------------------------------------------------------------------


def test_subset_is_stratified_seeded_and_sorted():
    labels = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    idx = stratified_subset_indices(labels, 100, seed=3)
    assert idx.shape == (100,) and torch.equal(idx, idx.sort().values)
    assert len(torch.unique(idx)) == 100
    assert torch.bincount(labels[idx]).tolist() == [60, 30, 10]
    assert torch.equal(idx, stratified_subset_indices(labels, 100, seed=3))
    assert not torch.equal(idx, stratified_subset_indices(labels, 100, seed=4))
    # unlabeled (all -1): a plain random subset
    free = stratified_subset_indices(torch.full((50,), -1), 7, seed=0)
    assert free.shape == (7,) and len(torch.unique(free)) == 7
    for bad in (0, 1001, 2.5):
        with pytest.raises(ValueError, match="subset"):
            stratified_subset_indices(labels, bad)


def test_build_dataset_subset(digits):
    sub = build_dataset("digits", None, "train", subset=200, seed=1)
    assert len(sub) == 200 and sub.num_classes == 10
    counts = torch.bincount(sub.labels, minlength=10)
    assert int(counts.min()) >= 19 and int(counts.max()) <= 21
    # a subset's images are the train images of its labels
    full = digits[0]
    idx = stratified_subset_indices(full.labels, 200, seed=1)
    assert torch.equal(sub.images, full.images[idx])


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_unknown_name_and_split_raise_value_error():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*cifar10.*digits"):
        build_dataset("mnist", "/tmp", "train")
    with pytest.raises(ValueError, match=r"split for digits.*'train', 'test'"):
        build_dataset("digits", None, "unlabeled")
    with pytest.raises(ValueError, match="root is required"):
        build_dataset("cifar10", None, "train")
    with pytest.raises(ValueError, match="no statistics"):
        dataset_stats("mnist")


def test_missing_cifar_root_names_path_and_download(tmp_path):
    root = tmp_path / "nowhere"
    expected = str(root / "cifar-10-batches-py")
    with pytest.raises(FileNotFoundError) as err:
        build_dataset("cifar10", root, "train")
    assert expected in str(err.value) and "download=True" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        build_dataset("cifar100", root, "test")
    with pytest.raises(FileNotFoundError, match="stl10_binary"):
        build_dataset("stl10", root, "train")


def _write_pickle(path: Path, obj: object) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f)


def _fake_cifar(root: Path, name: str, n: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """Tiny CIFAR-layout folder; returns the arrays written, per file."""
    rng = np.random.default_rng(seed)
    written = {}
    if name == "cifar10":
        folder, key, k = root / "cifar-10-batches-py", "labels", 10
        files = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
        meta = ("batches.meta", "label_names", "c")
    else:
        folder, key, k = root / "cifar-100-python", "fine_labels", 100
        files = ["train", "test"]
        meta = ("meta", "fine_label_names", "f")
    folder.mkdir(parents=True, exist_ok=True)
    _write_pickle(folder / meta[0], {meta[1]: [f"{meta[2]}{i}" for i in range(k)]})
    for fname in files:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, k, n).tolist()
        _write_pickle(folder / fname, {"data": data, key: labels, "filenames": ["x"] * n})
        written[fname] = (data, np.asarray(labels))
    return written


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reader_layout_and_root_forms(tmp_path, name):
    written = _fake_cifar(tmp_path, name)
    train_files = [f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" else ["train"]
    images, labels, classes = read_cifar(tmp_path, name, "train")
    assert images.shape == (20 * len(train_files), 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    data0, labels0 = written[train_files[0]]
    # row layout: 1024 R values, then G, then B, each row-major 32x32
    assert torch.equal(images[3, 1], torch.from_numpy(data0[3, 1024:2048].reshape(32, 32)))
    assert labels[: len(labels0)].tolist() == labels0.tolist()
    assert classes[1] == ("c1" if name == "cifar10" else "f1")
    folder = tmp_path / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    ds = build_dataset(name, folder, "test")  # root given as the batches folder itself
    assert len(ds) == 20 and ds.num_classes == (10 if name == "cifar10" else 100)


def test_cifar_corrupt_files_raise_naming_the_file(tmp_path):
    _fake_cifar(tmp_path, "cifar10")
    folder = tmp_path / "cifar-10-batches-py"
    bad = folder / "test_batch"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match=f"corrupt CIFAR file {bad}"):
        read_cifar(tmp_path, "cifar10", "test")
    _write_pickle(bad, {"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4})
    with pytest.raises(ValueError, match=r"uint8 \(N, 3072\)"):
        read_cifar(tmp_path, "cifar10", "test")
    _write_pickle(bad, {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]})
    with pytest.raises(ValueError, match=r"labels outside \[0, 9\]"):
        read_cifar(tmp_path, "cifar10", "test")
    # a pickle that would run code is refused, not executed
    _write_pickle(bad, {"data": os.system, "labels": []})
    with pytest.raises(ValueError, match="unexpected global"):
        read_cifar(tmp_path, "cifar10", "test")
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        read_cifar(tmp_path, "cifar10", "train")


# ---------------------------------------------------------------------------------------------
# stl10 and imagefolder (tiny fakes in the official layouts)
# ---------------------------------------------------------------------------------------------


def test_stl10_wraps_torchvision_without_copy(tmp_path, monkeypatch):
    from torchvision.datasets import STL10

    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(0)
    n = {"train": 6, "test": 4, "unlabeled": 5}
    for split, count in n.items():
        rng.integers(0, 256, count * 3 * 96 * 96, dtype=np.uint8).tofile(folder / f"{split}_X.bin")
        if split != "unlabeled":
            np.arange(1, count + 1, dtype=np.uint8).tofile(folder / f"{split}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(f"k{i}" for i in range(10)))
    # the fake files cannot match torchvision's md5 list
    monkeypatch.setattr(STL10, "_check_integrity", lambda self: True)

    train = build_dataset("stl10", tmp_path, "train")
    assert train.images.shape == (6, 3, 96, 96) and train.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert train.num_classes == 10 and train.classes[2] == "k2"
    ref_img, ref_label = STL10(str(tmp_path), split="train")[4]
    assert torch.equal(train.images[4], torch.from_numpy(np.array(ref_img)).permute(2, 0, 1))
    assert ref_label == 4
    both = build_dataset("stl10", tmp_path, "train+unlabeled")
    assert len(both) == 11 and both.labels[6:].tolist() == [-1] * 5
    assert build_dataset("stl10", tmp_path, "unlabeled", subset=3).labels.tolist() == [-1] * 3


def test_imagefolder(tmp_path):
    for split in ("train", "val"):
        for k, cls in enumerate(("cat", "dog")):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3 + k):
                arr = np.full((20 + i, 24, 3), 40 * k + i, dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / split / cls / f"{i}.png")
    train = build_dataset("imagefolder", tmp_path, "train")
    assert len(train) == 7 and train.num_classes == 2 and train.classes == ["cat", "dog"]
    assert train.targets.tolist() == [0, 0, 0, 1, 1, 1, 1] and train.image_size is None
    image, label = train[4]
    assert isinstance(image, Image.Image) and label == 1
    test = build_dataset(
        "imagefolder", tmp_path, "test", transform=MultiViewTransform(digits_views(crop_size=16))
    )
    views, _ = test[0]  # "test" fell back to root/val
    assert len(test) == 7 and views[0].shape == (3, 16, 16)
    sub = train.subset(4, seed=0)
    assert len(sub) == 4 and sorted(set(sub.targets.tolist())) == [0, 1]
    assert all(sub[i][1] == int(sub.targets[i]) for i in range(4))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope" / "train")):
        build_dataset("imagefolder", tmp_path / "nope", "train")


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (real data, via SPECSSL_DATA)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar_train() -> TensorImageDataset:
    assert DATA is not None
    return build_dataset("cifar10", DATA, "train")


@needs_cifar
def test_cifar10_train_matches_published_values(cifar_train):
    ds = cifar_train
    assert len(ds) == 50000 and ds.images.shape == (50000, 3, 32, 32)
    assert ds.images.dtype == torch.uint8 and ds.num_classes == 10
    assert ds.labels[0].item() == 6 and ds.classes[6] == "frog"  # first train image: a frog
    assert torch.bincount(ds.labels).tolist() == [5000] * 10
    mean, std = compute_channel_stats(ds.images)
    ref_mean, ref_std = DATASET_STATS["cifar10"]
    assert np.allclose(mean, (0.4914, 0.4822, 0.4465), atol=1e-3)
    assert np.allclose(std, (0.2470, 0.2435, 0.2616), atol=1e-3)
    assert np.allclose(mean, ref_mean, atol=1e-3) and np.allclose(std, ref_std, atol=1e-3)


@needs_cifar
def test_cifar10_test_split_and_batches_dir_root():
    assert DATA is not None
    ds = build_dataset("cifar10", DATA / "cifar-10-batches-py", "test", subset=1000, seed=0)
    assert len(ds) == 1000 and torch.bincount(ds.labels).tolist() == [100] * 10
    full = build_dataset("cifar10", DATA, "test")
    assert len(full) == 10000 and full.labels[0].item() == 3  # first test image: a cat


def test_every_dataset_name_has_channel_stats():
    assert set(DATASET_NAMES) <= set(DATASET_STATS)


# ---------------------------------------------------------------------------------------------
# augmentation from the YAML config (data.views, data.augment, data.solarize_p)
# ---------------------------------------------------------------------------------------------


def test_yaml_preset_and_overrides_reach_the_views_of_both_engines(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "data:\n"
        "  name: digits\n"
        "  batch_size: 32\n"
        "  views: wmse_cifar\n"
        "  num_views: 2\n"
        "  augment:\n"
        "    - {interpolation: bilinear, gray_p: 0.3}\n"
        "    - {solarize_p: 0.4, blur_p: 0.5, blur_sigma: [0.5, 1.0], mean: [0.5, 0.5, 0.5]}\n"
    )
    cfg = load_config(recipe, ["data.num_small_crops=1", "data.small_crop_size=16"])
    dm = SSLDataModule(cfg)
    base = PRESETS["wmse_cifar"]("digits", 2)[0]
    v0, v1, small = dm.view_configs
    assert v0 == base.replace(interpolation="bilinear", gray_p=0.3)
    assert v1 == base.replace(solarize_p=0.4, blur_p=0.5, blur_sigma=(0.5, 1.0), mean=(0.5,) * 3)
    assert (small.crop_size, small.interpolation, small.gray_p) == (16, "bilinear", 0.3)
    # W-MSE's order; normalisation: W-MSE's for CIFAR, the dataset's own otherwise
    assert v0.color_first and v0.std == dataset_stats("digits")[1]
    # batched engine (the default for in-memory datasets) runs exactly these configs
    augment = dm.train_augment()
    assert [view.config for view in augment.views] == dm.view_configs
    # per-image engine too
    cfg.data.augment_on_device = False
    per_image = SSLDataModule(cfg).train_set.transform
    crops = [
        next(op for op in t.transforms if type(op).__name__ == "RandomResizedCrop")
        for t in per_image.transforms
    ]
    assert [str(c.interpolation) for c in crops] == [
        "InterpolationMode.BILINEAR",
        "InterpolationMode.BICUBIC",
        "InterpolationMode.BILINEAR",
    ]
    views, _ = SSLDataModule(cfg).train_set[0]
    assert [tuple(v.shape) for v in views] == [(3, 32, 32), (3, 32, 32), (3, 16, 16)]
    # evaluation images are normalised as the training views are
    normalize = dm.eval_transform()
    assert tuple(normalize.mean.flatten().tolist()) == pytest.approx(v0.mean)
    assert tuple(normalize.std.flatten().tolist()) == pytest.approx(v0.std)


def test_default_views_are_unchanged_and_solarize_p_still_works():
    cfg = load_config(None, ["data.batch_size=32"])
    assert cfg.data.views == "auto" and cfg.data.augment == []
    assert SSLDataModule(cfg).view_configs == digits_views()  # digits: auto -> digits
    data = load_config(None, ["data.name=cifar10", "data.solarize_p=[0.1,0.3]"]).data
    assert resolve_views(data) == cifar_views("cifar10", solarize_p=(0.1, 0.3))
    data = load_config(None, ["data.name=imagefolder", "data.views=auto"]).data
    assert resolve_views(data) == imagenet_views()
    data = load_config(None, ["data.name=stl10", "data.views=cifar", "data.num_small_crops=2"]).data
    assert resolve_views(data) == multicrop_views(cifar_views("stl10", crop_size=96), 2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.views=nope"], r"'data\.views': unknown preset 'nope'; known: auto, cifar, "),
        (["data.views=intl_multicrop"], r"'data\.num_views': preset 'intl_multicrop' defines "),
        (["data.views=intl_cifar", "data.solarize_p=[0.1,0.1]"], r"'data\.solarize_p': only for"),
        (["data.solarize_p=[0.1]", "data.name=cifar10"], r"'data\.solarize_p': solarize_p must"),
        (["data.augment=[{},{},{}]"], r"'data\.augment': 3 entries for 2 views"),
        (["data.augment=[{jitter: 0.4}]"], r"'data\.augment\[0\]\.jitter': unknown field"),
        (["data.augment=[{}, {gray_p: 2.0}]"], r"'data\.augment\[1\]\.gray_p': must be a prob"),
        (["data.augment=[{interpolation: box}]"], r"'data\.augment\[0\]\.interpolation': must"),
    ],
)
def test_bad_augmentation_config_is_a_one_line_config_error(overrides, message):
    data = load_config(None, overrides).data
    with pytest.raises(ConfigError, match=message) as err:
        resolve_views(data)
    assert "\n" not in str(err.value)


def test_intl_multicrop_with_its_six_views_and_extra_small_crops():
    data = load_config(
        None, ["data.views=intl_multicrop", "data.num_views=6", "data.num_small_crops=2"]
    ).data
    views = resolve_views(data)
    assert [v.crop_size for v in views] == [224, 224, 192, 160, 128, 96, 96, 96]
