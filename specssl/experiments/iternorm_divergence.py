"""INTL paper, Figure 3(d): IterNorm's numeric divergence for large T, measured.

The paper (Section 4.2): IterNorm without trace loss "diverges numerically" for T = 9 and
gives NaN losses for T >= 11. This experiment separates the *arithmetic* from the training:
for embeddings with a prescribed covariance spectrum it evaluates ``Ẑ = IterNorm_T(Z)`` for
T = 1..T_max with

* the two evaluations of Eqn. 3 (:func:`specssl.spectral.iternorm`): ``plain`` (the
  authors' uncoupled ``P_k = 3/2 P_{k-1} - 1/2 P_{k-1}^3 Σ_N``) and ``coupled`` (this
  library's Newton–Schulz form),
* in float32 and float64 arithmetic (fixed for every T: no automatic upcast), plus
* ``default``: the library's ``iternorm`` on float32 input as training calls it (coupled,
  float32 for T <= 10 and float64 from T = 11, :data:`~specssl.spectral.iternorm.FLOAT64_FROM_T`),

against the exact result of Theorem 1 computed by a float64 eigendecomposition of the same
(float32-representable) input,

    Ẑ_ref = Z_c U f_T(Λ_N) U^T / sqrt(tr Σ),    Σ_N = Σ / tr Σ = U Λ_N U^T,

and records the relative Frobenius error ``||Ẑ - Ẑ_ref||_F / ||Ẑ_ref||_F`` at each T, the
first T whose error exceeds :data:`BREAKDOWN` (1%) and the first T whose output is not
finite.

Inputs: ``m = 256`` samples of a ``d = 512`` embedding on the channel axis (the ``256 x 256``
covariance over channels of the INTL authors' code, batch 256) and ``m = 512, d = 256`` on the
batch axis (the paper's text, ``256 x 256`` covariance over samples); spectra log-uniform with
condition numbers 1e2 to 1e8, and the first 256 eigenvalues of two recorded embedding spectra
(docs/results/fig3_iternorm_T: INTL and IterNorm-only after training, the latter collapsed).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from specssl.experiments import numerics as nx
from specssl.spectral.common import (
    Axis,
    centred_moments,
    from_groups,
    should_use_gram,
    to_groups,
)
from specssl.spectral.iternorm import (
    FLOAT64_FROM_T,
    Iteration,
    f_T,
    iternorm,
    newton_schulz_inverse_sqrt,
)

NAME = "fig3d_iternorm_divergence"
OUT = nx.REPO / "docs" / "results" / NAME
#: Relative error from which an output counts as broken down.
BREAKDOWN = 1e-2
FIG3_RUNS = nx.REPO / "docs" / "results" / "fig3_iternorm_T" / "runs" / "cpu"
RECORDED = {
    "recorded INTL": "method=intl_T=5_seed=0-f83db197.json",
    "recorded IterNorm (collapsed)": "method=iternorm_T=5_seed=0-3ecd23e6.json",
}
CONDITIONS = (1e2, 1e4, 1e6, 1e8)
#: (label, iteration, dtype, library default) of each evaluated configuration.
CONFIGS: tuple[tuple[str, str, str], ...] = (
    ("plain", "float32", "fixed"),
    ("plain", "float64", "fixed"),
    ("coupled", "float32", "fixed"),
    ("coupled", "float64", "fixed"),
    ("coupled", "float32", "default"),
)
DTYPES = {"float32": torch.float32, "float64": torch.float64}
FLOAT32_EPS = torch.finfo(torch.float32).eps


def config_label(form: str, precision: str, mode: str) -> str:
    """``plain float32`` etc.; the library default is ``default (coupled, float32 input)``."""
    if mode == "default":
        return f"library default ({form}, {precision} input, float64 from T={FLOAT64_FROM_T})"
    return f"{form} {precision}"


@dataclass(frozen=True)
class Spectrum:
    """A named covariance spectrum of ``k`` eigenvalues (max 1) and where it comes from."""

    name: str
    source: str
    values: Callable[[int], torch.Tensor]


def recorded_spectrum(record: str, k: int) -> torch.Tensor:
    """The first ``k`` eigenvalues of a recorded ``z_final`` spectrum, scaled to max 1."""
    data = json.loads((FIG3_RUNS / record).read_text())
    lam = torch.tensor(data["spectra"]["z_final"][:k], dtype=torch.float64).clamp_min(0)
    return lam / lam.max()


def spectra() -> list[Spectrum]:
    """Log-uniform spectra of :data:`CONDITIONS` and the :data:`RECORDED` ones."""
    out = [
        Spectrum(
            f"cond {c:.0e}",
            f"log-uniform 1 .. {1 / c:.0e}",
            lambda k, c=c: nx.logspace_spectrum(k, c),
        )
        for c in CONDITIONS
    ]
    for name, record in RECORDED.items():
        out.append(
            Spectrum(
                name,
                f"first k of z_final in fig3_iternorm_T/runs/cpu/{record}",
                lambda k, r=record: recorded_spectrum(r, k),
            )
        )
    return out


def iternorm_fixed(z: torch.Tensor, T: int, axis: Axis, iteration: Iteration) -> torch.Tensor:
    """IterNorm of ``z: (m, d)`` in ``z``'s dtype for every ``T`` (no upcast), either form.

    The library's own pieces (centring, covariance or Gram side, :func:`~specssl.spectral.
    iternorm.newton_schulz_inverse_sqrt`) in the order :func:`~specssl.spectral.iternorm`
    uses them; equal to ``iternorm(z, T, axis, iteration=...)`` wherever that does not upcast.
    """
    x = to_groups(z, axis, 1)
    gram_side = should_use_gram(x, None)
    xc, s, trace, _ = centred_moments(x, gram_side)
    p_t = newton_schulz_inverse_sqrt(s / trace[..., None, None], T, iteration)
    p_t = p_t * trace.rsqrt()[..., None, None]
    return from_groups(p_t @ xc if gram_side else xc @ p_t, axis)


class Reference:
    """Exact ``IterNorm_T`` of a float64 ``z: (m, d)`` by one eigendecomposition (Theorem 1):
    ``Ẑ_ref(T) = Z_c U f_T(Λ_N) U^T / sqrt(tr Σ)`` on the ``c x c`` covariance of ``axis``."""

    def __init__(self, z: torch.Tensor, axis: Axis) -> None:
        self.axis = axis
        self.xc = nx.observations(z.double(), axis)  # (n, c)
        sigma = self.xc.mT @ self.xc / (self.xc.shape[-2] - 1)
        self.trace = torch.trace(sigma)
        self.evals, self.evecs = torch.linalg.eigh(sigma / self.trace)

    def __call__(self, T: int) -> torch.Tensor:
        u = self.evecs
        p_t = (u * f_T(self.evals, T)) @ u.mT / self.trace.sqrt()
        out = self.xc @ p_t
        return out if self.axis == "batch" else out.mT


def run_case(z32: torch.Tensor, axis: Axis, t_max: int) -> list[dict[str, Any]]:
    """Errors of every :data:`CONFIGS` entry for T = 1..t_max on one float32 embedding."""
    z64 = z32.double()
    ref = Reference(z64, axis)
    refs = {T: ref(T) for T in range(1, t_max + 1)}
    out = []
    for form, precision, mode in CONFIGS:
        z = z32 if precision == "float32" else z64
        errors: list[float | None] = []
        for T in range(1, t_max + 1):
            with torch.no_grad():
                if mode == "default":
                    zhat = iternorm(z, T, axis, check_finite=False)
                else:
                    zhat = iternorm_fixed(z, T, axis, form)  # type: ignore[arg-type]
            errors.append(nx.finite_or_none(nx.relative_error(zhat, refs[T])))
        out.append({"form": form, "precision": precision, "mode": mode, "errors": errors})
    return out


def run(
    seeds: list[int],
    t_max: int,
    axes: list[str],
    size: int = 256,
) -> list[dict[str, Any]]:
    """One record per (spectrum, axis, seed, configuration) with ``errors[T-1]``.

    ``size`` (256): the channel axis has ``m = size`` samples of ``d = 2 size`` channels (a
    ``size x size`` covariance), the batch axis ``m = size`` samples of ``d = size / 2``."""
    records = []
    for spec in spectra():
        for axis in axes:
            lam = spec.values(size if axis == "channel" else size // 2)
            m, d = (size, 2 * size) if axis == "channel" else (size, size // 2)
            for seed in seeds:
                gen = torch.Generator().manual_seed(seed)
                z32 = nx.axis_embedding(m, d, lam, axis, gen).float()  # type: ignore[arg-type]
                for rec in run_case(z32, axis, t_max):  # type: ignore[arg-type]
                    rec.update(spectrum=spec.name, source=spec.source, axis=axis, seed=seed)
                    rec.update(m=m, d=d, condition=float(lam.max() / lam[lam > 0].min()))
                    rec.update(zeros=int((lam == 0).sum()))
                    records.append(rec)
    return records


# ------------------------------------------------------------------------------- summary


def onset(errors: list[float | None], threshold: float | None) -> int | None:
    """First T (1-based) with a non-finite error, or an error above ``threshold``."""
    for t, e in enumerate(errors, start=1):
        if e is None or (threshold is not None and e > threshold):
            return t
    return None


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (spectrum, axis, configuration): onsets per seed and median errors."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(
            (r["spectrum"], r["axis"], r["form"], r["precision"], r["mode"]), []
        ).append(r)
    rows = []
    for (spectrum, axis, form, precision, mode), runs in groups.items():
        errs = [[math.inf if e is None else e for e in r["errors"]] for r in runs]
        t_max = len(errs[0])
        rows.append(
            {
                "spectrum": spectrum,
                "axis": axis,
                "form": form,
                "precision": precision,
                "mode": mode,
                "condition": runs[0]["condition"],
                "seeds": [r["seed"] for r in runs],
                "t_max": t_max,
                "breakdown": [onset(r["errors"], BREAKDOWN) for r in runs],
                "nan": [onset(r["errors"], None) for r in runs],
                "median": [nx.median([e[t] for e in errs]) for t in range(t_max)],
            }
        )
    return rows


def onset_text(values: list[int | None], t_max: int) -> str:
    """``12`` / ``12–14`` over seeds, ``none ≤ 30`` when no seed reaches it, ``>30`` mixed."""
    hit = [v for v in values if v is not None]
    if not hit:
        return f"none ≤ {t_max}"
    lo, hi = min(hit), max(hit)
    text = str(lo) if lo == hi else f"{lo}–{hi}"
    if len(hit) < len(values):
        text += f" ({len(values) - len(hit)} seed(s): none ≤ {t_max})"
    return text


def axes_agreement(rows: list[dict[str, Any]], axis: str) -> str:
    """Sentences comparing the other axis's breakdown / NaN onsets with ``axis``'s, split into
    spectra with the same κ on both axes and spectra whose κ differs (recorded ones: the
    first ``k`` eigenvalues, ``k`` the covariance side of each axis)."""
    others = sorted({r["axis"] for r in rows} - {axis})
    if not others:
        return ""
    other = others[0]
    same: list[int] = []
    unmatched = 0
    differing: dict[str, tuple[float, float]] = {}
    for r in rows:
        if r["axis"] != axis:
            continue
        twin = find(
            rows,
            spectrum=r["spectrum"],
            axis=other,
            form=r["form"],
            precision=r["precision"],
            mode=r["mode"],
        )
        if not math.isclose(r["condition"], twin["condition"], rel_tol=1e-6):
            differing[r["spectrum"]] = (r["condition"], twin["condition"])
            continue
        for key in ("breakdown", "nan"):
            for a, b in zip(r[key], twin[key], strict=True):
                if a is not None and b is not None:
                    same.append(abs(a - b))
                elif (a is None) != (b is None):
                    unmatched += 1
    text = (
        f" On the {other} axis (table), for the spectra with the same κ on both axes, the "
        f"breakdown and NaN onsets are within {max(same, default=0)} step(s) of the {axis} "
        f"axis's"
        + (
            f" ({unmatched} seed-onset(s) reached on one axis only, within T ≤ {rows[0]['t_max']})"
            if unmatched
            else ""
        )
        + "."
    )
    if differing:
        text += (
            " The recorded spectra have another κ there ("
            + "; ".join(f"{n}: {a:.3g} vs {b:.3g}" for n, (a, b) in differing.items())
            + "): see the table."
        )
    return text


def amplification(condition: float) -> float:
    """Largest per-step error factor ``(κ + sqrt κ) / 2 - 1`` of the linearised plain map."""
    return (condition + math.sqrt(condition)) / 2 - 1


def error_at(row: dict[str, Any], T: int) -> str:
    return nx.fmt(row["median"][T - 1]) if row["t_max"] >= T else "–"


# -------------------------------------------------------------------------------- report


def find(rows: list[dict[str, Any]], **key: str) -> dict[str, Any]:
    (row,) = [r for r in rows if all(r[k] == v for k, v in key.items())]
    return row


def reading(rows: list[dict[str, Any]], axes: list[str]) -> list[str]:
    """The numeric sentences of the report, each computed from the summary rows."""
    axis = "channel" if "channel" in axes else axes[0]
    t_max = rows[0]["t_max"]
    mine = [r for r in rows if r["axis"] == axis]
    names = list(dict.fromkeys(r["spectrum"] for r in mine))

    def group(form: str, precision: str, mode: str = "fixed") -> dict[str, dict[str, Any]]:
        return {n: find(mine, spectrum=n, form=form, precision=precision, mode=mode) for n in names}

    p32, p64 = group("plain", "float32"), group("plain", "float64")
    c32, c64 = group("coupled", "float32"), group("coupled", "float64")
    dflt = group("coupled", "float32", "default")

    def per_spectrum(g: dict[str, dict[str, Any]], key: str) -> str:
        return "; ".join(f"{n}: {onset_text(r[key], t_max)}" for n, r in g.items())

    def hits(g: dict[str, dict[str, Any]], key: str) -> list[int]:
        return [v for r in g.values() for v in r[key] if v is not None]

    def worst(g: dict[str, dict[str, Any]]) -> float:
        return max(max(r["median"]) for r in g.values())

    n_cases = sum(len(r["seeds"]) for r in p32.values())
    lines = [
        f"{axis.capitalize()}-axis numbers ({len(names)} spectra × "
        f"{len(next(iter(p32.values()))['seeds'])} seeds = {n_cases} cases per "
        f"configuration).{axes_agreement(rows, axis)}"
    ]
    nan32 = hits(p32, "nan")
    text = (
        "**Plain form (the authors' Eqn. 3), float32.** Breakdown (error > "
        f"{BREAKDOWN:.0%}) at T = {per_spectrum(p32, 'breakdown')}. First non-finite "
        f"output at T = {per_spectrum(p32, 'nan')}."
    )
    if nan32:
        text += (
            f" In {len(nan32)} of {n_cases} cases the output becomes NaN/Inf within T ≤ "
            f"{t_max}, the earliest at T = {min(nan32)}"
        )
        brk = hits(p32, "breakdown")
        text += (f"; the error passes 1% from T = {min(brk)} to {max(brk)}" if brk else "") + "."
        if min(brk) <= 12:
            text += (
                " This is the paper's Fig. 3(d) (NaN for T ≥ 11): the divergence is the "
                "arithmetic of the plain iteration, and it happens on every spectrum here, "
                "the best-conditioned included."
                if len(brk) == n_cases
                else " This is the paper's Fig. 3(d) (NaN for T ≥ 11)."
            )
    lines.append(text)
    lines.append(
        "**Plain form, float64.** Breakdown at T = "
        f"{per_spectrum(p64, 'breakdown')}; first non-finite output at T = "
        f"{per_spectrum(p64, 'nan')}. float64 postpones the divergence by a few steps; it "
        "does not remove it."
        if hits(p64, "breakdown")
        else "**Plain form, float64.** No breakdown up to T = "
        f"{t_max} (largest median error {nx.fmt(worst(p64))})."
    )
    lines.append(
        "**Why.** Linearised at its fixed point, the plain map multiplies the (i, j) "
        "eigenbasis component of a rounding error by 1 − (r + r²)/2, r = √(λ_j/λ_i) (module "
        "docstring of `specssl/spectral/iternorm.py`): rounding errors grow as soon as some "
        "λ_j/λ_i > 2.44, by up to (κ + √κ)/2 − 1 per step. For the spectra here (κ over the "
        "non-zero eigenvalues): "
        + "; ".join(
            f"{n}: κ = {r['condition']:.3g}, up to {amplification(r['condition']):.3g}× per step"
            for n, r in p32.items()
        )
        + ". The coupled form's map has an idempotent derivative at the fixed point (Higham, "
        "Functions of Matrices, Thm. 6.9): rounding errors are not amplified."
    )
    c64_brk = hits(c64, "breakdown")
    lines.append(
        f"**Coupled form (this library), float64.** Largest median error over all spectra and "
        f"T ≤ {t_max}: {nx.fmt(worst(c64))}; "
        + (
            "no breakdown and no non-finite output on any spectrum."
            if not c64_brk
            else f"breakdown at T = {per_spectrum(c64, 'breakdown')}."
        )
    )
    broken32 = [n for n, r in c32.items() if any(v is not None for v in r["breakdown"])]
    text = (
        f"**Coupled form, float32 arithmetic at every T.** Largest median error on the other "
        f"spectra: {nx.fmt(max(max(r['median']) for n, r in c32.items() if n not in broken32))}"
        if len(broken32) < len(c32)
        else "**Coupled form, float32 arithmetic at every T.**"
    )
    if broken32:
        below = all(c32[n]["condition"] > 1 / FLOAT32_EPS for n in broken32)
        text += (
            "; it breaks down on "
            + "; ".join(
                f"{n} (κ = {c32[n]['condition']:.3g}): T = {onset_text(c32[n]['breakdown'], t_max)}"
                for n in broken32
            )
            + (
                f" — only spectra whose κ exceeds 1/eps_float32 = {1 / FLOAT32_EPS:.2g}. "
                if below
                else ". "
            )
        )
    else:
        text += "; no breakdown. "
    dflt_brk = hits(dflt, "breakdown")
    text += (
        f"The library default (float32 input whitened in float64 from T = {FLOAT64_FROM_T}) "
        + (
            f"has no breakdown and no non-finite output (largest median error "
            f"{nx.fmt(worst(dflt))})."
            if not dflt_brk
            else f"breaks down at T = {per_spectrum(dflt, 'breakdown')}."
        )
    )
    lines.append(text)
    return lines


def table(rows: list[dict[str, Any]]) -> str:
    columns = sorted({4, 9, 11, 15, 20, rows[0]["t_max"]} & set(range(1, rows[0]["t_max"] + 1)))
    header = [
        "spectrum",
        "axis",
        "configuration",
        "breakdown T (err > 1%)",
        "first non-finite T",
        *(f"err T={t}" for t in columns),
    ]
    body = []
    for r in rows:
        body.append(
            [
                r["spectrum"],
                r["axis"],
                config_label(r["form"], r["precision"], r["mode"]),
                onset_text(r["breakdown"], r["t_max"]),
                onset_text(r["nan"], r["t_max"]),
                *(error_at(r, t) for t in columns),
            ]
        )
    return nx.markdown_table(header, body)


def report_text(meta: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The whole markdown report, generated from ``records`` (and ``meta``) only."""
    rows = summarize(records)
    axes = list(dict.fromkeys(r["axis"] for r in records))
    sizes = sorted({(r["axis"], r["m"], r["d"]) for r in records})
    seeds = sorted({r["seed"] for r in records})
    sources = list(dict.fromkeys(f"{r['spectrum']}: {r['source']}" for r in records))
    parts = [
        "# INTL Figure 3(d): IterNorm's numeric divergence, plain vs coupled Newton iteration",
        "",
        "_Generated by `experiments/fig3d_iternorm_divergence.py` from `records.json`; every "
        "number below is computed from those records._",
        "",
        "Paper (Section 4.2, Fig. 3(d)): IterNorm without trace loss diverges numerically at "
        "T = 9 and its losses are NaN for T ≥ 11. Here the arithmetic alone, no training: "
        "`Ẑ = IterNorm_T(Z)` for T = 1.."
        f"{rows[0]['t_max']} with the authors' plain iteration (Eqn. 3, "
        '`iteration="plain"`) and this library\'s coupled Newton–Schulz form (the default), '
        "each in float32 and float64 arithmetic, against the exact result of Theorem 1 "
        "(float64 eigendecomposition of the same float32 input, "
        "`Ẑ_ref = Z_c U f_T(Λ_N) U^T / sqrt(tr Σ)`). Error: `‖Ẑ − Ẑ_ref‖_F / ‖Ẑ_ref‖_F`, "
        "median over seeds; *breakdown T*: first T with error > 1%; *first non-finite T*: "
        "first T whose output has a NaN/Inf (per seed; a range spans the seeds).",
        "",
        "## Setup",
        "",
        *(f"- {axis} axis: m = {m}, d = {d}" for axis, m, d in sizes),
        f"- seeds {', '.join(map(str, seeds))} (random eigenbasis, samples and mean)",
        *(f"- {s}" for s in sources),
        *nx.provenance_lines(meta),
        "",
        "## Reading",
        "",
        *(line + "\n" for line in reading(rows, axes)),
        "## Results",
        "",
        table(rows),
        "",
        "![relative error of IterNorm against the exact eigendecomposition result vs T]"
        "(figure.png)",
        "",
        "Records: [records.json](records.json) (per spectrum, axis, seed and configuration the "
        "error at each T; `null` = non-finite output), [records.csv](records.csv) (one row per T).",
    ]
    return "\n".join(parts)


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """One panel per spectrum (first axis): median relative error vs T (log y) per
    configuration; an ``x`` at the top marks T where a seed's output was non-finite."""
    from specssl.experiments.report import new_figure, save_figure

    rows = summarize(records)
    axis = "channel" if any(r["axis"] == "channel" for r in rows) else rows[0]["axis"]
    names = list(dict.fromkeys(r["spectrum"] for r in rows))
    ncols = 3
    nrows = math.ceil(len(names) / ncols)
    fig, axes = new_figure(ncols, nrows, size=(4.4, 3.3))
    styles = {
        ("plain", "float32", "fixed"): ("tab:red", "-"),
        ("plain", "float64", "fixed"): ("tab:red", "--"),
        ("coupled", "float32", "fixed"): ("tab:blue", "-"),
        ("coupled", "float64", "fixed"): ("tab:blue", "--"),
        ("coupled", "float32", "default"): ("tab:green", ":"),
    }
    top = 1e4
    for ax, name in zip(axes.flat, names, strict=False):
        for r in rows:
            if r["spectrum"] != name or r["axis"] != axis:
                continue
            key = (r["form"], r["precision"], r["mode"])
            color, style = styles[key]
            ts = list(range(1, r["t_max"] + 1))
            ys = [min(max(e, 1e-17), top) if math.isfinite(e) else math.nan for e in r["median"]]
            ax.plot(ts, ys, style, color=color, label=config_label(*key))
            bad = [t for t, e in zip(ts, r["median"], strict=True) if not math.isfinite(e)]
            if bad:
                ax.scatter(bad, [top] * len(bad), marker="x", color=color, s=14)
        ax.axhline(BREAKDOWN, color="grey", linewidth=0.8, linestyle="-.")
        ax.set_yscale("log")
        ax.set_ylim(1e-17, top * 3)
        ax.set_xlabel("iterations T")
        ax.set_ylabel("relative error of Ẑ (median over seeds)")
        ax.set_title(f"{name} ({axis} axis)", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=7)
    fig.suptitle(
        "IterNorm vs the exact eigendecomposition result; x at the top: non-finite output "
        "(finite errors above 1e4 drawn at 1e4); dash-dot: the 1% breakdown threshold",
        fontsize=9,
    )
    save_figure(fig, path)


def write(out_dir: Path, meta: dict[str, Any], records: list[dict[str, Any]]) -> Path:
    """Records (json + long csv), figure and README.md."""
    csv_rows = [
        {k: v for k, v in r.items() if k != "errors"} | {"T": t, "rel_error": e}
        for r in records
        for t, e in enumerate(r["errors"], start=1)
    ]
    nx.write_records(out_dir, meta, records, csv_rows)
    return nx.write_markdown(out_dir, report_text(meta, records), lambda p: plot(records, p))


def main(
    out_dir: Path, seeds: list[int], t_max: int, axes: list[str], size: int, command: str
) -> Path:
    """Run the grid and write everything under ``out_dir``."""
    start = time.perf_counter()
    records = run(seeds, t_max, axes, size)
    meta = nx.provenance(command, time.perf_counter() - start)
    meta.update(seeds=seeds, t_max=t_max, axes=axes, size=size)
    return write(out_dir, meta, records)
