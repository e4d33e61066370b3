"""The training system end to end on the built-in digits data (tiny networks, seconds each)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import TINY_RUN

from specssl.train.config import ConfigError, load_config
from specssl.train.module import TrainingDivergedError
from specssl.train.run import pretrain

REPO = Path(__file__).resolve().parents[1]

TINY = [*TINY_RUN, "trainer.max_epochs=2", "monitor.spectrum_samples=128", "monitor.knn_k=[20,5]"]


def tiny(tmp_path: Path, *extra: str):
    return load_config(None, [*TINY, f"output_dir={tmp_path}", "run_name=run", *extra])


def test_every_recipe_in_configs_loads_and_validates():
    recipes = sorted((REPO / "configs").rglob("*.yaml"))
    assert len(recipes) >= 6
    for path in recipes:
        cfg = load_config(path)
        assert cfg.method.name and cfg.data.name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.batchsize=3"], "data.batchsize"),
        (["optim.lr=fast"], "optim.lr"),
        (["data.batch_size=1"], "data.batch_size"),
        (["nonsense"], "key.subkey=value"),
        (["method.name=nope"], None),
    ],
)
def test_bad_config_is_a_one_line_error_naming_the_key(tmp_path, overrides, message):
    if message is None:  # method names are checked when the method is built
        cfg = tiny(tmp_path, *overrides)
        with pytest.raises(ConfigError, match=r"method\.name"):
            pretrain(cfg, logger=False)
        return
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_data_directory_fails_before_training(tmp_path):
    cfg = tiny(tmp_path, "data.name=cifar10", f"data.root={tmp_path / 'nowhere'}")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        pretrain(cfg, logger=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_loss_argument_names_the_key(tmp_path):
    cfg = tiny(tmp_path, "method.loss={Tee: 4}")
    with pytest.raises(ConfigError, match=r"method\.loss"):
        pretrain(cfg, logger=False)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    return pretrain(tiny(tmp), logger=True), tmp


def test_pretrain_writes_config_checkpoint_logs_spectrum(finished_run):
    result, tmp = finished_run
    run = tmp / "run"
    assert (run / "config.yaml").is_file()
    assert load_config(run / "config.yaml").data.subset == 256  # resolved config reloads
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert not list((run / "checkpoints").glob("*.tmp"))
    assert (run / "logs" / "metrics.csv").is_file()
    assert any((run / "tensorboard").iterdir())
    assert (run / "spectrum" / "eigenvalues.csv").is_file()
    assert (run / "spectrum" / "epoch_002.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.steps == 2 * (256 // 64)
    assert result.knn_initial and result.knn_final
    assert 0 <= result.knn_final["top1_k20"] <= 100
    assert 0 <= result.spectrum["z/condition_indicator"] <= 1
    assert 0 < result.spectrum["z/stable_rank"] <= 1
    assert (run / "results.json").is_file()


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


class _StopAfterEpoch(L.Callback):
    """Simulates an interruption: stop (after the epoch's checkpoint) at the given epoch."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 == self.epoch:
            trainer.should_stop = True


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    extra = ["monitor.knn_every=1", "monitor.spectrum_every=1"]
    whole = pretrain(tiny(tmp_path / "a", *extra))
    interrupted = pretrain(tiny(tmp_path / "b", *extra), extra_callbacks=[_StopAfterEpoch(1)])
    assert interrupted.steps == 256 // 64
    result = pretrain(tiny(tmp_path / "b", *extra), resume="auto")
    assert result.steps == 2 * (256 // 64)
    a = _weights(tmp_path / "a" / "run" / "checkpoints" / "last.ckpt")
    b = _weights(tmp_path / "b" / "run" / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    # The record of the run, not only its weights: the random-init kNN comes from the
    # checkpoint (not from the restored, trained network), the CSV metrics and eigenvalues
    # of the interrupted segment are kept, and the training time adds up over segments.
    assert result.knn_initial == whole.knn_initial == interrupted.knn_initial
    assert result.knn_final == whole.knn_final
    for name in ("logs/metrics.csv", "spectrum/eigenvalues.csv"):
        assert (tmp_path / "b" / "run" / name).read_text() == (
            tmp_path / "a" / "run" / name
        ).read_text(), name
    assert result.wall_time_s > interrupted.wall_time_s > 0


def test_csv_logger_keeps_the_rows_before_the_resumed_step(tmp_path):
    from specssl.train.csv_log import ResumableCSVLogger

    first = ResumableCSVLogger(tmp_path, version="logs")
    for step in range(10):  # an interrupted run logged steps 0-9, its checkpoint is at 6
        first.log_metrics({"loss": float(step)}, step=step)
    first.save()
    resumed = ResumableCSVLogger(tmp_path, version="logs", resume_step=6)
    resumed.log_metrics({"loss": 60.0, "knn": 1.0}, step=6)  # a new column on resume
    resumed.save()
    lines = (tmp_path / "logs" / "metrics.csv").read_text().splitlines()
    assert lines[0] == "knn,loss,step"
    assert lines[1:] == [f",{s}.0,{s}" for s in range(6)] + ["1.0,60.0,6"]


class _PoisonAtStep(L.Callback):
    """Makes the backbone produce NaN from a given optimiser step on."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.backbone.conv1.weight.fill_(float("nan"))


def test_divergence_stops_with_diagnosis_and_keeps_last_good_checkpoint(tmp_path):
    cfg = tiny(tmp_path, "trainer.max_epochs=3")
    with pytest.raises(TrainingDivergedError) as info:
        pretrain(cfg, logger=False, extra_callbacks=[_PoisonAtStep(6)])
    message = str(info.value)
    assert "step 6" in message and "epoch 1" in message and "non-finite" in message
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = _weights(ckpt)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert torch.load(ckpt, weights_only=False)["epoch"] == 0  # the epoch before divergence


def test_bf16_mixed_precision_training_runs(tmp_path):
    """bf16-mixed end to end; that spectral math stays float32 under autocast is proved by the
    loss and spectral tests (bf16 inputs give the float32 value to 1e-5)."""
    cfg = tiny(
        tmp_path,
        "trainer.precision=bf16-mixed",
        "trainer.max_epochs=1",
        "monitor.knn_every=0",
        "monitor.spectrum_every=0",
        "monitor.knn_on_init=false",
    )
    result = pretrain(cfg, logger=False)
    assert result.steps == 256 // 64


def test_cli_pretrain_prints_resolved_config_and_rejects_bad_keys(capsys):
    from specssl.cli import main

    assert main(["pretrain", "--print-config", "method.loss={T: 6}", "data.batch_size=32"]) == 0
    out = capsys.readouterr().out
    assert "T: 6" in out and "batch_size: 32" in out and "name: digits" in out
    assert main(["pretrain", "data.bs=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "data.bs" in err and "\n" not in err
    assert main(["pretrain", "--config", "missing.yaml"]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_cli_pretrain_runs_the_default_recipe_end_to_end(tmp_path, capsys):
    from specssl.cli import main

    overrides = [o for o in TINY if not o.startswith("trainer.max_epochs")]
    code = main(["pretrain", *overrides, "trainer.max_epochs=1", f"output_dir={tmp_path}"])
    assert code == 0
    out = capsys.readouterr().out
    assert "kNN top1_k20" in out and "random init" in out
    assert (tmp_path / "digits-intl" / "checkpoints" / "last.ckpt").exists()


def test_multicrop_views_train_through_the_same_method(tmp_path):
    cfg = tiny(
        tmp_path,
        "data.num_small_crops=2",
        "data.small_crop_size=16",
        "trainer.max_epochs=1",
        "monitor.knn_every=0",
        "monitor.spectrum_every=0",
        "monitor.knn_on_init=false",
    )
    from specssl.train.datamodule import SSLDataModule

    views = SSLDataModule(cfg).train_augment()(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert [v.shape[-1] for v in views] == [32, 32, 16, 16]
    result = pretrain(cfg, logger=False)
    assert result.steps == 256 // 64


def test_max_time_stops_training_when_the_budget_is_spent(tmp_path):
    result = pretrain(tiny(tmp_path, "trainer.max_time=00:00:00:00"), logger=False)
    assert result.steps <= 1  # of 8 without the limit


# ------------------------------------------------------------------ global batch under DDP
DDP_ARGS = [
    "data.subset=256",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "backbone.width=4",
    "method.proj_hidden_dim=32",
    "method.proj_output_dim=16",
    "monitor.knn_every=0",
    "monitor.knn_on_init=false",
    "monitor.spectrum_every=0",
    "monitor.online_probe=false",
]


def _pretrain_cli(tmp_path, *overrides: str):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "specssl", "pretrain", *DDP_ARGS, f"output_dir={tmp_path}"]
    return subprocess.run(
        [*cmd, *overrides], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )


def test_batch_size_is_the_global_batch_split_over_ddp_processes(tmp_path):
    """data.batch_size=64 on 2 CPU processes: 32 images per process and step, so one epoch of
    256 images takes 4 steps (8 x 32 = 256), not the 2 steps of a per-device batch of 64."""
    out = _pretrain_cli(tmp_path, "data.batch_size=64", "run_name=ddp")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert result["steps"] == 4


def test_a_global_batch_that_does_not_split_over_the_processes_is_one_line(tmp_path):
    out = _pretrain_cli(tmp_path, "data.batch_size=63", "run_name=odd")
    assert out.returncode != 0
    assert "config key 'data.batch_size': the global batch 63 does not split evenly over 2" in (
        out.stderr
    )
    assert "Traceback" not in out.stderr
