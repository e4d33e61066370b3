"""Methods (networks + loss + view pairing) and the kNN evaluator."""

from __future__ import annotations

import math

import pytest
import torch

from specssl.core.knn import knn_accuracy, knn_predict
from specssl.methods import METHODS, build_method
from specssl.models import build_backbone
from specssl.train.config import ConfigError, MethodConfig

LOSS_KWARGS = {
    "intl": {"T": 4, "axis": "channel"},
    "intl_m": {"T": 4, "axis": "channel"},
    "iternorm": {"T": 4, "axis": "channel"},
    "st_power": {"p": 0.5, "axis": "batch"},
    "wmse": {"w_size": 16, "axis": "batch"},
    "cwrgp": {"groups": 2, "axis": "channel"},
    "shuffled_dbn": {"groups": 2},
    "simclr": {"temperature": 0.2},
    "mocov2": {"temperature": 0.2},
}
#: Methods whose loss whitens / spectrally transforms the embedding (the spectrum monitor must
#: show Ẑ); others may expose a simpler transform (standardisation, l2 normalisation) or None.
SPECTRAL = {"intl", "intl_m", "iternorm", "st_power", "wmse", "cwrgp", "shuffled_dbn", "zero_cl"}


def tiny_method(name: str):
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", cifar_stem=True, width=4)
    cfg = MethodConfig(
        name=name, proj_hidden_dim=32, proj_output_dim=8, loss=LOSS_KWARGS.get(name, {})
    )
    return build_method(backbone, cfg)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_one_step_and_exposes_its_transform(name):
    method = tiny_method(name)
    views = [torch.randn(32, 3, 16, 16), torch.randn(32, 3, 16, 16)]
    out = method(views)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    online = 1 if name == "intl_m" else 2  # INTL-M: view 0 goes through the target only
    assert [z.shape for z in out.embeddings] == [(32, 8)] * online
    assert [f.shape for f in out.features] == [(32, method.backbone.out_dim)] * online
    out.loss.backward()
    grads = [p.grad for p in method.backbone.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    transform = method.spectral_transform()
    assert transform is not None or name not in SPECTRAL
    if transform is not None:
        zhat = transform(torch.randn(32, 8))
        assert zhat.shape == (32, 8) and method.spectral_axis in ("batch", "channel")


@pytest.mark.parametrize("name", ["intl", "barlow_twins", "byol"])
def test_unknown_method_option_is_a_one_line_config_error(name):
    backbone = build_backbone("resnet18", cifar_stem=True, width=4)
    cfg = MethodConfig(name=name, proj_hidden_dim=32, proj_output_dim=8, options={"queue": 9})
    with pytest.raises(ConfigError, match=r"method\.options\.queue.*unknown option"):
        build_method(backbone, cfg)


def test_intl_m_target_follows_online_by_ema_and_gets_no_gradient():
    method = tiny_method("intl_m")
    assert all(not p.requires_grad for p in method.target_backbone.parameters())
    online = next(method.backbone.parameters())
    target = next(method.target_backbone.parameters())
    torch.testing.assert_close(online, target)
    with torch.no_grad():
        online.add_(1.0)
    before = target.clone()
    method.on_train_step_end(step=0, total_steps=10)
    tau = 0.99
    torch.testing.assert_close(target, tau * before + (1 - tau) * online)
    assert method.tau == pytest.approx(0.99)  # cosine schedule at step 0
    method.on_train_step_end(step=5, total_steps=10)
    assert method.tau == pytest.approx(1 - 0.01 * (math.cos(math.pi * 0.5) + 1) / 2)


def test_unknown_method_and_bad_loss_key_are_config_errors():
    backbone = build_backbone("resnet18", cifar_stem=True, width=4)
    with pytest.raises(ConfigError, match="unknown method"):
        build_method(backbone, MethodConfig(name="simclr2"))
    with pytest.raises(ConfigError, match=r"method\.loss"):
        build_method(backbone, MethodConfig(name="intl", loss={"temperature": 0.1}))


def _brute_force_knn(train, train_y, test, k, t, num_classes, weighted):
    train = torch.nn.functional.normalize(train, dim=1)
    test = torch.nn.functional.normalize(test, dim=1)
    out = torch.zeros(test.shape[0], num_classes)
    for i, q in enumerate(test):
        sims = torch.tensor([float(q @ x) for x in train])
        order = sorted(range(len(sims)), key=lambda j: -float(sims[j]))[:k]
        for j in order:
            out[i, int(train_y[j])] += math.exp(float(sims[j]) / t) if weighted else 1.0
    return out


@pytest.mark.parametrize("weighted", [True, False])
def test_knn_scores_match_a_brute_force_loop_and_chunking_changes_nothing(weighted):
    gen = torch.Generator().manual_seed(0)
    train, test = torch.randn(60, 5, generator=gen), torch.randn(13, 5, generator=gen)
    train_y = torch.randint(0, 4, (60,), generator=gen)
    ref = _brute_force_knn(train, train_y, test, 7, 0.1, 4, weighted)
    got = knn_predict(train, train_y, test, 4, k=7, temperature=0.1, weighted=weighted)
    tiny_chunks = knn_predict(
        train, train_y, test, 4, k=7, temperature=0.1, weighted=weighted, memory_budget=60
    )
    torch.testing.assert_close(got, tiny_chunks, rtol=1e-5, atol=1e-5)
    if weighted:
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    else:
        torch.testing.assert_close(got.round(), ref)  # vote counts (tie-break is < 1e-5)


def test_knn_accuracy_on_separable_clusters_and_bad_shapes():
    gen = torch.Generator().manual_seed(1)
    centers = torch.eye(3) * 10
    train_y = torch.arange(3).repeat(20)
    test_y = torch.arange(3).repeat(5)
    train = centers[train_y] + torch.randn(60, 3, generator=gen)
    test = centers[test_y] + torch.randn(15, 3, generator=gen)
    acc = knn_accuracy(train, train_y, test, test_y, 3, k=5)
    assert acc["top1"] == 100.0 and acc["top5"] == 100.0
    shuffled = knn_accuracy(train, train_y[torch.randperm(60, generator=gen)], test, test_y, 3)
    assert shuffled["top1"] < 80.0
    with pytest.raises(ValueError, match="labels"):
        knn_predict(train, train_y[:10], test, 3)
    with pytest.raises(ValueError, match="feature dims"):
        knn_predict(train, train_y, test[:, :2], 3)
