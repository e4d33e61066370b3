"""The papers' experiments as cached, resumable sweeps of pretraining runs.

* :mod:`~specssl.experiments.budget`: the smoke / cpu / paper scales of a run.
* :mod:`~specssl.experiments.sweep`: :class:`RunSpec` (grid point, seed, recipe, overrides)
  and :class:`Sweep` (train what is not cached; divergence is a result).
* :mod:`~specssl.experiments.report`: mean ± std per grid point, markdown / CSV / figure.
* :mod:`~specssl.experiments.command`: the command line of the ``experiments/`` scripts.
"""

from specssl.experiments.budget import SCALES, Budget
from specssl.experiments.report import Column, Section, markdown_table, summarize, write_report
from specssl.experiments.sweep import METRICS, RunSpec, Sweep, config_hash, plan

__all__ = [
    "METRICS",
    "SCALES",
    "Budget",
    "Column",
    "RunSpec",
    "Section",
    "Sweep",
    "config_hash",
    "markdown_table",
    "plan",
    "summarize",
    "write_report",
]
