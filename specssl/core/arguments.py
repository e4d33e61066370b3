"""``argparse`` value types shared by the command modules: bad values are usage errors.

Each raises :class:`argparse.ArgumentTypeError`, which :func:`specssl.cli.main` prints as one
line with exit code 2.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse ``type=`` for an integer >= 1 (a bad value is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _finite_number(text: str, *, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    ok = value > 0 if positive else value >= 0  # False for nan
    if not ok or value == float("inf"):
        bound = "> 0" if positive else ">= 0"
        raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse ``type=`` for a finite number > 0."""
    return _finite_number(text, positive=True)


def non_negative_float(text: str) -> float:
    """argparse ``type=`` for a finite number >= 0."""
    return _finite_number(text, positive=False)


__all__ = ["non_negative_float", "positive_float", "positive_int"]
