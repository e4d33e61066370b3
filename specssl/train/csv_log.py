"""A CSV metrics logger that survives resuming: the rows of the interrupted run are kept."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger


class ResumableCSVLogger(CSVLogger):
    """Lightning's :class:`CSVLogger` for ``<save_dir>/<version>/metrics.csv``, resume-aware.

    Lightning's logger deletes ``metrics.csv`` when it starts in a non-empty directory, so a
    resumed run would lose every row logged before the interruption. Given ``resume_step``
    (the global step of the checkpoint the run resumes from), this logger keeps the rows
    logged before that step and drops the later ones (the interrupted segment after its last
    checkpoint, which the resumed run logs again), so the file of a resumed run equals that
    of the uninterrupted run.
    """

    def __init__(self, save_dir: str | Path, version: str, resume_step: int | None = None):
        super().__init__(save_dir, name="", version=version)
        self._kept_rows: list[dict[str, str]] | None = None
        metrics = Path(self.log_dir) / "metrics.csv"
        if resume_step is not None and metrics.is_file():
            with open(metrics, newline="") as fh:
                self._kept_rows = [row for row in csv.DictReader(fh) if _step(row) < resume_step]

    @property
    def experiment(self) -> Any:
        fresh = self._experiment is None
        experiment = super().experiment  # deletes an existing metrics.csv (rank 0 only)
        if fresh and self._experiment is not None and self._kept_rows:
            keys = sorted(set().union(*self._kept_rows))
            with open(experiment.metrics_file_path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=keys)
                writer.writeheader()
                writer.writerows(self._kept_rows)
            experiment.metrics_keys = keys
        self._kept_rows = None if self._experiment is not None else self._kept_rows
        return experiment


def _step(row: dict[str, str]) -> int:
    value = row.get("step") or ""
    return int(float(value)) if value else -1
