"""Reports of a sweep: mean ± std per grid point, markdown tables, CSV of all runs, figures.

:func:`summarize` groups records by grid coordinates; :func:`markdown_table` renders the
groups with :class:`Column` s (``mean ± std`` over the seeds that finished, and the status:
``ok``, or ``diverged at step N`` for each seed that diverged); :func:`write_report` writes
``<out>/<scale>.md`` (command, commit, date, wall time, tables, figure, runs still missing),
``<out>/<scale>.csv`` and the figure. Text after the ``<!-- /generated -->`` marker of an
existing markdown file (the analysis) is kept when the report is rebuilt.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specssl.experiments.sweep import METRICS, RunSpec

BEGIN, END = "<!-- generated -->", "<!-- /generated -->"


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def summarize(
    records: Sequence[dict[str, Any]],
    keys: Sequence[str],
    metrics: Sequence[str] = METRICS,
) -> list[dict[str, Any]]:
    """One row per distinct ``keys`` tuple (in first-seen order).

    Each row has the keys, ``n`` / ``n_ok`` / ``n_diverged`` / ``n_failed``, the divergence
    steps and error messages, and per metric ``<m>`` (mean over the ``ok`` runs), ``<m>_std``
    (sample standard deviation; 0 for one run) and ``<m>_n`` (runs with a value).
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(tuple(record.get(k) for k in keys), []).append(record)
    rows = []
    for values, runs in groups.items():
        ok = [r for r in runs if r.get("status") == "ok"]
        row: dict[str, Any] = dict(zip(keys, values, strict=True))
        row.update(
            n=len(runs),
            n_ok=len(ok),
            n_diverged=sum(r.get("status") == "diverged" for r in runs),
            n_failed=sum(r.get("status") == "failed" for r in runs),
            diverged_steps=[r.get("diverged_step") for r in runs if r.get("status") == "diverged"],
            errors=sorted({r.get("error", "") for r in runs if r.get("status") != "ok"}),
            seeds=sorted(r.get("seed") for r in runs),
        )
        for m in metrics:
            vals = [v for v in (_number(r.get(m)) for r in ok) if v is not None]
            row[m] = statistics.fmean(vals) if vals else None
            row[f"{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else None)
            row[f"{m}_n"] = len(vals)
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Column:
    """A table column: ``key`` of a summary row, its ``title`` and number format.

    ``spread=True`` renders ``mean ± std`` of a metric; otherwise the value itself.
    """

    key: str
    title: str
    fmt: str = "{:.2f}"
    spread: bool = True


#: Columns shared by the experiments' tables.
KNN200 = Column("knn200_top1", "kNN top-1 % (k=200)")
KNN5 = Column("knn5_top1", "5-NN top-1 %")
Z_COND = Column("z_condition", "λmin/λmax of Z", "{:.2e}")
ZHAT_COND = Column("zhat_condition", "λmin/λmax of Ẑ", "{:.2e}")
Z_RANK = Column("z_stable_rank", "stable rank of Z (normalized)", "{:.3f}")
ZHAT_RANK = Column("zhat_stable_rank", "stable rank of Ẑ (normalized)", "{:.3f}")
ZHAT_MAX = Column("zhat_lambda_max", "λmax of Ẑ", "{:.3g}")


def format_cell(row: dict[str, Any], col: Column) -> str:
    value = row.get(col.key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if not col.spread or isinstance(value, str | bool):
        return col.fmt.format(value) if not isinstance(value, str | bool) else str(value)
    text = col.fmt.format(value)
    std = row.get(f"{col.key}_std")
    if row.get(f"{col.key}_n", 0) > 1 and std is not None:
        text += " ± " + col.fmt.format(std)
    return text


def status_text(row: dict[str, Any]) -> str:
    """``ok (3 seeds)`` or e.g. ``diverged 2/3 (at step 12, 40); ok 1/3``."""
    n = row["n"]
    if row["n_ok"] == n:
        return f"ok ({n} seed{'s' if n > 1 else ''})"
    parts = []
    if row["n_diverged"]:
        steps = ", ".join(str(s) for s in row["diverged_steps"] if s is not None)
        where = f" at step {steps}" if steps else ""
        parts.append(f"**diverged** {row['n_diverged']}/{n}{where}")
    if row["n_failed"]:
        msg = row["errors"][0][:90] if row["errors"] else ""
        parts.append(f"**failed** {row['n_failed']}/{n}" + (f" ({msg})" if msg else ""))
    if row["n_ok"]:
        parts.append(f"ok {row['n_ok']}/{n}")
    return "; ".join(parts)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """Markdown table of summary rows with a final ``runs`` status column."""
    header = "| " + " | ".join([c.title for c in columns] + ["runs"]) + " |"
    rule = "|" + "|".join("---" for _ in range(len(columns) + 1)) + "|"
    body = [
        "| " + " | ".join([format_cell(r, c) for c in columns] + [status_text(r)]) + " |"
        for r in rows
    ]
    return "\n".join([header, rule, *body]) if body else "_no runs finished yet_"


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def write_csv(records: Sequence[dict[str, Any]], path: Path, first: Sequence[str] = ()) -> None:
    """All records, scalar fields only, ``first`` columns first then the rest sorted."""
    scalar = [
        {k: v for k, v in r.items() if not isinstance(v, dict | list | tuple)} for r in records
    ]
    keys = sorted({k for r in scalar for k in r} - set(first))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*first, *keys])
        writer.writeheader()
        writer.writerows(scalar)


@dataclass
class Section:
    """A titled table of the report (with an optional sentence under the title)."""

    title: str
    table: str
    text: str = ""


def provenance(
    records: Sequence[dict[str, Any]], specs: Sequence[RunSpec], command: str
) -> list[str]:
    """Markdown bullet lines: commands, commits, dates, wall time, torch threads, load, runs
    missing (each from the records)."""
    lines = [f"- this report: `{command}`"]
    commands = sorted({r.get("command", "") for r in records} - {"", command})
    if commands:
        lines.append("- runs also produced by: " + ", ".join(f"`{c}`" for c in commands))
    commits = sorted({r.get("commit", "unknown") for r in records})
    if commits:
        lines.append("- commit(s) of the runs: " + ", ".join(f"`{c}`" for c in commits))
    dates = sorted(r["date"] for r in records if r.get("date"))
    if dates:
        lines.append(f"- dates: {dates[0]} – {dates[-1]}")
    walls = [r["run_wall_s"] for r in records if _number(r.get("run_wall_s")) is not None]
    if walls:
        lines.append(
            f"- wall time: {duration(sum(walls))} over {len(walls)} runs "
            f"(median {duration(statistics.median(walls))} per run, training + evaluation)"
        )
    threads = [r["torch_threads"] for r in records if r.get("torch_threads") is not None]
    if threads:
        counts = {n: threads.count(n) for n in sorted(set(threads))}
        lines.append(
            "- torch threads per run: "
            + ", ".join(f"{n} ({c} run{'s' if c > 1 else ''})" for n, c in counts.items())
        )
    loads = [r["load_avg_1min"] for r in records if _number(r.get("load_avg_1min")) is not None]
    if loads:
        lines.append(
            f"- 1-min load average at the end of the runs: median {statistics.median(loads):.1f}"
        )
    done = {r["key"] for r in records}
    missing = [s.key for s in specs if s.key not in done]
    lines.append(
        f"- runs: {len(done)}/{len(specs)} done"
        + (
            f"; still to run: {', '.join(missing[:20])}{' …' if len(missing) > 20 else ''}"
            if missing
            else ""
        )
    )
    return lines


def write_report(
    out_dir: Path,
    scale: str,
    *,
    title: str,
    intro: str,
    setup: Sequence[str],
    sections: Sequence[Section],
    records: Sequence[dict[str, Any]],
    specs: Sequence[RunSpec],
    command: str,
    figure: Callable[[Path], None] | None = None,
    csv_first: Sequence[str] = (),
    references: Sequence[dict[str, Any]] = (),
) -> Path:
    """Write ``<out>/<scale>.md``, ``<out>/<scale>.csv`` and (via ``figure(path)``)
    ``<out>/<scale>.png``; returns the markdown path. ``references`` (random-init records,
    :meth:`~specssl.experiments.sweep.Sweep.reference`) get their own table after the setup."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv_path, png = (out_dir / f"{scale}.{ext}" for ext in ("md", "csv", "png"))
    write_csv(records, csv_path, [*csv_first, "seed", "status", "diverged_step"])
    has_figure = False
    if figure is not None and records:
        figure(png)
        has_figure = png.is_file()
    parts = [f"# {title} — {scale} scale", "", intro.strip(), "", "## Setup", ""]
    parts += [f"- {line}" for line in setup]
    parts += provenance(records, specs, command)
    if references:
        sections = [reference_section(references), *sections]
    for section in sections:
        parts += ["", f"## {section.title}", ""]
        if section.text:
            parts += [section.text.strip(), ""]
        parts.append(section.table)
    if has_figure:
        parts += ["", f"![{title}]({png.name})"]
    parts += [
        "",
        f"All runs: [{csv_path.name}]({csv_path.name}); per-run records: `runs/{scale}/`.",
    ]
    generated = "\n".join(parts) + "\n"
    before, after = "", "\n\n## Analysis\n\n_To be written once the runs are in._\n"
    if md.is_file():
        old = md.read_text()
        if BEGIN in old and END in old:
            before, after = old.split(BEGIN, 1)[0], old.split(END, 1)[1]
    md.write_text(f"{before}{BEGIN}\n{generated}{END}{after}")
    return md


def reference_section(references: Sequence[dict[str, Any]]) -> Section:
    """The random-init reference: the untrained network, same evaluation (mean ± std over
    seeds), so that every number of the report can be read against it."""
    row = summarize(references, [])[0]
    columns = [KNN200, KNN5, Z_COND, Z_RANK, Column("z_effective_rank", "eff. rank of Z")]
    of = sorted({r.get("of_run", "") for r in references} - {""})
    return Section(
        "Random-init reference",
        markdown_table([row], columns),
        "The network of the first grid point before its first step (same seed, data, "
        "initialisation and evaluation as the runs)"
        + (f"; from {', '.join(f'`{k}`' for k in of[:3])}" if of else "")
        + ". A run must beat this to have learned anything.",
    )


# -------------------------------------------------------------------------------- plots
def new_figure(ncols: int, nrows: int = 1, size: tuple[float, float] = (4.6, 3.6)):
    """A headless matplotlib figure with ``nrows x ncols`` axes (always a 2-D array)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(size[0] * ncols, size[1] * nrows),
        squeeze=False,
        constrained_layout=True,
    )
    return fig, axes


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)


def errorbar_series(
    ax,
    xs: Sequence[float],
    rows: Sequence[dict[str, Any]],
    metric: str,
    *,
    label: str,
    failed_y: float | None = None,
    **style,
) -> None:
    """Plot ``mean ± std`` of ``metric`` against ``xs`` (one x per row); rows where every seed
    diverged or failed are marked with a red ``x`` at ``failed_y`` (if given)."""
    pts = [(x, r[metric], r.get(f"{metric}_std") or 0.0) for x, r in zip(xs, rows, strict=True)]
    good = [(x, m, s) for x, m, s in pts if m is not None]
    if good:
        gx, gm, gs = zip(*good, strict=True)
        ax.errorbar(gx, gm, yerr=gs, label=label, capsize=3, marker="o", **style)
    bad = [x for x, r in zip(xs, rows, strict=True) if r["n_ok"] == 0]
    if bad and failed_y is not None:
        ax.scatter(bad, [failed_y] * len(bad), marker="x", color="red", zorder=5, label=None)


__all__ = [
    "KNN5",
    "KNN200",
    "ZHAT_COND",
    "ZHAT_MAX",
    "ZHAT_RANK",
    "Z_COND",
    "Z_RANK",
    "Column",
    "Section",
    "errorbar_series",
    "format_cell",
    "markdown_table",
    "new_figure",
    "save_figure",
    "status_text",
    "summarize",
    "write_csv",
    "write_report",
]
