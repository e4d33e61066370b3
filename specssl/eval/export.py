"""Export a pretrained backbone for downstream code, in its source library's own format.

* specssl ResNets and ``tv:<model>`` backbones: a torchvision ``state_dict``
  (:func:`export_torchvision`), or detectron2's layout for ResNets (:func:`export_detectron2`);
* ``timm:<model>`` backbones (and the ViT presets): timm's own local model folder
  (:func:`export_timm`).

**timm** (:func:`export_timm`): a folder as ``timm.models.save_for_hf`` writes it,
``config.json`` (``architecture``, ``num_classes: 0``, ``model_args`` = the constructor
kwargs, e.g. ``img_size: 32, patch_size: 4``), ``model.safetensors`` and ``pytorch_model.bin``
(the plain state dict), plus ``specssl_backbone.json`` (the
:class:`~specssl.models.BackboneSpec`). Load it with timm alone::

    model = timm.create_model("local-dir:/path/to/export", pretrained=True)

or strictly into the constructor the config names::

    model = timm.create_model(name, num_classes=0, **model_args)
    model.load_state_dict(torch.load(folder / "pytorch_model.bin"), strict=True)

(``include_classifier=True`` writes the online linear probe as timm's classifier and
``num_classes: C``, so ``create_model(name, num_classes=C, **model_args)`` loads it.)

**torchvision, any classification model** (``tv:<model>``): the plain state dict of the
torchvision model whose classifier is ``nn.Identity`` (its keys minus the classifier's), and
``<file>.json`` beside it with the spec: ``model``, ``kwargs`` and ``head_path``, the
classifier's module path. Load it strictly with::

    model = torchvision.models.get_model(spec["model"], weights=None, **spec["kwargs"])
    model.set_submodule(spec["head_path"], torch.nn.Identity())
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)

(``include_classifier=True`` writes the probe as ``<head_path>.weight`` / ``.bias``, so the
constructor with ``num_classes=C`` loads it without replacing the head.)

**specssl ResNets** (``resnet18`` / ``resnet34`` / ``resnet50``), below: torchvision's ResNet
layout, no sidecar needed.

**torchvision** (:func:`export_torchvision`): a plain ``state_dict`` (``dict[str, Tensor]``,
loadable with ``torch.load(path, weights_only=True)``) with the key names and shapes of
``torchvision.models.resnet18/34/50()`` minus ``fc.*``. Load it strictly with::

    model = torchvision.models.resnet50()
    model.fc = torch.nn.Identity()              # the export has no classifier
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)

(``include_classifier=True`` also writes the run's online linear probe as ``fc.weight`` /
``fc.bias``, so ``resnet50(num_classes=C)`` loads it strictly without replacing ``fc``.)
Backbones with ``backbone.width != 64`` keep torchvision's names but have other shapes; they
load into ``specssl.models.build_backbone(name, width=w)`` or through :func:`load_exported`.

*CIFAR stem.* A backbone pretrained with ``backbone.cifar_stem=true`` differs from torchvision's
ResNet in exactly one key: ``conv1.weight`` is ``(w, 3, 3, 3)`` (3×3, stride 1, padding 1)
instead of ``(w, 3, 7, 7)``; its ``maxpool`` is removed, which has no parameters, so no key
differs there. It loads strictly into a torchvision ResNet after::

    model.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = torch.nn.Identity()

:func:`load_exported` does all this: it rebuilds the right backbone from the file alone.

**detectron2** (:func:`to_detectron2`, :func:`export_detectron2`): the checkpoint layout the
MoCo authors' ``convert-pretrain-to-detectron2`` script produces for COCO/VOC transfer (and that
the INTL / SimSiam / BYOL papers' detection results use): a pickled
``{"model": {name: numpy array}, "__author__": "specssl", "matching_heuristics": True}`` with
detectron2's ResNet names::

    conv1.weight                       -> stem.conv1.weight
    bn1.<p>                            -> stem.conv1.norm.<p>
    layer{s}.{b}.conv{k}.weight        -> res{s+1}.{b}.conv{k}.weight
    layer{s}.{b}.bn{k}.<p>             -> res{s+1}.{b}.conv{k}.norm.<p>
    layer{s}.{b}.downsample.0.weight   -> res{s+1}.{b}.shortcut.weight
    layer{s}.{b}.downsample.1.<p>      -> res{s+1}.{b}.shortcut.norm.<p>

``<p>`` is ``weight | bias | running_mean | running_var``; BatchNorm's ``num_batches_tracked``
counters and any ``fc.*`` are dropped (detectron2's FrozenBatchNorm2d has no counter).
Use it with ``MODEL.WEIGHTS out.pkl`` and the MoCo detection configs (``MODEL.PIXEL_MEAN`` /
``PIXEL_STD`` of torchvision, ``INPUT.FORMAT: RGB``). A CIFAR-stem backbone converts too, but
detectron2's standard stem is 7×7 + max-pool, so its ``stem.conv1.weight`` will not fit.
"""

from __future__ import annotations

import copy
import json
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import ResNet

from specssl.eval.checkpoint import LoadedCheckpoint, load_checkpoint
from specssl.models.backbones import (
    backbone_from_state_dict,
    backbone_spec,
    to_torchvision_state_dict,
)
from specssl.models.external import BackboneSpec, attach_spec, torchvision_constructor

__all__ = [
    "SPEC_FILE",
    "export_backbone",
    "export_detectron2",
    "export_timm",
    "export_torchvision",
    "library_of",
    "load_exported",
    "to_detectron2",
    "torchvision_state_dict_of",
]

#: The spec of a timm export, inside its folder.
SPEC_FILE = "specssl_backbone.json"

Source = str | Path | nn.Module | LoadedCheckpoint

_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
_STEM = re.compile(r"^(conv1\.weight|bn1\.(\w+))$")
_BLOCK = re.compile(
    r"^layer(?P<stage>[1-4])\.(?P<block>\d+)\."
    r"(?:conv(?P<conv>\d)\.weight|bn(?P<bn>\d)\.(?P<bnp>\w+)"
    r"|downsample\.0\.weight|downsample\.1\.(?P<dsp>\w+))$"
)


def _backbone_of(source: Source) -> tuple[nn.Module, LoadedCheckpoint | None]:
    """The backbone of a checkpoint path / run directory / loaded checkpoint / module, and the
    loaded checkpoint (``None`` for a bare module)."""
    if isinstance(source, nn.Module):
        return source, None
    loaded = source if isinstance(source, LoadedCheckpoint) else load_checkpoint(source)
    return loaded.backbone, loaded


def _probe(ckpt: LoadedCheckpoint | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The online linear probe ``(weight (C, f), bias (C,))`` stored in checkpoint ``ckpt``."""
    if ckpt is None:
        raise ValueError("include_classifier needs a checkpoint, not a bare backbone")
    if ckpt.probe is None:
        raise ValueError(f"{ckpt.path} has no online-probe classifier to export")
    return ckpt.probe[0].detach().clone(), ckpt.probe[1].detach().clone()


def library_of(source: Source) -> str:
    """``"timm"``, ``"torchvision"`` or ``"specssl"``: the library whose format ``source``'s
    backbone exports to (:func:`export_backbone`'s ``"auto"``)."""
    return backbone_spec(_backbone_of(source)[0]).library


def _from_source(
    source: Source, include_classifier: bool = False
) -> tuple[dict[str, torch.Tensor], BackboneSpec]:
    """Torchvision-layout state dict and the spec of a ResNet / ``tv:`` backbone's source."""
    backbone, ckpt = _backbone_of(source)
    spec = backbone_spec(backbone)
    if spec.library == "timm":
        raise ValueError(
            f"{spec.name!r} is a timm backbone: export it in timm's format (--format timm)"
        )
    if isinstance(backbone, ResNet):
        state = to_torchvision_state_dict(backbone)
    else:
        state = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    if include_classifier:
        weight, bias = _probe(ckpt)
        state[f"{spec.head_path}.weight"], state[f"{spec.head_path}.bias"] = weight, bias
    return state, spec


def torchvision_state_dict_of(
    source: Source, *, include_classifier: bool = False
) -> dict[str, torch.Tensor]:
    """The torchvision-layout state dict of a checkpoint (path / run directory) or backbone."""
    return _from_source(source, include_classifier)[0]


def export_torchvision(
    source: Source,
    out_path: str | Path,
    *,
    include_classifier: bool = False,
) -> Path:
    """Write the backbone of ``source`` (a checkpoint path, run directory, loaded checkpoint or
    backbone module) as a plain torchvision ``state_dict`` to ``out_path`` (see the module
    docstring for how to load it); a ``tv:`` backbone also gets ``<out_path>.json`` (its
    spec). Returns the written path."""
    state, spec = _from_source(source, include_classifier)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    if spec.library == "torchvision":
        _write_json(_sidecar(out), spec.to_json())
    return out


def export_timm(source: Source, out_dir: str | Path, *, include_classifier: bool = False) -> Path:
    """Write the timm backbone of ``source`` as timm's local model folder ``out_dir``
    (``config.json``, ``model.safetensors``, ``pytorch_model.bin``, ``specssl_backbone.json``;
    see the module docstring). Returns the folder.

    Raises:
        ValueError: the backbone is not a timm model, or its constructor kwargs are not JSON.
    """
    from timm.models import save_for_hf

    backbone, ckpt = _backbone_of(source)
    spec = backbone_spec(backbone)
    if spec.library != "timm":
        raise ValueError(
            f"{spec.name!r} is not a timm backbone: export it with --format torchvision"
        )
    model_args = dict(spec.kwargs)
    _check_json(model_args, spec.name)
    model = copy.deepcopy(backbone).cpu().eval()
    if include_classifier:
        weight, bias = _probe(ckpt)
        model.reset_classifier(int(weight.shape[0]))
        head = model.get_classifier()
        if not isinstance(head, nn.Linear) or head.weight.shape != weight.shape:
            raise ValueError(
                f"{spec.model}'s classifier {type(head).__name__} does not take the probe of "
                f"shape {tuple(weight.shape)}"
            )
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_for_hf(model, str(out), model_args=model_args, safe_serialization="both")
    _write_json(out / SPEC_FILE, spec.to_json())
    return out


def export_backbone(
    source: Source, out: str | Path, *, fmt: str = "auto", include_classifier: bool = False
) -> Path:
    """Export in ``fmt``: ``"timm"``, ``"torchvision"``, ``"detectron2"`` or ``"auto"`` (the
    backbone's own library: timm for ``timm:`` backbones, torchvision otherwise)."""
    if not isinstance(source, LoadedCheckpoint | nn.Module):
        source = load_checkpoint(source)
    if fmt == "auto":
        fmt = "timm" if library_of(source) == "timm" else "torchvision"
    if fmt == "timm":
        return export_timm(source, out, include_classifier=include_classifier)
    if fmt == "torchvision":
        return export_torchvision(source, out, include_classifier=include_classifier)
    if fmt == "detectron2":
        if include_classifier:
            raise ValueError("include_classifier works with the torchvision and timm formats")
        return export_detectron2(source, out)
    raise ValueError(f"unknown export format {fmt!r} (auto|timm|torchvision|detectron2)")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _check_json(values: dict[str, Any], name: str) -> None:
    try:
        json.dumps(values)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"backbone {name!r}: constructor kwargs {values} are not JSON values, so the export "
            "cannot record them"
        ) from err


def _write_json(path: Path, values: dict[str, Any]) -> None:
    path.write_text(json.dumps(values, indent=2) + "\n")


def _read_state(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file is reported the same way
        raise ValueError(f"{path} is not an exported state dict: {err}".splitlines()[0]) from err
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} is not an exported state dict (holds {type(state).__name__})")
    return state


def load_exported(path: str | Path, name: str | None = None) -> nn.Module:
    """Rebuild the backbone from an export (eval mode, ``(B, 3, H, W) -> (B, out_dim)``).

    * a folder of :func:`export_timm`: through ``timm.create_model("local-dir:<folder>",
      pretrained=True)``, a written classifier removed (``reset_classifier(0)``);
    * a file with a ``<file>.json`` spec (a ``tv:`` backbone): the torchvision constructor
      with the classifier replaced, loaded strictly (a written classifier is ignored);
    * a specssl ResNet file: width and stem are read from ``conv1.weight``, the architecture
      from the block layout (or ``name``); a written ``fc.*`` classifier is ignored.
    """
    path = Path(path)
    if path.is_dir():
        return _load_timm_export(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported backbone not found: {path}")
    state = _read_state(path)
    if _sidecar(path).is_file():
        spec = BackboneSpec(**json.loads(_sidecar(path).read_text()))
        net = torchvision_constructor(spec)
        head = f"{spec.head_path}."
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith(head)})
        return attach_spec(net, spec).eval()
    return backbone_from_state_dict(state, name).eval()


def _load_timm_export(folder: Path) -> nn.Module:
    import timm

    if not (folder / "config.json").is_file() or not (folder / SPEC_FILE).is_file():
        raise ValueError(f"{folder} is not a timm export (no config.json / {SPEC_FILE})")
    spec = BackboneSpec(**json.loads((folder / SPEC_FILE).read_text()))
    net = timm.create_model(f"local-dir:{folder}", pretrained=True)
    if net.num_classes != 0:
        net.reset_classifier(0)
    return attach_spec(net, spec).eval()


def _d2_name(key: str) -> str | None:
    """detectron2 name of a torchvision ResNet key (``None``: dropped; unknown: ValueError)."""
    if key.endswith("num_batches_tracked") or key.startswith("fc."):
        return None
    stem = _STEM.match(key)
    if stem:
        param = stem.group(2)
        if param is None:
            return "stem.conv1.weight"
        if param in _BN_PARAMS:
            return f"stem.conv1.norm.{param}"
    block = _BLOCK.match(key)
    if block:
        prefix = f"res{int(block['stage']) + 1}.{block['block']}."
        if block["conv"]:
            return f"{prefix}conv{block['conv']}.weight"
        if block["bn"] and block["bnp"] in _BN_PARAMS:
            return f"{prefix}conv{block['bn']}.norm.{block['bnp']}"
        if key.endswith("downsample.0.weight"):
            return f"{prefix}shortcut.weight"
        if block["dsp"] in _BN_PARAMS:
            return f"{prefix}shortcut.norm.{block['dsp']}"
    raise ValueError(f"not a torchvision ResNet key: {key!r}")


def to_detectron2(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Rename a torchvision-layout ResNet state dict to detectron2's (MoCo's converter layout).

    Returns ``{"model": {d2_name: numpy array (same shape)}, "__author__": "specssl",
    "matching_heuristics": True}`` (pickle it to get a ``.pkl`` for ``MODEL.WEIGHTS``).
    ``num_batches_tracked`` and ``fc.*`` are dropped; any other unknown key is a ``ValueError``.
    """
    if "conv1.weight" not in state_dict:
        raise ValueError("not a torchvision ResNet state dict: no 'conv1.weight'")
    model = {}
    for key, value in state_dict.items():
        name = _d2_name(key)
        if name is not None:
            model[name] = value.detach().cpu().numpy()
    return {"model": model, "__author__": "specssl", "matching_heuristics": True}


def export_detectron2(source: Source, out_path: str | Path) -> Path:
    """Write the backbone of ``source`` as a detectron2 ``.pkl`` (see :func:`to_detectron2`)."""
    state, spec = _from_source(source)
    if spec.kwargs.get("cifar_stem", False):
        warnings.warn(
            "the backbone has a CIFAR stem (3x3 conv1, no max-pool); detectron2's standard "
            "ResNet stem is 7x7 + max-pool, so stem.conv1.weight will not fit it",
            stacklevel=2,
        )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        pickle.dump(to_detectron2(state), fh)
    return out
