"""Tests of specssl.models: torchvision-compatible backbones, MLP heads, momentum targets."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from specssl.models import (
    MLPHead,
    backbone_from_state_dict,
    build_backbone,
    cosine_momentum,
    count_parameters,
    ema_update_,
    load_torchvision_state_dict,
    make_target,
    to_torchvision_state_dict,
)

META = torch.device("meta")  # as a context manager: build modules without allocating weights


def _torchvision_backbone(name: str) -> nn.Module:
    net = getattr(torchvision.models, name)(weights=None)
    net.fc = nn.Identity()
    return net


# ---------------------------------------------------------------------------------------------
# backbones


@pytest.mark.parametrize("name,expansion", [("resnet18", 1), ("resnet50", 4)])
@pytest.mark.parametrize("width", [16, 64])
@pytest.mark.parametrize("cifar_stem,size,final_hw", [(True, 32, 4), (False, 64, 2)])
def test_backbone_output_shapes(name, expansion, width, cifar_stem, size, final_hw):
    torch.manual_seed(0)
    net = build_backbone(name, cifar_stem=cifar_stem, width=width)
    assert net.out_dim == 8 * width * expansion
    seen: dict[str, torch.Size] = {}

    def record(name: str):
        def hook(module, inputs, output) -> None:
            seen[name] = output.shape

        return hook

    net.layer1.register_forward_hook(record("layer1"))
    net.layer4.register_forward_hook(record("layer4"))
    with torch.no_grad():
        out = net.eval()(torch.randn(2, 3, size, size))
    assert out.shape == (2, net.out_dim)
    assert torch.isfinite(out).all()
    # CIFAR stem keeps full resolution into layer1 (32x32); the ImageNet stem divides by 4.
    s1 = size if cifar_stem else size // 4
    assert seen["layer1"] == (2, width * expansion, s1, s1)
    assert seen["layer4"] == (2, net.out_dim, final_hw, final_hw)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_stage_widths_scale_with_width(name):
    net = build_backbone(name, width=16)
    expansion = 4 if name == "resnet50" else 1
    for i, stage in enumerate([net.layer1, net.layer2, net.layer3, net.layer4]):
        planes = 16 * 2**i
        first = stage[0]
        assert first.conv1.out_channels == planes
        last_conv = first.conv3 if expansion == 4 else first.conv2
        assert last_conv.out_channels == planes * expansion
    assert net.conv1.out_channels == 16


def test_cifar_stem_structure():
    with META:
        net, std = build_backbone("resnet18", cifar_stem=True), build_backbone("resnet18")
    assert net.conv1.kernel_size == (3, 3)
    assert net.conv1.stride == (1, 1)
    assert net.conv1.padding == (1, 1)
    assert net.conv1.bias is None
    assert isinstance(net.maxpool, nn.Identity)
    assert isinstance(net.fc, nn.Identity)
    assert std.conv1.kernel_size == (7, 7) and std.conv1.stride == (2, 2)
    assert isinstance(std.maxpool, nn.MaxPool2d)


def test_param_count_resnet18_cifar_equals_torchvision_minus_fc_and_stem():
    with META:
        tv = torchvision.models.resnet18(weights=None)
    fc = tv.fc.weight.numel() + tv.fc.bias.numel()  # 512 * 1000 + 1000
    stem_diff = 64 * 3 * (7 * 7 - 3 * 3)  # the 7x7 -> 3x3 conv1, no bias either way
    expected = count_parameters(tv) - fc - stem_diff
    assert expected == 11_689_512 - 513_000 - 7_680
    with META:
        cifar, standard = build_backbone("resnet18", cifar_stem=True), build_backbone("resnet18")
    assert count_parameters(cifar) == expected
    assert count_parameters(standard) == count_parameters(tv) - fc


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_state_dict_keys_and_shapes_equal_torchvision(name):
    with META:  # shapes only: skip the cost of initialising ~25M weights
        ours = build_backbone(name, width=64).state_dict()
        ref_net = getattr(torchvision.models, name)(weights=None)
    assert all(v.is_meta for v in ours.values())  # built on the ambient device
    ref = {k: v.shape for k, v in ref_net.state_dict().items() if not k.startswith("fc.")}
    assert list(ours) == list(ref)  # same keys, same order
    assert {k: v.shape for k, v in ours.items()} == ref


def test_cifar_stem_export_differs_only_in_conv1():
    with META:
        ours = build_backbone("resnet18", cifar_stem=True).state_dict()
        ref = _torchvision_backbone("resnet18").state_dict()
    assert set(ours) == set(ref)
    differing = [k for k in ours if ours[k].shape != ref[k].shape]
    assert differing == ["conv1.weight"]
    assert ours["conv1.weight"].shape == (64, 3, 3, 3)


def test_export_loads_strictly_into_torchvision_and_computes_the_same():
    torch.manual_seed(0)
    net = build_backbone("resnet18", width=64)
    # make BN statistics non-trivial so equality of outputs is a real check
    net.train()
    net(torch.randn(4, 3, 32, 32))
    net.eval()
    exported = to_torchvision_state_dict(net)
    tv = _torchvision_backbone("resnet18")
    assert list(exported) == list(tv.state_dict())  # fc is Identity: no fc.* on either side
    tv.load_state_dict(exported, strict=True)
    tv.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(tv(x), net(x))


def test_export_is_a_detached_copy():
    net = build_backbone("resnet18", width=16)
    exported = to_torchvision_state_dict(net)
    exported["conv1.weight"].zero_()
    assert net.conv1.weight.abs().sum() > 0
    assert not any(v.requires_grad for v in exported.values())


def test_round_trip_infers_architecture_and_restores_weights():
    torch.manual_seed(0)
    for name, stem, width in [("resnet18", True, 16), ("resnet50", False, 16)]:
        net = build_backbone(name, cifar_stem=stem, width=width).eval()
        back = backbone_from_state_dict(to_torchvision_state_dict(net)).eval()
        assert (back.name, back.cifar_stem, back.width) == (name, stem, width)
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(back(x), net(x), rtol=0, atol=0)


def test_load_torchvision_state_dict_accepts_full_torchvision_dict():
    tv = torchvision.models.resnet18(weights=None)  # has fc.*, which must be ignored
    net = load_torchvision_state_dict(build_backbone("resnet18"), tv.state_dict())
    torch.testing.assert_close(net.layer3[1].conv2.weight, tv.layer3[1].conv2.weight)


def test_load_rejects_mismatched_dicts():
    small = to_torchvision_state_dict(build_backbone("resnet18", width=16))
    with pytest.raises(ValueError, match="shape mismatches"):
        load_torchvision_state_dict(build_backbone("resnet18", width=32), small)
    partial = dict(small)
    del partial["layer2.0.bn1.running_mean"]
    with pytest.raises(ValueError, match=r"layer2\.0\.bn1\.running_mean"):
        load_torchvision_state_dict(build_backbone("resnet18", width=16), partial)
    with pytest.raises(ValueError, match="resnet50"):
        backbone_from_state_dict(small, name="resnet50")


@pytest.mark.parametrize(
    "kwargs", [{"name": "resnet101"}, {"width": 0}, {"width": 1.5}, {"width": True}]
)
def test_build_backbone_rejects_bad_arguments(kwargs):
    kwargs = {"name": "resnet18", **kwargs}
    with pytest.raises(ValueError):
        build_backbone(kwargs.pop("name"), **kwargs)


@pytest.mark.parametrize(
    "name,block,last_bn", [("resnet18", BasicBlock, "bn2"), ("resnet50", Bottleneck, "bn3")]
)
def test_zero_init_residual(name, block, last_bn):
    net = build_backbone(name, width=16, zero_init_residual=True)
    blocks = [m for m in net.modules() if isinstance(m, block)]
    assert len(blocks) == (8 if name == "resnet18" else 16)
    for b in blocks:
        assert torch.count_nonzero(getattr(b, last_bn).weight) == 0
        assert torch.all(b.bn1.weight == 1)  # only the last BN of the branch is zeroed
    default = build_backbone(name, width=16)
    assert all(
        torch.all(getattr(b, last_bn).weight == 1)
        for b in default.modules()
        if isinstance(b, block)
    )
    # With a zero residual branch, a block without downsampling is relu(identity).
    b = net.layer1[1]
    x = torch.randn(2, b.conv1.in_channels, 8, 8)
    torch.testing.assert_close(b.eval()(x), torch.relu(x))


# ---------------------------------------------------------------------------------------------
# heads


def test_mlp_head_projector_structure():
    head = MLPHead(32, 64, 16, num_layers=3)
    types = [type(m) for m in head]
    assert types == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear]
    assert (head[0].in_features, head[0].out_features) == (32, 64)
    assert (head[3].in_features, head[3].out_features) == (64, 64)
    assert (head[6].in_features, head[6].out_features) == (64, 16)
    assert head[0].bias is None and head[3].bias is None  # BN shift makes it redundant
    assert head[6].bias is not None
    assert head[1].num_features == 64 and head[1].affine
    assert head(torch.randn(5, 32)).shape == (5, 16)


def test_mlp_head_predictor_and_single_layer():
    pred = MLPHead(16, 8, 16, num_layers=2)
    assert [type(m) for m in pred] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    single = MLPHead(16, 999, 4, num_layers=1, last_bias=False)
    assert len(single) == 1 and isinstance(single[0], nn.Linear)
    assert (single[0].in_features, single[0].out_features) == (16, 4)
    assert single[0].bias is None


def test_mlp_head_options():
    no_bn = MLPHead(8, 8, 4, num_layers=3, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in no_bn)
    assert all(m.bias is not None for m in no_bn if isinstance(m, nn.Linear))
    simsiam = MLPHead(8, 8, 4, num_layers=3, last_batch_norm=True)
    assert isinstance(simsiam[-1], nn.BatchNorm1d) and not simsiam[-1].affine
    assert isinstance(simsiam[-2], nn.Linear)
    out = simsiam.train()(torch.randn(64, 8))
    # affine-free BN in train mode: every output channel has zero mean, unit (biased) var
    torch.testing.assert_close(out.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    "args", [(0, 8, 8, 3), (8, 0, 8, 3), (8, 8, 0, 3), (8, 8, 8, 0), (8, 8.0, 8, 3)]
)
def test_mlp_head_rejects_bad_dims(args):
    with pytest.raises(ValueError):
        MLPHead(*args)


# ---------------------------------------------------------------------------------------------
# momentum


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99, abs=1e-12)
    assert cosine_momentum(100, 100, 0.99) == pytest.approx(1.0, abs=1e-12)
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995, abs=1e-12)
    assert cosine_momentum(25, 100, 0.99) == pytest.approx(
        1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2, abs=1e-12
    )
    assert cosine_momentum(-5, 100, 0.99) == pytest.approx(0.99)  # clamped
    assert cosine_momentum(500, 100, 0.99) == pytest.approx(1.0)
    assert cosine_momentum(10, 20, 0.9, final_tau=0.95) < 0.95
    taus = [cosine_momentum(k, 37, 0.996) for k in range(38)]
    assert all(a <= b for a, b in itertools.pairwise(taus))
    assert cosine_momentum(0, 0, 0.99) == 1.0
    with pytest.raises(ValueError):
        cosine_momentum(0, -1, 0.99)
    with pytest.raises(ValueError):
        cosine_momentum(0, 10, 1.5)
    with pytest.raises(ValueError):
        cosine_momentum(0, 10, 0.9, final_tau=float("nan"))


def _small_net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_make_target_is_a_frozen_independent_copy():
    torch.manual_seed(0)
    online = _small_net()
    online[1].eval()
    target = make_target(online)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    assert target.training and not target[1].training  # flags mirror the source
    for (_, a), (_, b) in zip(target.named_parameters(), online.named_parameters(), strict=True):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


def test_ema_update_against_hand_computation():
    torch.manual_seed(0)
    online = _small_net()
    target = make_target(online)
    with torch.no_grad():
        for p in target.parameters():
            p.normal_()
    online.train()(torch.randn(16, 3))  # moves online BN running stats and counter
    before = {k: v.clone() for k, v in target.state_dict().items()}
    src = dict(online.state_dict())

    ema_update_(target, online, 0.9)
    params = dict(target.named_parameters())
    for k, p in params.items():
        torch.testing.assert_close(p, 0.9 * before[k] + 0.1 * src[k])
        assert not p.requires_grad and p.grad_fn is None
    for k, b in target.named_buffers():
        assert torch.equal(b, src[k]), k  # buffers are copied, not averaged
    assert int(target[1].num_batches_tracked) == 1

    snap = {k: v.clone() for k, v in target.state_dict().items()}
    ema_update_(target, online, 1.0)
    assert all(torch.equal(v, snap[k]) for k, v in target.state_dict().items())
    ema_update_(target, online, 0.0)
    assert all(torch.equal(v, src[k]) for k, v in target.state_dict().items())


def test_ema_update_on_backbone_keeps_online_untouched():
    online = build_backbone("resnet18", width=8, cifar_stem=True)
    target = make_target(online)
    with torch.no_grad():
        for p in target.parameters():
            p.zero_()
    ref = {k: v.clone() for k, v in online.state_dict().items()}
    ema_update_(target, online, 0.75)
    assert all(torch.equal(v, ref[k]) for k, v in online.state_dict().items())
    torch.testing.assert_close(target.layer4[1].conv2.weight, 0.25 * ref["layer4.1.conv2.weight"])


def test_ema_update_rejects_mismatch():
    online = _small_net()
    other = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 2))
    # parameter names agree ("1.weight") but the buffers differ: BN has running stats
    with pytest.raises(ValueError, match=r"1\.running_mean"):
        ema_update_(make_target(other), online, 0.5)
    wider = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"'0\.weight'.*shape"):
        ema_update_(make_target(wider), online, 0.5)
    renamed = nn.Sequential(nn.Identity(), *list(_small_net()))
    with pytest.raises(ValueError, match=r"'1\.weight' vs '0\.weight'"):
        ema_update_(make_target(renamed), online, 0.5)
    with pytest.raises(ValueError, match="tau"):
        ema_update_(make_target(online), online, 1.5)


def test_count_parameters_trainable_only():
    net = MLPHead(4, 8, 2, num_layers=2)  # 4*8 + (8+8) + 8*2 + 2
    assert count_parameters(net) == 32 + 16 + 18
    net[0].requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == 16 + 18
