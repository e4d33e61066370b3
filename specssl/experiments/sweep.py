"""A grid of pretraining runs with one cached JSON record per run.

:class:`RunSpec` is one run: a grid point (``{"p": 0.45}``), a seed, a recipe and ``key=value``
overrides. :class:`Sweep` trains every spec that has no record yet in
``<out>/runs/<scale>/<key>-<hash>.json`` (``hash`` = the resolved config, so changing the budget
never reuses a stale result, and a config already run under another grid point is reused), and
resumes an interrupted run from its Lightning run directory (``last.ckpt``). A sweep can thus
be interrupted at any time and split across sessions (e.g. by ``--seeds``).

A run that diverges (:class:`~specssl.train.module.TrainingDivergedError`) or whose whitening
fails on a singular covariance is a result: its record has ``status`` ``"diverged"`` /
``"failed"``, the step and the message, and no accuracy.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import math
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from specssl.core import NonFiniteError, SingularCovarianceError
from specssl.methods.semantics import earlier_overrides, resolve_semantics
from specssl.train.config import Config, ConfigError, load_config
from specssl.train.module import TrainingDivergedError
from specssl.train.run import pretrain, run_dir_of

#: Config entries that do not change a run's result (paths, logging): left out of its hash.
UNHASHED = {
    ("output_dir",),
    ("run_name",),
    ("data", "root"),
    ("data", "download"),
    ("data", "num_workers"),
    ("trainer", "enable_progress_bar"),
    ("trainer", "log_every_n_steps"),
    ("monitor", "spectrum_plots"),
}


def _slug(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", text)


@dataclass
class RunSpec:
    """One run of a sweep: grid ``point``, ``seed``, ``recipe`` and ``overrides``."""

    point: dict[str, Any]
    seed: int
    recipe: Path
    overrides: list[str] = field(default_factory=list)
    #: run with the settings of before 2026-12-02 (:func:`earlier_overrides`), to reproduce or
    #: extend records made then
    earlier_semantics: bool = False

    @property
    def key(self) -> str:
        """Readable file-name key, e.g. ``p=0.45_seed=0``."""
        parts = [f"{k}={_slug(v)}" for k, v in self.point.items()]
        return "_".join([*parts, f"seed={self.seed}"])

    def config(self) -> Config:
        cfg = load_config(self.recipe, [*self.overrides, f"seed={self.seed}"])
        if not self.earlier_semantics:
            return cfg
        earlier = earlier_overrides(cfg.method.name)
        return load_config(self.recipe, [*self.overrides, *earlier, f"seed={self.seed}"])


def plan(
    points: Sequence[dict[str, Any]],
    seeds: Iterable[int],
    build: Callable[[dict[str, Any]], tuple[Path, list[str]]],
    extra: Sequence[str] = (),
) -> list[RunSpec]:
    """Specs of every ``(seed, point)``, seed-major (a full grid for seed 0 comes first).

    ``build(point) -> (recipe, overrides)``; ``extra`` overrides (``--set``) go last.
    """
    built = [build(p) for p in points]
    return [
        RunSpec(dict(p), int(s), Path(recipe), [*ovr, *extra])
        for s in seeds
        for p, (recipe, ovr) in zip(points, built, strict=True)
    ]


def irrelevant_optim_keys(optimizer: str) -> set[str]:
    """``optim`` settings that cannot change a run with ``optimizer`` (LARS settings of an SGD
    run). They are left out of its hash, so adding such an option to :class:`Config` (with a
    default) does not orphan every cached run of a sweep."""
    return set() if optimizer == "lars" else {"lars_eta", "lars_clip_lr"}


#: Options added to :class:`Config` after runs were recorded, with their defaults. While an
#: option holds its default it is left out of hashes and recipe comparisons, so adding it
#: does not orphan every cached run (or mark every recorded row stale).
LATER_OPTIONS: dict[tuple[str, ...], Any] = {
    ("optim", "static_lr"): [],
    ("data", "augment"): [],
    ("data", "validate_images"): False,
    ("optim", "exclude_tokens"): True,
    ("optim", "final_weight_decay"): None,
    ("trainer", "channels_last"): False,
    ("trainer", "compile"): False,
    ("backbone", "kwargs"): {},
    ("monitor", "collapse_alarm"): "off",
    ("monitor", "collapse_metric"): "z/effective_rank",
    ("monitor", "collapse_threshold"): 1.2,
    ("monitor", "collapse_patience"): 2,
    ("monitor", "collapse_after"): 4,
}


def without_unchanging(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config dict (``asdict(cfg)`` or a part of it holding ``optim``) without the
    settings that cannot change its run: :func:`irrelevant_optim_keys` and
    :data:`LATER_OPTIONS` at their defaults."""
    data = json.loads(json.dumps(data, default=str))
    drop = set()
    if "optim" in data:
        drop |= {("optim", key) for key in irrelevant_optim_keys(data["optim"]["name"])}
    for path, default in LATER_OPTIONS.items():
        if _parent(data, path).get(path[-1], default) == default:
            drop.add(path)
    for path in drop:
        _parent(data, path).pop(path[-1], None)
    return data


def _parent(data: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """The dict that holds ``path[-1]`` in nested ``data`` (empty if a level is missing)."""
    for part in path[:-1]:
        data = data.get(part, {})
    return data


def config_hash(cfg: Config) -> str:
    """8 hex digits of the resolved config, without the entries in :data:`UNHASHED` and
    those :func:`without_unchanging` removes; settings whose defaults changed to the authors'
    are resolved first (:func:`specssl.methods.semantics.resolve_semantics`)."""
    data = asdict(cfg)
    data["method"] = resolve_semantics(data["method"])
    data = without_unchanging(data)
    for path in UNHASHED:
        _parent(data, path).pop(path[-1], None)
    blob = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


def git_commit(repo: Path | None = None) -> str:
    """Short commit of ``repo`` (default: this package's checkout), ``+dirty`` if modified."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def is_rank_zero() -> bool:
    """False in the extra processes of a multi-device (DDP) run: they train alongside rank 0
    (same specs, same order) but leave records and reports to it."""
    return all(int(os.environ.get(k, "0")) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


# ------------------------------------------------------------------------------- spectra
def read_spectrum_csv(path: Path) -> dict[int, dict[str, list[float]]]:
    """``epoch -> {"z": eigenvalues, "zhat": eigenvalues}`` from the spectrum monitor's CSV.

    A resumed run may have appended an epoch twice; the last rows win.
    """
    if not path.is_file():
        return {}
    rows: dict[int, dict[str, dict[int, float]]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            rows.setdefault(int(row["epoch"]), {}).setdefault(row["which"], {})[
                int(row["index"])
            ] = float(row["eigenvalue"])
    return {
        epoch: {which: [vals[i] for i in sorted(vals)] for which, vals in parts.items()}
        for epoch, parts in sorted(rows.items())
    }


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def spectrum_summary(spectra: dict[int, dict[str, list[float]]]) -> dict[str, Any]:
    """Per-epoch ``λ_max`` / ``λ_min`` of ``Z`` and ``Ẑ`` and the last epoch's eigenvalues
    (4 significant digits): what the INTL paper's Figure 3 plots."""
    if not spectra:
        return {}
    epochs = sorted(spectra)
    out: dict[str, Any] = {"epochs": epochs}
    for which in ("z", "zhat"):
        per = [spectra[e].get(which) for e in epochs]
        if not any(per):
            continue
        out[f"{which}_lambda_max"] = [_sig(v[0]) if v else None for v in per]
        out[f"{which}_lambda_min"] = [_sig(v[-1]) if v else None for v in per]
        last = next(v for v in reversed(per) if v)
        out[f"{which}_final"] = [_sig(v) for v in last]
    return out


# -------------------------------------------------------------------------------- records
def is_numerical_failure(err: BaseException) -> bool:
    """A whitening that cannot be computed (singular covariance, failed decomposition)."""
    if isinstance(err, ConfigError):
        return False
    return isinstance(err, torch.linalg.LinAlgError | NonFiniteError | SingularCovarianceError)


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _metrics(result: dict[str, Any]) -> dict[str, float | None]:
    """The record's metrics from a run's result: kNN, probe and the final spectrum-monitor
    snapshot (:func:`specssl.spectral.embedding_spectra`).

    ``z_condition`` / ``zhat_condition`` keep their meaning, the full-spectrum λmin/λmax
    (``*/condition_indicator_raw``; results from before the rank-aware monitor stored it as
    ``*/condition_indicator``). ``zhat_stable_rank`` was Ẑ's stable rank divided by its number
    of eigenvalues; the monitor now divides by the rank bound (one normalisation everywhere),
    so that value goes to the new ``zhat_stable_rank_rank_aware`` and ``zhat_stable_rank`` is
    ``None`` for new results (old records keep theirs). ``z_stable_rank`` is unchanged (Z's
    normalisation was already min(d, n - 1)).
    """
    knn = result.get("knn_final") or {}
    probe = result.get("probe") or {}
    spec = result.get("spectrum") or {}
    rank_aware = any(k.endswith("/condition_indicator_raw") for k in spec)
    out = {
        "knn200_top1": knn.get("top1_k200"),
        "knn5_top1": knn.get("top1_k5"),
        "probe_top1": probe.get("val/probe_top1"),
    }
    for which in ("z", "zhat"):
        raw = "condition_indicator_raw" if rank_aware else "condition_indicator"
        out[f"{which}_condition"] = spec.get(f"{which}/{raw}")
        out[f"{which}_stable_rank"] = spec.get(f"{which}/stable_rank")
        out[f"{which}_effective_rank"] = spec.get(f"{which}/effective_rank")
    if rank_aware:
        out["zhat_stable_rank"] = None
        for which in ("z", "zhat"):
            out[f"{which}_condition_rank_aware"] = spec.get(f"{which}/condition_indicator")
        out["zhat_stable_rank_rank_aware"] = spec.get("zhat/stable_rank")
        for which in ("z", "features"):
            for name in ("rankme", "lidar", "nesum", "alpha_req"):
                out[f"{which}_{name}"] = spec.get(f"{which}/{name}")
    out = {k: out.get(k) for k in (*METRICS[:9], *LABEL_FREE)}
    return {k: _finite_or_none(v) for k, v in out.items()}


#: Key of the random-init reference records (:meth:`Sweep.reference`).
REFERENCE_KEY = "random-init"

#: The scalar metrics every record carries (``None`` when unavailable, e.g. after divergence).
METRICS = (
    "knn200_top1",
    "knn5_top1",
    "probe_top1",
    "z_condition",
    "z_stable_rank",
    "z_effective_rank",
    "zhat_condition",
    "zhat_stable_rank",
    "zhat_effective_rank",
    "z_lambda_max",
    "zhat_lambda_max",
)

#: Rank-aware and label-free metrics of the final spectrum-monitor snapshot, in records made
#: since the rank-aware monitor (absent from older records): the condition indicator inside
#: the rank bound, Ẑ's stable rank normalized by its rank bound, and RankMe, LiDAR, NESum and
#: α-ReQ of Z and of the backbone features (:mod:`specssl.spectral.quality`).
LABEL_FREE = (
    "z_condition_rank_aware",
    "zhat_condition_rank_aware",
    "zhat_stable_rank_rank_aware",
    "z_rankme",
    "features_rankme",
    "z_lidar",
    "features_lidar",
    "z_nesum",
    "features_nesum",
    "z_alpha_req",
    "features_alpha_req",
)
METRICS = (*METRICS, *LABEL_FREE)


@dataclass
class Sweep:
    """Runs specs with a JSON record each under ``out_dir/runs/<scale>/``.

    Args:
        name: experiment name (used in messages).
        scale: the budget's scale (separates cached records of different scales).
        out_dir: the experiment's results directory (``docs/results/<name>``).
        runs_dir: where the Lightning run directories (checkpoints, logs) go.
        command: the command line recorded in each new record.
        logger: write CSV / TensorBoard logs in each run directory.
    """

    name: str
    scale: str
    out_dir: Path
    runs_dir: Path
    command: str = ""
    logger: bool = True
    #: Random-init reference records (:meth:`reference`) of the sweep, one per seed.
    references: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cache_dir(self) -> Path:
        return Path(self.out_dir) / "runs" / self.scale

    def resolve(self, spec: RunSpec) -> tuple[Config, str]:
        """The spec's config (with its run directory under ``runs_dir``) and its hash."""
        cfg = spec.config()
        digest = config_hash(cfg)
        cfg.output_dir = str(self.runs_dir)
        cfg.run_name = f"{spec.key}-{digest}"
        return cfg, digest

    def cache_path(self, spec: RunSpec, digest: str) -> Path:
        return self.cache_dir / f"{spec.key}-{digest}.json"

    def cached(self, spec: RunSpec, digest: str) -> dict[str, Any] | None:
        """The spec's record, or that of the same config under another grid point."""
        path = self.cache_path(spec, digest)
        if not path.is_file():
            same = sorted(self.cache_dir.glob(f"*-{digest}.json"))
            if not same:
                return None
            path = same[0]
        record = json.loads(path.read_text())
        return {**record, **spec.point, "seed": spec.seed, "key": spec.key}

    def records(self, specs: Sequence[RunSpec]) -> list[dict[str, Any]]:
        """Cached records of ``specs`` (in order; specs not yet run are skipped)."""
        found = (self.cached(s, self.resolve(s)[1]) for s in specs)
        return [r for r in found if r is not None]

    def run(
        self,
        specs: Sequence[RunSpec],
        after_each: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Train every spec without a record (in order), write its record, return all records.

        ``after_each(records so far)`` is called after each newly trained run (to refresh a
        report while a long sweep is running).
        """
        resolved = [self.resolve(s) for s in specs]
        records = [self.cached(s, h) for s, (_, h) in zip(specs, resolved, strict=True)]
        todo, done = records.count(None), 0
        for i, (spec, (cfg, digest)) in enumerate(zip(specs, resolved, strict=True)):
            if records[i] is not None:
                continue
            records[i] = self.cached(spec, digest)  # same config done meanwhile / above
            if records[i] is not None:
                continue
            done += 1
            print(f"[{self.name} {done}/{todo}] {spec.key} ...", flush=True)
            record = self.run_one(spec, cfg, digest)
            records[i] = record
            if not is_rank_zero():
                continue
            self._write(self.cache_path(spec, digest), record)
            print(f"[{self.name} {done}/{todo}] {spec.key}: {_one_line(record)}", flush=True)
            if after_each is not None:
                after_each([r for r in records if r is not None])
        return [r for r in records if r is not None]

    def run_one(self, spec: RunSpec, cfg: Config, digest: str) -> dict[str, Any]:
        """Pretrain one run (resuming its directory) and build its record."""
        run_dir = run_dir_of(cfg)
        start = time.perf_counter()
        status, error, step = "ok", "", None
        result: dict[str, Any] = {}
        saved = run_dir / "results.json"
        try:
            if saved.is_file():  # finished earlier, record not written (interrupted)
                result = json.loads(saved.read_text())
            else:
                result = pretrain(cfg, resume="auto", logger=self.logger).to_json()
        except TrainingDivergedError as err:
            status, error = "diverged", str(err)
            step = err.step
        except (ValueError, RuntimeError) as err:
            if not is_numerical_failure(err):
                raise
            status, error = "failed", f"{type(err).__name__}: {err}"
        spectra = spectrum_summary(read_spectrum_csv(run_dir / "spectrum" / "eigenvalues.csv"))
        metrics = _metrics(result) if status == "ok" else dict.fromkeys((*METRICS[:9], *LABEL_FREE))
        for which in ("z", "zhat"):
            values = spectra.get(f"{which}_lambda_max") or [None]
            metrics[f"{which}_lambda_max"] = values[-1] if status == "ok" else None
        record = {
            **spec.point,
            "seed": spec.seed,
            "key": spec.key,
            "status": status,
            "diverged_step": step,
            "error": error.splitlines()[0] if error else "",
            **metrics,
            "train_wall_s": result.get("wall_time_s"),
            "run_wall_s": time.perf_counter() - start,
            "steps": result.get("steps", step),
            "images_per_s": result.get("images_per_s"),
            "method": cfg.method.name,
            "loss": json.dumps(cfg.method.loss, sort_keys=True),
            "dataset": cfg.data.name,
            "train_subset": cfg.data.subset,
            "batch_size": cfg.data.batch_size * int(cfg.trainer.devices)
            if str(cfg.trainer.devices).isdigit()
            else cfg.data.batch_size,
            "embedding_dim": cfg.method.proj_output_dim,
            "width": cfg.backbone.width,
            "epochs": cfg.trainer.max_epochs,
            "recipe": _display_path(spec.recipe),
            "config_hash": digest,
            "run_dir": str(run_dir),
            "commit": git_commit(),
            "date": utc_now(),
            "command": self.command,
            "torch_threads": torch.get_num_threads(),
            "load_avg_1min": os.getloadavg()[0],
            "spectra": spectra,
        }
        record.update(spec.point)  # grid coordinates win over same-named config fields
        return record

    def reference(self, spec: RunSpec, *, train: bool = True) -> dict[str, Any] | None:
        """The random-init reference of ``spec``: its network before the first step (same seed,
        data, backbone initialisation and evaluation as the run), kNN and spectrum.

        Cached as ``runs/<scale>/random-init/seed=<s>-<hash>.json`` (a sub-directory: the
        run records' look-up by hash must not find it); with ``train=False`` only a cached
        record is returned (``None`` if there is none).
        """
        cfg, digest = self.resolve(spec)
        path = self.cache_dir / REFERENCE_KEY / f"seed={spec.seed}-{digest}.json"
        if path.is_file():
            return json.loads(path.read_text())
        if not train:
            return None
        cfg.trainer.max_steps = 0  # Lightning stops before the first step
        cfg.monitor.knn_on_init = True
        cfg.run_name = f"{REFERENCE_KEY}_{spec.key}-{digest}"
        start = time.perf_counter()
        result = pretrain(cfg, resume=None, logger=False)
        knn = result.knn_initial or {}
        metrics = _metrics({"knn_final": knn, "spectrum": result.spectrum})
        record = {
            "key": REFERENCE_KEY,
            "seed": spec.seed,
            "status": "ok",
            "of_run": spec.key,
            **{m: metrics.get(m) for m in (*METRICS[:9], *LABEL_FREE)},
            "probe_top1": None,
            "run_wall_s": time.perf_counter() - start,
            "config_hash": digest,
            "commit": git_commit(),
            "date": utc_now(),
            "command": self.command,
        }
        if is_rank_zero():
            self._write(path, record)
        return record

    @staticmethod
    def _write(path: Path, record: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, path)


def _display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _one_line(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        where = f" at step {record['diverged_step']}" if record["diverged_step"] is not None else ""
        return f"{record['status']}{where} ({record['error'][:120]})"
    knn = record.get("knn200_top1")
    cond = record.get("zhat_condition") or record.get("z_condition")
    return (
        (f"kNN top-1 {knn:.2f}%" if knn is not None else "kNN –")
        + (f", condition {cond:.3g}" if cond is not None else "")
        + (f" ({record['run_wall_s']:.0f} s)")
    )


__all__ = [
    "LABEL_FREE",
    "METRICS",
    "REFERENCE_KEY",
    "RunSpec",
    "Sweep",
    "config_hash",
    "git_commit",
    "is_numerical_failure",
    "is_rank_zero",
    "plan",
    "read_spectrum_csv",
    "spectrum_summary",
]
