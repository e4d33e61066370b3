"""The command line shared by the experiment scripts in ``experiments/``.

Every script takes ``--scale {smoke,cpu,paper}``, ``--seeds``, ``--out``, ``--data-root``,
``--runs-dir``, ``--epochs``, ``--devices``, ``--threads``, ``--set key=value ...`` (extra
overrides for every run), ``--dry-run`` (list the runs and which are done) and
``--report-only`` (rebuild the report from the cached records), plus its own grid options;
:func:`execute` runs the sweep and writes the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from specssl.experiments.budget import SCALES, Budget
from specssl.experiments.sweep import RunSpec, Sweep, is_rank_zero
from specssl.train.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "results"

ReportFn = Callable[[Sweep, list[RunSpec], list[dict[str, Any]]], Path]


def sweep_parser(description: str, *, name: str, default_seeds: int) -> argparse.ArgumentParser:
    """Parser with the common options; scripts add their grid options to it."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(experiment=name, default_seeds=default_seeds)
    parser.add_argument("--scale", choices=SCALES, default="cpu", help="budget (default: cpu)")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help=f"seeds to run (default: 0..{default_seeds - 1}; smoke: 0)",
    )
    parser.add_argument(
        "--data-root",
        default=os.environ.get("SPECSSL_DATA", "./data"),
        help="directory holding cifar-10-batches-py (default: $SPECSSL_DATA or ./data)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"results directory (docs/results/{name})"
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help=f"Lightning run directories (runs/experiments/{name}/<scale>)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every run")
    parser.add_argument(
        "--devices", type=int, default=1, help="devices per run; the global batch is kept"
    )
    parser.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="extra config overrides for every run (go last)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's; smoke: 1 — tiny ops gain nothing from more)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the runs, train nothing")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report only")
    parser.add_argument(
        "--earlier-semantics",
        action="store_true",
        help="run with the defaults of before 2026-12-02 (joint BatchNorm forward, INTL all-pairs"
        ", ...; docs/fidelity.md): reproduces or extends the records made then",
    )
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and fill the scale-dependent defaults (seeds, out, runs-dir)."""
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = [0] if args.scale == "smoke" else list(range(args.default_seeds))
    if args.out is None:
        args.out = RESULTS / args.experiment
    if args.runs_dir is None:
        args.runs_dir = REPO / "runs" / "experiments" / args.experiment / args.scale
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be >= 1")
    if args.devices < 1:
        parser.error("--devices must be >= 1")
    if args.threads is None and args.scale == "smoke":
        args.threads = 1
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    return args


def budget_of(args: argparse.Namespace) -> Budget:
    root = None if args.scale == "smoke" else str(args.data_root)
    return Budget(args.scale, root, args.epochs, args.devices)


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """``python experiments/<script> <args>`` as typed (for the report)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return f"python experiments/{script} {shlex.join(args)}".strip()


def execute(
    args: argparse.Namespace,
    command: str,
    specs: list[RunSpec],
    report: ReportFn,
) -> int:
    """Run (or list, or only report) the sweep of ``specs``; 2 on a configuration error."""
    if getattr(args, "earlier_semantics", False):
        specs = [dataclasses.replace(spec, earlier_semantics=True) for spec in specs]
    sweep = Sweep(
        args.experiment,
        args.scale,
        Path(args.out),
        Path(args.runs_dir),
        command,
        logger=args.scale != "smoke",
    )
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        if args.dry_run:
            for spec in specs:
                _, digest = sweep.resolve(spec)
                state = "done" if sweep.cached(spec, digest) else "to run"
                print(f"{spec.key:<48} {digest}  {state}")
            if specs:
                print("overrides of the first run:", " ".join(specs[0].overrides))
            return 0
        first_of_seed: dict[int, RunSpec] = {}
        for spec in specs:
            first_of_seed.setdefault(spec.seed, spec)
        found = (sweep.reference(s, train=not args.report_only) for s in first_of_seed.values())
        sweep.references = [r for r in found if r is not None]
        if args.report_only:
            records = sweep.records(specs)
        else:
            refresh = None if args.scale == "smoke" else (lambda r: report(sweep, specs, r))
            records = sweep.run(specs, after_each=refresh)
        if not is_rank_zero():  # a DDP worker process: rank 0 writes the report
            return 0
        md = report(sweep, specs, records)
    except (ConfigError, FileNotFoundError) as err:  # bad override, missing data directory
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
    print(f"wrote {md} ({len(records)}/{len(specs)} runs done)")
    return 0


__all__ = ["budget_of", "command_line", "execute", "parse", "sweep_parser"]
