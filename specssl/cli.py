"""The ``specssl`` command line: wires a registry of subcommands, one module each.

``specssl <command> [options]``; ``main(argv) -> int`` is the console-script entry point.

A command module (listed in :data:`COMMANDS`) provides:

* ``HELP: str`` — one line for ``specssl --help``;
* ``add_arguments(parser: argparse.ArgumentParser) -> None`` — declares its options;
* ``run(args: argparse.Namespace) -> int`` — does the work and returns the exit code.

Command modules must be cheap to import (no torch at module level): every one of them is
imported to build the parser, also for ``specssl --help``. Bad user input is reported by
raising :class:`argparse.ArgumentTypeError` (from a ``type=`` converter or from ``run``):
:func:`main` prints it as one line on stderr and returns exit code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from specssl import __version__

#: Subcommand name -> module implementing it (see the module docstring for the contract).
COMMANDS: dict[str, str] = {
    "pretrain": "specssl.train.command",
    "eval": "specssl.eval.command",
    "export": "specssl.eval.export_command",
    "toy": "specssl.toy.command",
    "spectrum": "specssl.eval.spectrum_command",
    "finetune": "specssl.eval.finetune_command",
    "report": "specssl.eval.report_command",
}

USAGE_ERROR = 2


class _UsageError(Exception):
    """Raised instead of argparse's print-usage-and-``sys.exit(2)``."""


class _ParserExit(Exception):  # noqa: N818 - control flow (--help), not an error
    """Raised instead of ``sys.exit`` by ``--help`` / ``--version``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises instead of exiting, so :func:`main` returns codes."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _ParserExit(status)


def build_parser() -> argparse.ArgumentParser:
    """The ``specssl`` parser with one subparser per entry of :data:`COMMANDS`."""
    parser = _Parser(
        prog="specssl",
        description=(
            "Self-supervised learning with spectral transformation of the embedding "
            "covariance (INTL, ST-power, W-MSE, CW-RGP, ...)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="<command>")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the chosen command, return its exit code.

    Exit codes: the command's own (0 on success); 0 for ``--help``/``--version``; 2 for bad
    user input, reported as one line on stderr.
    """
    parser = build_parser()
    args = argparse.Namespace(command=None)
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            names = ", ".join(COMMANDS)
            parser.error(f"choose a command: {names}")
        return int(args._run(args))
    except _ParserExit as stop:
        return stop.status
    except _UsageError as err:
        print(err, file=sys.stderr)
        return USAGE_ERROR
    except argparse.ArgumentTypeError as err:
        prog = " ".join(filter(None, ["specssl", args.command]))
        print(f"{prog}: error: {err}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
