"""Backbones by name (timm / torchvision), ViTs through the training engine, AdamW groups,
export in the source library's format, bf16 (tiny sizes, CPU)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from helpers import TINY_RUN
from torch import nn

from specssl.eval.checkpoint import load_checkpoint
from specssl.eval.export import export_backbone, export_timm, export_torchvision, load_exported
from specssl.methods import build_method
from specssl.models import (
    BACKBONE_PRESETS,
    ResNetBackbone,
    backbone_spec,
    build_backbone,
    register_backbone,
)
from specssl.train.config import MethodConfig, OptimConfig, load_config
from specssl.train.optim import build_optimizer, lr_multipliers, no_weight_decay_names
from specssl.train.run import pretrain

REPO = Path(__file__).resolve().parents[1]
#: A 2-block ViT for 32x32 images with 8x8 patches (16 tokens + CLS); backbone.width sets
#: its per-head width (embed_dim = 2 x width).
PICO = "vit_pico_test"
register_backbone(
    PICO, "timm:vit_tiny_patch16_224", replace=True, img_size=32, patch_size=8, depth=2, num_heads=2
)
PICO_GAP = "vit_pico_gap_test"
register_backbone(
    PICO_GAP,
    "timm:vit_tiny_patch16_224",
    replace=True,
    img_size=16,
    patch_size=4,
    depth=2,
    num_heads=2,
    global_pool="avg",
    class_token=False,
)
#: timm's kwargs of PICO at width 16 (what an export must carry).
PICO_KWARGS = {"img_size": 32, "patch_size": 8, "depth": 2, "num_heads": 2, "embed_dim": 32}

ENGINE = [
    *TINY_RUN,
    f"backbone.name={PICO}",
    "backbone.width=16",
    "data.batch_size=32",
    "data.subset=64",
    "data.val_subset=32",
    "optim.name=adamw",
    "optim.lr=0.0005",
    "optim.weight_decay=0.04",
    "optim.final_weight_decay=0.4",
    "optim.exclude_bias_and_norm=true",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
]


def _x(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ building


def test_timm_vit_builds_with_the_contract():
    net = build_backbone(PICO, width=16)
    spec = backbone_spec(net)
    assert isinstance(net, timm.models.vision_transformer.VisionTransformer)
    assert net.out_dim == spec.out_dim == 32 and net.embed_dim == 32  # 2 heads x width 16
    assert (spec.library, spec.model, spec.pool, spec.head) == (
        "timm",
        "vit_tiny_patch16_224",
        "token",
        "num_classes=0",
    )
    assert spec.kwargs == {**PICO_KWARGS, "dynamic_img_size": True}
    assert isinstance(net.head, nn.Identity) and net.num_classes == 0
    assert net(_x()).shape == (4, 32)
    # dynamic_img_size: a 16x16 multi-crop view is embedded too (position embeddings resampled)
    assert net(_x(size=16)).shape == (4, 32)
    # mean pooling without a CLS token
    gap = build_backbone(PICO_GAP, width=8)
    assert backbone_spec(gap).pool == "avg" and gap.cls_token is None
    assert gap(_x(size=16)).shape == (4, 16)


def test_cls_pooling_returns_the_normed_cls_token():
    net = build_backbone(PICO, width=16).eval()
    x = _x()
    tokens = net.forward_features(x)  # (B, 1 + 16, D) after the final norm
    assert tokens.shape == (4, 17, 32)
    torch.testing.assert_close(net(x), tokens[:, 0])


def test_width_and_names_are_checked():
    assert isinstance(build_backbone("resnet18", width=4), ResNetBackbone)  # unchanged
    assert backbone_spec(build_backbone("resnet18", width=4)).library == "specssl"
    assert build_backbone("vit_tiny_patch4_32", width=4).embed_dim == 12  # 3 heads x 4
    with pytest.raises(ValueError, match=r"backbone\.width"):
        build_backbone("timm:resnet10t", width=4)  # not a ViT: width 64 only
    with pytest.raises(ValueError, match="has no model"):
        build_backbone("timm:not_a_model")
    with pytest.raises(ValueError, match=r"timm:<model>.*tv:<model>"):
        build_backbone("vit_nonexistent")
    with pytest.raises(ValueError, match="zero_init_residual"):
        build_backbone(PICO, zero_init_residual=True)
    with pytest.raises(ValueError, match="already defined"):
        register_backbone("vit_tiny_patch4_32", "timm:vit_tiny_patch16_224")
    assert {"vit_tiny_patch4_32", "vit_small_patch4_32"} <= set(BACKBONE_PRESETS)


@pytest.fixture(scope="module")
def mobilenet():
    return build_backbone("tv:mobilenet_v3_small").eval()


def test_torchvision_model_by_name_drops_its_classifier(mobilenet):
    net = mobilenet
    spec = backbone_spec(net)
    assert isinstance(net, torchvision.models.MobileNetV3)
    assert spec.library == "torchvision" and spec.head_path == "classifier.3"
    assert isinstance(net.classifier[3], nn.Identity) and isinstance(net.classifier[2], nn.Identity)
    assert net.out_dim == 1024 and net(_x(2, 64)).shape == (2, 1024)
    assert not any(k.startswith("classifier.3.") for k in net.state_dict())


# ------------------------------------------------------------------------------ optimiser


def _pico_intl(width: int = 16):
    cfg = MethodConfig(
        name="intl", proj_hidden_dim=16, proj_output_dim=8, loss={"T": 4, "axis": "channel"}
    )
    return build_method(build_backbone(PICO, width=width), cfg)


def _decay_of(optimizer: torch.optim.Optimizer, method: nn.Module) -> dict[str, float]:
    ids = {id(p): n for n, p in method.named_parameters()}
    return {ids[id(p)]: g["weight_decay"] for g in optimizer.param_groups[:-1] for p in g["params"]}


def test_adamw_groups_exempt_norms_biases_and_tokens():
    method = _pico_intl()
    assert no_weight_decay_names(method) == {"backbone.pos_embed", "backbone.cls_token"}
    cfg = OptimConfig(name="adamw", weight_decay=0.05, exclude_bias_and_norm=True)
    optimizer = build_optimizer(method, nn.Linear(32, 3), cfg, lr=1e-3)
    assert isinstance(optimizer, torch.optim.AdamW)
    wd = _decay_of(optimizer, method)
    for name in (
        "backbone.pos_embed",
        "backbone.cls_token",
        "backbone.norm.weight",
        "backbone.blocks.0.norm1.bias",
        "backbone.blocks.0.attn.qkv.bias",
        "backbone.patch_embed.proj.bias",
    ):
        assert wd[name] == 0.0, name
    for name in ("backbone.blocks.0.attn.qkv.weight", "backbone.patch_embed.proj.weight"):
        assert wd[name] == 0.05, name
    assert optimizer.param_groups[-1]["weight_decay"] == 0.0  # the online probe
    # DINO's own grouping decays the tokens
    keep = OptimConfig(
        name="adamw", weight_decay=0.05, exclude_bias_and_norm=True, exclude_tokens=False
    )
    wd = _decay_of(build_optimizer(method, nn.Linear(32, 3), keep, lr=1e-3), method)
    assert wd["backbone.pos_embed"] == 0.05 and wd["backbone.norm.weight"] == 0.0


def test_weight_decay_follows_a_cosine_with_the_lr_clock():
    method = _pico_intl()
    cfg = OptimConfig(
        name="adamw", weight_decay=0.04, final_weight_decay=0.4, exclude_bias_and_norm=True
    )
    optimizer = build_optimizer(method, nn.Linear(32, 3), cfg, lr=1e-3)
    total = 10
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multipliers(optimizer, total, 2))
    decayed = [g for g in optimizer.param_groups if g.get("wd_schedule")]
    assert decayed and all(g["weight_decay"] == pytest.approx(0.04) for g in decayed)
    seen = []
    for _ in range(total):
        optimizer.step()
        schedule.step()
        seen.append(decayed[0]["weight_decay"])
    assert seen[4] == pytest.approx(0.04 + (0.4 - 0.04) * 0.5)  # step 5 of 10: half-way
    assert seen[-1] == pytest.approx(0.4)
    assert all(a <= b for a, b in itertools.pairwise(seen))
    # groups without decay stay at 0
    assert all(g["weight_decay"] == 0.0 for g in optimizer.param_groups if "wd_schedule" not in g)


# ------------------------------------------------------------------------------ bf16


def test_bf16_autocast_forward_of_vit_and_spectral_loss_on_cpu():
    method = _pico_intl().train()
    views = [_x(16, seed=1), _x(16, seed=2)]
    dtypes = []
    method.backbone.blocks[0].attn.qkv.register_forward_hook(
        lambda mod, args, out: dtypes.append(out.dtype)
    )
    torch.manual_seed(0)
    full = method(views)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(0)
        half = method(views)
    assert dtypes == [torch.float32] * 2 + [torch.bfloat16] * 2  # the ViT's matmuls in bf16
    assert half.loss.dtype == torch.float32 and torch.isfinite(half.loss)
    assert half.loss.item() == pytest.approx(full.loss.item(), rel=0.05)
    half.loss.backward()
    grads = [p.grad for p in method.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


# ------------------------------------------------------------------------------ engine


@pytest.fixture(scope="module")
def intl_run(tmp_path_factory):
    """One INTL step with the tiny ViT through the training engine, kNN and spectrum
    monitors on."""
    out = tmp_path_factory.mktemp("vit_intl")
    cfg = load_config(
        None,
        [
            *ENGINE,
            "method.name=intl",
            "method.loss={T: 4, axis: channel}",
            "trainer.max_steps=1",
            "monitor.knn_k=[5]",
            "monitor.knn_train_subset=64",
            "monitor.spectrum_samples=32",
            f"output_dir={out}",
            "run_name=intl",
        ],
    )
    return pretrain(cfg, logger=False)


def test_intl_trains_a_vit_through_the_engine_with_monitors(intl_run):
    assert intl_run.steps == 1
    assert intl_run.knn_initial is not None and intl_run.knn_final is not None
    for key in ("z/condition_indicator", "z/stable_rank", "zhat/condition_indicator"):
        assert key in intl_run.spectrum and intl_run.spectrum[key] == intl_run.spectrum[key]
    loaded = load_checkpoint(intl_run.run_dir)
    assert isinstance(loaded.backbone, timm.models.vision_transformer.VisionTransformer)
    assert loaded.backbone.embed_dim == 32
    assert loaded.config.optim.final_weight_decay == 0.4


def test_dino_multicrop_trains_a_vit_through_the_engine(tmp_path):
    cfg = load_config(
        None,
        [
            *ENGINE,
            "method.name=dino",
            "method.options.out_dim=32",
            "method.loss.warmup_teacher_temp_epochs=2",
            "data.num_small_crops=2",
            "data.small_crop_size=16",  # 16x16 local views: 4 tokens of 8x8 patches
            "optim.exclude_tokens=false",
            "trainer.max_steps=1",
            "monitor.knn_every=0",
            "monitor.knn_on_init=false",
            "monitor.spectrum_every=0",
            f"output_dir={tmp_path}",
            "run_name=dino",
        ],
    )
    result = pretrain(cfg, logger=False)
    assert result.steps == 1
    state = torch.load(tmp_path / "dino" / "checkpoints" / "last.ckpt", weights_only=False)
    weights = state["state_dict"]
    assert "method.target_backbone.pos_embed" in weights  # the EMA teacher is a timm ViT too
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


# ------------------------------------------------------------------------------ export


def test_timm_export_loads_strictly_into_timm(intl_run, tmp_path):
    loaded = load_checkpoint(intl_run.run_dir)
    x = _x(3, seed=5)
    with torch.no_grad():
        expected = loaded.backbone(x)
    folder = export_backbone(intl_run.run_dir, tmp_path / "export")  # auto -> timm
    assert (folder / "config.json").is_file() and (folder / "pytorch_model.bin").is_file()
    # the plain state dict into timm's constructor, strictly
    model = timm.create_model("vit_tiny_patch16_224", num_classes=0, **PICO_KWARGS).eval()
    state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)
        # timm's own loader reads the folder (architecture + model_args from config.json)
        local = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        torch.testing.assert_close(local(x), expected)
        torch.testing.assert_close(load_exported(folder)(x), expected)
    assert load_exported(folder).out_dim == 32
    # with the online probe as timm's classifier
    full = export_timm(intl_run.run_dir, tmp_path / "full", include_classifier=True)
    classes = loaded.num_classes
    model = timm.create_model("vit_tiny_patch16_224", num_classes=classes, **PICO_KWARGS)
    model.load_state_dict(torch.load(full / "pytorch_model.bin", weights_only=True), strict=True)
    with pytest.raises(ValueError, match="timm backbone"):
        export_torchvision(intl_run.run_dir, tmp_path / "bad.pth")


def test_torchvision_export_loads_strictly_into_the_constructor(mobilenet, tmp_path):
    net = mobilenet
    x = _x(2, 64)
    with torch.no_grad():
        expected = net(x)
    out = export_torchvision(net, tmp_path / "mnv3.pth")
    model = torchvision.models.get_model("mobilenet_v3_small", weights=None)
    model.set_submodule(backbone_spec(net).head_path, nn.Identity())
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), expected)
        torch.testing.assert_close(load_exported(out)(x), expected)


def test_backbone_kwargs_reach_the_timm_constructor():
    """``backbone.kwargs`` are the model's constructor arguments (here stochastic depth)."""
    from specssl.train.run import build_run

    _, module = build_run(load_config(None, [*ENGINE, "backbone.kwargs={drop_path_rate: 0.1}"]))
    last = module.backbone.blocks[-1].drop_path1  # timm: the rate grows linearly to the last
    assert isinstance(last, timm.layers.DropPath) and last.drop_prob == pytest.approx(0.1)
    _, plain = build_run(load_config(None, ENGINE))
    assert not isinstance(plain.backbone.blocks[-1].drop_path1, timm.layers.DropPath)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["backbone.name=no_such_net"], "unknown backbone 'no_such_net'"),
        (["backbone.kwargs={drop_path_rate: 0.1}"], "takes no constructor kwargs"),
        ([f"backbone.name={PICO}", "backbone.kwargs={no_such_arg: 1}"], "no_such_arg"),
    ],
)
def test_bad_backbone_is_one_config_error(overrides, message):
    from specssl.core import ConfigError
    from specssl.train.run import build_run

    with pytest.raises(ConfigError, match="config key 'backbone'") as err:
        build_run(load_config(None, [*TINY_RUN, *overrides]))
    assert message in str(err.value) and "\n" not in str(err.value)
