"""Shared pieces of the numerical experiments (no training): embeddings with a prescribed
covariance spectrum, exact float64 references, error metrics and a small report writer.

Used by :mod:`specssl.experiments.iternorm_divergence` (INTL paper, Fig. 3(d)) and
:mod:`specssl.experiments.eig_instability` (INTL paper, Section 3.3). Every number a report
states is computed from the records it writes next to it (``records.json``), so the report can
be rebuilt from the records alone (``--report-only``) and a test can compare the two.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from specssl.spectral.common import Axis

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- embeddings


def experiment_parser(doc: str, out: Path) -> argparse.ArgumentParser:
    """The command line every numerical experiment script shares: ``--out`` (default ``out``),
    ``--threads`` and ``--report-only``; each script adds its own options."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=out, help="output folder")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--report-only", action="store_true", help="rebuild from the records")
    return parser


def random_orthogonal(c: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar ``(c, c)`` float64 orthogonal matrix (QR of a Gaussian, sign-fixed)."""
    q, r = torch.linalg.qr(torch.randn(c, c, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def embedding_with_spectrum(
    n: int,
    lam: Sequence[float] | torch.Tensor,
    generator: torch.Generator,
    *,
    offset: bool = True,
) -> torch.Tensor:
    """``(n, c)`` float64 observations whose covariance (divisor ``n - 1``) has eigenvalues
    ``lam`` exactly (up to float64 rounding), plus (``offset``) a random per-column mean, so a
    function under test must centre to see the prescribed spectrum.

    ``lam``: ``c`` non-negative values, at most ``n - 1`` of them non-zero (zeros give an
    exactly rank-deficient covariance). Construction: centred Gaussian ``(n, r)`` ->
    orthonormal columns (QR) scaled by ``sqrt(n - 1)`` -> times ``diag(sqrt(λ_nz))`` ->
    rotated into ``c`` dimensions by ``r`` columns of a random orthogonal matrix.
    """
    lam = torch.as_tensor(lam, dtype=torch.float64)
    c = lam.numel()
    nonzero = lam[lam > 0]
    r = nonzero.numel()
    if r > n - 1:
        raise ValueError(f"cannot realise {r} non-zero eigenvalues from n={n} observations")
    g = torch.randn(n, r, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(g - g.mean(0))
    basis = random_orthogonal(c, generator)[:, :r]
    x = (q * (n - 1) ** 0.5 * nonzero.sqrt()) @ basis.T
    if offset:
        x = x + torch.randn(1, c, generator=generator, dtype=torch.float64)
    return x


def axis_embedding(
    m: int, d: int, lam: Sequence[float] | torch.Tensor, axis: Axis, generator: torch.Generator
) -> torch.Tensor:
    """``(m, d)`` float64 embedding whose covariance on ``axis`` has spectrum ``lam``.

    ``axis="batch"``: the ``d x d`` covariance over the ``m`` samples (``len(lam) == d``);
    ``axis="channel"``: the ``m x m`` covariance over the ``d`` channels, each sample centred
    over its channels (``len(lam) == m``), as the INTL authors' IterNorm sees it.
    """
    if axis == "batch":
        return embedding_with_spectrum(m, lam, generator)
    return embedding_with_spectrum(d, lam, generator).T.contiguous()


def logspace_spectrum(k: int, condition: float) -> torch.Tensor:
    """``k`` eigenvalues log-uniform from 1 down to ``1 / condition`` (float64)."""
    return torch.logspace(0.0, -math.log10(condition), k, dtype=torch.float64)


def observations(z: torch.Tensor, axis: Axis) -> torch.Tensor:
    """``(m, d)`` -> the ``(n, c)`` observation layout of ``axis``, centred over ``n``."""
    x = z if axis == "batch" else z.mT
    return x - x.mean(dim=-2, keepdim=True)


# ------------------------------------------------------------------------------ metrics


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """``||got - want||_F / ||want||_F`` in float64; ``inf`` when ``got`` is not finite."""
    got = got.double()
    if not bool(torch.isfinite(got).all()):
        return math.inf
    return float((got - want).norm() / want.norm())


def finite_or_none(x: float) -> float | None:
    """JSON-safe number: ``None`` for NaN/Inf."""
    return x if math.isfinite(x) else None


def fmt(x: float | None, digits: int = 2) -> str:
    """``1.2e-05``-style text of a number; ``non-finite`` for ``None``/Inf/NaN."""
    if x is None or not math.isfinite(x):
        return "non-finite"
    return f"{x:.{digits - 1}e}"


def median(values: Sequence[float]) -> float:
    """Median with Inf allowed (non-finite errors sort last)."""
    vals = sorted(values)
    n = len(vals)
    if n == 0:
        return math.nan
    mid = n // 2
    if n % 2:
        return vals[mid]
    a, b = vals[mid - 1], vals[mid]
    return math.inf if math.isinf(b) else 0.5 * (a + b)


# ------------------------------------------------------------------------------- output


def commit() -> str:
    """Short commit of the working tree (``+dirty`` when it has changes), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def provenance(command: str, wall_s: float) -> dict[str, Any]:
    """Who produced the records: command, commit, date, wall time, torch, threads, CPU."""
    return {
        "command": command,
        "commit": commit(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": round(wall_s, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def write_records(
    out_dir: Path,
    meta: dict[str, Any],
    records: list[dict[str, Any]],
    csv_rows: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """``<out>/records.json`` (``{"meta": ..., "records": [...], **extra}``) and
    ``records.csv`` with ``csv_rows`` (default: the records' scalar fields), one row each."""
    import csv

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "records.json"
    path.write_text(json.dumps({"meta": meta, "records": records, **(extra or {})}) + "\n")
    rows = records if csv_rows is None else csv_rows
    keys: list[str] = []
    for r in rows:
        keys += [k for k, v in r.items() if k not in keys and not isinstance(v, list | dict)]
    with (out_dir / "records.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_json(out_dir: Path) -> dict[str, Any]:
    """The whole ``records.json`` that :func:`write_records` wrote."""
    return json.loads((Path(out_dir) / "records.json").read_text())


def read_records(out_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``(meta, records)`` that :func:`write_records` wrote."""
    data = read_json(out_dir)
    return data["meta"], data["records"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_markdown(out_dir: Path, text: str, figure: Callable[[Path], None] | None = None) -> Path:
    """``<out>/README.md`` with ``text``; ``figure(path)`` draws ``<out>/figure.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if figure is not None:
        figure(out_dir / "figure.png")
    path = out_dir / "README.md"
    path.write_text(text.rstrip() + "\n")
    return path


def provenance_lines(meta: dict[str, Any]) -> list[str]:
    """Markdown bullets of :func:`provenance`."""
    return [
        f"- command: `{meta['command']}`",
        f"- commit `{meta['commit']}`, {meta['date']}, torch {meta['torch']}, "
        f"{meta['threads']} thread(s), {meta['machine']} CPU; wall time {meta['wall_s']:.0f} s",
    ]
