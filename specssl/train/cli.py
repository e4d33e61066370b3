"""``specssl pretrain``: the command-line face of :func:`specssl.train.run.pretrain`."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain a backbone with a self-supervised method",
        description=(
            "Pretrain a backbone (default: INTL on the built-in digits dataset, a few minutes "
            "on a CPU). Recipes are YAML files (configs/<dataset>/<method>.yaml); any key can be "
            "overridden as key.subkey=value. The resolved config is saved beside the run."
        ),
    )
    parser.add_argument("--config", "-c", help="YAML recipe (default: built-in digits/INTL)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        help="continue from a checkpoint path, or the run's last.ckpt when given no path",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config")
    parser.add_argument("overrides", nargs="*", help="key.subkey=value overrides")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import yaml

    from specssl.train.config import ConfigError, load_config, to_dict

    try:
        cfg = load_config(args.config or default_config_path(), args.overrides)
    except ConfigError as err:
        print(f"specssl pretrain: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    from specssl.train.run import format_summary, pretrain

    try:
        result = pretrain(cfg, resume=args.resume)
    except (ConfigError, FileNotFoundError) as err:
        print(f"specssl pretrain: {err}", file=sys.stderr)
        return 2
    print(format_summary(result))
    return 0


def default_config_path():
    """The built-in default recipe shipped inside the package (digits, no download)."""
    from importlib.resources import files

    return files("specssl") / "recipes" / "digits_intl.yaml"
