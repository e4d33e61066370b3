"""Backbones by name: specssl's ResNets, and any timm or torchvision model.

:func:`build_backbone` is the one entry point (``backbone.name`` of a run):

* ``resnet18`` / ``resnet34`` / ``resnet50`` return a :class:`ResNetBackbone`: a
  ``torchvision.models.ResNet`` whose classifier is ``nn.Identity`` (forward gives pooled
  features), with an optional CIFAR stem and a configurable base width. At ``width=64`` its
  parameter and buffer names and shapes are exactly those of ``torchvision.models.resnet{18,34,
  50}()`` minus ``fc.*`` (with the CIFAR stem only ``conv1.weight`` differs in shape: 3×3
  instead of 7×7), so a backbone can be exported as a plain torchvision state dict
  (:func:`to_torchvision_state_dict`) and reloaded strictly (:func:`load_torchvision_state_dict`,
  :func:`backbone_from_state_dict`).
* ``timm:<model>``, ``tv:<model>`` and the presets of
  :data:`specssl.models.external.BACKBONE_PRESETS` (e.g. ``vit_tiny_patch4_32``, a ViT for
  32×32 images) return the library's own module: see :mod:`specssl.models.external`.

The backbone contract, kept by all of them and relied on by every method, monitor and
evaluation: ``forward(x: (B, 3, H, W)) -> (B, out_dim)`` pooled features (no classifier);
``out_dim`` (int) the feature dimension; ``backbone_spec``
(:class:`~specssl.models.external.BackboneSpec`) what the backbone is: library, model name,
constructor kwargs, pooling (global average / CLS token / token mean) and how its classifier
head was removed; ``state_dict()`` in the source library's layout (what the exports write).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from specssl.models.external import (
    BACKBONE_PRESETS,
    BackboneSpec,
    build_external_backbone,
    is_external_name,
)

__all__ = [
    "BACKBONE_CONFIGS",
    "ResNetBackbone",
    "backbone_from_state_dict",
    "backbone_spec",
    "build_backbone",
    "load_torchvision_state_dict",
    "to_torchvision_state_dict",
]

#: name -> (residual block, blocks per stage); the torchvision ResNet-18/34/50 layouts.
BACKBONE_CONFIGS: dict[str, tuple[type[BasicBlock | Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNetBackbone(ResNet):
    """A torchvision ResNet with scaled widths, optional CIFAR stem and ``fc = nn.Identity``.

    Stages have ``width, 2·width, 4·width, 8·width`` planes (times the block expansion at the
    stage outputs); ``width=64`` is the standard ResNet. The stages are made by torchvision's
    own ``ResNet._make_layer`` with torchvision's blocks, so module names match torchvision.

    Standard stem: ``conv1`` 7×7 stride 2 padding 3, then 3×3 stride-2 max-pool (ImageNet).
    CIFAR stem: ``conv1`` 3×3 stride 1 padding 1 and ``maxpool = nn.Identity`` (for 32×32
    inputs, as in the CIFAR recipes of solo-learn and the INTL authors).

    Args:
        block: ``BasicBlock`` or ``Bottleneck`` (torchvision's).
        layers: number of blocks in each of the four stages.
        cifar_stem: use the CIFAR stem described above.
        width: base width (planes of the first stage), ``>= 1``.
        zero_init_residual: zero the last BN scale (gamma) of every residual branch, so each
            block starts as the identity (Goyal et al., 2017).

    Attributes:
        out_dim: feature dimension ``8 · width · block.expansion`` (512 / 2048 at width 64).
        name: the configuration name when built by :func:`build_backbone`, else ``None``.
        cifar_stem, width: as given.

    Forward: ``x: (B, 3, H, W)`` -> ``(B, out_dim)`` features after global average pooling.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int] | list[int],
        *,
        cifar_stem: bool = False,
        width: int = 64,
        zero_init_residual: bool = False,
    ) -> None:
        if block not in (BasicBlock, Bottleneck):
            raise ValueError(f"block must be torchvision's BasicBlock or Bottleneck, got {block}")
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be 4 positive block counts, got {list(layers)}")
        _check_width(width)
        # ResNet.__init__ hard-codes the 64/128/256/512 widths, so set up the attributes that
        # its _make_layer reads ourselves and build the modules here, in torchvision's order.
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # Bottleneck inner width = planes · base_width / 64 = planes
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = (
            nn.Identity() if cifar_stem else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        )
        self.layer1 = self._make_layer(block, width, int(layers[0]))
        self.layer2 = self._make_layer(block, 2 * width, int(layers[1]), stride=2)
        self.layer3 = self._make_layer(block, 4 * width, int(layers[2]), stride=2)
        self.layer4 = self._make_layer(block, 8 * width, int(layers[3]), stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()

        self.out_dim: int = 8 * width * block.expansion
        self.width = width
        self.cifar_stem = cifar_stem
        self.name: str | None = None

        # The same initialisation as torchvision's ResNet.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def extra_repr(self) -> str:
        return f"width={self.width}, cifar_stem={self.cifar_stem}, out_dim={self.out_dim}"

    @property
    def backbone_spec(self) -> BackboneSpec:
        """The contract's description: library ``"specssl"``, global average pooling, ``fc``
        replaced by ``nn.Identity`` (state dict in torchvision's ResNet layout)."""
        return BackboneSpec(
            library="specssl",
            model=self.name or "resnet",
            kwargs={"width": self.width, "cifar_stem": self.cifar_stem},
            pool="avg",
            head="fc -> Identity",
            out_dim=self.out_dim,
            name=self.name or "resnet",
            head_path="fc",
        )


def _check_width(width: int) -> None:
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")


def build_backbone(
    name: str,
    *,
    cifar_stem: bool = False,
    width: int = 64,
    zero_init_residual: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """A feature extractor by name (the backbone contract of the module docstring).

    Args:
        name: ``"resnet18"`` / ``"resnet34"`` / ``"resnet50"`` (specssl's ResNets, see
            :data:`BACKBONE_CONFIGS`), ``"timm:<model>"``, ``"tv:<model>"`` or a preset of
            :data:`~specssl.models.external.BACKBONE_PRESETS`.
        cifar_stem: ResNets: 3×3 stride-1 ``conv1`` and no max-pool (for 32×32 images).
            Ignored by timm / torchvision models (a ViT's stem is its patch embedding).
        width: ResNets: base width; 64 is standard, 16 or 32 suit CPU-scale runs, all four
            stages scale with it (``width, 2w, 4w, 8w``). timm ViTs: the per-head width
            (``embed_dim = num_heads · width``; 64 keeps the model's own). Other models: 64.
        zero_init_residual: ResNets: zero the last BN gamma of every residual branch.
        **kwargs: constructor arguments of a timm / torchvision model (override a preset's).

    Returns:
        A module mapping ``(B, 3, H, W)`` to ``(B, out_dim)``: a :class:`ResNetBackbone`
        (``out_dim = 8 · width`` for resnet18/34, ``32 · width`` for resnet50) or the timm /
        torchvision module with ``out_dim`` and ``backbone_spec`` set.
    """
    if name in BACKBONE_CONFIGS:
        if kwargs:
            raise ValueError(
                f"backbone {name!r} (specssl ResNet) takes no constructor kwargs, got "
                f"{sorted(kwargs)}; use 'tv:{name}' for torchvision's constructor"
            )
        block, layers = BACKBONE_CONFIGS[name]
        net = ResNetBackbone(
            block, layers, cifar_stem=cifar_stem, width=width, zero_init_residual=zero_init_residual
        )
        net.name = name
        return net
    if is_external_name(name):
        _check_width(width)
        if zero_init_residual:
            raise ValueError(
                f"config key 'backbone.zero_init_residual': specssl ResNets only; for {name!r} "
                "pass the library's own option as a constructor argument of a preset"
            )
        return build_external_backbone(name, width=width, kwargs=kwargs)
    raise ValueError(
        f"unknown backbone {name!r}; choose from {sorted(BACKBONE_CONFIGS)}, a preset "
        f"{sorted(BACKBONE_PRESETS)}, 'timm:<model>' (any timm.create_model name) or "
        "'tv:<model>' (a torchvision classification model)"
    )


def backbone_spec(backbone: nn.Module) -> BackboneSpec:
    """The :class:`~specssl.models.external.BackboneSpec` of a built backbone.

    Raises:
        ValueError: ``backbone`` was not built by :func:`build_backbone` (no spec).
    """
    spec = getattr(backbone, "backbone_spec", None)
    if not isinstance(spec, BackboneSpec):
        raise ValueError(
            f"{type(backbone).__name__} is not a specssl backbone (no backbone_spec); build it "
            "with specssl.models.build_backbone"
        )
    return spec


def to_torchvision_state_dict(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's weights as a plain torchvision ResNet state dict without ``fc.*``.

    Keys and shapes are those of ``torchvision.models.resnetXX().state_dict()`` minus the
    classifier (for width 64; with the CIFAR stem ``conv1.weight`` is ``(w, 3, 3, 3)``).
    Tensors are detached CPU copies, so the result can be saved with ``torch.save`` and
    loaded by code that knows nothing of specssl.

    Raises:
        ValueError: if ``backbone`` is not a torchvision ``ResNet`` or its ``fc`` has weights.
    """
    if not isinstance(backbone, ResNet):
        raise ValueError(f"expected a torchvision ResNet backbone, got {type(backbone).__name__}")
    state = backbone.state_dict()
    fc_keys = [k for k in state if k.startswith("fc.")]
    if fc_keys:
        raise ValueError(f"backbone has a classifier ({fc_keys}); replace fc with nn.Identity")
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _strip_classifier(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state_dict.items() if not k.startswith("fc.")}


def load_torchvision_state_dict(
    backbone: nn.Module, state_dict: Mapping[str, torch.Tensor]
) -> nn.Module:
    """Load a torchvision-layout ResNet state dict into ``backbone`` strictly; returns it.

    ``fc.*`` entries (a full torchvision classifier) are ignored; every other key must match
    in name and shape, otherwise ``ValueError`` lists the missing / unexpected / mis-shaped
    keys.
    """
    state = _strip_classifier(state_dict)
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        raise ValueError(
            "state dict does not match the backbone: "
            f"missing={missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected={unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
            f"shape mismatches={shapes[:5]}{'...' if len(shapes) > 5 else ''}"
        )
    backbone.load_state_dict(state, strict=True)
    return backbone


def backbone_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], name: str | None = None
) -> ResNetBackbone:
    """Rebuild a backbone from a torchvision-layout state dict (as exported) and load it.

    The base width and stem are read from ``conv1.weight`` (``(width, 3, k, k)``, ``k = 3``
    means CIFAR stem); the architecture from the block counts and the presence of ``conv3``
    unless ``name`` is given.
    """
    if "conv1.weight" not in state_dict:
        raise ValueError("not a ResNet state dict: no 'conv1.weight'")
    w = state_dict["conv1.weight"]
    if w.dim() != 4 or w.shape[1] != 3 or w.shape[2] not in (3, 7):
        raise ValueError(f"unexpected conv1.weight shape {tuple(w.shape)}")
    width, cifar_stem = int(w.shape[0]), int(w.shape[2]) == 3
    if name is None:
        bottleneck = "layer1.0.conv3.weight" in state_dict
        counts = []
        for stage in range(1, 5):
            prefix = f"layer{stage}."
            idx = {int(k[len(prefix) :].split(".")[0]) for k in state_dict if k.startswith(prefix)}
            counts.append(len(idx))
        for cand, (block, layers) in BACKBONE_CONFIGS.items():
            if (block is Bottleneck) == bottleneck and tuple(counts) == layers:
                name = cand
                break
        else:
            raise ValueError(f"no known ResNet has blocks {counts} (bottleneck={bottleneck})")
    net = build_backbone(name, cifar_stem=cifar_stem, width=width)
    try:
        load_torchvision_state_dict(net, state_dict)
    except ValueError as err:
        raise ValueError(
            f"state dict does not fit {name} (width={width}, cifar_stem={cifar_stem}): {err}"
        ) from err
    return net
