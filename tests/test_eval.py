"""Evaluation protocols and export: fast linear probe, kNN CLI, SGD protocol, torchvision and
detectron2 exports, checkpoint loading errors (tiny digits run; seconds)."""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

from specssl.cli import main
from specssl.data.datasets import build_dataset, dataset_stats
from specssl.eval.checkpoint import CheckpointError, load_checkpoint
from specssl.eval.export import export_detectron2, export_torchvision, load_exported, to_detectron2
from specssl.eval.features import cached_features
from specssl.eval.knn import knn_accuracy
from specssl.eval.linear import LinearSGDConfig, linear_eval_sgd, linear_probe
from specssl.train.config import load_config
from specssl.train.datamodule import Normalize
from specssl.train.module import SSLModule
from specssl.train.run import pretrain

TINY = [
    "data.name=digits",
    "data.batch_size=64",
    "data.subset=256",
    "backbone.width=4",
    "method.proj_hidden_dim=32",
    "method.proj_output_dim=16",
    "trainer.enable_progress_bar=false",
    "trainer.max_steps=2",
    "trainer.max_epochs=1",
    "monitor.knn_every=0",
    "monitor.knn_on_init=false",
    "monitor.spectrum_every=0",
    "optim.warmup_epochs=0",
]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("evalrun")
    cfg = load_config(None, [*TINY, f"output_dir={tmp}", "run_name=run"])
    pretrain(cfg, logger=False)
    return tmp / "run" / "checkpoints" / "last.ckpt"


def fake_checkpoint(path: Path, *overrides: str) -> Path:
    """A checkpoint in the layout ``pretrain`` writes, for an untrained (but non-trivial: random
    BatchNorm statistics) module — e.g. a width-64 ResNet-18 that is too slow to pretrain here."""
    cfg = load_config(None, ["method.proj_hidden_dim=16", "method.proj_output_dim=8", *overrides])
    torch.manual_seed(1)
    module = SSLModule(cfg, 10)
    for m in module.backbone.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    state = {
        "hyper_parameters": {"config": asdict(cfg), "num_classes": 10},
        "state_dict": module.state_dict(),
        "epoch": 0,
        "global_step": 0,
    }
    torch.save(state, path)
    return path


# ------------------------------------------------------------------------- fast linear probe
def gaussian_classes(n: int, f: int, c: int, sep: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, f, generator=g) * sep
    y = torch.randint(0, c, (n,), generator=g)
    return centers[y] + torch.randn(n, f, generator=g), y


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam", "sgd"])
def test_probe_separates_separable_classes_and_is_at_chance_on_random_labels(optimizer):
    x, y = gaussian_classes(3000, 32, 4, sep=3.0, seed=0)
    res = linear_probe(x[:2000], y[:2000], x[2000:], y[2000:], optimizer=optimizer, epochs=50)
    assert res["top1"] >= 99.5
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(3000, 32, generator=g)
    rand_y = torch.randint(0, 4, (3000,), generator=g)
    res = linear_probe(noise[:2000], rand_y[:2000], noise[2000:], rand_y[2000:], epochs=50)
    assert abs(res["top1"] - 25.0) < 5.0  # chance; 1000 test rows: std ≈ 1.4 points
    assert res["top5"] == 100.0  # 4 classes: top-5 is top-4, always right


def test_probe_matches_an_independent_logistic_regression():
    """The probe minimises mean CE + wd/2·||W||² on standardised features; scikit-learn's
    multinomial LogisticRegression minimises ||W||²/2 + C·ΣCE, the same problem for
    C = 1/(n·wd): the two classifiers must agree on (almost) every test point."""
    from sklearn.linear_model import LogisticRegression

    x, y = gaussian_classes(2500, 16, 5, sep=0.6, seed=3)
    tr_x, tr_y, te_x, te_y = x[:2000], y[:2000], x[2000:], y[2000:]
    wd = 1e-2
    res = linear_probe(tr_x, tr_y, te_x, te_y, weight_decay=wd, epochs=200)
    mean, std = tr_x.mean(0), tr_x.std(0)
    ref = LogisticRegression(C=1.0 / (2000 * wd), max_iter=2000, tol=1e-8)
    ref.fit(((tr_x - mean) / std).double().numpy(), tr_y.numpy())
    ref_top1 = 100 * float(
        (ref.predict(((te_x - mean) / std).double().numpy()) == te_y.numpy()).mean()
    )
    assert 40 < res["top1"] < 99  # a non-trivial problem
    assert abs(res["top1"] - ref_top1) <= 0.6  # at most 3 of 500 test points differ


def test_probe_top5_at_least_top1_and_deterministic_with_seed():
    x, y = gaussian_classes(2400, 24, 10, sep=0.5, seed=5)
    args = (x[:2000], y[:2000], x[2000:], y[2000:])
    for opt in ("lbfgs", "adam"):
        a = linear_probe(*args, optimizer=opt, epochs=10, batch_size=256, seed=7)
        b = linear_probe(*args, optimizer=opt, epochs=10, batch_size=256, seed=7)
        assert a == b
        assert 100 >= a["top5"] >= a["top1"] > 10  # better than chance (10 classes)


def test_probe_weight_decay_selection_picks_a_candidate_and_prefers_regularising_noise():
    # 40 informative-free noise dims on few samples: heavy decay generalises best.
    x, y = gaussian_classes(600, 200, 3, sep=0.15, seed=2)
    res = linear_probe(x[:300], y[:300], x[300:], y[300:], weight_decay=[0.0, 1e-3, 1.0])
    assert res["weight_decay"] in (0.0, 1e-3, 1.0)
    single = linear_probe(x[:300], y[:300], x[300:], y[300:], weight_decay=res["weight_decay"])
    assert single["top1"] == res["top1"]  # the refit on all rows is the single-value fit


def test_probe_rejects_bad_input():
    x, y = torch.randn(20, 4), torch.randint(0, 2, (20,))
    with pytest.raises(ValueError, match="feature dims"):
        linear_probe(x, y, torch.randn(5, 3), y[:5])
    with pytest.raises(ValueError, match="train_y"):
        linear_probe(x, y[:10], x, y)
    with pytest.raises(ValueError, match="optimizer"):
        linear_probe(x, y, x, y, optimizer="newton")
    with pytest.raises(ValueError, match="non-finite"):
        linear_probe(x.clone().fill_(float("nan")), y, x, y)


# ----------------------------------------------------------------------- checkpoint + kNN CLI
def test_checkpoint_loads_config_backbone_and_projector(tiny_ckpt):
    loaded = load_checkpoint(tiny_ckpt.parent.parent, projector=True)  # the run directory
    assert loaded.config.backbone.width == 4 and loaded.config.data.name == "digits"
    assert not loaded.backbone.training and loaded.global_step == 2
    raw = torch.load(tiny_ckpt, map_location="cpu", weights_only=False)["state_dict"]
    torch.testing.assert_close(loaded.backbone.conv1.weight, raw["method.backbone.conv1.weight"])
    z = loaded.projector(loaded.backbone(torch.randn(3, 3, 32, 32)))
    assert z.shape == (3, 16)


SUBSETS = {"train": 400, "test": 120}
SUBSET_ARGS = ["--train-subset", "400", "--test-subset", "120"]


def reference_knn(ckpt: Path, ks: list[int]) -> dict[str, float]:
    """kNN through the *training* code path: the SSLModule, its eval transform and the
    monitor's feature extractor, on the same seeded digits subsets."""
    from specssl.train.callbacks import extract_features

    raw = torch.load(ckpt, map_location="cpu", weights_only=False)
    cfg = load_checkpoint(ckpt).config
    module = SSLModule(cfg, 10, eval_transform=Normalize(*dataset_stats("digits")))
    module.load_state_dict(raw["state_dict"])
    feats = []
    for split in ("train", "test"):
        dataset = build_dataset("digits", None, split, subset=SUBSETS[split], seed=cfg.seed)
        loader = DataLoader(dataset, batch_size=500)
        feats.append(extract_features(module, loader))
    (tx, ty), (vx, vy) = feats
    out = {}
    for k in ks:
        acc = knn_accuracy(tx, ty, vx, vy, 10, k=k, temperature=0.1, weighted=k > 20)
        out[f"top1_k{k}"], out[f"top5_k{k}"] = acc["top1"], acc["top5"]
    return out


def test_cli_knn_equals_knn_accuracy_on_the_training_code_path(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "knn.json"
    cache = tiny_ckpt.parent / "feature_cache"  # the default, reused by the linear CLI test
    argv = ["eval", str(tiny_ckpt), "-p", "knn", "--k", "200", "5", "--out", str(out), *SUBSET_ARGS]
    assert main(argv) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    expected = reference_knn(tiny_ckpt, [200, 5])
    for key, value in expected.items():
        assert report["results"]["knn"][key] == pytest.approx(value, abs=1e-9), key
        assert f"{value:.2f}" in table
    assert report["n_train"] == 400 and report["n_test"] == 120
    assert len(list(cache.glob("*.pt"))) == 2  # train and test features cached
    # A second run reads the cache and prints the same numbers.
    assert main(argv) == 0
    assert json.loads(out.read_text())["results"]["knn"]["top1_k200"] == expected["top1_k200"]


def test_feature_cache_is_keyed_by_checkpoint_mtime(tiny_ckpt, tmp_path):
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes(tiny_ckpt.read_bytes())
    loaded = load_checkpoint(copy)
    a = cached_features(loaded, "test", cache_dir=tmp_path, subset=50)
    b = cached_features(loaded, "test", cache_dir=tmp_path, subset=50)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    stat = loaded.path.stat()
    os.utime(loaded.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    cached_features(loaded, "test", cache_dir=tmp_path, subset=50)
    assert len(list(tmp_path.glob("*.pt"))) == 2  # a rewritten checkpoint is re-extracted


def test_cli_linear_writes_json_beside_the_checkpoint(tiny_ckpt, capsys):
    assert main(["eval", str(tiny_ckpt), "-p", "linear", "--epochs", "30", *SUBSET_ARGS]) == 0
    resolved = tiny_ckpt.resolve()
    report = json.loads((resolved.parent / f"{resolved.stem}.eval-linear.json").read_text())
    res = report["results"]["linear"]
    assert 10 < res["top1"] <= res["top5"] <= 100  # beats chance on digits even at 2 steps
    assert "linear" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.ckpt", "not found"),
        (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "not a specssl"),
        (
            lambda d: torch.save({"weights": torch.ones(2)}, d / "x.pt") or d / "x.pt",
            "not a specssl",
        ),
    ],
)
@pytest.mark.parametrize("command", [["eval"], ["export", "--format", "detectron2"]])
def test_cli_bad_checkpoint_exits_2_with_one_line(tmp_path, capsys, make, message, command):
    path = make(tmp_path)
    assert main([*command[:1], str(path), *command[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(FileNotFoundError, match=r"last\.ckpt"):
        load_checkpoint(tmp_path)  # a directory without checkpoints
    exported = tmp_path / "bb.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3)}, exported)
    with pytest.raises(CheckpointError, match="load_exported"):
        load_checkpoint(exported)


# ------------------------------------------------------------------------- SGD protocol
def test_linear_sgd_protocol_trains_only_the_classifier(tiny_ckpt):
    from specssl.eval.features import linear_train_transform, normalizer, split_dataset

    loaded = load_checkpoint(tiny_ckpt)
    before = {k: v.clone() for k, v in loaded.backbone.state_dict().items()}
    data = loaded.config.data
    train = split_dataset(data, "train", subset=64, transform=linear_train_transform(data))
    test = split_dataset(data, "test", subset=32)
    image, _ = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    cfg = LinearSGDConfig(epochs=2, batch_size=32, num_workers=0, enable_progress_bar=False)
    assert cfg.resolved_milestones() == [1, 2]  # 60% / 80% of the epochs
    res = linear_eval_sgd(loaded.backbone, train, test, normalizer(data), 10, cfg)
    assert 0 <= res["top1"] <= res["top5"] <= 100
    after = loaded.backbone.state_dict()
    for key, value in before.items():  # weights and BatchNorm running statistics untouched
        torch.testing.assert_close(after[key], value, rtol=0, atol=0, msg=key)


# ------------------------------------------------------------------------------- export
@torch.no_grad()
@pytest.mark.parametrize("cifar_stem", [True, False])
def test_torchvision_export_loads_strictly_and_gives_the_same_features(tmp_path, cifar_stem):
    ckpt = fake_checkpoint(tmp_path / "w64.ckpt", f"backbone.cifar_stem={cifar_stem}")
    ours = load_checkpoint(ckpt).backbone
    out = export_torchvision(ckpt, tmp_path / "bb.pth")
    state = torch.load(out, weights_only=True)  # plain tensors only
    model = torchvision.models.resnet18()
    model.fc = nn.Identity()
    if cifar_stem:  # the one differing key: conv1 3x3 (the max-pool has no parameters)
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(model(x), ours(x), rtol=1e-5, atol=1e-5)
    reloaded = load_exported(out)
    torch.testing.assert_close(reloaded(x), ours(x), rtol=1e-5, atol=1e-5)
    if not cifar_stem:  # with the online probe as fc: resnet18(num_classes=10) as it is
        export_torchvision(ckpt, tmp_path / "full.pth", include_classifier=True)
        full = torchvision.models.resnet18(num_classes=10)
        full.load_state_dict(torch.load(tmp_path / "full.pth", weights_only=True), strict=True)
        probe = torch.load(ckpt, weights_only=False)["state_dict"]["classifier.weight"]
        torch.testing.assert_close(full.fc.weight, probe)


@torch.no_grad()
def test_cli_export_of_the_tiny_run_round_trips(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "tiny.pth"
    assert main(["export", str(tiny_ckpt), "--format", "torchvision", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    x = torch.randn(2, 3, 32, 32)
    expected = load_checkpoint(tiny_ckpt).backbone(x)
    torch.testing.assert_close(load_exported(out)(x), expected, rtol=1e-5, atol=1e-6)


def moco_reference_name(key: str) -> str:
    """Independent transcription of the MoCo converter's string replacements."""
    if "layer" not in key:
        key = "stem." + key
    for t in (1, 2, 3, 4):
        key = key.replace(f"layer{t}", f"res{t + 1}")
    for t in (1, 2, 3):
        key = key.replace(f"bn{t}", f"conv{t}.norm")
    return key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


@pytest.mark.parametrize(
    ("arch", "count", "present", "absent"),
    [
        (
            "resnet18",
            100,  # 20 convs + 20 BNs x 4 tensors
            ["res3.0.shortcut.weight", "res5.1.conv2.norm.running_var", "stem.conv1.norm.bias"],
            ["res2.0.shortcut.weight", "res2.0.conv3.weight"],
        ),
        (
            "resnet50",
            265,  # 53 convs + 53 BNs x 4 tensors
            [
                "res2.0.shortcut.norm.running_mean",
                "res5.2.conv3.norm.weight",
                "res4.5.conv2.weight",
            ],
            ["res4.6.conv1.weight"],
        ),
    ],
)
def test_detectron2_layout(arch, count, present, absent):
    state = getattr(torchvision.models, arch)().state_dict()
    d2 = to_detectron2(state)
    assert d2["__author__"] == "specssl" and d2["matching_heuristics"] is True
    model = d2["model"]
    assert len(model) == count
    assert "stem.conv1.weight" in model and "stem.conv1.norm.running_mean" in model
    for key in present:
        assert key in model, key
    for key in absent:
        assert key not in model, key
    assert not any("num_batches_tracked" in k or k.startswith(("fc", "stem.fc")) for k in model)
    kept = {k: v for k, v in state.items() if "num_batches_tracked" not in k and "fc." not in k}
    assert {moco_reference_name(k) for k in kept} == set(model)
    for key, value in kept.items():
        array = model[moco_reference_name(key)]
        assert isinstance(array, np.ndarray) and array.shape == tuple(value.shape)
        np.testing.assert_array_equal(array, value.numpy())


def test_detectron2_export_file_and_bad_keys(tiny_ckpt, tmp_path):
    with pytest.warns(UserWarning, match="CIFAR stem"):
        path = export_detectron2(tiny_ckpt, tmp_path / "d2.pkl")
    with open(path, "rb") as fh:
        obj = pickle.load(fh)
    assert obj["model"]["stem.conv1.weight"].shape == (4, 3, 3, 3)
    with pytest.raises(ValueError, match="not a torchvision ResNet key"):
        to_detectron2({"conv1.weight": torch.zeros(1), "head.proj.weight": torch.zeros(1)})
