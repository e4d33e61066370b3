"""``specssl finetune`` — semi-supervised evaluation: fine-tune on 1% / 10% of the labels.

Fine-tunes the whole pretrained backbone plus a new linear head on a fixed class-balanced
label subset (shipped split files for CIFAR-10, else the same seeded generator; SimCLR's image
lists for ImageNet via ``--split-file``) with crop + flip augmentation and SGD/Nesterov, then
reports top-1 / top-5 on the test split. See :mod:`specssl.eval.semisup`.

``--preset NAME`` takes the settings of a named protocol (:data:`FINETUNE_PRESETS` in
:mod:`specssl.eval.protocols`, e.g. ``intl_semisup_1pct``: the INTL authors' script); options
given explicitly override single values. ``finetune.json`` (with ``--out``) records the preset,
its source, the resolved values and the overrides. Torch is imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from specssl.eval.protocols import FINETUNE_PRESETS, add_preset_argument, record

# No '%' here: argparse %-formats subcommand help strings (and not descriptions).
HELP = "semi-supervised eval: fine-tune backbone + linear head on 1 or 10 percent of the labels"


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fraction must be a number, got {text!r}") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"--fraction is a percentage in (0, 100], got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="pretraining .ckpt file or run dir"
    )
    add_preset_argument(parser, FINETUNE_PRESETS)
    # Options are stored under the FinetuneConfig field they set (see resolve_config); those
    # a preset sets default to None (= the preset's value, else FinetuneConfig's default).
    parser.add_argument(
        "--fraction",
        dest="percent",
        type=_percent,
        metavar="PCT",
        help="labelled percentage (default 1); 1 or 10 use the shipped CIFAR-10 splits or, for "
        "ImageNet (imagefolder), SimCLR's shipped 1%%/10%% image lists",
    )
    parser.add_argument(
        "--split-file",
        help="specssl split file, or a list of training image file names (other image folders, "
        "other percentages)",
    )
    parser.add_argument("--data-root", help="dataset directory (default: the checkpoint's)")
    parser.add_argument("--out", help="directory for finetune.json and finetuned.pt")
    parser.add_argument("--epochs", type=int, help="default: 60 for 1%%, 30 for 10%% (SimCLR)")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps")
    parser.add_argument("--batch-size", type=int, help="default 256")
    parser.add_argument("--lr-backbone", type=float, help="base lr for batch 256 (0.05)")
    parser.add_argument("--lr-head", type=float, help="base lr for batch 256 (0.5)")
    parser.add_argument("--weight-decay", type=float, help="default 0")
    parser.add_argument(
        "--schedule", choices=("cos", "step"), help="cos (default, per step) | step (per epoch)"
    )
    parser.add_argument(
        "--milestones", nargs="+", type=int, help="step: epochs (default 60%%/80%%)"
    )
    parser.add_argument(
        "--nesterov", action=argparse.BooleanOptionalAction, help="Nesterov momentum (default on)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--accelerator", default="auto", help="auto | cpu | gpu | mps")
    parser.add_argument("--precision", default="32-true", help="e.g. bf16-mixed")
    parser.add_argument(
        "--progress", dest="enable_progress_bar", action="store_true", help="show a progress bar"
    )


def resolve_config(args: argparse.Namespace):
    """``(FinetuneConfig, preset record or None)`` of parsed ``args``: FinetuneConfig's
    defaults, then the preset's values, then every option given explicitly."""
    from specssl.eval.semisup import FinetuneConfig

    names = {f.name for f in fields(FinetuneConfig)}
    values: dict[str, Any] = {}
    preset = getattr(args, "preset", None)
    if preset is not None:
        values.update(preset.values())
        values["milestones"] = list(values["milestones"]) if values["milestones"] else None
        values["preset"] = preset.name
    explicit = {
        n: getattr(args, n) for n in names if n != "preset" and getattr(args, n, None) is not None
    }
    overridden = [n for n in explicit if preset is not None and n in preset.values()]
    values.update(explicit)
    cfg = FinetuneConfig(**{k: v for k, v in values.items() if k in names})
    if preset is None:
        return cfg, None
    resolved = {k: getattr(cfg, k) for k in preset.values()}
    resolved["epochs"] = cfg.resolved_epochs()
    return cfg, record(preset, resolved, overridden, ["finetune"])


def run(args: argparse.Namespace) -> int:
    if not Path(args.checkpoint).exists():
        raise argparse.ArgumentTypeError(f"checkpoint not found: {args.checkpoint}")
    if args.split_file is not None and not Path(args.split_file).is_file():
        raise argparse.ArgumentTypeError(f"split file not found: {args.split_file}")
    from specssl.eval.semisup import finetune
    from specssl.train.config import ConfigError

    cfg, preset = resolve_config(args)
    if preset is not None:
        print(f"preset {preset['name']}: {preset['source']}")
    try:
        result = finetune(
            args.checkpoint, cfg, data_root=args.data_root, out_dir=args.out, preset=preset
        )
    except (ValueError, FileNotFoundError, ConfigError) as err:
        raise argparse.ArgumentTypeError(str(err).splitlines()[0]) from None
    print(
        f"semi-supervised ({result.split}, {result.num_labelled} labelled images, "
        f"{result.steps} steps, {result.wall_time_s:.1f} s): "
        f"top-1 {result.top1:.2f}%, top-5 {result.top5:.2f}%"
    )
    return 0
