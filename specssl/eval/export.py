"""Export a pretrained backbone for downstream code: torchvision and detectron2 layouts.

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

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from specssl.eval.checkpoint import load_checkpoint
from specssl.models.backbones import (
    ResNetBackbone,
    backbone_from_state_dict,
    to_torchvision_state_dict,
)

__all__ = [
    "export_detectron2",
    "export_torchvision",
    "load_exported",
    "to_detectron2",
    "torchvision_state_dict_of",
]

_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
_STEM = re.compile(r"^(conv1\.weight|bn1\.(\w+))$")
_BLOCK = re.compile(
    r"^layer(?P<stage>[1-4])\.(?P<block>\d+)\."
    r"(?:conv(?P<conv>\d)\.weight|bn(?P<bn>\d)\.(?P<bnp>\w+)"
    r"|downsample\.0\.weight|downsample\.1\.(?P<dsp>\w+))$"
)


def _from_source(
    source: str | Path | nn.Module, include_classifier: bool = False
) -> tuple[dict[str, torch.Tensor], bool]:
    """Torchvision-layout state dict and the stem flag of a checkpoint path or a backbone."""
    if isinstance(source, nn.Module):
        if include_classifier:
            raise ValueError("include_classifier needs a checkpoint, not a bare backbone")
        return to_torchvision_state_dict(source), bool(getattr(source, "cifar_stem", False))
    loaded = load_checkpoint(source)
    state = to_torchvision_state_dict(loaded.backbone)
    if include_classifier:
        raw = torch.load(loaded.path, map_location="cpu", weights_only=False)["state_dict"]
        if "classifier.weight" not in raw:
            raise ValueError(f"{loaded.path} has no online-probe classifier to export")
        state["fc.weight"] = raw["classifier.weight"].detach().clone()
        state["fc.bias"] = raw["classifier.bias"].detach().clone()
    return state, loaded.backbone.cifar_stem


def torchvision_state_dict_of(
    source: str | Path | nn.Module, *, include_classifier: bool = False
) -> dict[str, torch.Tensor]:
    """The torchvision-layout state dict of a checkpoint (path / run directory) or backbone."""
    return _from_source(source, include_classifier)[0]


def export_torchvision(
    source: str | Path | nn.Module,
    out_path: str | Path,
    *,
    include_classifier: bool = False,
) -> Path:
    """Write the backbone of ``source`` (a checkpoint path, run directory or backbone module)
    as a plain torchvision ResNet ``state_dict`` to ``out_path`` (see the module docstring
    for how to load it). Returns the written path."""
    state = torchvision_state_dict_of(source, include_classifier=include_classifier)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def load_exported(path: str | Path, name: str | None = None) -> ResNetBackbone:
    """Rebuild the backbone from a :func:`export_torchvision` file (eval mode).

    Width and stem are read from ``conv1.weight``, the architecture from the block layout
    (or ``name``); a written ``fc.*`` classifier is ignored. Output ``(B, out_dim)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported backbone not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file is reported the same way
        raise ValueError(f"{path} is not an exported state dict: {err}".splitlines()[0]) from err
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} is not an exported state dict (holds {type(state).__name__})")
    return backbone_from_state_dict(state, name).eval()


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


def export_detectron2(source: str | Path | nn.Module, out_path: str | Path) -> Path:
    """Write the backbone of ``source`` as a detectron2 ``.pkl`` (see :func:`to_detectron2`)."""
    state, cifar_stem = _from_source(source)
    if cifar_stem:
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
