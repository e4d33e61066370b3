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
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import DataLoader

from specssl.cli import main
from specssl.core.knn import knn_accuracy
from specssl.data.datasets import build_dataset, dataset_stats
from specssl.eval.checkpoint import CheckpointError, load_checkpoint
from specssl.eval.export import export_detectron2, export_torchvision, load_exported, to_detectron2
from specssl.eval.features import cached_features
from specssl.eval.linear_sgd import LinearSGDConfig, linear_eval_sgd
from specssl.eval.probe import linear_probe
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


def _handwritten_topk(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The accumulator torchmetrics replaced: hits of ``topk(min(5, C))`` (top-1: its first)."""
    ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
    hit = ranked == labels[:, None]
    return hit[:, 0], hit.any(1)


@pytest.mark.parametrize("num_classes", [10, 3])
def test_torchmetrics_accuracy_equals_the_handwritten_topk_with_ties(num_classes):
    """topk_accuracy gives the former numbers bit for bit (the probe's records) on continuous
    logits; on integer logits in [0, 3) (most rows tie, also at the top-5 boundary) top-5 is
    unchanged and a tied top-1 goes to the lowest class index (argmax). The accumulating
    metrics over uneven batches give 100 · hits / n of the whole set in float64."""
    from specssl.eval.metrics import topk_accuracy, topk_metrics

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, num_classes, (500,), generator=g)
    smooth = torch.randn(500, num_classes, generator=g) + 2.0 * F.one_hot(labels, num_classes)
    top1, top5 = _handwritten_topk(smooth, labels)
    assert 0 < int(top1.sum()) < 500
    assert topk_accuracy(smooth, labels) == {
        "top1": 100.0 * float(top1.float().mean()),
        "top5": 100.0 * float(top5.float().mean()),
    }
    tied = torch.randint(0, 3, (500, num_classes), generator=g).float()
    _, top5 = _handwritten_topk(tied, labels)
    top1 = tied.argmax(1) == labels
    assert int(top1.sum()) < int(top5.sum()) < 500 or num_classes == 3
    assert topk_accuracy(tied, labels) == {
        "top1": 100.0 * float(top1.float().mean()),
        "top5": 100.0 * float(top5.float().mean()),
    }
    metrics = topk_metrics(num_classes, torch.float64)
    for part in (slice(0, 7), slice(7, 300), slice(300, 500)):
        for m in metrics.values():
            m.update(tied[part], labels[part])
    hits = {"top1": int(top1.sum()), "top5": int(top5.sum())}
    assert {k: 100.0 * float(m.compute()) for k, m in metrics.items()} == {
        k: 100.0 * (h / 500) for k, h in hits.items()
    }


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


# ----------------------------------------------------------------------- protocol presets
#: The authors' settings, transcribed from their code independently of the registry: the value a
#: script passes, else the default of the file that evaluates (INTL: winci-ai/INTL@0aa69af
#: evaluate.py + cfg.py; CW-RGP: winci-ai/CW-RGP ImageNet/lincls.py + ImageNet/cfg.py, and
#: base/eval/sgd.py + knn.py, the W-MSE probe INTL's cifar/eval/evaluate.py repeats).
_INTL_SGD = {
    "epochs": 100,  # every script: --epochs 100
    "batch_size": 256,  # cfg.py --bs 256
    "weight_decay": 0.0,  # evaluate.py: SGD(..., weight_decay=0); --wd 1e-5 is unused there
    "schedule": "step",  # cfg.py --schedule 'step' -> MultiStepLR([60, 80], gamma=0.1)
    "milestones": (60, 80),
    "gamma": 0.1,
    "momentum": 0.9,
    "lars": False,
    "crop_scale": (0.08, 1.0),  # transforms.RandomResizedCrop(224)
}
_WMSE = {
    "optimizer": "adam",
    "lr": 1e-2,  # lr_start
    "lr_end": 1e-6,
    "schedule": "exp",  # ExponentialLR, stepped per epoch
    "epochs": 500,
    "batch_size": 1000,
    "weight_decay": 5e-6,
    "standardize": False,
    "knn_k": (5,),  # --knn 5
    "knn_metric": "euclidean",  # torch.cdist
}
_INTL_FT = {
    "epochs": 20,  # --epochs 20
    "batch_size": 256,
    "lr_head": 0.2,  # --lr-classifier 0.2
    "weight_decay": 0.0,
    "momentum": 0.9,
    "nesterov": False,
    "schedule": "step",
    "milestones": (60, 80),  # never reached in 20 epochs: constant lr
    "gamma": 0.1,
    "head_init_std": 0.01,  # fc.weight.data.normal_(mean=0.0, std=0.01)
}
AUTHORS = {
    "intl_linear": ("scripts/ep800.sh", {**_INTL_SGD, "lr": 0.2}),
    "intl_m_linear": ("scripts/ep800_multi-crop_ema.sh", {**_INTL_SGD, "lr": 0.4}),
    "intl_in100_linear": ("scripts/in100.sh", {**_INTL_SGD, "lr": 0.2}),
    "cwrgp_in_linear": (
        "ImageNet/lincls.py",
        {
            **_INTL_SGD,
            "lr": 0.1,  # --lr_eval 0.1, times bs_eval / 256
            "batch_size": 1024,  # --bs_eval 1024
            "schedule": "cos",  # adjust_learning_rate: cosine per epoch
            "milestones": None,
            "lars": True,  # ImageNet.sh: --lars
        },
    ),
    "wmse_probe": ("base/eval/sgd.py", _WMSE),
    "intl_cifar_probe": ("cifar/eval/evaluate.py", _WMSE),
    "intl_semisup_1pct": ("scripts/ep800.sh", {**_INTL_FT, "percent": 1, "lr_backbone": 0.006}),
    "intl_semisup_10pct": ("scripts/ep800.sh", {**_INTL_FT, "percent": 10, "lr_backbone": 0.006}),
    "intl_m_semisup_1pct": (
        "scripts/ep800_multi-crop_ema.sh",
        {**_INTL_FT, "percent": 1, "lr_backbone": 0.004},
    ),
    "intl_m_semisup_10pct": (
        "scripts/ep800_multi-crop_ema.sh",
        {**_INTL_FT, "percent": 10, "lr_backbone": 0.004},
    ),
}


def test_every_preset_has_the_values_of_its_source_script():
    from specssl.eval.protocols import EVAL_PRESETS, FINETUNE_PRESETS

    registry = {**EVAL_PRESETS, **FINETUNE_PRESETS}
    assert set(registry) == set(AUTHORS)
    for name, (script, expected) in AUTHORS.items():
        preset = registry[name]
        assert preset.name == name and script in preset.source, name
        assert preset.values() == expected, name
        assert preset.deviations, name  # every preset states what it cannot reproduce


def _parse(*argv: str):
    from specssl.cli import build_parser

    return build_parser().parse_args(list(argv))


def test_eval_preset_selects_protocols_and_explicit_flags_win():
    from specssl.eval import command

    args = _parse("eval", "c.ckpt", "--preset", "intl_m_linear", "--epochs", "3")
    assert command.protocols(args) == ["linear-sgd"]  # no -p: the preset's protocol
    sgd, overridden = command.sgd_settings(args)
    assert (sgd["epochs"], sgd["lr"], sgd["batch_size"], sgd["milestones"]) == (
        3,
        0.4,
        256,
        (60, 80),
    )
    assert overridden == ["epochs"]
    rec = command.preset_record(args, ["linear-sgd"])
    assert rec["name"] == "intl_m_linear" and rec["overridden"] == ["epochs"]
    assert rec["resolved"]["epochs"] == 3 and rec["preset_values"]["epochs"] == 100

    # A cosine preset overridden to the step schedule gets the default 60% / 80% milestones.
    args = _parse("eval", "c.ckpt", "-p", "linear-sgd", "--preset", "cwrgp_in_linear",
                  "--schedule", "step", "--no-lars")  # fmt: skip
    sgd, overridden = command.sgd_settings(args)
    assert (sgd["schedule"], sgd["milestones"], sgd["lars"], sgd["lr"]) == (
        "step",
        None,
        False,
        0.1,
    )
    assert overridden == ["lars", "schedule"]

    args = _parse("eval", "c.ckpt", "--preset", "wmse_probe", "--k", "7", "--optimizer", "lbfgs")
    assert command.protocols(args) == ["knn", "linear"]
    knn, over_knn = command.knn_settings(args)
    probe, over_probe = command.probe_settings(args)
    assert knn == {"knn_k": (7,), "knn_metric": "euclidean"} and over_knn == ["knn_k"]
    # Another optimizer without --lr takes that optimizer's default lr, not the preset's Adam lr.
    assert (probe["optimizer"], probe["lr"], probe["schedule"], probe["standardize"]) == (
        "lbfgs",
        1.0,
        "exp",
        False,
    )
    assert over_probe == ["optimizer"]
    probe, _ = command.probe_settings(_parse("eval", "c.ckpt", "--preset", "wmse_probe"))
    assert (probe["optimizer"], probe["lr"], probe["weight_decay"]) == ("adam", 1e-2, 5e-6)

    # Without a preset nothing changes: the built-in defaults.
    args = _parse("eval", "c.ckpt", "-p", "knn", "linear", "linear-sgd")
    assert command.preset_record(args, command.protocols(args)) is None
    assert command.knn_settings(args)[0] == {"knn_k": (200, 5), "knn_metric": "cosine"}
    probe = command.probe_settings(args)[0]
    assert (probe["optimizer"], probe["lr"], probe["weight_decay"]) == ("lbfgs", 1.0, 1e-4)
    sgd = command.sgd_settings(args)[0]
    assert (sgd["lr"], sgd["schedule"], sgd["milestones"], sgd["batch_size"]) == (
        0.1,
        "step",
        None,
        256,
    )
    assert command.protocols(_parse("eval", "c.ckpt")) == ["knn"]


def test_finetune_preset_resolves_to_a_config_and_explicit_flags_win():
    from specssl.eval.finetune_command import resolve_config
    from specssl.eval.semisup import FinetuneConfig

    args = _parse("finetune", "c.ckpt", "--preset", "intl_m_semisup_10pct",
                  "--lr-backbone", "0.01", "--nesterov")  # fmt: skip
    cfg, rec = resolve_config(args)
    assert (cfg.percent, cfg.epochs, cfg.batch_size) == (10, 20, 256)
    assert (cfg.lr_backbone, cfg.lr_head, cfg.weight_decay) == (0.01, 0.2, 0.0)
    assert (cfg.nesterov, cfg.schedule, cfg.milestones, cfg.head_init_std) == (
        True,
        "step",
        [60, 80],
        0.01,
    )
    assert cfg.preset == "intl_m_semisup_10pct"
    assert rec["overridden"] == ["lr_backbone", "nesterov"]
    assert rec["resolved"]["lr_backbone"] == 0.01 and rec["preset_values"]["lr_backbone"] == 0.004
    cfg, rec = resolve_config(_parse("finetune", "c.ckpt", "--preset", "intl_semisup_1pct"))
    assert (cfg.percent, cfg.lr_backbone, cfg.nesterov) == (1, 0.006, False) and not rec[
        "overridden"
    ]
    # No preset: FinetuneConfig's defaults, as before presets existed.
    cfg, rec = resolve_config(_parse("finetune", "c.ckpt", "--epochs", "2"))
    assert rec is None and cfg == FinetuneConfig(epochs=2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "c.ckpt", "--preset", "intl"], "unknown preset 'intl'; choose one of: "),
        (["finetune", "c.ckpt", "--preset", "x"], "unknown preset 'x'; choose one of: "),
        (["eval", "c.ckpt", "-p", "knn", "--preset", "intl_linear"], "configures linear-sgd"),
        (["eval", "c.ckpt", "--preset", "wmse_probe", "--schedule", "step"], "is for linear-sgd"),
    ],
)
def test_bad_preset_use_is_a_one_line_usage_error(argv, message, capsys):
    from specssl.eval.protocols import EVAL_PRESETS, FINETUNE_PRESETS

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    if "unknown" in message:
        names = EVAL_PRESETS if argv[0] == "eval" else FINETUNE_PRESETS
        assert all(name in err for name in names)


def test_cli_linear_sgd_with_a_preset_records_it(tiny_ckpt, tmp_path):
    out = tmp_path / "sgd.json"
    argv = ["eval", str(tiny_ckpt), "--preset", "intl_linear", "--epochs", "1", "--batch-size",
            "32", "--train-subset", "64", "--test-subset", "32", "--accelerator", "cpu",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["protocols"] == ["linear-sgd"]
    rec = report["preset"]
    assert rec["name"] == "intl_linear" and "scripts/ep800.sh" in rec["source"]
    assert rec["overridden"] == ["batch_size", "epochs"] and rec["applied_to"] == ["linear-sgd"]
    assert rec["resolved"] == {**rec["preset_values"], "epochs": 1, "batch_size": 32}
    res = report["results"]["linear-sgd"]
    assert (res["lr"], res["epochs"], res["batch_size"], res["milestones"]) == (
        0.2,
        1,
        32,
        [60, 80],
    )
    assert 0 <= res["top1"] <= res["top5"] <= 100


def test_cli_probe_preset_runs_the_wmse_protocol_and_names_the_json(tiny_ckpt):
    argv = ["eval", str(tiny_ckpt), "--preset", "wmse_probe", "--epochs", "5", *SUBSET_ARGS]
    assert main(argv) == 0
    resolved = tiny_ckpt.resolve()
    path = resolved.parent / f"{resolved.stem}.eval-knn+linear-wmse_probe.json"
    report = json.loads(path.read_text())
    assert report["preset"]["name"] == "wmse_probe" and report["preset"]["overridden"] == ["epochs"]
    knn, lin = report["results"]["knn"], report["results"]["linear"]
    assert knn["metric"] == "euclidean" and set(knn) >= {"top1_k5", "top5_k5"}
    assert (lin["optimizer"], lin["schedule"], lin["lr_end"], lin["batch_size"]) == (
        "adam",
        "exp",
        1e-6,
        1000,
    )
    assert lin["standardize"] is False and lin["weight_decay"] == 5e-6
    assert 10 < lin["top1"] <= lin["top5"] <= 100


def test_cli_finetune_with_a_preset_records_it(tiny_ckpt, tmp_path, capsys):
    argv = ["finetune", str(tiny_ckpt), "--preset", "intl_m_semisup_10pct", "--max-steps", "2",
            "--batch-size", "32", "--accelerator", "cpu", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    assert "preset intl_m_semisup_10pct" in capsys.readouterr().out
    saved = json.loads((tmp_path / "finetune.json").read_text())
    assert saved["steps"] == 2 and saved["epochs"] == 20 and saved["num_labelled"] == 140
    cfg = saved["config"]
    assert cfg["preset"] == "intl_m_semisup_10pct"
    assert (cfg["lr_backbone"], cfg["lr_head"], cfg["nesterov"], cfg["schedule"]) == (
        0.004,
        0.2,
        False,
        "step",
    )
    rec = saved["preset"]
    assert rec["overridden"] == ["batch_size"] and rec["resolved"]["batch_size"] == 32


# ----------------------------------------------------------- what the presets need underneath
def test_euclidean_knn_is_the_authors_majority_vote():
    """W-MSE's eval_knn: the k nearest by torch.cdist, the most frequent label (transcribed);
    where several labels are equally frequent ours takes the nearer ones' (checked apart)."""
    from specssl.core.knn import knn_predict

    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(300, 6, generator=g) * 3, torch.randn(80, 6, generator=g) * 3
    train_y = torch.randint(0, 4, (300,), generator=g)
    pred = knn_predict(train, train_y, test, 4, k=5, weighted=False, metric="euclidean").argmax(1)
    d = torch.cdist(test, train)
    nearest = d.topk(5, dim=1, largest=False).indices
    ties = 0
    for i in range(test.shape[0]):
        labels, counts = train_y[nearest[i]].unique(return_counts=True)
        tied = labels[counts == counts.max()]
        if len(tied) == 1:
            assert pred[i] == tied[0]
        else:
            ties += 1
            summed = [float(d[i, nearest[i]][train_y[nearest[i]] == c].sum()) for c in tied]
            assert pred[i] == tied[int(np.argmin(summed))]
    assert ties >= 5  # the tie-break was exercised
    with pytest.raises(ValueError, match="majority vote"):  # no temperature-weighted Euclidean
        knn_predict(train, train_y, test, 4, metric="euclidean")


def test_probe_exp_schedule_is_exponential_lr_stepped_per_epoch():
    from specssl.eval.probe import probe_lr_factor

    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-2)
    ref = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=(1e-6 / 1e-2) ** (1 / 500))
    for epoch in range(500):
        expected = opt.param_groups[0]["lr"]
        for step in (epoch * 7, epoch * 7 + 6):  # 7 steps per epoch
            assert 1e-2 * probe_lr_factor("exp", step, 7, 500, 1e-4) == pytest.approx(expected)
        opt.step()
        ref.step()
    x, y = gaussian_classes(2000, 16, 4, sep=3.0, seed=0)
    res = linear_probe(x[:1500], y[:1500], x[1500:], y[1500:], optimizer="adam", lr=1e-2,
                       lr_end=1e-6, schedule="exp", epochs=20, batch_size=500,
                       weight_decay=5e-6, standardize=False)  # fmt: skip
    assert res["top1"] >= 99.0
    with pytest.raises(ValueError, match="lr_end"):
        linear_probe(x, y, x, y, optimizer="adam", schedule="exp")


def test_lars_step_is_apex_larc_without_clipping():
    """CW-RGP's lincls.py wraps SGD in apex's LARC(trust_coefficient, clip=False): the
    linear-sgd protocol takes that step with the training system's LARS (eta = trust)."""
    from specssl.train.optim import LARS

    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, generator=g).requires_grad_()
    b = torch.zeros(3, requires_grad=True)  # ||b|| = 0: the plain SGD step (wd 0, the preset's)
    gw, gb = torch.randn(3, 4, generator=g), torch.randn(3, generator=g)
    w0 = w.detach().clone()
    w.grad, b.grad = gw.clone(), gb.clone()
    lr, trust = 0.4, 1e-3
    opt = LARS([w, b], lr=lr, momentum=0.9, weight_decay=0.0, eta=trust)
    opt.step()
    rate = trust * w0.norm() / (gw.norm() + 1e-8)  # apex's rule, its eps included
    torch.testing.assert_close(w.detach(), w0 - lr * rate * gw)
    torch.testing.assert_close(b.detach(), -lr * gb)


def test_linear_sgd_cosine_schedule_is_per_epoch():
    from specssl.eval.classifier import ClassifierModule

    class Backbone(nn.Linear):
        out_dim = 4

    cfg = LinearSGDConfig(epochs=10, schedule="cos", lr=0.4)  # batch 256: lr as it is
    module = ClassifierModule(Backbone(3, 4), 2, cfg.sgd(), normalize=nn.Identity(), frozen=True)
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "epoch"
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(lrs, [0.2 * (1 + np.cos(np.pi * e / 10)) for e in range(10)])
    with pytest.raises(ValueError, match="schedule"):
        LinearSGDConfig(schedule="exp").validate()
