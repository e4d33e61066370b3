"""``specssl finetune`` — semi-supervised evaluation: fine-tune on 1% / 10% of the labels.

Fine-tunes the whole pretrained backbone plus a new linear head on a fixed class-balanced
label subset (shipped split files for CIFAR-10, else the same seeded generator; SimCLR's image
lists for ImageNet via ``--split-file``) with crop + flip augmentation and SGD/Nesterov, then
reports top-1 / top-5 on the test split. See :mod:`specssl.eval.semisup`. Torch is imported
inside :func:`run`.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

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
    # Options are stored under the FinetuneConfig field they set (see run).
    parser.add_argument(
        "--fraction",
        dest="percent",
        type=_percent,
        default=1.0,
        metavar="PCT",
        help="labelled percentage (default 1); 1 or 10 use the shipped CIFAR-10 splits",
    )
    parser.add_argument(
        "--split-file",
        help="specssl split file, or SimCLR's ImageNet 1percent.txt / 10percent.txt",
    )
    parser.add_argument("--data-root", help="dataset directory (default: the checkpoint's)")
    parser.add_argument("--out", help="directory for finetune.json and finetuned.pt")
    parser.add_argument("--epochs", type=int, help="default: 60 for 1%%, 30 for 10%% (SimCLR)")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr-backbone", type=float, default=0.05, help="base lr for batch 256")
    parser.add_argument("--lr-head", type=float, default=0.5, help="base lr for batch 256")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--accelerator", default="auto", help="auto | cpu | gpu | mps")
    parser.add_argument("--precision", default="32-true", help="e.g. bf16-mixed")
    parser.add_argument(
        "--progress", dest="enable_progress_bar", action="store_true", help="show a progress bar"
    )


def run(args: argparse.Namespace) -> int:
    if not Path(args.checkpoint).exists():
        raise argparse.ArgumentTypeError(f"checkpoint not found: {args.checkpoint}")
    if args.split_file is not None and not Path(args.split_file).is_file():
        raise argparse.ArgumentTypeError(f"split file not found: {args.split_file}")
    from specssl.eval.semisup import FinetuneConfig, finetune
    from specssl.train.config import ConfigError

    cfg = FinetuneConfig(
        **{f.name: getattr(args, f.name) for f in fields(FinetuneConfig) if hasattr(args, f.name)}
    )
    try:
        result = finetune(args.checkpoint, cfg, data_root=args.data_root, out_dir=args.out)
    except (ValueError, FileNotFoundError, ConfigError) as err:
        raise argparse.ArgumentTypeError(str(err).splitlines()[0]) from None
    print(
        f"semi-supervised ({result.split}, {result.num_labelled} labelled images, "
        f"{result.steps} steps, {result.wall_time_s:.1f} s): "
        f"top-1 {result.top1:.2f}%, top-5 {result.top5:.2f}%"
    )
    return 0
