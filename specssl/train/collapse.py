"""The collapse alarm: dimensional collapse read from the spectrum monitor's snapshots.

Dimensional collapse (Jing et al., ICLR 2022; the INTL paper's IterNorm-only baseline) is an
embedding whose samples span only a few directions. The spectrum monitor
(:class:`specssl.train.callbacks.SpectrumMonitor`) measures, every ``monitor.spectrum_every``
epochs, rank-aware and label-free metrics of the embedding ``Z``; the alarm watches one of them
(``monitor.collapse_metric``, default ``z/effective_rank``: ``exp H(λ / Σλ)`` over the
eigenvalues ``λ`` of the ``d x d`` covariance of ``Z``, Roy & Vetterli 2007, the number of
directions the embedding effectively spreads over, ``1`` for a line; RankMe, ``z/rankme``, of
Garrido et al., ICML 2023, is the same entropy over the singular values of the uncentred matrix).

Rule: the run has collapsed when the metric is below ``monitor.collapse_threshold`` in
``monitor.collapse_patience`` consecutive snapshots from epoch ``monitor.collapse_after`` on
(the snapshot at random init, epoch 0, is shown but never counted). The threshold, patience and
first epoch are chosen from measured runs: ``docs/results/collapse_alarm/README.md``.

Modes (``monitor.collapse_alarm``): ``off``; ``warn`` prints the evidence (the metric, its
trajectory over the epochs, the spectrum plot and CSV) once, when the rule first holds;
``stop`` also ends the run cleanly at the end of the first epoch at or after that whose
checkpoint is saved (``monitor.checkpoint_every``), so the collapsed network is kept. With the
alarm on, the verdict after every snapshot is written to ``<run>/spectrum/collapse.json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L

from specssl.core.errors import ConfigError

#: The values of ``monitor.collapse_alarm``.
MODES = ("off", "warn", "stop")

#: File of the verdict, in the spectrum monitor's directory.
VERDICT_FILE = "collapse.json"


@dataclass(frozen=True)
class CollapseRule:
    """``metric`` (a ``"<which>/<name>"`` key of a spectrum snapshot) below ``threshold`` in
    ``patience`` consecutive snapshots from epoch ``after`` on (the early epochs of every
    method pass through a near-collapsed spectrum: docs/results/collapse_alarm/README.md)."""

    metric: str
    threshold: float
    patience: int
    after: int = 1

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ConfigError("config key 'monitor.collapse_patience': must be >= 1")
        if self.after < 1:
            raise ConfigError("config key 'monitor.collapse_after': must be >= 1")
        if "/" not in self.metric:
            raise ConfigError(
                f"config key 'monitor.collapse_metric': {self.metric!r} is not a spectrum "
                "metric key such as z/rankme or z/effective_rank"
            )


@dataclass
class CollapseVerdict:
    """The rule applied to a run's snapshots.

    ``trajectory``: ``(epoch, value)`` of every snapshot that has the metric, epoch 0 (random
    init) included; ``since``: the first epoch of the run of ``patience`` snapshots below the
    threshold that made the verdict (``None`` when it has not collapsed); ``below``: the
    epochs from ``rule.after`` on below the threshold.
    """

    collapsed: bool
    rule: CollapseRule
    trajectory: list[tuple[int, float]] = field(default_factory=list)
    since: int | None = None
    below: list[int] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        """True when at least one snapshot after random init has the metric."""
        return any(epoch > 0 for epoch, _ in self.trajectory)

    @property
    def status(self) -> str:
        """``collapsed``, ``healthy`` or ``not measured``."""
        if self.collapsed:
            return "collapsed"
        return "healthy" if self.measured else "not measured"

    def evidence(self) -> str:
        """One line: the rule, whether it holds, and the metric's trajectory."""
        rule = self.rule
        path = ", ".join(f"{epoch}: {value:.3g}" for epoch, value in self.trajectory)
        if self.collapsed:
            head = (
                f"{rule.metric} < {rule.threshold:g} in {rule.patience} consecutive spectrum "
                f"snapshots since epoch {self.since} (counted from epoch {rule.after})"
            )
        else:
            head = (
                f"{rule.metric} not below {rule.threshold:g} in {rule.patience} consecutive "
                f"snapshots from epoch {rule.after} on"
            )
        return f"{head}; {rule.metric} by epoch: {path or 'no snapshot'}"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "collapsed": self.collapsed,
            "rule": asdict(self.rule),
            "since": self.since,
            "below": self.below,
            "trajectory": [[epoch, value] for epoch, value in self.trajectory],
            "evidence": self.evidence(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CollapseVerdict:
        return cls(
            collapsed=bool(data["collapsed"]),
            rule=CollapseRule(**data["rule"]),
            trajectory=[(int(e), float(v)) for e, v in data["trajectory"]],
            since=data.get("since"),
            below=[int(e) for e in data.get("below", [])],
        )


def collapse_verdict(snapshots: Sequence[Mapping[str, Any]], rule: CollapseRule) -> CollapseVerdict:
    """Apply ``rule`` to spectrum snapshots (mappings with ``"epoch"`` and metric keys, in
    epoch order: the monitor's snapshots or the rows of ``spectrum/scalars.csv``).

    Collapsed when some ``rule.patience`` consecutive snapshots with ``epoch >= rule.after``
    all have
    ``metric < threshold``; a non-finite value counts as below (a NaN spectrum is no healthy
    embedding). Snapshots without the metric are skipped.
    """
    trajectory = [
        (int(s["epoch"]), float(s[rule.metric]))
        for s in snapshots
        if s.get(rule.metric) is not None
    ]
    trained = [(epoch, value) for epoch, value in trajectory if epoch >= rule.after]
    below = [epoch for epoch, value in trained if not value >= rule.threshold]
    since = None
    for start in range(len(trained) - rule.patience + 1):
        window = trained[start : start + rule.patience]
        if all(not value >= rule.threshold for _, value in window):
            since = window[0][0]
            break
    return CollapseVerdict(since is not None, rule, trajectory, since, below)


def rule_of(monitor: Any) -> CollapseRule:
    """The :class:`CollapseRule` of a ``MonitorConfig``."""
    return CollapseRule(
        monitor.collapse_metric,
        float(monitor.collapse_threshold),
        int(monitor.collapse_patience),
        int(monitor.collapse_after),
    )


def read_verdict(spectrum_dir: str | Path) -> CollapseVerdict | None:
    """The verdict the alarm wrote in ``spectrum_dir`` (``None`` when there is none)."""
    path = Path(spectrum_dir) / VERDICT_FILE
    if not path.is_file():
        return None
    return CollapseVerdict.from_json(json.loads(path.read_text()))


class CollapseAlarm(L.Callback):
    """Watches the snapshots of ``spectrum`` (a :class:`SpectrumMonitor`, listed before this
    callback so it records first) with ``rule``; ``mode`` in :data:`MODES`.

    ``checkpoint_every``: the run's checkpoint interval in epochs; ``stop`` stops at the end of
    the first epoch at or after the alarm that is a multiple of it (the checkpoint of that
    epoch is then written by Lightning before the run ends). Under DDP the verdict is made on
    rank 0 (where the monitor records) and the stop decision broadcast to every rank.
    ``fired_at``: the epoch the alarm first fired (``None`` until then).
    """

    def __init__(
        self, spectrum: Any, mode: str, rule: CollapseRule, *, checkpoint_every: int = 1
    ) -> None:
        if mode not in MODES:
            raise ConfigError(
                f"config key 'monitor.collapse_alarm': {mode!r} is not one of {', '.join(MODES)}"
            )
        self.spectrum, self.mode, self.rule = spectrum, mode, rule
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.fired_at: int | None = None
        self.verdict: CollapseVerdict | None = None

    @classmethod
    def from_config(cls, monitor: Any, spectrum: Any) -> CollapseAlarm:
        """The alarm of a ``MonitorConfig`` watching ``spectrum``."""
        return cls(
            spectrum,
            monitor.collapse_alarm,
            rule_of(monitor),
            checkpoint_every=monitor.checkpoint_every,
        )

    def check(self, epoch: int) -> CollapseVerdict | None:
        """Apply the rule to the monitor's snapshots after epoch ``epoch``; write the verdict
        file and, when the alarm first fires, print the evidence. ``None`` when off or when
        there is no snapshot yet. A metric that the snapshots lack is a :class:`ConfigError`
        naming the keys they have."""
        snapshots = self.spectrum.snapshots
        if self.mode == "off" or not snapshots:
            return None
        if self.rule.metric not in snapshots[-1]:
            have = sorted(k for k, v in snapshots[-1].items() if "/" in k and isinstance(v, float))
            raise ConfigError(
                f"config key 'monitor.collapse_metric': the spectrum monitor does not measure "
                f"{self.rule.metric!r} in this run; it measures {', '.join(have)}"
            )
        self.verdict = collapse_verdict(snapshots, self.rule)
        out = Path(self.spectrum.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / VERDICT_FILE).write_text(json.dumps(self.verdict.to_json(), indent=2))
        if self.verdict.collapsed and self.fired_at is None:
            self.fired_at = epoch
            print(self.message(epoch), file=sys.stderr, flush=True)
        return self.verdict

    def message(self, epoch: int) -> str:
        """The warning printed when the alarm fires after epoch ``epoch``."""
        assert self.verdict is not None
        out = Path(self.spectrum.out_dir)
        plots = sorted(out.glob("epoch_*.png"))
        where = [f"spectrum plot {plots[-1]}"] if plots else []
        where += [f"eigenvalues {out / 'eigenvalues.csv'}", f"verdict {out / VERDICT_FILE}"]
        text = (
            f"collapse alarm after epoch {epoch}: dimensional collapse: "
            f"{self.verdict.evidence()}; {', '.join(where)}"
        )
        if self.mode == "stop":
            stop_at = -(-epoch // self.checkpoint_every) * self.checkpoint_every
            text += (
                f"; monitor.collapse_alarm=stop: the run stops after epoch {stop_at}, its "
                "checkpoint kept"
            )
        return text

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.mode == "off":
            return
        epoch = trainer.current_epoch + 1
        snapshots = self.spectrum.snapshots
        if trainer.is_global_zero and snapshots and snapshots[-1]["epoch"] == epoch:
            self.check(epoch)
            pl_module.log("collapse/alarm", float(self.fired_at is not None), rank_zero_only=True)
        if self.mode != "stop":
            return
        stop = self.fired_at is not None and epoch % self.checkpoint_every == 0
        if trainer.world_size > 1:
            stop = bool(trainer.strategy.broadcast(stop, src=0))
        if stop:
            trainer.should_stop = True
