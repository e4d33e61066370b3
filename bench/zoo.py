"""The method zoo on CIFAR-10 at CPU scale: every method, one budget, one evaluation.

Run from the repository root (``SPECSSL_DATA`` or ``--data-root`` names the directory that
holds ``cifar-10-batches-py``)::

    python bench/zoo.py --data-root ../shared/data                  # every method
    python bench/zoo.py --data-root ../shared/data --methods intl byol
    python bench/zoo.py --report-only                               # rebuild the table
    python bench/zoo.py --methods barlow_twins --variant sgd optim.name=sgd   # diagnostic


Budget (identical for every method; ``--epochs`` etc. change it for all of them at once):
width-16 ResNet-18 with the CIFAR stem, batch 256, ``--epochs`` epochs with a half-epoch
warm-up and cosine decay, the CIFAR two-view augmentation of the training system, seed 0.
Each method keeps the ``method`` and ``optim`` sections of its own paper-scale recipe
``configs/cifar10/<method>.yaml`` (loss hyper-parameters, heads, optimizer and base lr, with
their sources cited in that file), plus its entry of :data:`SHORT_BUDGET` if it has one: a
setting that a recipe tuned for 1000 epochs needs in order to learn at all in this budget, each
found by a diagnostic variant whose row stays in the report next to it.

Evaluation (identical for every method, on frozen backbone features of the un-augmented
50k training and 10k test images): weighted kNN (k=200, T=0.1, cosine), 5-NN (majority vote),
and a linear probe (:func:`specssl.eval.probe.linear_probe`: L-BFGS on standardised
features, weight decay chosen on a held-out 10% of the training features). The embedding's
condition indicator ``λ_min/λ_max``, normalized stable rank and effective rank are those of
``Z = projector(features)`` of all 50k un-augmented training images after training (the
training run's spectrum monitor, on 1024 images, is kept in the row as ``monitor_*``: with a
2048-d embedding its λ_min is 0 by rank).

Each method's row is written to ``docs/results/cifar10_cpu/<method>.json`` as soon as it is
done (so the table can be filled across sessions); the table ``docs/results/cifar10_cpu.md``
and ``docs/results/cifar10_cpu.csv`` are rebuilt from all rows after every method.

A *variant* (``--variant TAG KEY=VALUE ...``) runs a method with config overrides on top of
its recipe and the budget, to test a hypothesis about a row (e.g. the same loss with another
optimizer). Its row ``<method>@<TAG>`` is listed in a separate diagnostics table, never in the
comparison.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from specssl.core.knn import knn_accuracy
from specssl.experiments.sweep import git_commit, utc_now, without_unchanging
from specssl.methods.semantics import earlier_overrides, resolve_semantics
from specssl.train.callbacks import eval_mode
from specssl.train.config import Config, load_config
from specssl.train.datamodule import SSLDataModule
from specssl.train.module import SSLModule
from specssl.train.run import pretrain, run_dir_of

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
ROWS_DIR = RESULTS / "cifar10_cpu"

#: Every method of the papers' comparison tables, in the order of the table.
ZOO = [
    "intl",
    "intl_m",
    "iternorm",
    "st_power",
    "cwrgp",
    "wmse",
    "shuffled_dbn",
    "zero_cl",
    "barlow_twins",
    "vicreg",
    "simclr",
    "mocov2",
    "byol",
    "simsiam",
    "swav",
    "dino",
]
RANDOM_INIT = "random_init"

#: Short-budget adjustments: method -> (config overrides, why). Applied on top of the budget to
#: the method's row and to all its variants (a variant can undo one, e.g. ``optim.static_lr=[]``).
#: The report lists them with the row that measured the need.
SHORT_BUDGET: dict[str, tuple[tuple[str, ...], str]] = {
    "byol": (
        ("optim.static_lr=[predictor]",),
        "the predictor at a constant learning rate, as SimSiam's recipe has it: with the "
        "predictor's lr on the 4-epoch cosine (solo-learn's recipe) the embedding stays near "
        "rank one and BYOL does not learn (row `byol@pred_scheduled`; still so with 10 epochs, "
        "`byol@ep10`)",
    ),
    "barlow_twins": (
        ("optim.lars_clip_lr=false",),
        "LARS without solo-learn's clipping, as in the Barlow Twins authors' code: clipped, every "
        "weight steps by the full η‖w‖ (bench/lars_steps.py) and Barlow Twins barely moves in 4 "
        "epochs (row `barlow_twins@lars_clipped`; `barlow_twins@ep10` with 10)",
    ),
    "dino": (
        (
            "method.options.use_bn=true",
            "optim.lars_clip_lr=false",
            "method.loss.teacher_temp=0.04",
        ),
        "BatchNorm in the projection head (DINO code's use_bn_in_head), LARS without clipping "
        "(DINO's own LARS) and teacher temperature 0.04 (DINO's starting value): with solo-learn's "
        "settings the targets stay near-uniform and DINO does not learn in 4 epochs (row "
        "`dino@recipe`); each change alone helps a little (rows `dino@bnhead`, `dino@noclip`, "
        "`dino@tt004`), together they make it learn (ran as `dino@bn_noclip_tt004`)",
    ),
}
#: The linear probe picks its L2 weight on a held-out 10% of the training features.
PROBE_WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2)


def budget_overrides(args: argparse.Namespace, run_name: str) -> list[str]:
    """The shared budget: everything but the recipe's ``method`` and ``optim`` sections."""
    return [
        "data.name=cifar10",
        f"data.root={args.data_root}",
        "data.batch_size=256",
        "data.num_workers=0",
        "data.views=cifar",
        "data.num_views=2",
        "data.num_small_crops=0",
        "data.solarize_p=[0.0,0.2]",
        "data.augment_on_device=true",
        "data.subset=null",
        "backbone.name=resnet18",
        "backbone.cifar_stem=true",
        f"backbone.width={args.width}",
        f"trainer.max_epochs={args.epochs}",
        "trainer.max_steps=-1",
        "trainer.accelerator=auto",
        "trainer.devices=1",
        "trainer.precision=32-true",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=20",
        "optim.warmup_epochs=0.5",
        "monitor.knn_every=0",  # evaluated below, identically for every method
        "monitor.knn_on_init=false",
        "monitor.online_probe=true",
        "monitor.spectrum_every=1",
        "monitor.spectrum_samples=1024",
        "monitor.checkpoint_every=1",
        f"seed={args.seed}",
        f"output_dir={args.runs_dir}",
        f"run_name={run_name}",
    ]


def row_key(method: str, variant: str | None) -> str:
    """The row (and run directory) name: ``method`` or ``method@variant``."""
    return f"{method}@{variant}" if variant else method


def config_of(
    args: argparse.Namespace, method: str, variant: str | None = None, overrides=()
) -> Config:
    """The recipe of ``method`` under the budget and its :data:`SHORT_BUDGET` adjustment, plus
    a variant's ``overrides``."""
    recipe = REPO / "configs" / "cifar10" / f"{method}.yaml"
    if method == RANDOM_INIT:
        recipe = REPO / "configs" / "cifar10" / "intl.yaml"
    budget = budget_overrides(args, row_key(method, variant))
    adjustment = SHORT_BUDGET.get(method, ((), ""))[0]
    return load_config(recipe, [*budget, *adjustment, *overrides])


@torch.no_grad()
def frozen_features(module: SSLModule, datamodule: SSLDataModule, device: torch.device):
    """Backbone features of the un-augmented training and test sets."""
    from specssl.train.callbacks import extract_features

    module.to(device)
    train = extract_features(module, datamodule.knn_train_dataloader())
    test = extract_features(module, datamodule.val_dataloader())
    return train, test


def evaluate(module: SSLModule, datamodule: SSLDataModule, args) -> dict[str, float]:
    """Weighted kNN k=200, 5-NN and the linear probe on frozen backbone features."""
    from specssl.eval.probe import linear_probe

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    (train_x, train_y), (test_x, test_y) = frozen_features(module, datamodule, device)
    n_cls = datamodule.num_classes
    knn200 = knn_accuracy(train_x, train_y, test_x, test_y, n_cls, k=200, temperature=0.1)
    knn5 = knn_accuracy(train_x, train_y, test_x, test_y, n_cls, k=5, weighted=False)
    z_stats = embedding_spectrum(module, train_x)
    probe = linear_probe(
        train_x.cpu(),
        train_y.cpu(),
        test_x.cpu(),
        test_y.cpu(),
        weight_decay=PROBE_WEIGHT_DECAYS,
        seed=args.seed,
    )
    return {
        "knn200_top1": knn200["top1"],
        "knn5_top1": knn5["top1"],
        "linear_top1": probe["top1"],
        "linear_top5": probe["top5"],
        "linear_weight_decay": probe.get("weight_decay"),
        **z_stats,
        "eval_time_s": time.perf_counter() - start,
    }


@torch.no_grad()
def embedding_spectrum(module: SSLModule, features: torch.Tensor) -> dict[str, float]:
    """Spectrum of the embedding ``Z = projector(features)`` of all training images
    (un-augmented, eval mode) and of the ``features``, by
    :func:`specssl.spectral.embedding_spectra` (the function of the spectrum monitor and
    ``specssl spectrum``): ``z_condition`` is the full-spectrum λ_min/λ_max of the ``d × d``
    covariance (the column's meaning since it was added; with 50k samples the rank bound
    ``min(d, n - 1)`` is ``d``, so it equals the rank-aware condition indicator), normalized
    stable rank and effective rank of Z; RankMe, NESum and α-ReQ of Z and of the features."""
    from specssl.spectral import embedding_spectra

    with eval_mode(module):
        z = torch.cat([module.method.projector(f) for f in features.split(4096)])
    m = embedding_spectra(z.double(), features=features.double()).metrics
    out = {
        "z_condition": m["z/condition_indicator_raw"],
        "z_stable_rank": m["z/stable_rank"],
        "z_effective_rank": m["z/effective_rank"],
    }
    for which in ("z", "features"):
        for name in ("rankme", "nesum", "alpha_req"):
            if f"{which}/{name}" in m:
                out[f"{which}_{name}"] = m[f"{which}/{name}"]
    return out


def load_trained(cfg: Config, datamodule: SSLDataModule) -> SSLModule | None:
    """The run's last checkpoint (the last good one if it diverged), or ``None``."""
    ckpt = run_dir_of(cfg) / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        return None
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    module = SSLModule(cfg, datamodule.num_classes, eval_transform=datamodule.eval_transform())
    module.load_state_dict(state["state_dict"])
    return module


def recipe_of(cfg: Config) -> dict:
    """The per-method part of a run's config (its recipe's ``method`` and ``optim``), with the
    settings whose defaults became the authors' resolved (:func:`resolve_semantics`)."""
    method = resolve_semantics(asdict(cfg.method))
    return json.loads(json.dumps({"method": method, "optim": asdict(cfg.optim)}))


def is_stale(row: dict, args: argparse.Namespace, *, earlier_semantics: bool = False) -> bool:
    """A row whose recorded recipe differs from the current ``configs/cifar10/<method>.yaml``
    (a default changed since it ran): shown as stale, rerun it. ``earlier_semantics`` compares
    with the recipe under the defaults of before 2026-12-02 (:func:`earlier_overrides`)."""
    if row["method"] == RANDOM_INIT or "recipe" not in row:
        return False
    overrides = list(row.get("overrides", ()))
    if earlier_semantics:
        overrides = [*earlier_overrides(row["method"]), *overrides]
    cfg = config_of(args, row["method"], row.get("variant"), overrides)
    return _relevant(row["recipe"]) != _relevant(recipe_of(cfg))


def ran_with_earlier_semantics(row: dict, args: argparse.Namespace) -> bool:
    """A row made before the 2026-12-02 fidelity defaults: stale today, current under the
    earlier settings (docs/fidelity.md). Kept in the table with that note until rerun."""
    return is_stale(row, args) and not is_stale(row, args, earlier_semantics=True)


def _relevant(recipe: dict) -> dict:
    """``recipe`` without the settings that cannot change the run (LARS settings of an SGD
    run, options added later at their defaults), so adding an option to the config does not
    make every row stale."""
    return without_unchanging(recipe)


def train_once(cfg: Config) -> dict:
    """Pretrain (resuming an interrupted run); a finished run is read back from its
    ``results.json``. Divergence is a result too: the row records the diagnosis."""
    from specssl.train.module import TrainingDivergedError

    run_dir = run_dir_of(cfg)
    if (run_dir / "config.yaml").exists():
        previous = recipe_of(load_config(run_dir / "config.yaml"))
        if previous != recipe_of(cfg):  # the recipe changed: keep the old run aside, start anew
            run_dir.rename(run_dir.with_name(f"{run_dir.name}.stale-{int(time.time())}"))
    saved = run_dir / "results.json"
    meta_file = run_dir_of(cfg) / "zoo_train_meta.json"
    if saved.exists():
        result = json.loads(saved.read_text())
    else:
        meta_file.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "train_commit": git_commit(),
            "train_date": utc_now(),
            "train_command": "python bench/zoo.py " + shlex.join(sys.argv[1:]),
        }
        meta_file.write_text(json.dumps(meta))
        try:
            result = pretrain(cfg, resume="auto").to_json()
            result["train_load_avg_1min"] = os.getloadavg()[0]
            saved.write_text(json.dumps(result, indent=2))
        except TrainingDivergedError as err:
            return {"loss_finite": False, "diverged": str(err)}
    spectrum, probe = result.get("spectrum", {}), result.get("probe", {})
    nan = float("nan")
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return {
        **meta,
        "train_load_avg_1min_at_end": result.get("train_load_avg_1min", nan),
        "wall_time_s": result["wall_time_s"],
        "images_per_s": result.get("images_per_s", nan),
        "steps": result["steps"],
        "online_probe_top1": probe.get("val/probe_top1", nan),
        # The monitor's full-spectrum λmin/λmax (``*_raw``; runs from before the rank-aware
        # metrics stored it as ``condition_indicator``); its Z stable rank is normalized by
        # min(d, n - 1) in both.
        "monitor_z_condition": _raw_condition(spectrum, "z"),
        "monitor_z_stable_rank": spectrum.get("z/stable_rank", nan),
        "monitor_zhat_condition": _raw_condition(spectrum, "zhat"),
        "loss_finite": True,
    }


def _raw_condition(spectrum: dict, which: str) -> float:
    """The full-spectrum λmin/λmax of a run's final spectrum-monitor snapshot."""
    nan = float("nan")
    return spectrum.get(
        f"{which}/condition_indicator_raw", spectrum.get(f"{which}/condition_indicator", nan)
    )


def run_method(method: str, args: argparse.Namespace) -> dict:
    variant, overrides = (args.variant[0], args.variant[1:]) if args.variant else (None, [])
    cfg = config_of(args, method, variant, overrides)
    torch.manual_seed(cfg.seed)
    datamodule = SSLDataModule(cfg)
    row: dict = {"method": method, "recipe": recipe_of(cfg)}
    if variant:
        row.update({"variant": variant, "overrides": overrides})
    if method == RANDOM_INIT:
        module = SSLModule(cfg, datamodule.num_classes, eval_transform=datamodule.eval_transform())
        row.update({"wall_time_s": 0.0, "images_per_s": float("nan"), "steps": 0})
    else:
        row.update(train_once(cfg))
        if args.train_only:
            return row
        module = load_trained(cfg, datamodule)
    if module is not None:  # a run that diverged before its first checkpoint has no model
        row.update(evaluate(module, datamodule, args))
    row.update(
        {
            # from the trained config, not args: a variant may override the budget's
            "epochs": cfg.trainer.max_epochs,
            "width": cfg.backbone.width,
            "optim": f"{cfg.optim.name} lr {cfg.optim.lr:g}",
            "embedding_dim": cfg.method.proj_output_dim,
            "commit": git_commit(),
            "date": utc_now(),
            "load_avg_1min": os.getloadavg()[0],
            "command": "python bench/zoo.py " + shlex.join(sys.argv[1:]),
            "torch_threads": torch.get_num_threads(),
        }
    )
    return row


# ------------------------------------------------------------------------- throughput
THROUGHPUT = RESULTS / "cifar10_cpu_throughput.json"


def measure_throughput(methods: list[str], args: argparse.Namespace) -> dict[str, float]:
    """Images/s of one whole training step of every method, measured side by side.

    Rounds go over the methods in turn (``--throughput-rounds`` timed steps each after two
    warm-up steps), so a change of machine load affects every method alike; the median step
    time of each method is reported. Synthetic images (throughput does not depend on pixels).
    """
    import statistics

    from throughput import StepBench

    benches = {m: StepBench(config_of(args, m)) for m in methods if m != RANDOM_INIT}
    for bench in benches.values():
        for _ in range(2):
            bench.step()
    times: dict[str, list[float]] = {m: [] for m in benches}
    for _ in range(args.throughput_rounds):
        for m, bench in benches.items():
            start = time.perf_counter()
            bench.step()
            times[m].append(time.perf_counter() - start)
    result = {m: bench.batch_size / statistics.median(times[m]) for m, bench in benches.items()}
    saved = json.loads(THROUGHPUT.read_text()) if THROUGHPUT.exists() else {}
    saved.update(
        {
            m: {
                "images_per_s": v,
                "commit": git_commit(),
                "date": utc_now(),
                "threads": torch.get_num_threads(),
                "load_avg_1min": os.getloadavg()[0],
                "measured_with": sorted(benches),
            }
            for m, v in result.items()
        }
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    THROUGHPUT.write_text(json.dumps(saved, indent=2))
    return result


# ----------------------------------------------------------------------------- report
COLUMNS = [
    ("method", "method", "{}"),
    ("knn200_top1", "kNN k=200 top-1 %", "{:.2f}"),
    ("knn5_top1", "5-NN top-1 %", "{:.2f}"),
    ("linear_top1", "linear top-1 %", "{:.2f}"),
    ("linear_top5", "linear top-5 %", "{:.2f}"),
    ("z_condition", "λmin/λmax of Z", "{:.2e}"),
    ("z_stable_rank", "stable rank of Z", "{:.3f}"),
    ("z_effective_rank", "effective rank of Z", "{:.1f}"),
    ("wall_time_s", "wall time", "{}"),
    ("images_per_s", "images/s (training run)", "{:.0f}"),
    ("step_images_per_s", "images/s (side by side)", "{:.0f}"),
    ("optim", "optimizer", "{}"),
    ("commit", "commit", "{}"),
]


def _fmt(key: str, fmt: str, value) -> str:
    if key == "method" and isinstance(value, dict):  # name and a note
        note = value.get("note") or "diverged: " + value["diverged"].split(":")[0]
        return f"{value['name']} ({note})"
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if key == "wall_time_s":
        minutes, seconds = divmod(round(value), 60)
        return f"{minutes}m{seconds:02d}s" if value else "–"
    return fmt.format(value)


def _row_name(row: dict) -> str:
    return row_key(row["method"], row.get("variant"))


def _cell(row: dict, key: str):
    if key == "method" and row.get("earlier_semantics"):
        note = "defaults before 2026-12-02: docs/fidelity.md"
        return {"name": _row_name(row), "note": note}
    if key == "method" and row.get("stale"):
        return {"name": _row_name(row), "note": "stale: its recipe changed since; rerun"}
    if key == "method" and row.get("diverged"):
        return {"name": _row_name(row), "diverged": row["diverged"]}
    if key == "method":
        return _row_name(row)
    return row.get(key)


def load_rows(args: argparse.Namespace) -> list[dict]:
    rows = {p.stem: json.loads(p.read_text()) for p in sorted(ROWS_DIR.glob("*.json"))}
    speeds = json.loads(THROUGHPUT.read_text()) if THROUGHPUT.exists() else {}
    for method, row in rows.items():
        if method in speeds:
            row["step_images_per_s"] = speeds[method]["images_per_s"]
        row["earlier_semantics"] = ran_with_earlier_semantics(row, args)
        row["stale"] = is_stale(row, args) and not row["earlier_semantics"]
    order = [RANDOM_INIT, *ZOO]
    return [rows[m] for m in order if m in rows] + [r for m, r in rows.items() if m not in order]


def recipe_sections_at(method: str, commit: str) -> dict | None:
    """The ``method`` and ``optim`` sections (what the zoo keeps of a recipe) of
    ``configs/cifar10/<method>.yaml`` at ``commit`` (``"HEAD"``: the working tree), or
    ``None`` when git or the file at that commit is not available."""
    import subprocess

    import yaml

    name = "intl" if method == RANDOM_INIT else method
    path = REPO / "configs" / "cifar10" / f"{name}.yaml"
    try:
        if commit == "HEAD":
            text = path.read_text()
        else:
            rel = path.relative_to(REPO).as_posix()
            text = subprocess.run(
                ["git", "-C", str(REPO), "show", f"{commit.split('+')[0]}:{rel}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    recipe = yaml.safe_load(text) or {}
    return {k: recipe.get(k) for k in ("method", "optim")}


def recorded_facts(rows: list[dict]) -> str:
    """Generated lines under the table, from the rows and the throughput record: steps per
    budget, the rows that did not run with one torch thread, and the recipes whose ``method`` /
    ``optim`` sections changed after the side-by-side throughput was measured."""
    lines = []
    by_budget: dict[tuple, list[str]] = {}
    for r in rows:
        if r.get("steps"):
            by_budget.setdefault((r.get("epochs"), r["steps"]), []).append(_row_name(r))
    if by_budget:
        lines.append(
            "- steps per run: "
            + "; ".join(
                f"{epochs} epochs: {steps} steps ({len(names)} rows)"
                for (epochs, steps), names in sorted(by_budget.items(), key=lambda kv: kv[0][1])
            )
        )
    threads: dict[object, list[str]] = {}
    for r in rows:
        threads.setdefault(r.get("torch_threads"), []).append(_row_name(r))
    if threads:
        lines.append(
            "- torch threads per run: "
            + "; ".join(
                f"{n}: " + (f"{len(names)} rows" if len(names) > 4 else ", ".join(names))
                for n, names in sorted(threads.items(), key=str)
            )
        )
    speeds = json.loads(THROUGHPUT.read_text()) if THROUGHPUT.exists() else {}
    if speeds:
        measured = sorted({(v["date"], v["commit"]) for v in speeds.values()})
        changed = [
            m
            for m, v in speeds.items()
            if (old := recipe_sections_at(m, v["commit"])) is not None
            and old != recipe_sections_at(m, "HEAD")
        ]
        lines.append(
            "- side-by-side images/s measured "
            + ", ".join(f"{d} (commit `{c}`)" for d, c in measured)
            + "; recipes whose `method` / `optim` sections changed since: "
            + (", ".join(f"`{m}`" for m in changed) if changed else "none")
        )
    if not lines:
        return ""
    return "\nRecorded with the rows (generated from them):\n\n" + "\n".join(lines) + "\n"


def write_report(rows: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r})
    with (RESULTS / "cifar10_cpu.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    header = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"

    def table_of(selected: list[dict]) -> str:
        body = [
            "| " + " | ".join(_fmt(k, f, _cell(r, k)) for k, _, f in COLUMNS) + " |"
            for r in selected
        ]
        return "\n".join([header, rule, *body])

    comparison = [r for r in rows if not r.get("variant")]
    variants = [r for r in rows if r.get("variant")]
    done = {r["method"] for r in comparison}
    missing = [m for m in ZOO if m not in done]
    table = table_of(comparison)
    md = RESULTS / "cifar10_cpu.md"
    intro, _, _ = md.read_text().partition("<!-- table -->") if md.exists() else ("", "", "")
    if not intro:
        intro = "# CIFAR-10 at CPU scale: the method zoo\n\n"
    tail = "\n\nMethods not yet run: " + (", ".join(missing) if missing else "none") + ".\n"
    tail += recorded_facts(rows)
    adjustments = [f"- `{m}`: {' '.join(o)} — {why}" for m, (o, why) in SHORT_BUDGET.items()]
    tail += (
        "\nShort-budget adjustments (`SHORT_BUDGET` in `bench/zoo.py`; applied to the row and "
        "its variants):\n\n" + "\n".join(adjustments) + "\n"
    )
    if variants:
        tail += (
            "\n### Diagnostic variants (not part of the comparison)\n\n"
            + table_of(variants)
            + "\n\n"
            + "\n".join(f"- `{_row_name(r)}`: {' '.join(r['overrides'])}" for r in variants)
            + "\n"
        )
    md.write_text(intro + "<!-- table -->\n" + table + tail + "<!-- /table -->\n" + _after(md))


def _after(md: Path) -> str:
    if not md.exists():
        return ""
    _, _, rest = md.read_text().partition("<!-- /table -->\n")
    return rest


def build_parser() -> argparse.ArgumentParser:
    """The zoo's command line; its defaults are the budget (other bench scripts reuse them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=[RANDOM_INIT, *ZOO])
    parser.add_argument("--data-root", default=os.environ.get("SPECSSL_DATA", "./data"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", default="runs/zoo")
    parser.add_argument("--skip-done", action="store_true", help="skip methods with a row")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--throughput", action="store_true", help="measure images/s only")
    parser.add_argument("--throughput-rounds", type=int, default=5)
    parser.add_argument("--train-only", action="store_true", help="pretrain, evaluate later")
    parser.add_argument(
        "--variant",
        nargs="+",
        metavar=("TAG", "KEY=VALUE"),
        help="diagnostic: run the methods with these config overrides as rows <method>@TAG",
    )
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.variant and (len(args.variant) < 2 or "=" in args.variant[0]):
        parser.error("--variant takes a tag then at least one KEY=VALUE override")
    unknown = [m for m in args.methods if m not in (RANDOM_INIT, *ZOO)]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {[RANDOM_INIT, *ZOO]}")
    ROWS_DIR.mkdir(parents=True, exist_ok=True)
    if args.throughput:
        for method, speed in measure_throughput(args.methods, args).items():
            print(f"{method:>14}: {speed:8.1f} images/s")
    elif not args.report_only:
        variant = args.variant[0] if args.variant else None
        for method in args.methods:
            row_file = ROWS_DIR / f"{row_key(method, variant)}.json"
            done = row_file.exists() and not is_stale(json.loads(row_file.read_text()), args)
            if args.skip_done and done:
                continue
            print(f"=== {method}", flush=True)
            row = run_method(method, args)
            if args.train_only:
                continue
            row_file.write_text(json.dumps(row, indent=2))
            print(json.dumps(row, indent=2), flush=True)
            write_report(load_rows(args))
    write_report(load_rows(args))
    print((RESULTS / "cifar10_cpu.md").read_text())


if __name__ == "__main__":
    main()
