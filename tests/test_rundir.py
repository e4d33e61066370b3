"""Run directories never lose or misreport work: resume finds the newest checkpoint or says so,
a resume cannot silently change the config, and one process writes a run directory at a time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import TINY_RUN

from specssl.train.config import ConfigError, load_config
from specssl.train.run import pretrain
from specssl.train.rundir import RunLock

TINY = [
    *TINY_RUN,
    "trainer.max_epochs=1",
    "monitor.knn_every=0",
    "monitor.knn_on_init=false",
    "monitor.spectrum_every=0",
]


def tiny(tmp_path: Path, *extra: str):
    return load_config(None, [*TINY, f"output_dir={tmp_path}", "run_name=run", *extra])


def cli(tmp_path: Path, *args: str, wait: bool = True):
    cmd = [sys.executable, "-m", "specssl", "pretrain", *args]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)


def test_resume_without_any_checkpoint_is_one_line_naming_where_it_looked(tmp_path):
    out = cli(tmp_path, *TINY, f"output_dir={tmp_path}", "run_name=typo", "--resume")
    assert out.returncode == 2
    assert "--resume: no checkpoint in" in out.stderr and "typo" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "typo" / "config.yaml").exists()


def test_resume_finds_the_epoch_checkpoint_when_last_is_missing(tmp_path):
    """A kill between Lightning's removal of the old ``last.ckpt`` link and the new one leaves
    only ``epochNNNN.ckpt``: --resume continues from it instead of starting afresh."""
    first = pretrain(tiny(tmp_path), logger=False)
    assert first.steps == 4
    ckpts = tmp_path / "run" / "checkpoints"
    (ckpts / "last.ckpt").unlink()
    assert [p.name for p in ckpts.glob("epoch*.ckpt")] == ["epoch0000.ckpt"]
    resumed = pretrain(tiny(tmp_path, "trainer.max_epochs=2"), resume="last", logger=False)
    assert resumed.steps == 8  # 4 more steps, not 8 from scratch
    dangling = ckpts / "last.ckpt"
    dangling.unlink()
    dangling.symlink_to(ckpts / "gone.ckpt")
    again = pretrain(tiny(tmp_path, "trainer.max_epochs=3"), resume="last", logger=False)
    assert again.steps == 12


def test_a_corrupt_checkpoint_on_resume_is_one_line(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"bad\.ckpt is unreadable") as err:
        pretrain(tiny(tmp_path), resume=str(bad), logger=False)
    assert "\n" not in str(err.value)


def test_resume_with_a_changed_setting_stops_naming_it_and_records_allowed_changes(tmp_path):
    pretrain(tiny(tmp_path), logger=False)
    with pytest.raises(ConfigError, match=r"optim\.lr \(0\.3 -> 1000000\.0\)"):
        pretrain(tiny(tmp_path, "optim.lr=1e6", "trainer.max_epochs=2"), resume="last")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 0.3  # config.yaml still says what ran
    pretrain(tiny(tmp_path, "trainer.max_epochs=2"), resume="last", logger=False)
    changes = yaml.safe_load((tmp_path / "run" / "config_changes.yaml").read_text())
    assert changes == [{"step": 4, "key": "trainer.max_epochs", "old": 1, "new": 2}]
    assert (
        yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["trainer"]["max_epochs"] == 2
    )


def test_a_second_run_on_a_directory_in_use_stops_at_once(tmp_path):
    args = [*TINY, f"output_dir={tmp_path}", "run_name=shared", "trainer.max_epochs=200"]
    first = cli(tmp_path, *args, wait=False)
    try:
        lock = tmp_path / "shared" / ".lock"
        deadline = time.time() + 120
        while not lock.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert lock.exists(), "the first run never took its lock"
        assert json.loads(lock.read_text())["pid"] == first.pid
        start = time.time()
        second = cli(tmp_path, *args)
        assert second.returncode == 2 and time.time() - start < 60
        assert f"is in use by pid {first.pid} on {socket.gethostname()}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()
    # the killed run left its lock behind: stale (its pid is gone), so the next run takes it
    assert (tmp_path / "shared" / ".lock").exists()
    third = cli(tmp_path, *[a for a in args if "max_epochs" not in a], "trainer.max_steps=1")
    assert third.returncode == 0, third.stderr[-1500:]
    assert not (tmp_path / "shared" / ".lock").exists()  # released at the end


def test_lock_of_a_live_process_is_respected_and_a_dead_ones_taken_over(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / ".lock"
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        with pytest.raises(ConfigError, match=f"in use by pid {sleeper.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    with RunLock(tmp_path) as held:
        assert held.held and json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_an_integer_limit_train_batches_counts_batches(tmp_path):
    cfg = tiny(tmp_path, "trainer.limit_train_batches=1", "trainer.max_epochs=2")
    assert cfg.trainer.limit_train_batches == 1 and isinstance(cfg.trainer.limit_train_batches, int)
    assert pretrain(cfg, logger=False).steps == 2  # one batch per epoch, not the whole epoch
    assert tiny(tmp_path, "trainer.limit_train_batches=0.5").trainer.limit_train_batches == 0.5


def test_batch_axis_whitening_wider_than_its_batch_warns_once(tmp_path):
    import warnings

    from specssl.train.module import SSLModule

    wide = tiny(tmp_path, "method.loss={T: 4, axis: batch}", "method.proj_output_dim=128")
    with pytest.warns(UserWarning, match=r"rank <= 63 < 128 by construction") as record:
        SSLModule(wide, num_classes=10)
    assert sum("by construction" in str(w.message) for w in record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        SSLModule(tiny(tmp_path, "method.loss={T: 4, axis: channel}"), num_classes=10)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method.loss={T: abc}"], "iteration number T must be a non-negative int, got 'abc'"),
        (
            ["method.name=cwrgp", "method.loss={groups: 3}"],
            "groups=3 must be a positive divisor of the dimension d=16",
        ),
        (["method.name=cwrgp", "method.loss={w_size: 48}"], "w_size=48 must be >= 2 and divide"),
        (["method.name=cwrgp", "method.loss={T: 4}"], "CWRGPLoss accepts: groups, w_size"),
    ],
)
def test_bad_loss_values_are_one_line_before_the_first_step(tmp_path, overrides, message):
    cfg = tiny(tmp_path, *overrides)
    with pytest.raises(ConfigError, match=r"config key 'method\.loss'") as err:
        pretrain(cfg, logger=False)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_an_unknown_dataset_name_is_one_line_even_without_a_root(tmp_path):
    with pytest.raises(ConfigError, match=r"config key 'data\.name': unknown dataset 'cifar11'"):
        pretrain(tiny(tmp_path, "data.name=cifar11"), logger=False)


def test_a_truncated_cifar_batch_is_one_line_naming_the_file(tmp_path):
    import pickle

    import numpy as np

    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), "labels": [0] * 20}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["x"] * 10}))
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:500])
    cfg = tiny(tmp_path, "data.name=cifar10", f"data.root={tmp_path / 'data'}", "data.subset=null")
    with pytest.raises(ConfigError, match="data_batch_3") as err:
        pretrain(cfg, logger=False)
    assert "\n" not in str(err.value) and "cannot read 'cifar10'" in str(err.value)
