"""A run directory's integrity: one writer at a time, the newest checkpoint, honest resumes.

* :class:`RunLock` — ``<run>/.lock`` holds the owner's pid, host and start time, created
  atomically (``O_EXCL``); a second run on a directory in use stops with one line. A lock whose
  pid is gone on this host is stale and taken over.
* :func:`newest_checkpoint` — ``last.ckpt``, or, when that link is missing or dangling (a kill
  between Lightning's removal of the old link and the new one), the newest complete
  ``epoch*.ckpt``.
* :func:`check_resume_config` — a resumed run must compute what the saved ``config.yaml``
  says; only settings that cannot change the computation so far may differ, and those changes
  are appended to ``<run>/config_changes.yaml`` with the step they took effect.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from specssl.train.config import Config, ConfigError

#: Settings that may change when a run is resumed: how long it trains, where data and logs
#: live, how it is launched. Everything else would make the saved config lie.
RESUMABLE_CHANGES = {
    ("trainer", "max_epochs"),
    ("trainer", "max_steps"),
    ("trainer", "max_time"),
    ("trainer", "enable_progress_bar"),
    ("trainer", "log_every_n_steps"),
    ("trainer", "devices"),
    ("trainer", "num_nodes"),
    ("trainer", "accelerator"),
    ("trainer", "strategy"),
    ("data", "root"),
    ("data", "download"),
    ("data", "num_workers"),
    ("monitor", "spectrum_plots"),
    ("output_dir",),
}


def is_launcher_process() -> bool:
    """The process a user started (rank 0 of node 0), not a DDP worker Lightning launched."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """Exclusive use of a run directory by one process (a context manager).

    Raises :class:`ConfigError` (one line) when another live process holds it. DDP workers
    launched by the owner do not lock (:func:`is_launcher_process`).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self.held = False

    def acquire(self) -> None:
        if not is_launcher_process():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(owner, f)
            self.held = True
            return
        raise ConfigError(f"run directory {self.path.parent}: could not take its lock")

    def _take_over_if_stale(self) -> None:
        try:
            other = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            other = {}
        pid, host = other.get("pid"), other.get("host")
        here = socket.gethostname()
        if host == here and isinstance(pid, int) and not _pid_alive(pid):
            self.path.unlink(missing_ok=True)  # stale: its owner died without releasing it
            return
        if not other:  # being written right now by another process, or unreadable
            time.sleep(0.2)
            if self.path.exists():
                other = {"pid": "?", "host": "?"}
            else:
                return
        raise ConfigError(
            f"run directory {self.path.parent} is in use by pid {other.get('pid')} on "
            f"{other.get('host')} (lock {self.path}); choose another run_name, wait for it, "
            "or delete the lock if that process is gone"
        )

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run: ``last.ckpt`` if it resolves, else the
    ``epoch*.ckpt`` with the highest epoch (``*.tmp`` partial writes never count)."""
    ckpts = Path(run_dir) / "checkpoints"
    last = ckpts / "last.ckpt"
    if last.is_file():
        return last
    epochs = sorted(ckpts.glob("epoch*.ckpt"), key=lambda p: (p.stat().st_mtime, p.name))
    return epochs[-1] if epochs else None


def checkpoint_health(path: Path) -> tuple[bool, str]:
    """Whether the checkpoint at ``path`` is good — readable, every floating-point tensor of
    its ``state_dict`` finite, and the training loss it recorded finite — and a short reason.

    Checkpoints written before the loss was recorded (no ``specssl_train_loss``) are judged on
    their weights alone, which the reason says. The file is memory-mapped; tensors are read
    once each to test them.
    """
    import math

    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        state = ckpt["state_dict"]
    except Exception as err:  # truncated, corrupt, not a Lightning checkpoint
        return False, f"unreadable ({type(err).__name__})"
    largest, bad = 0.0, []
    for name, tensor in state.items():
        if not (isinstance(tensor, torch.Tensor) and tensor.is_floating_point()):
            continue
        if tensor.numel() and not bool(torch.isfinite(tensor).all()):
            bad.append(name)
        elif tensor.numel():
            largest = max(largest, float(tensor.abs().max()))
    step = ckpt.get("global_step")
    if bad:
        return False, f"step {step}: {len(bad)} non-finite weight tensors (first {bad[0]})"
    loss = ckpt.get("specssl_train_loss", "unrecorded")
    if loss is None or (isinstance(loss, float) and not math.isfinite(loss)):
        return False, f"step {step}: training loss {loss} not finite"
    loss_text = "loss not recorded" if loss == "unrecorded" else f"loss {loss:.4g}"
    return True, f"step {step}, finite weights (largest |w| {largest:.3g}), {loss_text}"


def last_good_checkpoint(run_dir: Path) -> tuple[Path | None, str]:
    """The newest checkpoint of the run that :func:`checkpoint_health` calls good, and one
    sentence saying so (or why there is none), for a divergence diagnosis."""
    ckpts = Path(run_dir) / "checkpoints"
    newest = newest_checkpoint(run_dir)
    candidates = [newest] if newest is not None else []
    candidates += sorted(ckpts.glob("epoch*.ckpt"), key=lambda p: p.stat().st_mtime)[::-1]
    seen: set[Path] = set()
    rejected = []
    for path in candidates:
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        good, reason = checkpoint_health(real)
        if good:
            return path, f"last good checkpoint: {path} ({reason})"
        rejected.append(f"{real.name}: {reason}")
    if not rejected:
        return None, "no checkpoint was written before the divergence"
    return None, "no good checkpoint (" + "; ".join(rejected) + ")"


def checkpoint_bytes_estimate(module: Any, optimizer_states: int = 2) -> int:
    """Bytes a checkpoint of ``module`` needs: its parameters and buffers, plus
    ``optimizer_states`` same-sized states per parameter (Adam: 2; SGD/LARS momentum: 1),
    plus 10% for the rest."""
    params = sum(p.numel() * p.element_size() for p in module.parameters())
    buffers = sum(b.numel() * b.element_size() for b in module.buffers())
    return int(1.1 * (params * (1 + optimizer_states) + buffers))


def check_disk_space(run_dir: Path, needed: int) -> None:
    """One-line :class:`ConfigError` before the first step when the file system of
    ``run_dir`` has less free space than two checkpoints of ``needed`` bytes (the new one is
    written beside the old one, then renamed over it)."""
    import shutil

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(run_dir).free
    if free < 2 * needed:
        raise ConfigError(
            f"disk: {free / 2**20:.1f} MiB free in {run_dir}, but checkpoints need about "
            f"{2 * needed / 2**20:.1f} MiB (two of {needed / 2**20:.1f} MiB: the new one is "
            "written beside the old one); free space or set output_dir elsewhere"
        )


def remove_partial_writes(run_dir: Path) -> list[Path]:
    """Delete ``*.tmp`` / ``*.tmp-link`` files in ``<run>/checkpoints``: partial writes of a
    process that died (the caller holds the run's lock, so no live writer owns them)."""
    ckpts = Path(run_dir) / "checkpoints"
    stale = [p for p in ckpts.glob("*.tmp*") if p.is_file() or p.is_symlink()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def repair_last_link(run_dir: Path, found: Path) -> None:
    """Point ``<run>/checkpoints/last.ckpt`` at ``found`` (atomically) when it is missing or
    dangles, e.g. after a kill between an epoch file's removal and the link's update. Called
    after training: before it, an existing ``last.ckpt`` would make Lightning write the next
    one as ``last-v1.ckpt``."""
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    if last.is_file() or found.parent != last.parent:
        return
    replace_link(found.name, last)


def replace_link(target: str, link: Path | str) -> None:
    """Make ``link`` a symlink to ``target`` atomically: the new link is created under a
    temporary name and ``os.replace``-d over the old one (no instant without ``link``)."""
    tmp = f"{link}.tmp-link"
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _flatten(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for key, value in data.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def check_resume_config(cfg: Config, run_dir: Path, step: int) -> list[dict[str, Any]]:
    """Compare ``cfg`` with the run's saved ``config.yaml`` before resuming at ``step``.

    A change to any setting outside :data:`RESUMABLE_CHANGES` raises :class:`ConfigError`
    naming the keys; allowed changes are returned (and appended to ``config_changes.yaml``
    by :func:`record_changes`). No saved config: nothing to compare.
    """
    saved_path = Path(run_dir) / "config.yaml"
    if not saved_path.is_file():
        return []
    saved = _flatten(yaml.safe_load(saved_path.read_text()) or {})
    now = _flatten(json.loads(json.dumps(asdict(cfg), default=str)))
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    forbidden = [k for k in changed if k not in RESUMABLE_CHANGES and k != ("run_name",)]
    if forbidden:
        names = ", ".join(
            f"{'.'.join(k)} ({saved.get(k)!r} -> {now.get(k)!r})" for k in forbidden[:4]
        )
        more = f" and {len(forbidden) - 4} more" if len(forbidden) > 4 else ""
        raise ConfigError(
            f"--resume: {names}{more} differ from the run's saved config.yaml and cannot change "
            "mid-run; resume with the saved values or start a new run_name"
        )
    return [
        {"step": step, "key": ".".join(k), "old": saved.get(k), "new": now.get(k)}
        for k in changed
        if k in RESUMABLE_CHANGES
    ]


def record_changes(run_dir: Path, changes: list[dict[str, Any]]) -> None:
    """Append resume-time changes to ``<run>/config_changes.yaml`` (the history behind the
    current ``config.yaml``)."""
    if not changes:
        return
    path = Path(run_dir) / "config_changes.yaml"
    history = (yaml.safe_load(path.read_text()) or []) if path.is_file() else []
    path.write_text(yaml.safe_dump(history + changes, sort_keys=False))


__all__ = [
    "RESUMABLE_CHANGES",
    "RunLock",
    "check_resume_config",
    "is_launcher_process",
    "newest_checkpoint",
    "record_changes",
    "remove_partial_writes",
    "repair_last_link",
    "replace_link",
]
