"""Backbones from timm and torchvision by name, behind specssl's backbone contract.

Names (``backbone.name``):

* ``timm:<model>`` — any ``timm.create_model`` name (``timm:vit_small_patch16_224``,
  ``timm:convnext_atto``, ...), built with ``num_classes=0``: timm's own way of removing the
  classifier (``head = nn.Identity``; the forward ends with timm's pooling, e.g. the CLS token
  or the token mean of a ViT, then its ``fc_norm`` / pre-logits if any). Vision Transformers
  get ``dynamic_img_size=True`` unless told otherwise, so multi-crop views of another size
  (96 beside 224) are embedded with bicubically resampled position embeddings (DINO's
  ``interpolate_pos_encoding``); at the native size nothing is resampled.
* ``tv:<model>`` — any torchvision classification model (``torchvision.models.list_models(
  module=torchvision.models)``: ``tv:vit_b_16``, ``tv:convnext_tiny``, ``tv:resnet50``, ...),
  built with ``weights=None``; its last ``nn.Linear`` (the classifier) and the ``nn.Dropout``
  layers directly before it in the same ``nn.Sequential`` become ``nn.Identity``.
* a preset of :data:`BACKBONE_PRESETS` (``vit_tiny_patch4_32``, ...) — one of the above with
  fixed constructor arguments, e.g. a ViT for 32×32 images; :func:`register_backbone` adds
  your own.

``backbone.width``: 64 (the default) builds the model as its library defines it. For a timm
Vision Transformer another width sets the per-head width: ``embed_dim = num_heads · width``
(64 is the head width of ViT-Ti/S/B/L), the way ``width`` scales every stage of specssl's
ResNets; other models accept only 64. ``backbone.cifar_stem`` applies to specssl's ResNets
only and is ignored here (a ViT's stem is its patch embedding: choose ``img_size`` and
``patch_size``); ``backbone.zero_init_residual`` must stay false.

The contract every backbone of :func:`specssl.models.build_backbone` keeps:
``forward(x: (B, 3, H, W)) -> (B, out_dim)`` pooled features, an ``out_dim`` attribute, a
``backbone_spec`` (:class:`BackboneSpec`: library, model name, constructor kwargs, pooling, how
the head was removed) and a ``state_dict()`` in the source library's own layout, so an export
loads strictly into ``timm.create_model(model, num_classes=0, **kwargs)`` or into the
torchvision constructor with the same head replaced (:mod:`specssl.eval.export`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = [
    "BACKBONE_PRESETS",
    "TIMM_PREFIX",
    "TV_PREFIX",
    "BackbonePreset",
    "BackboneSpec",
    "build_external_backbone",
    "is_external_name",
    "register_backbone",
    "resolve_name",
]

TIMM_PREFIX = "timm:"
TV_PREFIX = "tv:"
#: ``backbone.width`` that keeps a library model's own dimensions.
STANDARD_WIDTH = 64


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is and how to rebuild it in its source library.

    Attributes:
        library: ``"specssl"`` (specssl's ResNets), ``"timm"`` or ``"torchvision"``.
        model: the library's model name (``vit_small_patch16_224``, ``convnext_tiny``,
            ``resnet18``).
        kwargs: the constructor keyword arguments it was built with (for timm besides
            ``num_classes=0``; for torchvision besides ``weights=None``).
        pool: how the forward pools to one vector: ``"token"`` (the CLS token), ``"avg"``
            (mean over tokens / global average pooling), or the library's name of another.
        head: how the classifier was removed: ``"num_classes=0"`` (timm), ``"<path> ->
            Identity"`` (the replaced module(s)).
        out_dim: feature dimension of the forward's output.
        name: the specssl name it was built by (``backbone.name``).
        head_path: torchvision: the module path of the removed classifier (``"fc"``,
            ``"heads.head"``, ``"classifier.2"``), else ``None``.
    """

    library: str
    model: str
    kwargs: dict[str, Any]
    pool: str
    head: str
    out_dim: int
    name: str
    head_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict of every field (``kwargs`` must hold JSON values)."""
        return {
            "library": self.library,
            "model": self.model,
            "kwargs": dict(self.kwargs),
            "pool": self.pool,
            "head": self.head,
            "out_dim": self.out_dim,
            "name": self.name,
            "head_path": self.head_path,
        }


@dataclass(frozen=True)
class BackbonePreset:
    """A named ``timm:`` / ``tv:`` model with fixed constructor arguments.

    Attributes:
        source: ``"timm:<model>"`` or ``"tv:<model>"``.
        kwargs: constructor keyword arguments (JSON values, so exports can record them).
        description: one line for listings and error messages.
    """

    source: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


#: Named backbones. The 32×32 ViTs follow the patch-4 tokenisation of ViTs trained on CIFAR
#: from scratch (Gani, Naseer & Yaqub, BMVC 2022, "How to train vision transformer on
#: small-scale datasets?", their CIFAR command: image 32, patch 4, embed 192): 8×8 = 64 patch
#: tokens plus the CLS token, CLS pooling (timm's default).
BACKBONE_PRESETS: dict[str, BackbonePreset] = {
    "vit_tiny_patch4_32": BackbonePreset(
        "timm:vit_tiny_patch16_224",
        {"img_size": 32, "patch_size": 4},
        "ViT-Ti (embed 192, depth 12, 3 heads) for 32x32 images, 4x4 patches, CLS pooling",
    ),
    "vit_small_patch4_32": BackbonePreset(
        "timm:vit_small_patch16_224",
        {"img_size": 32, "patch_size": 4},
        "ViT-S (embed 384, depth 12, 6 heads) for 32x32 images, 4x4 patches, CLS pooling",
    ),
    "vit_tiny_patch4_32_gap": BackbonePreset(
        "timm:vit_tiny_patch16_224",
        {"img_size": 32, "patch_size": 4, "global_pool": "avg", "class_token": False},
        "ViT-Ti for 32x32 images, 4x4 patches, no CLS token: mean of the patch tokens",
    ),
}


def register_backbone(
    name: str, source: str, *, description: str = "", replace: bool = False, **kwargs: Any
) -> BackbonePreset:
    """Register ``name`` as ``source`` (``"timm:<model>"`` / ``"tv:<model>"``) with ``kwargs``.

    E.g. ``register_backbone("vit_pico_32", "timm:vit_tiny_patch16_224", img_size=32,
    patch_size=8, embed_dim=32, depth=2, num_heads=2)``; then ``backbone.name=vit_pico_32``.
    The registry lives in this process: a checkpoint of a registered backbone loads where the
    same registration has run. Returns the preset.

    Raises:
        ValueError: ``name`` is taken (unless ``replace``), has a prefix, or ``source`` is not a
            ``timm:`` / ``tv:`` name.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"a backbone preset name must be a plain non-empty name, got {name!r}")
    if not source.startswith((TIMM_PREFIX, TV_PREFIX)):
        raise ValueError(f"preset source must be 'timm:<model>' or 'tv:<model>', got {source!r}")
    from specssl.models.backbones import BACKBONE_CONFIGS

    if name in BACKBONE_CONFIGS or (name in BACKBONE_PRESETS and not replace):
        raise ValueError(f"backbone name {name!r} is already defined (pass replace=True)")
    preset = BackbonePreset(source, dict(kwargs), description)
    BACKBONE_PRESETS[name] = preset
    return preset


def is_external_name(name: str) -> bool:
    """Whether ``name`` is a ``timm:`` / ``tv:`` name or a preset (not a specssl ResNet)."""
    return name.startswith((TIMM_PREFIX, TV_PREFIX)) or name in BACKBONE_PRESETS


def resolve_name(name: str, kwargs: Mapping[str, Any] | None = None) -> tuple[str, str, dict]:
    """``(library, model, kwargs)`` of a ``timm:`` / ``tv:`` name or preset; ``kwargs`` override
    a preset's. ``library`` is ``"timm"`` or ``"torchvision"``."""
    extra = dict(kwargs or {})
    if name in BACKBONE_PRESETS:
        preset = BACKBONE_PRESETS[name]
        library, model, base = resolve_name(preset.source, preset.kwargs)
        return library, model, {**base, **extra}
    if name.startswith(TIMM_PREFIX):
        library, model = "timm", name[len(TIMM_PREFIX) :]
    elif name.startswith(TV_PREFIX):
        library, model = "torchvision", name[len(TV_PREFIX) :]
    else:
        raise ValueError(f"{name!r} is not a 'timm:<model>' / 'tv:<model>' name or a preset")
    if not model:
        raise ValueError(f"backbone.name {name!r}: the model name after the prefix is empty")
    return library, model, extra


def build_external_backbone(
    name: str, *, width: int = STANDARD_WIDTH, kwargs: Mapping[str, Any] | None = None
) -> nn.Module:
    """The feature extractor ``name`` (see the module docstring) keeping the backbone contract.

    Args:
        name: ``timm:<model>``, ``tv:<model>`` or a preset name.
        width: 64 = the model as defined; for timm ViTs the per-head width
            (``embed_dim = num_heads · width``).
        kwargs: extra constructor keyword arguments (override a preset's).

    Returns:
        The library's own module (not a wrapper: its ``state_dict`` keys are the library's)
        with ``out_dim`` and ``backbone_spec`` set; ``(B, 3, H, W) -> (B, out_dim)``.

    Raises:
        ValueError: unknown model, a width the model cannot take, a classifier that cannot be
            found, or arguments the constructor rejects (one line naming ``backbone.name``).
    """
    library, model, kw = resolve_name(name, kwargs)
    if "pretrained" in kw or "weights" in kw:
        raise ValueError(
            f"backbone.name {name!r}: specssl pretrains from scratch; pretrained weights are not "
            "loaded here (load them into the built module yourself)"
        )
    if library == "timm":
        net, spec = _build_timm(name, model, kw, width)
    else:
        net, spec = _build_torchvision(name, model, kw, width)
    for attr in ("out_dim", "backbone_spec"):
        if attr in vars(net) or hasattr(type(net), attr):
            raise ValueError(f"{type(net).__name__} already has an attribute {attr!r}")
    net.out_dim = spec.out_dim
    net.backbone_spec = spec
    return net


# ----------------------------------------------------------------------------------- timm


def _import_timm():
    try:
        import timm
    except ImportError as err:  # pragma: no cover - timm is a dependency
        raise ValueError(
            "backbone.name 'timm:...' needs the timm package (pip install timm)"
        ) from err
    return timm


def _vit_heads(net: nn.Module) -> int | None:
    """Attention heads of a timm ViT-like model (``blocks[0].attn.num_heads``), else None."""
    blocks = getattr(net, "blocks", None)
    if not isinstance(blocks, nn.Sequential | nn.ModuleList) or len(blocks) == 0:
        return None
    heads = getattr(getattr(blocks[0], "attn", None), "num_heads", None)
    return int(heads) if isinstance(heads, int) and hasattr(net, "embed_dim") else None


def _timm_pool(net: nn.Module) -> str:
    """timm's pooling of ``net``: ``global_pool`` as a string (ViTs) or a pool's ``pool_type``."""
    for holder in (net, getattr(net, "head", None)):
        pool = getattr(holder, "global_pool", None)
        if isinstance(pool, str):
            return pool
        if hasattr(pool, "pool_type"):
            return str(pool.pool_type)
    return "avg"


def _create_timm(timm, model: str, kw: dict[str, Any], name: str, device: str | None = None):
    ctx = torch.device(device) if device else contextlib.nullcontext()
    try:
        with ctx:
            return timm.create_model(model, pretrained=False, **kw)
    except TypeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(
            f"backbone.name {name!r}: timm rejects the arguments {kw}: {first}"
        ) from err


def _build_timm(
    name: str, model: str, kw: dict[str, Any], width: int
) -> tuple[nn.Module, BackboneSpec]:
    timm = _import_timm()
    if not timm.is_model(model):
        raise ValueError(
            f"backbone.name {name!r}: timm {timm.__version__} has no model {model!r} "
            "(see timm.list_models())"
        )
    if kw.get("num_classes", 0) != 0:
        raise ValueError(f"backbone.name {name!r}: a backbone is built with num_classes=0")
    kw = {**kw, "num_classes": 0}
    # A meta-device probe (no memory, no initialisation cost) tells what kind of model it is.
    try:
        probe = _create_timm(timm, model, kw, name, device="meta")
    except ValueError:
        raise
    except Exception:  # some initialisers need real tensors: probe on the CPU
        probe = _create_timm(timm, model, kw, name)
    heads = _vit_heads(probe)
    if width != STANDARD_WIDTH:
        if heads is None:
            raise ValueError(
                f"config key 'backbone.width': {width} — only specssl ResNets and timm Vision "
                f"Transformers take a width; {name!r} ({type(probe).__name__}) needs 64"
            )
        if "embed_dim" in kw:
            raise ValueError(
                f"backbone.name {name!r}: give embed_dim or backbone.width (= embed_dim / "
                f"num_heads), not both"
            )
        kw["embed_dim"] = heads * width
    if heads is not None and "dynamic_img_size" not in kw and hasattr(probe, "dynamic_img_size"):
        kw["dynamic_img_size"] = True
    net = _create_timm(timm, model, kw, name)
    pool = _timm_pool(net)
    if pool == "":
        raise ValueError(
            f"backbone.name {name!r}: the model has no pooling (global_pool=''), so its forward "
            "returns tokens / maps, not one vector per image; set global_pool"
        )
    out_dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
    spec = BackboneSpec(
        library="timm",
        model=model,
        kwargs={k: v for k, v in kw.items() if k != "num_classes"},
        pool=pool,
        head="num_classes=0",
        out_dim=out_dim,
        name=name,
    )
    return net, spec


# ---------------------------------------------------------------------------- torchvision

#: torchvision models with auxiliary classifiers: built without them (their train-mode
#: forward would return a tuple).
_TV_DEFAULTS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def _tv_classifier(net: nn.Module) -> tuple[str, list[str], nn.Linear]:
    """The last ``nn.Linear`` of ``net`` (its path and module) and the paths to replace with
    ``nn.Identity``: the Linear and the ``nn.Dropout`` layers right before it in its
    ``nn.Sequential``."""
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(net).__name__} has no nn.Linear classifier to remove")
    path, linear = linears[-1]
    replace = [path]
    parent_path, _, child = path.rpartition(".")
    parent = net.get_submodule(parent_path) if parent_path else net
    if isinstance(parent, nn.Sequential) and child.isdigit():
        index = int(child)
        while index > 0 and isinstance(parent[index - 1], nn.Dropout):
            index -= 1
            replace.append(f"{parent_path}.{index}")
    return path, replace, linear


def _build_torchvision(
    name: str, model: str, kw: dict[str, Any], width: int
) -> tuple[nn.Module, BackboneSpec]:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if model not in known:
        raise ValueError(
            f"backbone.name {name!r}: torchvision {torchvision.__version__} has no classification "
            f"model {model!r} (torchvision.models.list_models(module=torchvision.models))"
        )
    if width != STANDARD_WIDTH:
        raise ValueError(
            f"config key 'backbone.width': {width} — torchvision models are built as defined "
            f"(width 64); {name!r} cannot be scaled"
        )
    kw = {**_TV_DEFAULTS.get(model, {}), **kw}
    builder = torchvision.models.get_model_builder(model)
    try:
        net = builder(weights=None, **kw)
    except TypeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(
            f"backbone.name {name!r}: torchvision rejects the arguments {kw}: {first}"
        ) from err
    path, replace, linear = _tv_classifier(net)
    for p in replace:
        net.set_submodule(p, nn.Identity())
    pool = "token" if model.startswith("vit_") else "avg"
    spec = BackboneSpec(
        library="torchvision",
        model=model,
        kwargs=dict(kw),
        pool=pool,
        head=", ".join(replace) + " -> Identity",
        out_dim=int(linear.in_features),
        name=name,
        head_path=path,
    )
    return net, spec


def torchvision_constructor(spec: BackboneSpec) -> nn.Module:
    """A fresh torchvision model of ``spec`` with its classifier replaced by ``nn.Identity``,
    i.e. the module an exported torchvision backbone loads into strictly."""
    import torchvision

    net = torchvision.models.get_model_builder(spec.model)(weights=None, **spec.kwargs)
    _, replace, _ = _tv_classifier(net)
    for p in replace:
        net.set_submodule(p, nn.Identity())
    return net


def attach_spec(net: nn.Module, spec: BackboneSpec) -> nn.Module:
    """Set the contract attributes (``out_dim``, ``backbone_spec``) on a library module built
    elsewhere (an export reloaded through timm / torchvision); returns ``net``."""
    net.out_dim = spec.out_dim
    net.backbone_spec = spec
    return net
