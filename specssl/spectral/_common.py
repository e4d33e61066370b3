"""Deprecated alias of :mod:`specssl.spectral.common` (kept while in-flight code moves over)."""

from specssl.spectral.common import *  # noqa: F403
