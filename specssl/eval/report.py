"""One self-contained HTML page for a run directory or a comparison of runs (``specssl report``).

Read from each run directory (what ``specssl pretrain`` writes):

* ``spectrum/eigenvalues.csv`` — the eigenvalues of the covariance of ``Z`` and of ``Ẑ`` at
  every spectrum snapshot: one log-scale plot per run, one line per epoch, light to dark (the
  INTL paper's Figure 3 (a)/(b));
* ``spectrum/scalars.csv`` — the spectrum monitor's rank-aware and label-free metrics per
  snapshot, epoch 0 = random init (RankMe, effective rank, LiDAR, condition indicators):
  one panel per metric, one line per run;
* ``logs/metrics.csv`` (and ``results.json`` for the kNN at random init) — kNN and online-probe
  accuracy after each epoch; the training loss per step;
* ``config.yaml`` — the settings that differ between the runs;
* ``spectrum/collapse.json`` — the collapse alarm's verdict (:mod:`specssl.train.collapse`);
  a run trained with the alarm off gets the same rule applied here to ``scalars.csv``.

The page has no script and loads nothing: the figures are matplotlib PNGs embedded as base64
``data:`` URIs, the style sheet is inline.
"""

from __future__ import annotations

import base64
import csv
import datetime
import html
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from specssl import __version__
from specssl.train.callbacks import EIGENVALUES_FILE, SCALARS_FILE
from specssl.train.collapse import CollapseVerdict, collapse_verdict, read_verdict, rule_of
from specssl.train.config import MonitorConfig

#: The label-free and rank-aware metrics plotted over epochs (those a run has).
METRIC_PANELS = (
    ("z/rankme", "RankMe of Z"),
    ("features/rankme", "RankMe of the backbone features"),
    ("z/effective_rank", "effective rank of Z"),
    ("z/lidar", "LiDAR of Z"),
    ("features/lidar", "LiDAR of the features"),
    ("z/alpha_req", "α-ReQ of Z"),
    ("z/stable_rank", "stable rank of Z / rank bound"),
    ("z/condition_indicator", "condition indicator of Z (in rank bound)"),
    ("zhat/condition_indicator", "condition indicator of Ẑ (in rank bound)"),
)

#: Metric columns of ``logs/metrics.csv`` that are accuracies over epochs.
ACCURACY_PREFIXES = ("knn/top1", "val/probe_top1")


class NotARunError(ValueError):
    """A path given to the report is not a run directory (no ``config.yaml``)."""


@dataclass
class Run:
    """What the report reads from one run directory (see the module docstring)."""

    path: Path
    name: str
    config: dict[str, Any]
    eigenvalues: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    scalars: list[dict[str, float]] = field(default_factory=list)
    logged: list[dict[str, str]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    verdict: CollapseVerdict | None = None
    verdict_source: str = ""


def load_run(path: str | Path) -> Run:
    """Read a run directory; :class:`NotARunError` when it has no ``config.yaml``."""
    path = Path(path)
    cfg_file = path / "config.yaml"
    if not cfg_file.is_file():
        raise NotARunError(f"{path} is not a run directory (no config.yaml in it)")
    config = yaml.safe_load(cfg_file.read_text()) or {}
    run = Run(path=path, name=path.name, config=config)
    spectrum = path / "spectrum"
    if (spectrum / EIGENVALUES_FILE).is_file():
        run.eigenvalues = read_eigenvalues(spectrum / EIGENVALUES_FILE)
    if (spectrum / SCALARS_FILE).is_file():
        run.scalars = read_scalars(spectrum / SCALARS_FILE)
    if (path / "logs" / "metrics.csv").is_file():
        with open(path / "logs" / "metrics.csv", newline="") as fh:
            run.logged = list(csv.DictReader(fh))
    if (path / "results.json").is_file():
        run.results = json.loads((path / "results.json").read_text())
    run.verdict = read_verdict(spectrum)
    if run.verdict is not None:
        run.verdict_source = "the run's collapse alarm"
    elif run.scalars:
        monitor = MonitorConfig(**_known(config.get("monitor") or {}, MonitorConfig))
        run.verdict = collapse_verdict(run.scalars, rule_of(monitor))
        run.verdict_source = "this report (the run's alarm was off), the run's rule"
    return run


def _known(values: Mapping[str, Any], cls: type) -> dict[str, Any]:
    names = set(cls.__dataclass_fields__)
    return {k: v for k, v in values.items() if k in names}


def read_eigenvalues(path: Path) -> dict[str, dict[int, list[float]]]:
    """``eigenvalues.csv`` -> ``{which: {epoch: eigenvalues, descending}}``; a snapshot
    repeated by a resumed run keeps its last rows."""
    out: dict[str, dict[int, dict[int, float]]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            by_epoch = out.setdefault(row["which"], {}).setdefault(int(row["epoch"]), {})
            by_epoch[int(row["index"])] = float(row["eigenvalue"])
    return {
        which: {e: [v[i] for i in sorted(v)] for e, v in sorted(epochs.items())}
        for which, epochs in out.items()
    }


def read_scalars(path: Path) -> list[dict[str, float]]:
    """``scalars.csv`` -> one mapping per snapshot (``epoch`` and every metric it has)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        {"epoch": int(r["epoch"]), **{k: float(v) for k, v in r.items() if k != "epoch" and v}}
        for r in rows
    ]


def logged_curves(run: Run) -> dict[str, list[tuple[int, float]]]:
    """Accuracies over epochs from ``logs/metrics.csv``: ``{key: [(epoch, value)]}``, epoch
    counted from 1 (after the first epoch; Lightning logs the 0-based epoch), with the kNN at
    random init (``results.json``) as epoch 0."""
    curves: dict[str, dict[int, float]] = {}
    for row in run.logged:
        for key, value in row.items():
            if value and key.startswith(ACCURACY_PREFIXES) and row.get("epoch"):
                curves.setdefault(key, {})[int(float(row["epoch"])) + 1] = float(value)
    for key, value in (run.results.get("knn_initial") or {}).items():
        if f"knn/{key}" in curves:
            curves[f"knn/{key}"][0] = float(value)
    return {k: sorted(v.items()) for k, v in sorted(curves.items())}


def loss_curve(run: Run) -> list[tuple[int, float]]:
    """``(step, train/loss)`` from ``logs/metrics.csv``."""
    return [
        (int(float(r["step"])), float(r["train/loss"]))
        for r in run.logged
        if r.get("train/loss") and r.get("step")
    ]


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"a.b.c": value}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def config_differences(configs: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Any]]]:
    """The flattened keys whose values are not the same in every config (a key missing from a
    config counts as ``None``), sorted; ``output_dir`` and ``run_name`` left out."""
    flat = [flatten(c) for c in configs]
    keys = sorted(set().union(*flat) - {"output_dir", "run_name"}) if flat else []
    diffs = []
    for key in keys:
        values = [f.get(key) for f in flat]
        if any(v != values[0] for v in values[1:]):
            diffs.append((key, values))
    return diffs


def _figure(draw, title: str, size: tuple[float, float]) -> str:
    """An ``<img>`` of the matplotlib figure ``draw(fig)`` fills, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=size, constrained_layout=True)
    try:
        draw(fig)
        fig.suptitle(title)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
    finally:
        plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    text = html.escape(title)
    return f'<img src="data:image/png;base64,{data}" alt="{text}" title="{text}">'


def spectra_figure(run: Run) -> str | None:
    """Eigenvalues of Z and Ẑ across epochs (log scale), or ``None`` without snapshots."""
    if not run.eigenvalues:
        return None
    panels = [(w, n) for w, n in (("z", "embedding Z"), ("zhat", "Ẑ (what the loss sees)"))]
    panels = [(w, n) for w, n in panels if run.eigenvalues.get(w)]

    def draw(fig) -> None:
        import matplotlib.pyplot as plt

        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (which, name) in zip(axes, panels, strict=True):
            epochs = run.eigenvalues[which]
            for i, (epoch, values) in enumerate(epochs.items()):
                colour = plt.get_cmap("viridis")(i / max(1, len(epochs) - 1))
                ranks = range(1, len(values) + 1)
                ax.plot(ranks, [max(v, 1e-12) for v in values], color=colour, label=str(epoch))
            ax.set_yscale("log")
            ax.set(xlabel="eigenvalue index (descending)", ylabel="eigenvalue", title=name)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(title="epoch", fontsize=7, ncol=2)

    return _figure(draw, f"{run.name}: spectra of Z and Ẑ across epochs", (10, 4))


def curves_figure(
    title: str,
    panels: Sequence[tuple[str, str]],
    curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
    *,
    xlabel: str = "epoch",
    log_keys: Iterable[str] = (),
) -> str | None:
    """Panels of curves: ``curves[run][key] = [(x, y)]``, one panel per ``(key, label)`` that
    some run has, one line per run; ``None`` when no run has any."""
    present = [(k, label) for k, label in panels if any(c.get(k) for c in curves.values())]
    if not present:
        return None
    log_keys = set(log_keys)
    cols = min(3, len(present))
    rows = math.ceil(len(present) / cols)

    def draw(fig) -> None:
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, (key, label) in zip(axes, present, strict=False):
            for name, by_key in curves.items():
                points = by_key.get(key) or []
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, marker="o", markersize=3, label=name)
            if key in log_keys:
                ax.set_yscale("log")
            ax.set(title=label, xlabel=xlabel)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        for ax in axes[len(present) :]:
            ax.set_visible(False)

    return _figure(draw, title, (4 * cols, 3 * rows))


def scalar_curves(run: Run) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(epoch, value)]}`` of the spectrum snapshots."""
    keys = {k for s in run.scalars for k in s if k != "epoch"}
    return {k: [(int(s["epoch"]), s[k]) for s in run.scalars if k in s] for k in sorted(keys)}


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def _verdict_html(run: Run) -> str:
    verdict = run.verdict
    if verdict is None:
        return (
            f'<p class="verdict unknown"><b>{html.escape(run.name)}</b>: not measured (no '
            "spectrum snapshots)</p>"
        )
    return (
        f'<p class="verdict {verdict.status.replace(" ", "-")}"><b>{html.escape(run.name)}: '
        f"{html.escape(verdict.status)}</b> — {html.escape(verdict.evidence())} "
        f"<span class='source'>(verdict of {html.escape(run.verdict_source)})</span></p>"
    )


def _summary_row(run: Run) -> list[Any]:
    method = (run.config.get("method") or {}).get("name")
    knn = run.results.get("knn_final") or {}
    top1 = next((v for k, v in knn.items() if k.startswith("top1")), None)
    probe = (run.results.get("probe") or {}).get("val/probe_top1")
    epochs = max((s["epoch"] for s in run.scalars), default=None)
    status = run.verdict.status if run.verdict is not None else "not measured"
    return [run.name, method, run.results.get("steps"), epochs, top1, probe, status, run.path]


STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1300px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }
th { background: #eee; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
.verdict { padding: 0.4em 0.8em; border-left: 0.4em solid #999; }
.verdict.collapsed { border-color: #c0392b; background: #fdecea; }
.verdict.healthy { border-color: #27ae60; background: #eafaf1; }
.source { color: #666; font-size: 0.85em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
"""


def render(runs: Sequence[Run], title: str | None = None) -> str:
    """The report page of ``runs`` as one HTML string."""
    names = [r.name for r in runs]
    title = title or "specssl report: " + ", ".join(names)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<link rel="icon" href="data:,">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>specssl {html.escape(__version__)}, "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC.</p>",
        "<h2>Runs</h2>",
        _table(
            [
                "run",
                "method",
                "steps",
                "epochs",
                "kNN top-1 %",
                "probe top-1 %",
                "collapse",
                "directory",
            ],
            (_summary_row(r) for r in runs),
        ),
        "<h2>Collapse verdict</h2>",
        *(_verdict_html(r) for r in runs),
        "<h2>Config differences</h2>",
    ]
    if len(runs) > 1:
        diffs = config_differences([r.config for r in runs])
        parts.append(
            _table(["key", *names], ([k, *v] for k, v in diffs))
            if diffs
            else "<p>The runs have the same config.</p>"
        )
    else:
        parts.append("<p>One run: nothing to compare; its config:</p>")
    for run in runs:
        text = yaml.safe_dump(run.config, sort_keys=False)
        parts.append(
            f"<details><summary>config.yaml of {html.escape(run.name)}</summary>"
            f"<pre>{html.escape(text)}</pre></details>"
        )
    parts.append("<h2>Spectra of Z and Ẑ across epochs</h2>")
    for run in runs:
        figure = spectra_figure(run)
        parts.append(figure or f"<p>{html.escape(run.name)}: no spectrum snapshots.</p>")
    parts.append("<h2>Label-free and rank-aware metrics over epochs</h2>")
    metrics = curves_figure(
        "label-free metrics over epochs (epoch 0: random init)",
        METRIC_PANELS,
        {r.name: scalar_curves(r) for r in runs},
        log_keys=("z/condition_indicator", "zhat/condition_indicator"),
    )
    parts.append(metrics or "<p>No spectrum snapshots.</p>")
    parts.append("<h2>kNN and online probe over epochs</h2>")
    accuracy = {r.name: logged_curves(r) for r in runs}
    keys = sorted({k for c in accuracy.values() for k in c})
    figure = curves_figure(
        "kNN and linear-probe accuracy over epochs",
        [(k, f"{k} (%)") for k in keys],
        accuracy,
    )
    parts.append(figure or "<p>No kNN or probe accuracy was logged.</p>")
    losses = {r.name: {"train/loss": loss_curve(r)} for r in runs}
    figure = curves_figure("training loss", [("train/loss", "train/loss")], losses, xlabel="step")
    if figure:
        parts += ["<h2>Training loss</h2>", figure]
    final = [
        (r.name, *(r.scalars[-1].get(k) if r.scalars else None for k, _ in METRIC_PANELS))
        for r in runs
    ]
    parts += [
        "<h2>Last snapshot</h2>",
        _table(["run", *(k for k, _ in METRIC_PANELS)], final),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def build_report(
    paths: Sequence[str | Path], out: str | Path | None = None, title: str | None = None
) -> Path:
    """Write the report of the run directories ``paths`` to ``out`` (default: the run's
    ``report.html`` for one run, ``report.html`` in the working directory for several) and
    return its path. :class:`NotARunError` for a path without ``config.yaml``."""
    runs = [load_run(p) for p in paths]
    names = [r.name for r in runs]
    for run in runs:  # runs/a/run and runs/b/run: name them a/run and b/run
        if names.count(run.name) > 1:
            run.name = f"{run.path.resolve().parent.name}/{run.path.name}"
    if out is None:
        out = runs[0].path / "report.html" if len(runs) == 1 else Path("report.html")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(runs, title), encoding="utf-8")
    return out
