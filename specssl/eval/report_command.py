"""``specssl report`` — one self-contained HTML page for a run or a comparison of runs.

Spectra of Z and Ẑ across epochs, the label-free metrics and kNN / probe accuracy over epochs,
the config differences and the collapse verdict, with every figure embedded (no network). See
:mod:`specssl.eval.report`. Nothing heavy is imported before :func:`run`.
"""

from __future__ import annotations

import argparse

HELP = "one self-contained HTML report of run directories: spectra, metrics, collapse verdict"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories (runs/<name>)")
    parser.add_argument(
        "--out",
        help="the HTML file (default: RUN/report.html for one run, report.html for several)",
    )
    parser.add_argument("--title", help="page title (default: the run names)")


def run(args: argparse.Namespace) -> int:
    from specssl.eval.report import NotARunError, build_report

    try:
        path = build_report(args.runs, args.out, args.title)
    except NotARunError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    print(f"report: {path}")
    return 0
