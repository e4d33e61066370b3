"""``specssl spectrum`` — eigenvalue spectra of Z and Ẑ for one or more checkpoints.

Prints a table (condition indicator inside the rank bound, normalized stable rank, effective
rank of the embedding ``Z`` and of the method's transformed output ``Ẑ``; RankMe of the
backbone features and of ``Z``; LiDAR of ``Z``) and writes ``spectrum.json`` (every metric of
:func:`specssl.spectral.embedding_spectra`, also for the backbone features),
``eigenvalues.csv`` and log-scale plots like the INTL paper's Figure 3 (a)/(b), all checkpoints
on one plot. See :mod:`specssl.eval.spectrum_report`. Torch is imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: The spectrum monitor's LiDAR sample (``specssl.train.callbacks``), repeated here so that
#: ``--help`` does not import torch; a test checks they agree.
LIDAR_IMAGES, LIDAR_VIEWS = 256, 4

HELP = "eigenvalue spectrum of Z and Ẑ of checkpoints: table, JSON/CSV, log-scale plot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoints", nargs="+", metavar="CHECKPOINT", help=".ckpt files or run dirs"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=1024,
        help="training images embedded (seeded sample; >= embedding dim for a full-rank Z)",
    )
    parser.add_argument("--data-root", help="dataset directory (default: the checkpoint's)")
    parser.add_argument("--out", default="spectrum", help="output directory (default: spectrum)")
    parser.add_argument(
        "--augmented",
        action="store_true",
        help="also embed one augmented view (the recipe's first view, seeded)",
    )
    parser.add_argument(
        "--lidar-images",
        type=int,
        default=LIDAR_IMAGES,
        help=f"images of LiDAR's surrogate classes (first of the sample; default {LIDAR_IMAGES})",
    )
    parser.add_argument(
        "--lidar-views",
        type=int,
        default=LIDAR_VIEWS,
        help=f"augmentations per image for LiDAR (0 = no LiDAR; default {LIDAR_VIEWS})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the image and view sample")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plots")


def run(args: argparse.Namespace) -> int:
    missing = [p for p in args.checkpoints if not Path(p).exists()]
    if missing:
        raise argparse.ArgumentTypeError(f"checkpoint not found: {missing[0]}")
    if args.samples < 2:
        raise argparse.ArgumentTypeError(f"--samples must be >= 2, got {args.samples}")
    from specssl.eval.command import _device
    from specssl.eval.spectrum_report import (
        checkpoint_label,
        format_table,
        spectrum_of_checkpoint,
        write_report,
    )
    from specssl.train.config import ConfigError

    device = _device(args.device)
    labels = [checkpoint_label(p) for p in args.checkpoints]
    if len(set(labels)) < len(labels):  # the same checkpoint twice, or equal run names
        labels = [f"{label} [{i + 1}]" for i, label in enumerate(labels)]
    results = []
    for path, label in zip(args.checkpoints, labels, strict=True):
        try:
            results.append(
                spectrum_of_checkpoint(
                    path,
                    samples=args.samples,
                    data_root=args.data_root,
                    augmented=args.augmented,
                    seed=args.seed,
                    device=device,
                    lidar_images=args.lidar_images,
                    lidar_views=args.lidar_views,
                    label=label,
                )
            )
        except (ValueError, FileNotFoundError, ConfigError) as err:
            raise argparse.ArgumentTypeError(f"{path}: {err}".splitlines()[0]) from None
    print(format_table(results))
    paths = write_report(results, args.out, plots=not args.no_plot)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
