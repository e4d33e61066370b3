"""``specssl toy`` — the INTL paper's 2-D study (Figure 2(a)) in seconds on a CPU.

Trains the toy MLP once per setting, prints the table of condition indicators and saves the
PNG grid. Torch and matplotlib are imported inside :func:`run` only (see :mod:`specssl.cli`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from specssl.core.arguments import non_negative_float, positive_float, positive_int
from specssl.toy.config import (
    COLLAPSE_THRESHOLD,
    DEFAULT_SETTINGS,
    Setting,
    ToyConfig,
    parse_settings,
)

HELP = "the INTL paper's 2-D study (Fig. 2(a)): ST-power p sweep, IterNorm-only and INTL"

_DEFAULTS = ToyConfig()


def _int_at_least_2(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}")
    return value


def _settings(text: str) -> list[Setting]:
    try:
        return parse_settings(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``specssl toy`` (defaults from :class:`~specssl.toy.config.ToyConfig`)."""
    parser.description = (
        f"{HELP}. A 2->64->64->2 MLP is trained on 16 Gaussian blobs with two jittered views "
        "per point, once per setting (same seed), on the batch axis (2x2 covariance). Prints "
        "the condition indicator lambda_min/lambda_max of the embedding Z and of the "
        "transformed output Zhat and saves a PNG grid of both."
    )
    parser.add_argument(
        "--settings",
        type=_settings,
        default=list(DEFAULT_SETTINGS),
        metavar="LIST",
        help="comma-separated settings: p=<number> (ST power), iternorm, intl, or all "
        f"(default: all = {','.join(DEFAULT_SETTINGS)})",
    )
    parser.add_argument(
        "--steps", type=positive_int, default=500, help="Adam steps per setting (default: 500)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of data, init, views (0)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("toy_2d.png"),
        help="PNG path of the figure (default: toy_2d.png in the current directory)",
    )
    parser.add_argument(
        "--T",
        type=positive_int,
        default=_DEFAULTS.T,
        help=f"IterNorm iterations of iternorm and intl (default: {_DEFAULTS.T})",
    )
    parser.add_argument(
        "--beta",
        type=non_negative_float,
        default=_DEFAULTS.beta,
        help=f"INTL trace-loss weight (default: {_DEFAULTS.beta:g})",
    )
    parser.add_argument(
        "--lr", type=positive_float, default=_DEFAULTS.lr, help=f"(default: {_DEFAULTS.lr:g})"
    )
    parser.add_argument(
        "--batch-size",
        type=_int_at_least_2,
        default=_DEFAULTS.batch_size,
        help=f"samples per step (default: {_DEFAULTS.batch_size})",
    )
    parser.add_argument(
        "--jitter",
        type=non_negative_float,
        nargs=2,
        metavar=("SX", "SY"),
        default=list(_DEFAULTS.jitter),
        help="std of the view jitter along x and y (default: %(default)s)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch intra-op threads while training; the ops are tiny, 1 is fastest (default: 1)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the study, print the table, save the figure. Returns 0."""
    out: Path = args.out
    if not out.parent.is_dir():
        raise argparse.ArgumentTypeError(f"--out: directory {str(out.parent)!r} does not exist")
    if out.is_dir():
        raise argparse.ArgumentTypeError(f"--out: {str(out)!r} is a directory, not a file path")
    try:
        config = ToyConfig(
            jitter=tuple(args.jitter),
            batch_size=args.batch_size,
            lr=args.lr,
            T=args.T,
            beta=args.beta,
        )
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None

    import torch

    from specssl.toy.plot import save_toy_figure
    from specssl.toy.study import augment, format_table, run_toy_study, toy_inputs

    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        raise argparse.ArgumentTypeError(f"--device {args.device!r}: {err}") from None

    start = time.perf_counter()
    results = run_toy_study(
        args.settings, args.steps, args.seed, config, device, num_threads=args.threads
    )
    train_time = time.perf_counter() - start

    x, _, _ = toy_inputs(args.seed, config)
    view = augment(x, config.jitter, torch.Generator().manual_seed(args.seed + 1))
    save_toy_figure(results, out, inputs=x, view=view)

    print(
        f"2-D toy study: {len(results)} settings x {args.steps} steps, seed {args.seed}, "
        f"n={config.n_points}, m={config.batch_size}, jitter={config.jitter}, "
        f"T={config.T}, beta={config.beta:g}, lr={config.lr:g}"
    )
    print(format_table(results))
    print(
        "cond = lambda_min / lambda_max of the 2x2 covariance over all points; "
        f"collapsed = cond < {COLLAPSE_THRESHOLD:g}; Zhat = the setting's transform of Z"
    )
    total = time.perf_counter() - start
    print(f"saved {out} (training {train_time:.1f} s, total {total:.1f} s)")
    return 0
