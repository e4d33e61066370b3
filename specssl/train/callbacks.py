"""Training callbacks: kNN monitor, spectrum monitor, RNG state in checkpoints, atomic saves."""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from specssl.eval.knn import knn_accuracy
from specssl.spectral import condition_indicator, effective_rank, spectrum, stable_rank
from specssl.train.rundir import replace_link


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to ``<path>.tmp`` then ``os.replace`` them into place.

    A crash mid-write leaves the previous checkpoint intact (``os.replace`` is atomic on one
    filesystem), so ``last.ckpt`` is always a complete file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as err:  # ENOSPC, EDQUOT, EIO; torch wraps some
            tmp.unlink(missing_ok=True)
            raise CheckpointWriteError(path, err) from err


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, quota, I/O error). The partial file is
    removed; the previous checkpoint is untouched. ``str(err)`` is one line."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        reason = getattr(cause, "strerror", None) or str(cause).splitlines()[0] or repr(cause)
        super().__init__(
            f"cannot write checkpoint {path}: {reason}; the partial file was removed and the "
            "previous checkpoint is intact (free space, then resume with --resume)"
        )
        self.path, self.cause = path, cause




class AtomicLastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` link is replaced atomically.

    Lightning removes the old link and then creates the new one, so a kill in between leaves
    no ``last.ckpt``; here the new link is made under a temporary name and ``os.replace``-d over
    the old one, so ``last.ckpt`` always exists once the first checkpoint has. (The previous
    epoch file is removed before the link moves: in that instant the link dangles, and
    :func:`specssl.train.rundir.newest_checkpoint` falls back to the newest epoch file.)
    """

    @staticmethod
    def _link_checkpoint(trainer, filepath: str, linkpath: str) -> None:
        if trainer.is_global_zero and os.path.abspath(filepath) != os.path.abspath(linkpath):
            replace_link(os.path.relpath(filepath, os.path.dirname(linkpath)), linkpath)
        trainer.strategy.barrier()


class RNGStateCallback(L.Callback):
    """Store the global RNG states (python, numpy, torch, CUDA) in every checkpoint and restore
    them on resume, so the resumed run draws the same augmentations and data order.

    States are stored as tensors and plain numbers so checkpoints load with
    ``torch.load(weights_only=True)``.
    """

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        version, py_state, gauss = random.getstate()
        np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        states: dict[str, Any] = {
            "python": [version, torch.tensor(py_state, dtype=torch.int64), gauss],
            "numpy": [
                np_name,
                torch.from_numpy(np_keys.astype(np.int64)),
                np_pos,
                np_has_gauss,
                np_gauss,
            ],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["specssl_rng_states"] = states

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("specssl_rng_states")
        if not states:
            return
        version, py_state, gauss = states["python"]
        random.setstate((version, tuple(int(v) for v in py_state.tolist()), gauss))
        np_name, np_keys, np_pos, np_has_gauss, np_gauss = states["numpy"]
        np.random.set_state(
            (np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss)
        )
        torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode for the block, then restore its previous mode."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def resuming(trainer) -> bool:
    """True when ``trainer.fit`` was given a checkpoint to resume from."""
    return trainer.ckpt_path is not None


def due_this_epoch(trainer, every: int) -> bool:
    """True at the end of every ``every``-th epoch and of the last epoch (never if 0)."""
    epoch = trainer.current_epoch + 1
    return bool(every) and (epoch % every == 0 or epoch >= (trainer.max_epochs or 0))


@torch.no_grad()
def extract_features(pl_module, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features ``(N, f)`` and labels ``(N,)`` of a loader of un-augmented
    ``(images, labels)``, in eval mode (the module's mode is restored afterwards)."""
    feats, labels = [], []
    with eval_mode(pl_module):
        for images, target in loader:
            images = images.to(pl_module.device, non_blocking=True)
            feats.append(pl_module.features(images).float())
            labels.append(target.to(pl_module.device))
    return torch.cat(feats), torch.cat(labels)


class KNNMonitor(L.Callback):
    """Weighted kNN (cosine) of backbone features every ``every`` epochs (and at init).

    Logs ``knn/top1_k{k}`` for each ``k`` (``k=200`` temperature-weighted, small ``k`` such as
    5 by majority vote). Keeps ``history`` (epoch -> metrics) and ``initial`` (random init),
    both saved in checkpoints so a resumed run reports the whole run.
    Uses the datamodule's ``knn_train_dataloader()`` (memory bank) and ``val_dataloader()``.
    """

    def __init__(self, every: int, ks: list[int], temperature: float, on_init: bool) -> None:
        self.every, self.ks, self.temperature, self.on_init = every, list(ks), temperature, on_init
        self.history: list[dict[str, float]] = []
        self.initial: dict[str, float] | None = None

    def evaluate(self, trainer, pl_module) -> dict[str, float]:
        dm = trainer.datamodule
        bank, bank_y = extract_features(pl_module, dm.knn_train_dataloader())
        test, test_y = extract_features(pl_module, dm.val_dataloader())
        if trainer.world_size > 1:
            bank, bank_y, test, test_y = (
                pl_module.all_gather(t).flatten(0, 1) for t in (bank, bank_y, test, test_y)
            )
        metrics = {}
        for k in self.ks:
            acc = knn_accuracy(
                bank,
                bank_y,
                test,
                test_y,
                pl_module.num_classes,
                k=k,
                temperature=self.temperature,
                weighted=k > 20,
            )
            metrics[f"top1_k{k}"] = acc["top1"]
            metrics[f"top5_k{k}"] = acc["top5"]
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"initial": self.initial, "history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initial, self.history = state_dict["initial"], list(state_dict["history"])

    def on_fit_start(self, trainer, pl_module) -> None:
        # A resumed run has trained weights here: its random-init result comes from the
        # checkpoint (load_state_dict), never from evaluating the restored network.
        if self.on_init and self.initial is None and not resuming(trainer):
            self.initial = self.evaluate(trainer, pl_module)
            if trainer.is_global_zero:
                text = ", ".join(f"{k} = {v:.2f}%" for k, v in self.initial.items())
                print(f"kNN at random init: {text}", flush=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not due_this_epoch(trainer, self.every):
            return
        epoch = trainer.current_epoch + 1
        metrics = self.evaluate(trainer, pl_module)
        self.history.append({"epoch": epoch, **metrics})
        for key, value in metrics.items():
            pl_module.log(f"knn/{key}", value, rank_zero_only=True)


class SpectrumMonitor(L.Callback):
    """The embedding spectrum during training: the INTL paper's Figure 3 (a)/(b), live.

    Every ``every`` epochs, embeds a fixed sample of ``samples`` un-augmented training images
    (eval mode), computes the eigenvalues of the ``d x d`` covariance of the embedding ``Z``
    (all samples; use ``samples >= d`` for a full-rank estimate) and of the method's
    transformed output ``Ẑ`` (the transformation applied per training-size chunk, as in the
    loss, with the covariance on the method's axis, averaged over chunks), logs condition
    indicator λ_min/λ_max, normalized stable rank and effective rank of both, appends all
    eigenvalues to ``spectrum/eigenvalues.csv`` and saves ``spectrum/epoch_XXX.png``
    (log-scale eigenvalues of every snapshot so far). The snapshots are saved in checkpoints:
    a resumed run rewrites the CSV from them and plots the whole run.
    """

    def __init__(self, every: int, samples: int, out_dir: str | Path, plots: bool = True) -> None:
        self.every, self.samples, self.plots = every, samples, plots
        self.out_dir = Path(out_dir)
        self.snapshots: list[dict[str, Any]] = []

    def snapshot(self, trainer, pl_module, epoch: int) -> dict[str, Any]:
        dm = trainer.datamodule
        images = dm.spectrum_images(self.samples).to(pl_module.device)
        method = pl_module.method
        with eval_mode(pl_module), torch.no_grad():
            chunks = images.split(dm.batch_size)
            z = torch.cat([method.projector(pl_module.features(c)) for c in chunks]).float()
            transform = method.spectral_transform()
            # Ẑ as the loss sees it: the transformation of each full training-size chunk,
            # its spectrum on the method's own axis, averaged over chunks.
            zhat_evals = None
            if transform is not None:
                axis = method.spectral_axis
                parts = [
                    spectrum(transform(part), axis, check_finite=False)
                    for part in z.split(dm.batch_size)
                    if part.shape[0] == dm.batch_size
                ]
                zhat_evals = torch.stack(parts).mean(0).cpu() if parts else None
        snap: dict[str, Any] = {"epoch": epoch}
        z_evals = spectrum(z, "batch", check_finite=False).cpu()
        m, d = z.shape
        caps = {"z": min(d, m - 1), "zhat": len(zhat_evals) if zhat_evals is not None else 1}
        for name, evals in (("z", z_evals), ("zhat", zhat_evals)):
            if evals is None:
                continue
            snap[name] = evals
            snap[f"{name}/condition_indicator"] = float(condition_indicator(evals))
            snap[f"{name}/stable_rank"] = float(stable_rank(evals, normalize_by=caps[name]))
            snap[f"{name}/effective_rank"] = float(effective_rank(evals))
        return snap

    def state_dict(self) -> dict[str, Any]:
        return {"snapshots": self.snapshots}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.snapshots = list(state_dict["snapshots"])

    def on_fit_start(self, trainer, pl_module) -> None:
        if not (self.every and trainer.is_global_zero):
            return
        if resuming(trainer):
            # Drop what an interrupted segment wrote after its last checkpoint.
            self._rewrite_csv()
        else:
            self.record(trainer, pl_module, 0)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if due_this_epoch(trainer, self.every) and trainer.is_global_zero:
            self.record(trainer, pl_module, trainer.current_epoch + 1)

    def record(self, trainer, pl_module, epoch: int) -> None:
        snap = self.snapshot(trainer, pl_module, epoch)
        self.snapshots.append(snap)
        scalars = {k: v for k, v in snap.items() if "/" in k}
        if epoch > 0:
            for key, value in scalars.items():
                pl_module.log(f"spectrum/{key}", value, rank_zero_only=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._append_csv(snap)
        if self.plots:
            from specssl.viz import plot_spectra

            plot_spectra(
                [(s["epoch"], s.get("z"), s.get("zhat")) for s in self.snapshots],
                self.out_dir / f"epoch_{epoch:03d}.png",
            )

    def _append_csv(self, snap: dict[str, Any]) -> None:
        path = self.out_dir / "eigenvalues.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["epoch", "which", "index", "eigenvalue"])
            for name in ("z", "zhat"):
                if name in snap:
                    for i, value in enumerate(snap[name].tolist()):
                        writer.writerow([snap["epoch"], name, i, f"{value:.6e}"])

    def _rewrite_csv(self) -> None:
        """``eigenvalues.csv`` from the snapshots restored from the checkpoint."""
        (self.out_dir / "eigenvalues.csv").unlink(missing_ok=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for snap in self.snapshots:
            self._append_csv(snap)
