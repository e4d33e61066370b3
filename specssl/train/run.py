"""``pretrain(cfg)``: build data, method, callbacks and a Lightning Trainer, fit, summarise."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, Timer
from lightning.pytorch.loggers import TensorBoardLogger

from specssl.train.callbacks import (
    AtomicCheckpointIO,
    AtomicLastCheckpoint,
    KNNMonitor,
    RNGStateCallback,
    SpectrumMonitor,
    spectrum_summary_lines,
)
from specssl.train.collapse import CollapseAlarm
from specssl.train.config import Config, ConfigError, save_config
from specssl.train.csv_log import ResumableCSVLogger
from specssl.train.datamodule import SSLDataModule
from specssl.train.module import SSLModule, TrainingDivergedError
from specssl.train.precision import on_cuda, resolve_precision
from specssl.train.rundir import (
    RunLock,
    check_disk_space,
    check_resume_config,
    checkpoint_bytes_estimate,
    last_good_checkpoint,
    newest_checkpoint,
    record_changes,
    remove_partial_writes,
    repair_last_link,
)


@dataclass
class PretrainResult:
    run_dir: Path
    knn_initial: dict[str, float] | None
    knn_final: dict[str, float] | None
    probe: dict[str, float]
    spectrum: dict[str, float]
    wall_time_s: float
    steps: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "knn_initial": self.knn_initial,
            "knn_final": self.knn_final,
            "probe": self.probe,
            "spectrum": self.spectrum,
            "wall_time_s": self.wall_time_s,
            "steps": self.steps,
            **self.extra,
        }


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.output_dir) / (cfg.run_name or f"{cfg.data.name}-{cfg.method.name}")


def resolve_resume(cfg: Config, resume: str | None) -> str | None:
    """The checkpoint to resume from.

    ``None``: none. ``"auto"`` (sweeps): the run's newest complete checkpoint
    (:func:`~specssl.train.rundir.newest_checkpoint`) if any, else start afresh. ``"last"``
    (``specssl pretrain --resume``): the same, but no checkpoint is a one-line
    :class:`ConfigError` naming where it looked. A path: that file.
    """
    if resume is None:
        return None
    if resume in ("auto", "last"):
        found = newest_checkpoint(run_dir_of(cfg))
        if found is None and resume == "last":
            where = run_dir_of(cfg) / "checkpoints"
            raise ConfigError(
                f"--resume: no checkpoint in {where} (looked for last.ckpt and epoch*.ckpt): "
                "the run has not finished an epoch, or output_dir / run_name are not the run's"
            )
        return None if found is None else str(found)
    if not Path(resume).is_file():
        raise ConfigError(f"--resume: checkpoint not found: {resume}")
    return resume


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def checkpoint_step(ckpt_path: str | None) -> int | None:
    """Global step stored in a checkpoint (memory-mapped, tensors not read); ``None`` if none."""
    if ckpt_path is None:
        return None
    import torch

    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
        return int(checkpoint["global_step"])
    except Exception as err:  # truncated / corrupt / not a checkpoint: one line, not a traceback
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"--resume: checkpoint {ckpt_path} is unreadable ({reason})") from None


def build_trainer(
    cfg: Config,
    run_dir: Path,
    callbacks: list[L.Callback],
    logger: bool = True,
    resume_step: int | None = None,
):
    """The Lightning Trainer of ``cfg``; ``max_time`` is enforced by a :class:`Timer` in
    ``callbacks`` (see :func:`pretrain`), not passed to the Trainer."""
    tcfg = cfg.trainer
    devices = _devices(tcfg.devices)
    strategy = tcfg.strategy
    if strategy == "auto" and isinstance(devices, int) and devices > 1:
        strategy = "ddp"
    loggers = (
        [
            ResumableCSVLogger(run_dir, version="logs", resume_step=resume_step),
            TensorBoardLogger(run_dir, name="", version="tensorboard"),
        ]
        if logger
        else False
    )
    return L.Trainer(
        default_root_dir=run_dir,
        max_epochs=tcfg.max_epochs,
        max_steps=tcfg.max_steps,
        accelerator=tcfg.accelerator,
        devices=devices,
        num_nodes=tcfg.num_nodes,
        strategy=strategy,
        precision=tcfg.precision,
        # SyncBatchNorm needs CUDA modules; on CPU (gloo) DDP keeps per-process BatchNorm
        sync_batchnorm=tcfg.sync_batchnorm and strategy != "auto" and on_cuda(tcfg.accelerator),
        log_every_n_steps=tcfg.log_every_n_steps,
        gradient_clip_val=tcfg.gradient_clip_val,
        limit_train_batches=tcfg.limit_train_batches,
        deterministic=tcfg.deterministic,
        enable_progress_bar=tcfg.enable_progress_bar,
        enable_model_summary=False,
        callbacks=callbacks,
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        num_sanity_val_steps=0,
    )


def pretrain(
    cfg: Config,
    *,
    resume: str | None = None,
    logger: bool = True,
    extra_callbacks: list[L.Callback] | None = None,
) -> PretrainResult:
    """Pretrain per ``cfg``; returns kNN (random init and final), probe and spectrum metrics.

    All configuration and data errors are raised (as :class:`ConfigError`,
    ``FileNotFoundError`` or ``ValueError``) before the first training step. A resumed run
    (``resume``) continues the metrics CSV, kNN history, spectrum snapshots and training time
    of the interrupted one, so its result covers the whole run.
    """
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*sync_dist=True.*")  # monitors log from rank 0 only
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = run_dir_of(cfg)
    with RunLock(run_dir):
        return _pretrain_locked(cfg, run_dir, resume, logger, extra_callbacks)


def _pretrain_locked(
    cfg: Config,
    run_dir: Path,
    resume: str | None,
    logger: bool,
    extra_callbacks: list[L.Callback] | None,
) -> PretrainResult:
    remove_partial_writes(run_dir)
    precision, precision_reason = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    cfg = replace(cfg, trainer=replace(cfg.trainer, precision=precision))  # saved resolved
    ckpt_path = resolve_resume(cfg, resume)
    resume_step = checkpoint_step(ckpt_path)
    changes = check_resume_config(cfg, run_dir, resume_step) if ckpt_path is not None else []
    if ckpt_path is not None:  # ResumableCSVLogger keeps the earlier rows
        warnings.filterwarnings("ignore", ".*Previous log files in this directory will be del.*")
    datamodule, module = build_run(cfg)
    states = 2 if cfg.optim.name == "adamw" else 1
    check_disk_space(run_dir, checkpoint_bytes_estimate(module, states))
    save_config(cfg, run_dir / "config.yaml")
    record_changes(run_dir, changes)
    mon = cfg.monitor
    knn = KNNMonitor(mon.knn_every, mon.knn_k, mon.knn_temperature, mon.knn_on_init)
    spectrum = SpectrumMonitor(
        mon.spectrum_every, mon.spectrum_samples, run_dir / "spectrum", mon.spectrum_plots
    )
    checkpoint = AtomicLastCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="epoch{epoch:04d}",
        auto_insert_metric_name=False,
        save_last="link",  # last.ckpt -> the newest epoch file (no second copy on disk)
        save_top_k=1,  # without a monitor: keep only the newest epoch file
        every_n_epochs=mon.checkpoint_every,
        save_on_train_epoch_end=True,
    )
    # Training time summed over resumed segments (kept in checkpoints); enforces max_time.
    timer = Timer(duration=cfg.trainer.max_time)
    alarm = CollapseAlarm.from_config(mon, spectrum)  # after the monitor: reads its snapshots
    callbacks = [knn, spectrum, alarm, RNGStateCallback(), timer, checkpoint]
    callbacks += extra_callbacks or []
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    trainer = build_trainer(cfg, run_dir, callbacks, logger, resume_step)
    check_global_batch(cfg, trainer.world_size)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except TrainingDivergedError as err:
        found, note = last_good_checkpoint(run_dir)
        raise err.with_checkpoint(None if found is None else str(found), note) from None
    if trainer.is_global_zero and (newest := newest_checkpoint(run_dir)) is not None:
        repair_last_link(run_dir, newest)  # a resume with nothing left to train saves nothing
    wall = timer.time_elapsed("train")
    probe = {}
    if mon.online_probe:
        probe = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    final_spectrum = spectrum.scalars()
    result = PretrainResult(
        run_dir=run_dir,
        knn_initial=knn.initial,
        knn_final={k: v for k, v in knn.history[-1].items() if k != "epoch"}
        if knn.history
        else None,
        probe=probe,
        spectrum=final_spectrum,
        wall_time_s=wall,
        steps=int(trainer.global_step),
        extra={
            "images_per_s": _throughput(trainer, cfg, wall),
            "precision": precision,
            "precision_reason": precision_reason,
            "spectrum_initial": spectrum.scalars(epoch=0),
            "global_rank": int(trainer.global_rank),
        },
    )
    if trainer.is_global_zero:
        (run_dir / "results.json").write_text(json.dumps(result.to_json(), indent=2))
    return result


def build_run(cfg: Config) -> tuple[SSLDataModule, SSLModule]:
    """The data and the module of ``cfg``, with everything checkable checked: dataset name and
    files, views, backbone, method and its options, and the loss built and run once on random
    embeddings of the training shapes. Raises a one-line :class:`ConfigError` (or
    ``FileNotFoundError``) on the first problem; used by :func:`pretrain` and by
    ``specssl pretrain --print-config``."""
    datamodule = SSLDataModule(cfg)
    module = SSLModule(
        cfg,
        datamodule.num_classes,
        augment=datamodule.train_augment(),
        eval_transform=datamodule.eval_transform(),
    )
    module.method.check_loss(cfg.data.batch_size, len(datamodule.view_configs))
    return datamodule, module


def check_global_batch(cfg: Config, world_size: int) -> None:
    """``data.batch_size`` is the global batch: it must split evenly over the processes."""
    if cfg.data.batch_size % max(1, world_size):
        raise ConfigError(
            f"config key 'data.batch_size': the global batch {cfg.data.batch_size} does not "
            f"split evenly over {world_size} processes (trainer.devices x trainer.num_nodes)"
        )


def _throughput(trainer, cfg: Config, wall: float) -> float:
    images = trainer.global_step * cfg.data.batch_size  # the global batch per step
    return images / wall if wall > 0 else 0.0


def format_summary(result: PretrainResult) -> str:
    """Human-readable summary printed at the end of ``specssl pretrain``."""
    lines = [
        f"run directory: {result.run_dir}",
        f"steps: {result.steps}, wall time: {result.wall_time_s:.1f} s, "
        f"{result.extra.get('images_per_s', 0):.1f} images/s",
    ]
    if "precision" in result.extra:
        lines.append(f"precision: {result.extra['precision']} ({result.extra['precision_reason']})")
    if result.knn_final:
        for key, value in result.knn_final.items():
            if key.startswith("top1"):
                init = (result.knn_initial or {}).get(key)
                init_txt = f" (random init: {init:.2f}%)" if init is not None else ""
                lines.append(f"kNN {key}: {value:.2f}%{init_txt}")
    for key, value in result.probe.items():
        lines.append(f"online linear probe {key}: {value:.2f}%")
    initial = result.extra.get("spectrum_initial")
    lines += spectrum_summary_lines(result.spectrum, initial, result.run_dir / "spectrum")
    return "\n".join(lines)


__all__ = [
    "PretrainResult",
    "build_run",
    "format_summary",
    "pretrain",
    "resolve_resume",
    "run_dir_of",
]
