"""The collapse alarm (``monitor.collapse_alarm``): the rule on hand-made trajectories, and short
real runs — it fires on IterNorm-only and on ST-power with p = 0 and stays quiet on INTL and
VICReg; ``stop`` ends the run with the checkpoint kept."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import TINY_RUN

from specssl.core.errors import ConfigError
from specssl.train.collapse import CollapseAlarm, CollapseRule, collapse_verdict
from specssl.train.config import MonitorConfig, load_config
from specssl.train.run import format_summary, pretrain

#: The tiny runs of docs/results/collapse_alarm/measure.py (the same overrides, so the same
#: trajectories as its measurements_5ep.json): a spectrum snapshot every epoch.
EPOCHS = 5
SHORT = [
    *TINY_RUN,
    "monitor.spectrum_every=1",
    "monitor.spectrum_samples=128",
    "monitor.knn_k=[20]",
]

RULE = CollapseRule("z/rankme", 2.0, 2)


def snaps(*values: float) -> list[dict[str, float]]:
    return [{"epoch": e, "z/rankme": v} for e, v in enumerate(values)]


def test_rule_needs_patience_consecutive_snapshots_after_random_init():
    assert not collapse_verdict(snaps(1.0, 1.5, 3.0, 1.5, 3.0), RULE).collapsed  # never 2 in a row
    assert not collapse_verdict(snaps(1.0, 1.0), RULE).collapsed  # epoch 0 does not count
    verdict = collapse_verdict(snaps(5.0, 3.0, 1.9, 1.2, 1.1), RULE)
    assert verdict.collapsed and verdict.since == 2 and verdict.below == [2, 3, 4]
    assert verdict.trajectory[0] == (0, 5.0) and verdict.status == "collapsed"
    assert "epoch 2" in verdict.evidence() and "z/rankme" in verdict.evidence()
    assert collapse_verdict(snaps(5.0, 2.0, 2.0), RULE).status == "healthy"  # 2.0 is not < 2.0
    assert collapse_verdict(snaps(5.0, math.nan, math.nan), RULE).collapsed  # NaN is not healthy
    assert collapse_verdict(snaps(5.0), RULE).status == "not measured"
    one = collapse_verdict(snaps(5.0, 3.0, 1.0), CollapseRule("z/rankme", 2.0, 1))
    assert one.collapsed and one.since == 2
    late = CollapseRule("z/rankme", 2.0, 2, after=3)  # epochs 1 and 2 are not counted
    assert not collapse_verdict(snaps(5.0, 1.0, 1.0, 3.0, 1.0), late).collapsed
    assert collapse_verdict(snaps(5.0, 1.0, 1.0, 1.0, 1.0), late).since == 3


def test_verdict_round_trips_through_json():
    verdict = collapse_verdict(snaps(5.0, 1.0, 1.0), RULE)
    again = type(verdict).from_json(json.loads(json.dumps(verdict.to_json())))
    assert again == verdict


def test_alarm_settings_are_checked():
    assert load_config(None, ["monitor.collapse_alarm=off"]).monitor.collapse_alarm == "off"
    assert MonitorConfig(collapse_alarm=False).collapse_alarm == "off"  # YAML's unquoted off
    with pytest.raises(ConfigError, match=r"monitor\.collapse_alarm"):
        load_config(None, ["monitor.collapse_alarm=loud"])
    with pytest.raises(ConfigError, match=r"monitor\.collapse_patience"):
        load_config(None, ["monitor.collapse_patience=0"])
    with pytest.raises(ConfigError, match=r"monitor\.collapse_after"):
        load_config(None, ["monitor.collapse_after=0"])
    with pytest.raises(ConfigError, match=r"monitor\.collapse_metric"):
        CollapseRule("rankme", 2.0, 2)


def test_a_metric_the_monitor_does_not_measure_names_what_it_does(tmp_path):
    monitor = SimpleNamespace(snapshots=[{"epoch": 0, "z/rankme": 3.0}], out_dir=tmp_path)
    alarm = CollapseAlarm(monitor, "warn", CollapseRule("zhat/rankme", 2.0, 2))
    with pytest.raises(ConfigError, match=r"zhat/rankme.*z/rankme"):
        alarm.check(0)


def test_stop_waits_for_the_next_checkpointed_epoch(tmp_path, capsys):
    monitor = SimpleNamespace(snapshots=[], out_dir=tmp_path)
    alarm = CollapseAlarm(monitor, "stop", RULE, checkpoint_every=2)
    trainer = SimpleNamespace(current_epoch=0, is_global_zero=True, world_size=1, should_stop=False)
    module = SimpleNamespace(log=lambda *args, **kwargs: None)
    stopped = []
    for epoch, value in enumerate([5.0, 3.0, 1.5, 1.2, 1.1, 1.0]):
        monitor.snapshots.append({"epoch": epoch, "z/rankme": value})
        if epoch:
            trainer.current_epoch = epoch - 1
            alarm.on_train_epoch_end(trainer, module)
            stopped.append(trainer.should_stop)
    assert alarm.fired_at == 3  # below in epochs 2 and 3
    assert stopped == [False, False, False, True, True]  # epoch 3 is not checkpointed, 4 is
    assert "stops after epoch 4" in capsys.readouterr().err


def short_run(tmp_path: Path, name: str, epochs: int, *extra: str):
    overrides = [*SHORT, f"trainer.max_epochs={epochs}", f"monitor.knn_every={epochs}"]
    overrides += [f"output_dir={tmp_path}", f"run_name={name}", *extra]
    return pretrain(load_config(None, overrides), logger=False)


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("st_power_p0", ["method.name=st_power", "method.loss={p: 0.0}"]),
        ("intl", ["method.name=intl"]),
        ("vicreg", ["method.name=vicreg"]),
    ],
)
def test_warn_fires_on_collapse_and_stays_quiet_on_healthy_runs(tmp_path, capsys, name, overrides):
    result = short_run(tmp_path, name, EPOCHS, *overrides, "monitor.collapse_alarm=warn")
    err = capsys.readouterr().err
    verdict = json.loads((result.run_dir / "spectrum" / "collapse.json").read_text())
    assert result.steps == EPOCHS * 4  # warn never stops the run
    if name == "st_power_p0":
        assert verdict["status"] == "collapsed", verdict["evidence"]
        assert err.count("collapse alarm") == 1  # once, when it first fires
        assert "z/effective_rank" in err and "eigenvalues.csv" in err and "by epoch: 0: " in err
    else:
        assert verdict["status"] == "healthy", verdict["evidence"]
        assert "collapse alarm" not in err
    assert [e for e, _ in verdict["trajectory"]] == list(range(EPOCHS + 1))


def test_stop_ends_an_iternorm_only_run_and_keeps_its_checkpoint(tmp_path, capsys):
    epochs = 7
    alarm = ["method.name=iternorm", "monitor.collapse_alarm=stop"]
    result = short_run(tmp_path, "iternorm", epochs, *alarm)
    err = capsys.readouterr().err
    verdict = json.loads((result.run_dir / "spectrum" / "collapse.json").read_text())
    assert verdict["status"] == "collapsed", verdict["evidence"]
    stopped = verdict["since"] + verdict["rule"]["patience"] - 1  # the epoch the rule first held
    assert f"collapse alarm after epoch {stopped}" in err and "stops after epoch" in err
    assert result.steps == stopped * 4 < epochs * 4
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == result.steps
    summary = format_summary(result)
    assert "collapse alarm: collapsed" in summary
    assert f"report: specssl report {result.run_dir}" in summary
