"""Load any checkpoint ``specssl pretrain`` wrote: its config, backbone and (optionally) projector.

A checkpoint is Lightning's: ``hyper_parameters["config"]`` holds the run's full
:class:`~specssl.train.config.Config` as a plain dict and ``state_dict`` the module's weights,
the backbone under ``method.backbone.*`` and the projector under ``method.projector.*``.
A path may also name a run directory (``runs/<name>``): its ``checkpoints/last.ckpt`` is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from specssl.models.backbones import ResNetBackbone, build_backbone
from specssl.train.config import Config, ConfigError, validate

__all__ = ["CheckpointError", "LoadedCheckpoint", "load_checkpoint", "resolve_checkpoint"]

_BACKBONE_PREFIX = "method.backbone."
_PROJECTOR_PREFIX = "method.projector."


class CheckpointError(ValueError):
    """The file is not a checkpoint written by specssl (or is damaged); one line."""


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns.

    Attributes:
        path: the resolved checkpoint file.
        config: the run's configuration.
        backbone: the pretrained backbone in eval mode, ``(B, 3, H, W) -> (B, out_dim)``.
        projector: the projector head in eval mode (``None`` unless asked for).
        probe: the online linear probe ``(weight (C, f), bias (C,))``, if the run had one.
        num_classes: classes of the run's dataset (for the online probe), if recorded.
        epoch, global_step: training progress when the checkpoint was written.
    """

    path: Path
    config: Config
    backbone: ResNetBackbone
    projector: nn.Module | None
    probe: tuple[torch.Tensor, torch.Tensor] | None
    num_classes: int | None
    epoch: int
    global_step: int


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file from a file path or a run directory; ``FileNotFoundError`` if none."""
    path = Path(path).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
            if candidate.is_file():
                return candidate.resolve()
        raise FileNotFoundError(f"no checkpoints/last.ckpt in run directory {path}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path.resolve()


def _read(path: Path) -> dict[str, Any]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # retry with full unpickling below (the user's own files)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # any unreadable file is "not a checkpoint"
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointError(
                f"{path} is not a specssl checkpoint (cannot be read by torch.load: {first})"
            ) from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a specssl checkpoint (holds a {type(obj).__name__})")
    return obj


def config_from_dict(raw: dict[str, Any]) -> Config:
    """A :class:`Config` from its ``asdict`` form (as stored in checkpoints); validated."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), raw))
    except OmegaConfBaseException as err:
        raise ConfigError(f"stored config: {str(err).splitlines()[0]}") from err
    validate(cfg)
    return cfg


def _sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def load_checkpoint(path: str | Path, *, projector: bool = False) -> LoadedCheckpoint:
    """Load a specssl checkpoint (file or run directory) on the CPU.

    Raises:
        FileNotFoundError: the path does not exist.
        CheckpointError: the file is not a specssl checkpoint (not a torch file, no stored
            config, no backbone weights, or weights that do not fit the stored config).
    """
    ckpt_path = resolve_checkpoint(path)
    obj = _read(ckpt_path)
    hparams = obj.get("hyper_parameters")
    state = obj.get("state_dict")
    if not isinstance(hparams, dict) or "config" not in hparams or not isinstance(state, dict):
        hint = ""
        if "conv1.weight" in obj:
            hint = " (it looks like an exported backbone: use specssl.eval.export.load_exported)"
        raise CheckpointError(
            f"{ckpt_path} is not a specssl checkpoint (no stored config and state_dict){hint}"
        )
    try:
        cfg = config_from_dict(hparams["config"])
    except ConfigError as err:
        raise CheckpointError(f"{ckpt_path}: {err}") from err
    backbone = build_backbone(
        cfg.backbone.name,
        cifar_stem=cfg.backbone.cifar_stem,
        width=cfg.backbone.width,
        **cfg.backbone.kwargs,
    )
    try:
        backbone.load_state_dict(_sub_state(state, _BACKBONE_PREFIX), strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{ckpt_path}: backbone weights do not fit the stored config "
            f"({cfg.backbone.name}, width {cfg.backbone.width}): "
            f"{str(err).splitlines()[0]}"
        ) from err
    backbone.eval()
    head = None
    if projector:
        head = _load_projector(ckpt_path, cfg, backbone, state)
    return LoadedCheckpoint(
        path=ckpt_path,
        config=cfg,
        backbone=backbone,
        projector=head,
        probe=(state["classifier.weight"], state["classifier.bias"])
        if "classifier.weight" in state
        else None,
        num_classes=hparams.get("num_classes"),
        epoch=int(obj.get("epoch", -1)),
        global_step=int(obj.get("global_step", -1)),
    )


def _load_projector(
    ckpt_path: Path, cfg: Config, backbone: nn.Module, state: dict[str, torch.Tensor]
) -> nn.Module:
    """The method's projector head with its trained weights (built as the method builds it)."""
    from specssl.methods import build_method

    method = build_method(backbone, cfg.method)
    head = method.projector
    try:
        head.load_state_dict(_sub_state(state, _PROJECTOR_PREFIX), strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{ckpt_path}: projector weights do not fit the stored config: "
            f"{str(err).splitlines()[0]}"
        ) from err
    method.backbone = nn.Identity()  # drop the method's reference; the backbone is returned
    return head.eval()
