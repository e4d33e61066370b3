"""Semi-supervised fine-tuning, label split files, the spectrum report and their CLIs.

Tiny digits checkpoints (2 pretraining steps, width-4 ResNet-18) made once per module; the
shipped CIFAR split files are checked for exact counts, and against the real training labels
when ``SPECSSL_DATA`` points at the data. Seconds on a busy 2-core machine.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from test_eval import TINY

from specssl.cli import COMMANDS, main
from specssl.eval import splits as splits_mod
from specssl.eval.checkpoint import load_checkpoint
from specssl.eval.classifier import ClassifierModule
from specssl.eval.semisup import FinetuneConfig, finetune, labelled_indices
from specssl.eval.spectrum_report import embed_sample, spectrum_of_checkpoint
from specssl.eval.splits import (
    FORMAT,
    SHIPPED,
    content_digest,
    load_split,
    make_split,
    read_split,
    split_path,
    write_split,
)
from specssl.train.config import load_config
from specssl.train.run import pretrain

# test_eval's tiny digits run: data.batch_size=64, method.proj_output_dim=16, 2 steps.
SAMPLES = 160  # spectrum sample: 2 full chunks of the batch size 64 for Ẑ (last 32 rows dropped)
D = 16  # method.proj_output_dim


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread) -> dict[str, Path]:
    """Run directories of 2-step digits pretraining: INTL (with a transformation Ẑ) and SimCLR
    (without one)."""
    out = tmp_path_factory.mktemp("runs")
    for method in ("intl", "simclr"):
        overrides = [f"method.name={method}", f"output_dir={out}", f"run_name={method}"]
        pretrain(load_config(None, [*TINY, *overrides]), logger=False)
    return {m: out / m for m in ("intl", "simclr")}


# ------------------------------------------------------------------------------ split files
def synthetic_labels(num_classes: int, per_class: int, seed: int = 0) -> np.ndarray:
    """``(num_classes * per_class,)`` labels, every class equally often, shuffled."""
    y = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(y)


@pytest.mark.parametrize(
    ("dataset", "pct", "count", "per_class", "num_classes"),
    [
        ("cifar10", 1, 500, 50, 10),
        ("cifar10", 10, 5000, 500, 10),
        ("cifar100", 1, 500, 5, 100),
        ("cifar100", 10, 5000, 50, 100),
    ],
)
def test_split_sizes_are_exact(dataset, pct, count, per_class, num_classes):
    # The generator on a 50,000-image training set of the dataset's shape ...
    y = synthetic_labels(num_classes, 50_000 // num_classes)
    idx = make_split(y, pct / 100, seed=0)
    assert idx.shape == (count,)
    assert np.all(np.bincount(y[idx.numpy()], minlength=num_classes) == per_class)
    # ... and the shipped file, where there is one.
    if pct not in SHIPPED.get(dataset, ()):
        assert not split_path(dataset, pct).exists(), "a shipped file missing from SHIPPED"
        pytest.skip(f"{dataset} {pct}% split not shipped (no {dataset} in the project data)")
    split = load_split(dataset, pct)
    assert (len(split), split.per_class, split.num_classes) == (count, per_class, num_classes)
    assert split.num_train == 50_000 and split.seed == 0
    assert np.all(np.bincount(split.labels.numpy(), minlength=num_classes) == per_class)
    assert torch.all(split.indices.diff() > 0)


def test_every_shipped_split_is_listed_and_verifies():
    files = sorted(split_path("x", 1).parent.glob("*.json"))
    listed = sorted(split_path(d, p) for d, ps in SHIPPED.items() for p in ps)
    assert files == listed
    for path in files:
        assert read_split(path).dataset == path.name.split("_")[0]


def _real_train_labels(dataset: str) -> np.ndarray:
    """Training labels read straight from the python-pickle files (independent of the library)."""
    root = os.environ.get("SPECSSL_DATA")
    if not root:
        pytest.skip("SPECSSL_DATA is not set: cannot check the split files against real labels")
    folder, files, key = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], b"labels"),
        "cifar100": ("cifar-100-python", ["train"], b"fine_labels"),
    }[dataset]
    if not (Path(root) / folder).is_dir():
        pytest.skip(f"{folder} is not in SPECSSL_DATA={root}")
    labels = []
    for name in files:
        with open(Path(root) / folder / name, "rb") as fh:
            labels.extend(pickle.load(fh, encoding="bytes")[key])
    return np.asarray(labels, dtype=np.int64)


@pytest.mark.parametrize("dataset", sorted(SHIPPED))
def test_shipped_splits_are_class_balanced_on_the_real_labels(dataset):
    y = _real_train_labels(dataset)
    for pct in SHIPPED[dataset]:
        split = load_split(dataset, pct, train_labels=y)  # checks the labels' digest too
        assert np.array_equal(y[split.indices.numpy()], split.labels.numpy())
        per = np.bincount(y[split.indices.numpy()], minlength=split.num_classes)
        assert np.all(per == split.per_class)
        # The file is exactly what the generator makes from these labels with seed 0.
        assert torch.equal(split.indices, make_split(y, pct / 100, seed=0))
        with pytest.raises(ValueError, match="training labels differ"):
            split.check_labels(np.roll(y, 1))


def test_make_split_is_deterministic_balanced_and_seed_dependent():
    y = synthetic_labels(7, 40, seed=3)
    a, b = make_split(y, 0.25, seed=5), make_split(y, 0.25, seed=5)
    assert torch.equal(a, b)
    assert a.dtype == torch.int64 and a.shape == (70,)
    assert np.all(np.bincount(y[a.numpy()], minlength=7) == 10)
    others = [make_split(y, 0.25, seed=s) for s in range(6, 9)]
    assert all(not torch.equal(a, o) for o in others)
    with pytest.raises(ValueError, match="fewer than"):
        make_split(np.r_[y, 7], 0.25, num_classes=8)  # class 7 has one image, needs 10


#: What the shipped files held when they were text files (v1 headers, 2026-12-02): the sha256
#: of their "index label" lines and of the CIFAR-10 training labels they were made from.
V1_CONTENT = {
    ("cifar10", 1): "598f22f65eb36559d233a643e8f59cc97140bdb8b2e5b6a02c3c18c5213fd21a",
    ("cifar10", 10): "08a4de7747baec66788b1b331e124a1fcad9bfc8b7db73843a328da934e137e0",
}
CIFAR10_LABELS_SHA256 = "f5cfe00b0f00968c0cc5ff3b1d2de51b10e33efa277c2986f4e0fa63e58c9f4f"
#: sha256 of SimCLR's shipped ImageNet image lists (files as committed).
SIMCLR_SHA256 = {
    "imagenet_1pct.txt": "71e82a48ba78252683ae334c4d019ebd5c6e855b9599c1389fbe83eb9549cf17",
    "imagenet_10pct.txt": "6d09de11e7bdaf5b1f3b1f249b6183695f97310cdd20f0c03e7235b6b9392091",
}


def test_shipped_split_content_is_unchanged():
    """The conversion to JSON kept every subset: same (index, label) pairs, seed, fraction and
    training-label digest as the v1 text files; SimCLR's lists are byte for byte as committed."""
    from specssl.eval.semisup import SIMCLR_SPLITS

    assert set(V1_CONTENT) == {(d, p) for d, ps in SHIPPED.items() for p in ps}
    for (dataset, pct), digest in V1_CONTENT.items():
        split = load_split(dataset, pct)
        assert content_digest(split.indices.tolist(), split.labels.tolist()) == digest
        assert (split.seed, split.fraction, split.labels_sha256) == (
            0,
            pct / 100,
            CIFAR10_LABELS_SHA256,
        )
    for name, digest in SIMCLR_SHA256.items():
        assert hashlib.sha256((SIMCLR_SPLITS / name).read_bytes()).hexdigest() == digest


def _v1_make_split(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """The generator the shipped files were made with (transcribed from the v1 module): per
    class in turn, the first ``per_class`` of a permutation drawn from one RandomState."""
    rng = np.random.RandomState(seed)
    chosen = []
    for k in range(int(y.max()) + 1):
        members = np.flatnonzero(y == k)
        chosen.append(members[rng.permutation(members.shape[0])[:per_class]])
    return np.sort(np.concatenate(chosen))


@pytest.mark.parametrize(("num_classes", "size", "fraction", "seed"),
                         [(10, 5000, 0.01, 0), (10, 5000, 0.1, 0), (100, 500, 0.1, 3),
                          (7, 40, 0.25, 5)])  # fmt: skip
def test_sklearn_stratified_split_reproduces_the_v1_generator(num_classes, size, fraction, seed):
    """On equal class sizes (CIFAR-10/100) scikit-learn's stratified split draws the very
    subsets the hand-written v1 generator drew, so the shipped files are make_split's output."""
    y = synthetic_labels(num_classes, size, seed=1)
    per_class = round(fraction * y.shape[0] / num_classes)
    got = make_split(y, fraction, seed=seed).numpy()
    np.testing.assert_array_equal(got, _v1_make_split(y, per_class, seed))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        ("format", "format must be"),
        ("missing_key", "lacks per_class"),
        ("count", "19 indices and 19 labels, expected per_class 5"),
        ("duplicate", "no duplicates"),
        ("unbalanced", "not class-balanced"),
        ("edited", "checksum mismatch"),
    ],
)
def test_corrupted_split_file_is_rejected(tmp_path, monkeypatch, corrupt, message):
    path = tmp_path / "s.json"
    write_split(path, "toy", synthetic_labels(4, 50), 0.1)  # 5 per class, 20 images
    record = json.loads(path.read_text())
    idx, lab = record["indices"], record["labels"]
    rehash = True  # a consistently written but wrong file, so the checks after the checksum run
    if corrupt == "format":
        record["format"] = FORMAT.replace("v2", "v1")
    elif corrupt == "missing_key":
        del record["per_class"]
    elif corrupt == "count":
        del idx[-1], lab[-1]
    elif corrupt == "duplicate":
        idx[1], lab[1] = idx[0], lab[0]  # same index (and label) twice
    elif corrupt == "unbalanced":
        lab[0] = (lab[0] + 1) % 4
    else:  # one index changed, checksum left as it was
        idx[0], rehash = idx[0] + 1, False
    if rehash:
        record["sha256"] = content_digest(idx, lab)
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=message) as err:
        read_split(path)
    assert str(path) in str(err.value)
    # load_split (the shipped-file entry point) runs the same checks.
    monkeypatch.setattr(splits_mod, "split_path", lambda *a, **k: path)
    with pytest.raises(ValueError, match=message):
        load_split("toy", 10)


# ------------------------------------------------------------------ semi-supervised fine-tune
def test_finetune_trains_the_backbone_and_reports_test_accuracy(runs, tmp_path):
    ckpt = runs["intl"]
    cfg = FinetuneConfig(percent=10, epochs=1, max_steps=2, batch_size=32, accelerator="cpu")
    result = finetune(ckpt, cfg, out_dir=tmp_path)
    assert result.steps == 2
    assert result.num_labelled == 140  # round(10% of 1437 / 10 classes) = 14 per class
    assert result.split.startswith("make_split(digits, 10%")
    # Accuracies on the whole 360-image digits test split: multiples of 100/360.
    for acc in (result.top1, result.top5):
        assert 0 <= acc <= 100
        assert abs(acc * 360 / 100 - round(acc * 360 / 100)) < 1e-6
    assert result.top5 >= result.top1
    saved = json.loads((tmp_path / "finetune.json").read_text())
    assert saved["top1"] == result.top1 and saved["steps"] == 2
    before = load_checkpoint(ckpt).backbone.state_dict()
    after = torch.load(tmp_path / "finetuned.pt", weights_only=True)["backbone"]
    assert before.keys() == after.keys()
    changed = [
        k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])
    ]
    assert any(k.endswith("conv1.weight") for k in changed)  # the backbone itself trained


def test_labelled_subset_is_the_seeded_balanced_split():
    from specssl.data.datasets import build_dataset

    train = build_dataset("digits", None, "train")
    idx, source = labelled_indices("digits", train, 10)
    assert source == "make_split(digits, 10%, seed 0)"  # digits: no shipped split
    assert torch.equal(idx, make_split(train.targets, 0.1, 0, num_classes=10))
    assert np.all(np.bincount(train.targets[idx].numpy(), minlength=10) == 14)
    with pytest.raises(ValueError, match="needs --split-file") as err:
        labelled_indices("imagefolder", train, 10)  # not an image folder
    assert "\n" not in str(err.value)


def test_imagenet_labelled_subsets_are_simclrs_shipped_image_lists():
    from types import SimpleNamespace

    from specssl.eval.semisup import SIMCLR_SPLITS

    listed = (SIMCLR_SPLITS / "imagenet_1pct.txt").read_text().split()
    assert len(listed) == 12811 and len(set(listed)) == 12811
    assert len((SIMCLR_SPLITS / "imagenet_10pct.txt").read_text().split()) == 128116
    # an ImageNet-like folder: every listed image plus others, in another order
    paths = [f"/in/train/{n.split('_')[0]}/{n}" for n in reversed(listed)]
    paths += [f"/in/train/n0/extra_{i}.JPEG" for i in range(50)]
    folder = SimpleNamespace(base=SimpleNamespace(samples=[(p, 0) for p in paths]), targets=None)
    idx, source = labelled_indices("imagefolder", folder, 1)
    assert source.startswith("SimCLR ImageNet 1%")
    assert sorted(paths[i].rsplit("/", 1)[1] for i in idx.tolist()) == sorted(listed)
    other = SimpleNamespace(
        base=SimpleNamespace(samples=[("/tiny/train/a/x.JPEG", 0)]), targets=None
    )
    with pytest.raises(ValueError, match="does not match this image folder") as err:
        labelled_indices("imagefolder", other, 10)
    assert "--split-file" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="needs --split-file"):
        labelled_indices("imagefolder", folder, 5)


def test_optimizer_is_nesterov_sgd_with_separate_scaled_lrs_and_cosine_decay():
    from types import SimpleNamespace

    from torch import nn

    cfg = FinetuneConfig(batch_size=512, lr_backbone=0.05, lr_head=0.3)
    model = ClassifierModule(
        nn.Linear(3, 4), 2, cfg.sgd(), normalize=nn.Identity(), frozen=False, feat_dim=4
    )
    model.trainer = SimpleNamespace(estimated_stepping_batches=10)
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    backbone, head = opt.param_groups
    assert isinstance(opt, torch.optim.SGD)
    assert backbone["lr"] == pytest.approx(0.05 * 2) and head["lr"] == pytest.approx(0.3 * 2)
    assert {id(p) for p in backbone["params"]} == {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in head["params"]} == {id(p) for p in model.head.parameters()}
    assert all(
        g["nesterov"] and g["momentum"] == 0.9 and g["weight_decay"] == 0 for g in (backbone, head)
    )
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.1 * 0.5 * (1 + np.cos(np.pi * t / 10)) for t in range(10)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)


def test_step_schedule_plain_momentum_and_head_init_of_the_intl_protocol():
    """INTL's evaluate.py --weights finetune: SGD momentum 0.9 without Nesterov, per-epoch
    MultiStepLR, fc ~ N(0, 0.01²) with zero bias (the intl_*_semisup_* presets)."""
    from types import SimpleNamespace

    from torch import nn

    cfg = FinetuneConfig(
        epochs=5, batch_size=128, lr_backbone=0.004, lr_head=0.2, nesterov=False,
        schedule="step", milestones=[2, 4], gamma=0.1, head_init_std=0.01,
    )  # fmt: skip
    torch.manual_seed(0)
    model = ClassifierModule(
        nn.Linear(3, 512), 100, cfg.sgd(), normalize=nn.Identity(), frozen=False,
        head_init_std=cfg.head_init_std, feat_dim=512,
    )  # fmt: skip
    assert abs(float(model.head.weight.detach().std()) - 0.01) < 5e-4
    assert not model.head.bias.any()
    model.trainer = SimpleNamespace(estimated_stepping_batches=10)
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "epoch"
    assert all(not g["nesterov"] and g["momentum"] == 0.9 for g in opt.param_groups)
    lrs = []
    for _ in range(5):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    scale = 128 / 256
    expected = [[0.004 * scale * f, 0.2 * scale * f] for f in (1, 1, 0.1, 0.1, 0.01)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert FinetuneConfig(epochs=20).resolved_milestones() == [12, 16]
    with pytest.raises(ValueError, match="schedule"):
        FinetuneConfig(schedule="exp").validate()


def test_imagenet_split_is_a_list_of_image_names(tmp_path):
    """SimCLR's 1percent.txt format: one file name per line, matched by name in any layout."""
    from types import SimpleNamespace

    from specssl.data.datasets import IndexedImageDataset

    paths = [f"/data/train/n0{c}/n0{c}_{i}.JPEG" for c in range(3) for i in range(4)]
    base = SimpleNamespace(samples=[(p, k // 4) for k, p in enumerate(paths)])
    train = IndexedImageDataset(base, [k // 4 for k in range(12)], ["a", "b", "c"])
    names = tmp_path / "1percent.txt"
    names.write_text("n02_3.JPEG\nn00_1.JPEG\n\nn01_0.JPEG\n")
    idx, source = labelled_indices("imagefolder", train, 1, split_file=str(names))
    assert idx.tolist() == [1, 4, 11] and source.startswith("image list")
    names.write_text("n00_1.JPEG\nn09_9.JPEG\n")
    with pytest.raises(ValueError, match=r"1 of 2 split images are not in the training set"):
        labelled_indices("imagefolder", train, 1, split_file=str(names))


# ---------------------------------------------------------------------------- spectrum report
@pytest.fixture(scope="module")
def report(runs, tmp_path_factory) -> dict:
    """``specssl spectrum`` on both runs; records what each plot call drew."""
    import specssl.viz

    out = tmp_path_factory.mktemp("spectrum")
    drawn: list[list[str]] = []
    real = specssl.viz.plot_spectra

    def spy(curves, path, **kwargs):
        drawn.append([label for label, _, _ in curves])
        return real(curves, path, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(specssl.viz, "plot_spectra", spy)
        argv = ["spectrum", str(runs["intl"]), str(runs["simclr"]), "--samples", str(SAMPLES)]
        rc = main([*argv, "--out", str(out), "--device", "cpu"])
    assert rc == 0
    data = json.loads((out / "spectrum.json").read_text())
    return {"out": out, "drawn": drawn, "json": {c["label"]: c for c in data["checkpoints"]}}


def _np_eigenvalues(x: torch.Tensor, axis: str = "batch") -> np.ndarray:
    """Independent float64 reference: eigenvalues (descending) of the covariance of ``x (m, d)``
    over the batch (``d x d``, divisor m - 1) or the channel axis (``m x m``, divisor d - 1)."""
    a = x.double().numpy()
    cov = np.cov(a, rowvar=False) if axis == "batch" else np.cov(a, rowvar=True)
    return np.linalg.eigvalsh(cov)[::-1]


def test_spectrum_eigenvalues_are_those_of_the_embedding_covariance(runs, report):
    emb = embed_sample(runs["intl"], samples=SAMPLES)
    z = emb.z["eval"]
    assert z.shape == (SAMPLES, D) and emb.chunk == 64
    entry = report["json"]["intl"]
    assert (entry["method"], entry["samples"], entry["embedding_dim"]) == ("intl", SAMPLES, D)
    view = entry["views"]["eval"]
    got, ref = np.array(view["z_eigenvalues"]), _np_eigenvalues(z)
    assert got.shape == (D,)
    np.testing.assert_allclose(got[:8], ref[:8], rtol=1e-5)
    m = view["metrics"]
    assert m["z/condition_indicator"] == pytest.approx(got[-1] / got[0], rel=1e-12)
    assert m["z/condition_indicator"] == pytest.approx(ref[-1] / ref[0], rel=1e-3)
    assert m["z/lambda_max"] == pytest.approx(ref[0], rel=1e-5)
    assert m["z/stable_rank"] == pytest.approx(got.sum() / got[0] / D, rel=1e-9)  # min(d, n-1)
    # Ẑ: IterNorm of each 64-row chunk (as the loss sees a batch), its spectrum on INTL's
    # default axis (channel: the m x m covariance, m = 64 eigenvalues), averaged over chunks.
    transform, axis = emb.method.spectral_transform(), emb.method.spectral_axis
    assert axis == "channel"
    zhat_ref = np.mean([_np_eigenvalues(transform(p), axis) for p in z[:128].split(64)], axis=0)
    zhat = np.array(view["zhat_eigenvalues"])
    assert (view["zhat_axis"], view["zhat_chunk"], view["zhat_chunks"]) == (axis, 64, 2)
    assert zhat.shape == (64,)
    np.testing.assert_allclose(zhat[:8], zhat_ref[:8], rtol=1e-5)
    # m x m covariance from d = 16 channels: rank <= d - 1 (the rank bound), the condition
    # indicator's last eigenvalue and the normalized stable rank's cap; the 64 - 15 eigenvalues
    # past it are 0 by shape (the full-spectrum ratio, ``condition_indicator_raw``).
    assert m["zhat/rank_bound"] == D - 1
    assert m["zhat/condition_indicator"] == pytest.approx(zhat[D - 2] / zhat[0], rel=1e-12)
    assert m["zhat/condition_indicator_raw"] == pytest.approx(zhat[-1] / zhat[0], abs=1e-12)
    assert m["zhat/stable_rank"] == pytest.approx(zhat.sum() / zhat[0] / (D - 1), rel=1e-9)


def test_spectrum_of_checkpoint_matches_the_cli_report(runs, report):
    res = spectrum_of_checkpoint(runs["simclr"], samples=SAMPLES)
    view = res.views["eval"]
    assert res.method == "simclr" and res.label == "simclr"
    cli = report["json"]["simclr"]["views"]["eval"]
    np.testing.assert_allclose(view.z.numpy(), cli["z_eigenvalues"], rtol=1e-6)
    # A method without a transformation has no Ẑ: None here, null in JSON, no CSV rows.
    assert view.zhat is None and view.zhat_axis is None
    assert cli["zhat_eigenvalues"] is None
    assert not any(k.startswith("zhat/") for k in cli["metrics"])


def test_spectrum_outputs_and_both_checkpoints_on_one_plot(report):
    out = report["out"]
    png = out / "spectrum_eval.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert not (out / "spectrum_augmented.png").exists()  # no --augmented
    assert report["drawn"] == [["intl", "simclr"]]  # one plot (eval view), both curves
    with open(out / "eigenvalues.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    count = {}
    for row in rows:
        key = (row["checkpoint"], row["which"])
        count[key] = count.get(key, 0) + 1
    assert count == {("intl", "z"): D, ("intl", "zhat"): 64, ("simclr", "z"): D}
    first = next(r for r in rows if r["checkpoint"] == "intl" and r["which"] == "z")
    assert float(first["eigenvalue"]) == pytest.approx(
        report["json"]["intl"]["views"]["eval"]["z_eigenvalues"][0], rel=1e-8
    )


# ------------------------------------------------------------------------------------- CLI
def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"    {name} " in out
    for name in COMMANDS:
        assert main([name, "--help"]) == 0
        assert f"specssl {name}" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["spectrum", "finetune"])
def test_cli_rejects_missing_and_non_checkpoint_files(command, tmp_path, capsys):
    missing = tmp_path / "nope.ckpt"
    assert main([command, str(missing)]) == 2
    assert f"checkpoint not found: {missing}" in capsys.readouterr().err
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    assert main([command, str(junk), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "is not a specssl checkpoint" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_rejects_bad_numbers(runs, capsys):
    assert main(["spectrum", str(runs["intl"]), "--samples", "1"]) == 2
    assert "--samples must be >= 2" in capsys.readouterr().err
    assert main(["finetune", str(runs["intl"]), "--fraction", "0"]) == 2
    assert "--fraction is a percentage in (0, 100]" in capsys.readouterr().err
