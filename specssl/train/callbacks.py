"""Training callbacks: kNN monitor, spectrum monitor, RNG state in checkpoints, atomic saves."""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from specssl.core.knn import knn_accuracy
from specssl.spectral import EmbeddingSpectra, embedding_spectra
from specssl.train.collapse import read_verdict
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


#: LiDAR in the spectrum monitor and ``specssl spectrum``: the first ``LIDAR_IMAGES`` images of
#: the spectrum sample, each augmented ``LIDAR_VIEWS`` times with the first training view.
LIDAR_IMAGES, LIDAR_VIEWS = 256, 4

#: The spectrum monitor's files in its directory: every eigenvalue, and the scalar metrics.
EIGENVALUES_FILE, SCALARS_FILE = "eigenvalues.csv", "scalars.csv"


@dataclass
class SpectrumSample:
    """The spectrum sample embedded by one network.

    ``features``: ``(n, f)`` backbone features and ``z``: ``(n, d)`` projector outputs of the
    ``n`` un-augmented images (float32); ``views``: LiDAR's surrogate classes,
    ``{"features": (n_l, q, f), "z": (n_l, q, d)}`` for ``q`` augmentations of each of the
    first ``n_l`` images (empty when LiDAR is off).
    """

    features: torch.Tensor
    z: torch.Tensor
    views: dict[str, torch.Tensor] = field(default_factory=dict)


@torch.no_grad()
def embed_spectrum_sample(
    backbone: Callable[[torch.Tensor], torch.Tensor],
    projector: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    chunk: int,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None,
    augment: Callable[..., torch.Tensor] | None = None,
    lidar_images: int = LIDAR_IMAGES,
    lidar_views: int = LIDAR_VIEWS,
    seed: int = 0,
) -> SpectrumSample:
    """Embed ``images: (n, 3, H, W)`` (un-augmented, on the networks' device) in chunks of
    ``chunk``: ``features = backbone(normalize(x))``, ``z = projector(features)``; and, with
    ``augment`` (one training view: ``augment(x, generator=g)`` returns normalized views)
    and ``lidar_images, lidar_views >= 2``, LiDAR's views of the first ``lidar_images``
    images: ``lidar_views`` augmentations each, drawn with a CPU generator seeded by ``seed``
    (view-major: all images of view 1, then of view 2, ...), so the global RNG stream of a
    training run is untouched and the monitor and ``specssl spectrum`` see the same views.
    The caller puts the networks in eval mode."""

    def encode(batches) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([backbone(b) for b in batches]).float()
        return h, torch.cat([projector(p) for p in h.split(chunk)]).float()

    norm = normalize if normalize is not None else (lambda x: x)
    features, z = encode(norm(c) for c in images.split(chunk))
    sample = SpectrumSample(features=features, z=z)
    n_l = min(lidar_images, images.shape[0])
    if augment is None or n_l < 2 or lidar_views < 2:
        return sample
    gen = torch.Generator().manual_seed(seed)
    hs, zs = [], []
    for _ in range(lidar_views):
        h, zv = encode(augment(c, generator=gen) for c in images[:n_l].split(chunk))
        hs.append(h)
        zs.append(zv)
    sample.views = {"features": torch.stack(hs, 1), "z": torch.stack(zs, 1)}
    return sample


def zhat_centring_groups(method) -> int:
    """The channel groups that ``method.spectral_transform()`` centres separately: the
    ``groups`` of a channel-axis loss that centres each group over its own channels (IterNorm,
    ST-power, CW-RGP with ``centre="group"``); 1 on the batch axis, without groups, or when the
    channels are centred once globally (CW-RGP's default ``centre="global"``). Sets the rank
    bound ``min(m, d - groups)`` of Ẑ's ``m x m`` covariance
    (:func:`specssl.spectral.rank_bound`)."""
    loss = getattr(method, "loss_fn", None)
    if method.spectral_axis != "channel" or loss is None:
        return 1
    if getattr(loss, "centre", "group") == "global":
        return 1
    return int(getattr(loss, "groups", None) or getattr(loss, "last_groups", None) or 1)


def method_spectra(method, sample: SpectrumSample, chunk: int) -> EmbeddingSpectra:
    """:func:`specssl.spectral.embedding_spectra` of an embedded sample with the method's
    transformation, axis and centring groups, on training-size chunks of ``chunk`` rows:
    what the spectrum monitor and ``specssl spectrum`` both report."""
    return embedding_spectra(
        sample.z,
        method.spectral_transform(),
        method.spectral_axis,
        chunk,
        groups=zhat_centring_groups(method),
        features=sample.features,
        views=sample.views or None,
    )


class SpectrumMonitor(L.Callback):
    """The embedding spectrum during training: the INTL paper's Figure 3 (a)/(b), live.

    Every ``every`` epochs, embeds a fixed sample of ``samples`` un-augmented training images
    (eval mode) and computes, with :func:`method_spectra` (the function ``specssl spectrum``
    uses too), the eigenvalues of the ``d x d`` covariance of the embedding ``Z`` (all samples;
    use ``samples >= d`` for a full-rank estimate) and of the method's transformed output ``Ẑ``
    (the transformation applied per training-size chunk, as in the loss, with the covariance
    on the method's axis, averaged over chunks). Logs, for ``Z``, ``Ẑ`` and the backbone
    ``features``, the rank-aware condition indicator ``λ_r/λ_1`` (``r`` the rank bound, see
    :func:`specssl.spectral.rank_bound`; the full-spectrum ratio as
    ``condition_indicator_raw``), the stable rank normalized by ``r``, effective rank, NESum
    and α-ReQ; RankMe and LiDAR (``lidar_images`` images x ``lidar_views`` augmentations of
    the first training view; ``lidar_views=0`` turns it off) of ``Z`` and the features.
    Appends all eigenvalues to ``spectrum/eigenvalues.csv``, writes the scalar metrics of
    every snapshot (epoch 0 included) to ``spectrum/scalars.csv`` and saves
    ``spectrum/epoch_XXX.png`` (log-scale eigenvalues of every snapshot so far). The snapshots
    are saved in checkpoints: a resumed run rewrites the CSV from them and plots the whole run.
    """

    def __init__(
        self,
        every: int,
        samples: int,
        out_dir: str | Path,
        plots: bool = True,
        *,
        lidar_images: int = LIDAR_IMAGES,
        lidar_views: int = LIDAR_VIEWS,
    ) -> None:
        self.every, self.samples, self.plots = every, samples, plots
        self.lidar_images, self.lidar_views = lidar_images, lidar_views
        self.out_dir = Path(out_dir)
        self.snapshots: list[dict[str, Any]] = []

    def snapshot(self, trainer, pl_module, epoch: int) -> dict[str, Any]:
        dm = trainer.datamodule
        images = dm.spectrum_images(self.samples).to(pl_module.device)
        method = pl_module.method
        augment = None
        if self.lidar_views >= 2:
            from specssl.data.batched import BatchedAugment

            augment = BatchedAugment(dm.view_configs[0]).to(pl_module.device)
        with eval_mode(pl_module):
            sample = embed_spectrum_sample(
                method.backbone,
                method.projector,
                images,
                chunk=dm.batch_size,
                normalize=pl_module.eval_transform,
                augment=augment,
                lidar_images=self.lidar_images,
                lidar_views=self.lidar_views,
                seed=dm.cfg.seed,
            )
            spectra = method_spectra(method, sample, dm.batch_size)
        snap: dict[str, Any] = {"epoch": epoch, "z": spectra.z}
        if spectra.zhat is not None:
            snap["zhat"] = spectra.zhat
        snap.update(spectra.metrics)
        return snap

    def scalars(self, epoch: int | None = None) -> dict[str, float]:
        """The scalar metrics of the snapshot of ``epoch`` (``None``: the last one; ``0``: at
        random init, before the first step); empty if there is none."""
        found = [s for s in self.snapshots if epoch is None or s["epoch"] == epoch]
        return {k: v for k, v in found[-1].items() if isinstance(v, float)} if found else {}

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
        self._write_scalars()
        if self.plots:
            from specssl.viz import plot_spectra

            plot_spectra(
                [(s["epoch"], s.get("z"), s.get("zhat")) for s in self.snapshots],
                self.out_dir / f"epoch_{epoch:03d}.png",
            )

    def _append_csv(self, snap: dict[str, Any]) -> None:
        path = self.out_dir / EIGENVALUES_FILE
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
        (self.out_dir / EIGENVALUES_FILE).unlink(missing_ok=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for snap in self.snapshots:
            self._append_csv(snap)
        if self.snapshots:
            self._write_scalars()

    def _write_scalars(self) -> None:
        """``scalars.csv``: one row per snapshot (epoch 0: random init), one column per scalar
        metric (``"<which>/<name>"``, full float precision), rewritten from the snapshots."""
        keys = sorted({k for s in self.snapshots for k, v in s.items() if isinstance(v, float)})
        with open(self.out_dir / SCALARS_FILE, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["epoch", *keys])
            for snap in self.snapshots:
                cells = [repr(snap[k]) if k in snap else "" for k in keys]
                writer.writerow([snap["epoch"], *cells])


def spectrum_summary_lines(
    final: dict[str, float], initial: dict[str, float] | None = None, plot_dir: Path | None = None
) -> list[str]:
    """The spectrum part of the ``specssl pretrain`` summary, for a newcomer.

    From the last spectrum-monitor snapshot ``final`` (and the one at random init,
    ``initial``): the condition indicator of ``Z`` and ``Ẑ`` inside the rank bound of each
    matrix (with the full-spectrum ratio where the bound cuts structurally zero eigenvalues),
    their normalized stable rank, RankMe of the backbone features and of ``Z`` before and after
    training, the newest spectrum plot in ``plot_dir``, the collapse alarm's verdict there
    (:mod:`specssl.train.collapse`) and the command that writes the run's HTML report.
    """
    lines = []
    names = {"z": "Z (embedding)", "zhat": "Ẑ (what the loss sees)"}
    rankme_of = {"features": "backbone features", "z": "embedding Z"}
    for which in ("z", "zhat"):
        cond = final.get(f"{which}/condition_indicator")
        if cond is None:
            continue
        bound = final.get(f"{which}/rank_bound")
        inside = f" inside its rank bound {int(bound)}" if bound is not None else ""
        text = f"spectrum {names[which]}: condition indicator {cond:.3g}{inside}"
        raw = final.get(f"{which}/condition_indicator_raw")
        if raw is not None and bound is not None and raw != cond:
            text += f" (full spectrum {raw:.2g}: the eigenvalues past {int(bound)} are 0 by shape)"
        if f"{which}/stable_rank" in final:
            text += f", normalized stable rank {final[f'{which}/stable_rank']:.3g}"
        lines.append(text)
    for which in ("features", "z"):
        after = final.get(f"{which}/rankme")
        if after is None:
            continue
        before = (initial or {}).get(f"{which}/rankme")
        was = f"{before:.1f} at random init -> " if before is not None else ""
        dims = final.get(f"{which}/rank_bound")
        of = f" (covariance rank bound {int(dims)})" if dims is not None else ""
        lines.append(f"RankMe of the {rankme_of[which]}: {was}{after:.1f} after training{of}")
    plots = sorted(Path(plot_dir).glob("epoch_*.png")) if plot_dir is not None else []
    if plots:
        lines.append(f"spectrum plot: {plots[-1]}")
    verdict = read_verdict(plot_dir) if plot_dir is not None else None
    if verdict is not None:
        lines.append(f"collapse alarm: {verdict.status} ({verdict.evidence()})")
    if plot_dir is not None:
        run = Path(plot_dir).parent
        lines.append(f"report: specssl report {run}  (writes {run / 'report.html'})")
    return lines
