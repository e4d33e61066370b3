"""Spectrum report of pretrained checkpoints: the INTL paper's Figure 3 (a)/(b) on demand.

For each checkpoint, a fixed seeded sample of ``n`` training images is embedded (eval mode)
and the report gives, computed by :func:`specssl.train.callbacks.method_spectra` (hence
:func:`specssl.spectral.embedding_spectra`, the function the training-time
:class:`specssl.train.callbacks.SpectrumMonitor` uses, so the same network gives the same
numbers in both):

* the eigenvalues of the ``d x d`` covariance of the projector output ``Z: (n, d)`` (all
  samples, divisor ``n - 1``, float64);
* the eigenvalues of the method's transformed output ``Ẑ = φ(Z)`` (``Method.spectral_transform``,
  e.g. IterNorm for INTL), computed as the loss sees it: ``φ`` applied to each chunk of the
  training batch size, the covariance on the method's own axis (``d x d`` for ``"batch"``,
  ``m x m`` for ``"channel"``), eigenvalues averaged over chunks;
* for both and for the backbone features: the condition indicator ``λ_r / λ_1`` inside the
  rank bound ``r`` of the matrix (:func:`specssl.spectral.rank_bound`; the full-spectrum
  ``λ_min / λ_max`` as ``condition_indicator_raw``), stable rank ``Σλ / λ_max`` normalized by
  ``r``, effective rank ``exp H(λ / Σλ)``, NESum and α-ReQ; RankMe and (for the un-augmented
  sample) LiDAR of ``Z`` and of the features (:mod:`specssl.spectral.quality`).

The sample is the un-augmented images (the eval transform) and, optionally, one augmented view
(the first view of the pretraining recipe, drawn with a seeded generator). LiDAR's surrogate
classes are ``lidar_views`` augmentations (the first view, seeded) of the first
``lidar_images`` images of the sample. The image sample depends only on the dataset and
``seed``, so checkpoints of one dataset are compared on the same images. Outputs:
``spectrum.json``, ``eigenvalues.csv`` and a log-scale plot per view (``spectrum_eval.png``,
``spectrum_augmented.png``), one curve per checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from specssl.methods.base import Method
from specssl.spectral import EmbeddingSpectra
from specssl.train.callbacks import (
    LIDAR_IMAGES,
    LIDAR_VIEWS,
    SpectrumSample,
    embed_spectrum_sample,
    method_spectra,
)
from specssl.train.config import Config

__all__ = [
    "CheckpointSpectrum",
    "EmbeddedSample",
    "ViewSpectrum",
    "checkpoint_label",
    "embed_sample",
    "format_table",
    "load_method",
    "spectrum_of_checkpoint",
    "spectrum_of_embedding",
    "spectrum_of_sample",
    "write_report",
]

VIEWS = ("eval", "augmented")


#: Spectra of one image view: ``z`` ``(d,)`` eigenvalues of cov(Z), descending, float64;
#: ``zhat`` eigenvalues of cov(Ẑ) on ``zhat_axis`` (``None`` without a transformation);
#: ``metrics`` as :func:`specssl.spectral.embedding_spectra` returns them.
ViewSpectrum = EmbeddingSpectra


@dataclass
class CheckpointSpectrum:
    label: str
    path: str
    method: str
    dataset: str
    samples: int
    embedding_dim: int
    views: dict[str, ViewSpectrum] = field(default_factory=dict)


def spectrum_of_embedding(
    z: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor] | None,
    axis: str,
    chunk: int,
    *,
    groups: int = 1,
) -> ViewSpectrum:
    """Spectra and metrics of an embedding ``z: (n, d)`` and of ``Ẑ = transform(Z)``:
    :func:`specssl.spectral.embedding_spectra` (``Ẑ`` on each consecutive chunk of ``chunk``
    rows, incomplete last chunk dropped, one chunk of all rows when ``n < chunk``; ``groups``:
    channel groups the transform centres separately). Stable rank is normalized by the rank
    bound of each matrix."""
    from specssl.spectral import embedding_spectra

    return embedding_spectra(z, transform, axis, chunk, groups=groups)


def checkpoint_label(path: str | Path) -> str:
    """``<run>/<file stem>`` for ``<run>/checkpoints/<file>.ckpt``, the directory name for a
    run directory, else the file stem."""
    path = Path(path)
    if path.is_dir():
        return path.resolve().name
    if path.parent.name == "checkpoints" and path.parent.parent.name:
        return f"{path.parent.parent.name}/{path.stem}"
    return path.stem


def load_method(path: str | Path) -> tuple[Method, Config]:
    """The trained method of a checkpoint (``.ckpt`` file or run directory) and its config.

    Backbone and projector come with their trained weights from
    :func:`specssl.eval.checkpoint.load_checkpoint`; the method around them is built from the
    stored config, so its loss (hence ``Method.spectral_transform``, which defines ``Ẑ``) is the
    one trained. Other trained state (momentum target, queue, predictor) is not loaded: the
    report uses only ``projector(backbone(x))`` and the transformation. Eval mode, CPU.
    """
    from specssl.eval.checkpoint import load_checkpoint
    from specssl.methods import build_method

    loaded = load_checkpoint(path, projector=True)
    method = build_method(loaded.backbone, loaded.config.method)
    method.projector = loaded.projector
    return method.eval(), loaded.config


@dataclass
class EmbeddedSample:
    """The report's image sample embedded by one checkpoint.

    ``samples[view]``: the :class:`~specssl.train.callbacks.SpectrumSample` of the ``n``
    sampled training images (``"eval"``: un-augmented, with LiDAR's views; ``"augmented"``:
    one seeded augmented view); ``chunk``: the training batch size, the chunk on which ``Ẑ``
    is computed.
    """

    method: Method
    config: Config
    samples: dict[str, SpectrumSample]
    chunk: int

    @property
    def z(self) -> dict[str, torch.Tensor]:
        """``(n, d)`` float32 projector outputs ``Z`` by view."""
        return {view: s.z for view, s in self.samples.items()}


@torch.no_grad()
def embed_sample(
    path: str | Path,
    *,
    samples: int = 1024,
    data_root: str | None = None,
    augmented: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    lidar_images: int = LIDAR_IMAGES,
    lidar_views: int = LIDAR_VIEWS,
) -> EmbeddedSample:
    """Embed a seeded sample of ``samples`` training images with the checkpoint at ``path``.

    The sample is drawn from the full training split (the run's CPU-scale ``data.subset`` is
    ignored) with ``seed``, so every checkpoint of one dataset sees the same images.
    ``data_root`` overrides the dataset directory stored in the checkpoint's config. LiDAR's
    views: ``lidar_views`` augmentations of the first ``lidar_images`` images (off when
    ``lidar_views < 2``), as the spectrum monitor draws them
    (:func:`~specssl.train.callbacks.embed_spectrum_sample`).
    """
    from specssl.train.datamodule import SSLDataModule

    if samples < 2:
        raise ValueError(f"samples must be >= 2, got {samples}")
    dev = torch.device(device)
    method, cfg = load_method(path)
    method = method.to(dev)
    data = dataclasses.replace(
        cfg.data,
        root=data_root if data_root is not None else cfg.data.root,
        subset=None,
        val_subset=None,
        download=False,
    )
    cfg = dataclasses.replace(
        cfg,
        data=data,
        monitor=dataclasses.replace(cfg.monitor, knn_train_subset=None),
        seed=seed,
    )
    dm = SSLDataModule(cfg)
    images = dm.spectrum_images(samples).to(dev)
    normalize = dm.eval_transform().to(dev)
    chunk = cfg.data.batch_size
    from specssl.data.augment import BatchedAugment

    view = BatchedAugment(dm.view_configs[0]).to(dev)
    out = {
        "eval": embed_spectrum_sample(
            method.backbone,
            method.projector,
            images,
            chunk=chunk,
            normalize=normalize,
            augment=view if lidar_views >= 2 else None,
            lidar_images=lidar_images,
            lidar_views=lidar_views,
            seed=seed,
        )
    }
    if augmented:
        gen = torch.Generator().manual_seed(seed)
        out["augmented"] = embed_spectrum_sample(
            method.backbone,
            method.projector,
            images,
            chunk=chunk,
            normalize=lambda b: view(b, generator=gen),
        )
    return EmbeddedSample(method=method, config=cfg, samples=out, chunk=chunk)


def spectrum_of_sample(emb: EmbeddedSample, label: str, path: str | Path) -> CheckpointSpectrum:
    """Spectra of ``Z`` and ``Ẑ`` of every view of an embedded sample:
    :func:`spectrum_of_embedding` with the method's transformation and axis, and the training
    batch size as chunk. ``label`` names the checkpoint at ``path`` in tables and plots."""
    method = emb.method
    result = CheckpointSpectrum(
        label=label,
        path=str(path),
        method=emb.config.method.name,
        dataset=emb.config.data.name,
        samples=int(emb.z["eval"].shape[0]),
        embedding_dim=method.embedding_dim,
    )
    for view, sample in emb.samples.items():
        result.views[view] = method_spectra(method, sample, emb.chunk)
    return result


def spectrum_of_checkpoint(
    path: str | Path, *, label: str | None = None, **sample: Any
) -> CheckpointSpectrum:
    """Spectra of ``Z`` and ``Ẑ`` of the checkpoint at ``path`` (``.ckpt`` file or run
    directory): :func:`embed_sample` (``sample``: its keyword arguments), then
    :func:`spectrum_of_sample`; ``label`` defaults to :func:`checkpoint_label`."""
    emb = embed_sample(path, **sample)
    return spectrum_of_sample(emb, label or checkpoint_label(path), path)


def format_table(results: Sequence[CheckpointSpectrum]) -> str:
    """One row per checkpoint and view: for Z and Ẑ the rank-aware condition indicator
    ``λ_r/λ_1`` (``r`` = rank bound), normalized stable rank and effective rank; RankMe of
    the backbone features and of Z; LiDAR of Z (``-`` where not computed)."""
    head = (
        f"{'checkpoint':<28} {'method':<9} {'view':<9} {'n':>6} {'d':>5} "
        f"{'Z cond':>9} {'Z srank':>8} {'Z erank':>8} {'Ẑ cond':>9} {'Ẑ srank':>8} {'Ẑ erank':>8}"
        f" {'h RankMe':>8} {'Z RankMe':>8} {'Z LiDAR':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        for view, s in r.views.items():
            m = s.metrics
            cells = []
            for key in ("z", "zhat"):
                if f"{key}/condition_indicator" in m:
                    cells += [
                        f"{m[f'{key}/condition_indicator']:>9.3g}",
                        f"{m[f'{key}/stable_rank']:>8.3f}",
                        f"{m[f'{key}/effective_rank']:>8.1f}",
                    ]
                else:
                    cells += [f"{'-':>9}", f"{'-':>8}", f"{'-':>8}"]
            for key in ("features/rankme", "z/rankme", "z/lidar"):
                cells.append(f"{m[key]:>8.1f}" if key in m else f"{'-':>8}")
            lines.append(
                f"{r.label[-28:]:<28} {r.method:<9} {view:<9} {r.samples:>6} "
                f"{r.embedding_dim:>5} " + " ".join(cells)
            )
    return "\n".join(lines)


def _to_json(r: CheckpointSpectrum) -> dict[str, Any]:
    views = {}
    for name, s in r.views.items():
        views[name] = {
            "metrics": s.metrics,
            "z_eigenvalues": s.z.tolist(),
            "zhat_eigenvalues": s.zhat.tolist() if s.zhat is not None else None,
            "zhat_axis": s.zhat_axis,
            "zhat_chunk": s.zhat_chunk,
            "zhat_chunks": s.zhat_chunks,
            "zhat_groups": s.zhat_groups,
        }
    return {
        "label": r.label,
        "path": r.path,
        "method": r.method,
        "dataset": r.dataset,
        "samples": r.samples,
        "embedding_dim": r.embedding_dim,
        "views": views,
    }


def write_report(
    results: Sequence[CheckpointSpectrum], out_dir: str | Path, *, plots: bool = True
) -> dict[str, Path]:
    """Write ``spectrum.json``, ``eigenvalues.csv`` (checkpoint, view, which, index,
    eigenvalue) and ``spectrum_<view>.png`` (Z | Ẑ side by side, log scale, one curve per
    checkpoint) into ``out_dir``; returns the paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "spectrum.json", "csv": out / "eigenvalues.csv"}
    paths["json"].write_text(json.dumps({"checkpoints": [_to_json(r) for r in results]}, indent=2))
    with open(paths["csv"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["checkpoint", "view", "which", "index", "eigenvalue"])
        for r in results:
            for view, s in r.views.items():
                for which, evals in (("z", s.z), ("zhat", s.zhat)):
                    if evals is None:
                        continue
                    for i, value in enumerate(evals.tolist()):
                        writer.writerow([r.label, view, which, i, f"{value:.9e}"])
    if plots:
        from specssl.viz import plot_spectra

        for view in VIEWS:
            curves = [
                (r.label, r.views[view].z, r.views[view].zhat) for r in results if view in r.views
            ]
            if curves:
                paths[f"png_{view}"] = plot_spectra(
                    curves,
                    out / f"spectrum_{view}.png",
                    title=f"eigenvalue spectra, {view} view",
                    legend_title="checkpoint",
                )
    return paths
