"""``specssl pretrain`` — pretrain a backbone with a self-supervised method.

Recipes are YAML files (``configs/<dataset>/<method>.yaml``); without ``--config`` the built-in
default runs (INTL on scikit-learn's bundled digits: no download, a few minutes on a CPU).
Any key can be overridden as ``key.subkey=value``. Torch is imported inside :func:`run` only.
"""

from __future__ import annotations

import argparse
import sys
from importlib.resources import files
from pathlib import Path

HELP = "pretrain a backbone (default: INTL on the built-in digits data, a few CPU minutes)"


def default_config_path() -> Path:
    """The built-in default recipe shipped inside the package."""
    return Path(str(files("specssl") / "recipes" / "digits_intl.yaml"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="YAML recipe (default: built-in digits/INTL)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="last",
        metavar="CKPT",
        help="continue a run: from CKPT, or from the run's newest checkpoint when no path is "
        "given (none found: an error)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="check the resolved config as a run would (data, method, loss) and print it",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")


def run(args: argparse.Namespace) -> int:
    import yaml

    from specssl.train.config import ConfigError, load_config, to_dict

    try:
        cfg = load_config(args.config or default_config_path(), args.overrides)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    from specssl.train.callbacks import CheckpointWriteError
    from specssl.train.module import TrainingDivergedError
    from specssl.train.run import build_run, format_summary, pretrain

    try:
        if args.print_config:  # validate what a run would, then print
            build_run(cfg)
            print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
            return 0
        if cfg.trainer.precision == "auto":
            from specssl.train.precision import resolve_precision

            chosen, reason = resolve_precision("auto", cfg.trainer.accelerator)
            print(f"specssl pretrain: precision {chosen} ({reason})", file=sys.stderr)
        result = pretrain(cfg, resume=args.resume)
    except (ConfigError, FileNotFoundError) as err:
        raise argparse.ArgumentTypeError(str(err).splitlines()[0]) from None
    except (TrainingDivergedError, CheckpointWriteError) as err:
        print(f"specssl pretrain: {err}", file=sys.stderr)
        return 1
    if result.extra.get("global_rank", 0) == 0:  # under DDP every rank returns here
        print(format_summary(result))
    return 0
