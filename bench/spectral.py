"""Forward+backward timings of the spectral ops: IterNorm vs eigh vs Cholesky vs random-group CW.

Run from the repository root::

    python bench/spectral.py            # full grid d ∈ {64, 256, 1024, 2048}, m ∈ {256, 4096}
    python bench/spectral.py --quick    # reduced grid (m ∈ {256, 1024}, d ≤ 1024), ~1-2 min
    python bench/spectral.py --intl     # INTLLoss step time, channel vs batch axis

Every cell times ``out = f(z); (out * w).sum().backward()`` on a float32 ``z: (m, d)`` with
``requires_grad`` (``w`` a fixed random tensor, so the gradient is generic), at torch's default
thread count. Columns:

* ``iternorm`` — :func:`specssl.spectral.iternorm`, ``T = 4``, automatic side (the ``n x n``
  Gram when it is smaller than the ``c x c`` covariance, push-through identity).
* ``iternorm cov`` — the same forced onto the covariance side (``use_gram=False``): shows the
  push-through gain. Where the automatic choice already is the covariance it is not re-run.
* ``eigh`` — :func:`specssl.spectral.power_transform` with ``p = 0.5`` (ZCA) on the covariance
  of the whitened axis (``use_gram=False``): the W-MSE / CW-RGP way, ``d x d`` on the batch
  axis and ``m x m`` on the channel axis.
* ``cholesky`` — :func:`specssl.spectral.cholesky_whiten` (W-MSE); ``singular`` where the
  covariance is not positive definite (``d >= m`` on the batch axis, ``m >= d`` on the channel
  axis).
* ``rg-zca``, ``rg-iternorm`` — CW-RGP's random group partition
  (:func:`specssl.spectral.random_group_whiten`, ``--groups`` groups) with the library's
  default (automatic) side.

Timing: one warm-up call per op and cell (for calls of 1 s or more the warm-up is kept as a
sample: first-call overhead is then negligible), then the ops of a cell are timed round-robin
— one call of each op per round — so a change in machine load hits all columns alike, and the
median per op is reported. Repeats adapt to the size: ``min(--repeats, --budget / t_call)``,
at least one. Ratios are ``eigh / iternorm`` etc. from the same run. Results go to
``<out>/spectral.csv`` and ``<out>/spectral.json``; the markdown table goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from specssl.losses import INTLLoss
from specssl.spectral import cholesky_whiten, iternorm, power_transform, random_group_whiten

Op = Callable[[torch.Tensor, str], torch.Tensor]  # (z, axis) -> whitened z

FULL_D = (64, 256, 1024, 2048)
FULL_M = (256, 4096)
QUICK_D = (64, 256, 1024)
QUICK_M = (256, 1024)


@dataclass
class Cell:
    axis: str
    m: int
    d: int
    gram_side: bool  # automatic iternorm iterates on the Gram
    seconds: dict[str, float | None] = field(default_factory=dict)  # None: not run / singular
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # median process CPU time
    samples: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def cov_size(self) -> int:
        return self.d if self.axis == "batch" else self.m

    @property
    def other_size(self) -> int:
        return self.m if self.axis == "batch" else self.d

    def ratio(self, num: str, den: str = "iternorm") -> float | None:
        a, b = self.seconds.get(num), self.seconds.get(den)
        return None if a is None or b is None else a / b

    def eigh_target(self) -> float:
        """Required ``eigh / iternorm`` ratio (the issue's targets)."""
        if self.cov_size > self.other_size:
            return 5.0
        return 1.0 if self.d >= 256 else 1 / 1.5


def make_ops(T: int, groups: int, seed: int) -> dict[str, Op]:
    gen = torch.Generator().manual_seed(seed)
    common = {"check_finite": False}
    return {
        "iternorm": lambda z, axis: iternorm(z, T, axis, **common),
        "iternorm cov": lambda z, axis: iternorm(z, T, axis, use_gram=False, **common),
        "eigh": lambda z, axis: power_transform(z, 0.5, axis, use_gram=False, **common),
        "cholesky": lambda z, axis: cholesky_whiten(z, axis, **common),
        "rg-zca": lambda z, axis: random_group_whiten(
            z, groups, "zca", axis, generator=gen, **common
        ),
        "rg-iternorm": lambda z, axis: random_group_whiten(
            z, groups, "iternorm", axis, generator=gen, T=T, **common
        ),
    }


def make_embedding(m: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A float32 ``(m, d)`` embedding and a fixed loss weight ``w`` of the same shape.

    Gaussian with channel scales falling from 1 to 1/2 and a random per-channel offset (so the
    centring matters): full rank wherever ``min(m, d)`` allows, with a moderate condition
    number, so Cholesky succeeds wherever the covariance is non-singular.
    """
    g = torch.Generator().manual_seed(seed)
    scale = 1.0 / (1.0 + torch.arange(d, dtype=torch.float32) / d)
    z = torch.randn(m, d, generator=g) * scale + torch.randn(1, d, generator=g)
    w = torch.randn(m, d, generator=g)
    return z.requires_grad_(True), w


def time_call(fn: Op, z: torch.Tensor, axis: str, w: torch.Tensor) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one forward+backward."""
    z.grad = None
    cpu, start = time.process_time(), time.perf_counter()
    out = fn(z, axis)
    (out * w).sum().backward()
    return time.perf_counter() - start, time.process_time() - cpu


def warm_up(ops: dict, names: list[str]) -> None:
    """One small call of every op on both axes (library, MKL and allocator start-up)."""
    z, w = make_embedding(48, 32, seed=1)
    for axis in ("batch", "channel"):
        for name in names:
            with contextlib.suppress(ValueError):  # singular Cholesky
                time_call(ops[name], z, axis, w)


def run_cell(cell: Cell, ops: dict, names: list[str], args: argparse.Namespace) -> None:
    z, w = make_embedding(cell.m, cell.d, args.seed)
    times: dict[str, list[tuple[float, float]]] = {}
    wanted: dict[str, int] = {}
    for name in names:
        if name == "iternorm cov" and not cell.gram_side:
            cell.seconds[name] = None
            cell.notes[name] = "same"  # automatic side already is the covariance
            continue
        try:
            first = time_call(ops[name], z, cell.axis, w)
        except ValueError:  # Cholesky of a singular covariance
            if name != "cholesky":
                raise
            cell.seconds[name] = None
            cell.notes[name] = "singular"
            continue
        times[name] = [first] if first[0] >= 1.0 else []
        wanted[name] = max(1, min(args.repeats, math.floor(args.budget / max(first[0], 1e-6))))
    for _ in range(max(wanted.values(), default=0)):
        for name in times:
            if len(times[name]) < wanted[name]:
                times[name].append(time_call(ops[name], z, cell.axis, w))
    for name, ts in times.items():
        cell.seconds[name] = statistics.median(t[0] for t in ts)
        cell.cpu_seconds[name] = statistics.median(t[1] for t in ts)
        cell.samples[name] = len(ts)


def fmt_time(cell: Cell, name: str) -> str:
    s = cell.seconds.get(name)
    if s is None:
        return cell.notes.get(name, "—")
    if s < 1e-3:
        text = f"{s * 1e6:.0f} µs"
    elif s < 1.0:
        text = f"{s * 1e3:.1f} ms"
    else:
        text = f"{s:.2f} s"
    n = cell.samples.get(name, 0)
    return text if n >= 3 else f"{text} ({n}×)"


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.1f}×" if r >= 10 else f"{r:.2f}×"


def markdown_table(cells: list[Cell], names: list[str]) -> str:
    ratio_cols = []
    if "eigh" in names:
        ratio_cols += ["eigh/iternorm", "target"]
    if "cholesky" in names:
        ratio_cols.append("chol/iternorm")
    if "iternorm cov" in names:
        ratio_cols.append("cov/gram")
    head = ["axis", "m", "d", "cov", "iternorm side", *names, *ratio_cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cells:
        row = [c.axis, str(c.m), str(c.d), f"{c.cov_size}²", "Gram" if c.gram_side else "cov"]
        row += [fmt_time(c, n) for n in names]
        if "eigh" in names:
            r = c.ratio("eigh")
            target = c.eigh_target()
            mark = "—" if r is None else ("ok" if r >= target else "MISS")
            row += [fmt_ratio(r), f"≥{target:.2g} {mark}"]
        if "cholesky" in names:
            row.append(fmt_ratio(c.ratio("cholesky")))
        if "iternorm cov" in names:
            row.append(fmt_ratio(c.ratio("iternorm cov")))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def environment() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_results(cells: list[Cell], names: list[str], meta: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in cells:
        row = {
            "axis": c.axis,
            "m": c.m,
            "d": c.d,
            "cov_size": c.cov_size,
            "iternorm_side": "gram" if c.gram_side else "cov",
        }
        for n in names:
            row[f"{n} s"] = c.seconds.get(n)
            row[f"{n} cpu s"] = c.cpu_seconds.get(n)
            row[f"{n} samples"] = c.samples.get(n, 0)
            row[f"{n} note"] = c.notes.get(n, "")
        row["eigh/iternorm"] = c.ratio("eigh")
        row["eigh target"] = c.eigh_target()
        row["chol/iternorm"] = c.ratio("cholesky")
        row["cov/gram"] = c.ratio("iternorm cov")
        rows.append(row)
    with (out / "spectral.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "spectral.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


def run_intl(args: argparse.Namespace, meta: dict) -> None:
    """Step time of the whole :class:`~specssl.losses.INTLLoss` (2 views) on both axes.

    Also times the two IterNorm calls alone (forward+backward of ``sum(Ẑ_v * w_v)``), the
    share of the step spent whitening.
    """
    m, d = args.intl_shape
    g = torch.Generator().manual_seed(args.seed)
    views = [torch.randn(m, d, generator=g).requires_grad_(True) for _ in range(2)]
    weights = [torch.randn(m, d, generator=g) for _ in views]
    axes = ("channel", "batch")
    losses = {axis: INTLLoss(T=args.T, axis=axis) for axis in axes}

    def loss_step(axis: str) -> torch.Tensor:
        return losses[axis](*views)

    def whiten_step(axis: str) -> torch.Tensor:
        outs = [iternorm(v, args.T, axis, check_finite=False) for v in views]
        return sum((o * w).sum() for o, w in zip(outs, weights, strict=True))

    jobs = {
        (axis, kind): fn
        for axis in axes
        for kind, fn in (("loss", loss_step), ("whiten", whiten_step))
    }

    def timed(job: tuple[str, str]) -> tuple[float, float]:
        for v in views:
            v.grad = None
        cpu, start = time.process_time(), time.perf_counter()
        jobs[job](job[0]).backward()
        return time.perf_counter() - start, time.process_time() - cpu

    for job in jobs:  # warm-up
        timed(job)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {job: [] for job in jobs}
    for _ in range(args.repeats):
        for job in jobs:
            times[job].append(timed(job))

    def med(job: tuple[str, str], clock: int = 0) -> float:
        return statistics.median(t[clock] for t in times[job])

    print(
        f"\nINTLLoss(T={args.T}) forward+backward, 2 views of ({m}, {d}), float32, "
        f"median of {args.repeats}:\n"
    )
    print(
        "| axis | whitened covariance | IterNorm iterates on | INTLLoss step | vs channel "
        "| 2× iternorm alone |"
    )
    print("|---|---|---|---|---|---|")
    rows = []
    base = med(("channel", "loss"))
    for axis in axes:
        cov = m if axis == "channel" else d
        side = min(m, d)
        step, white = med((axis, "loss")), med((axis, "whiten"))
        print(
            f"| {axis} | {cov}² | {side}² ({'Gram' if cov > side else 'covariance'}) | "
            f"{step * 1e3:.1f} ms | {step / base:.2f}× | {white * 1e3:.1f} ms |"
        )
        rows.append(
            {
                "axis": axis,
                "m": m,
                "d": d,
                "step_s": step,
                "step_cpu_s": med((axis, "loss"), 1),
                "whiten_s": white,
                "samples": args.repeats,
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "spectral_intl.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--d", type=int, nargs="+", help=f"embedding dims (default {FULL_D})")
    p.add_argument("--m", type=int, nargs="+", help=f"batch sizes (default {FULL_M})")
    p.add_argument("--axes", nargs="+", default=["batch", "channel"], choices=["batch", "channel"])
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="columns to run (default all): iternorm 'iternorm cov' eigh cholesky "
        "rg-zca rg-iternorm",
    )
    p.add_argument("--repeats", type=int, default=21, help="max timed calls per op and cell")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds of timed calls per op and cell, sets repeats for slow cells "
        "(default 8, 3 with --quick)",
    )
    p.add_argument("--quick", action="store_true", help=f"grid d={QUICK_D}, m={QUICK_M}")
    p.add_argument("--T", type=int, default=4, help="IterNorm iterations")
    p.add_argument("--groups", type=int, default=4, help="random-group CW groups")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument(
        "--intl",
        action="store_true",
        help="instead of the grid: INTLLoss step time on the channel vs batch axis",
    )
    p.add_argument("--intl-shape", type=int, nargs=2, default=(256, 2048), metavar=("M", "D"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.budget is None:
        args.budget = 3.0 if args.quick else 8.0
    ds = args.d or (QUICK_D if args.quick else FULL_D)
    ms = args.m or (QUICK_M if args.quick else FULL_M)
    ops = make_ops(args.T, args.groups, args.seed)
    names = args.methods or list(ops)
    if "iternorm" not in names:
        names = ["iternorm", *names]
    unknown = set(names) - set(ops)
    if unknown:
        sys.exit(f"unknown methods {sorted(unknown)}; choose from {list(ops)}")
    meta = environment() | {
        "T": args.T,
        "groups": args.groups,
        "repeats": args.repeats,
        "budget_s": args.budget,
        "dtype": "float32",
    }
    print(
        f"# spectral ops, forward+backward, float32, T={args.T}, {meta['threads']} threads, "
        f"{meta['cpu']}, load avg {meta['loadavg_start']}",
        file=sys.stderr,
    )
    if args.intl:
        run_intl(args, meta)
        return
    warm_up(ops, names)
    cells = []
    start = time.perf_counter()
    for axis in args.axes:
        for m in ms:
            for d in ds:
                gram_side = (d > m) if axis == "batch" else (m > d)
                cell = Cell(axis, m, d, gram_side)
                t0 = time.perf_counter()
                run_cell(cell, ops, names, args)
                cells.append(cell)
                print(
                    f"  {axis:7s} m={m:5d} d={d:5d}: "
                    + ", ".join(f"{n}={fmt_time(cell, n)}" for n in names)
                    + f"  [{time.perf_counter() - t0:.0f} s]",
                    file=sys.stderr,
                    flush=True,
                )
    meta["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    meta["wall_s"] = time.perf_counter() - start
    write_results(cells, names, meta, args.out)
    print(markdown_table(cells, names))
    print(
        f"\n(wall time {meta['wall_s']:.0f} s; load average {meta['loadavg_start']} -> "
        f"{meta['loadavg_end']}; results in {args.out}/spectral.{{csv,json}})"
    )


if __name__ == "__main__":
    main()
