"""INTL paper, Table 4 and Figure 4: INTL's accuracy across batch sizes and embedding
dimensions.

Claim (Section 5.3): INTL is robust to the batch size — ImageNet, 100 epochs, embedding 8192,
linear top-1 64.2 / 66.4 / 68.1 / 68.7 / 69.5 / 69.7 % for batch 32 ... 1024 — and to the
embedding dimension — ImageNet, 300 epochs, batch 256, good results already at d = 64 or 128.

Here: configs/cifar10/intl.yaml (CIFAR-10, ResNet-18) with the batch size (learning rate scaled
linearly, base lr for 256) or the projector output dimension swept. Paper scale uses the
paper's epochs (100 for the batch sweep, 300 for the dimension sweep, projector hidden width =
d as in Barlow Twins' sweep); ``--recipe configs/imagenet/intl.yaml`` runs the ImageNet version
(embedding 8192 in the batch sweep, as in Table 4). CPU scale: width-16 ResNet-18, projector
hidden 1024, embedding 512 in the batch sweep; the spectrum monitor is off when d is not below
the spectrum sample count (a d x d eigendecomposition would dominate the run and be rank
deficient).

    python experiments/table4_batch_dim.py --scale cpu --data-root ../shared/data
    python experiments/table4_batch_dim.py --scale cpu --sweeps batch --batch-sizes 32 256
"""

from __future__ import annotations

import sys
from pathlib import Path

from specssl.experiments.budget import CPU_INTL_PROJECTOR
from specssl.experiments.command import (
    REPO,
    budget_of,
    command_line,
    execute,
    parse,
    sweep_parser,
)
from specssl.experiments.report import (
    KNN5,
    KNN200,
    Z_COND,
    Z_RANK,
    Column,
    Section,
    errorbar_series,
    markdown_table,
    new_figure,
    save_figure,
    summarize,
    write_report,
)
from specssl.experiments.sweep import plan
from specssl.train.config import load_config

NAME = "table4_batch_dim"
RECIPE = REPO / "configs" / "cifar10" / "intl.yaml"
BATCH_GRID = [32, 64, 128, 256, 512, 1024]
DIM_GRID = [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
#: Table 4 of the INTL paper (ImageNet, ResNet-50, 100 epochs, d = 8192): linear top-1 %.
PAPER_TABLE4 = {32: 64.2, 64: 66.4, 128: 68.1, 256: 68.7, 512: 69.5, 1024: 69.7}
SWEEPS = ("batch", "dim")
PAPER_EPOCHS = {"batch": 100, "dim": 300}
FIXED_BATCH = 256
SMOKE = {"batch": [32], "dim": [32], "fixed_dim": 16, "fixed_batch": 64}
SPECTRUM_SAMPLES = {"smoke": 128, "cpu": 2048, "paper": 4096}
SEEDS = 3


def main(argv: list[str] | None = None) -> int:
    parser = sweep_parser(__doc__, name=NAME, default_seeds=SEEDS)
    parser.add_argument("--sweeps", nargs="+", choices=SWEEPS, default=list(SWEEPS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help=f"{BATCH_GRID}")
    parser.add_argument("--dims", type=int, nargs="+", default=None, help=f"{DIM_GRID}")
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="INTL recipe (paper scale)")
    args = parse(parser, argv)
    budget = budget_of(args)
    smoke = args.scale == "smoke"
    batches = args.batch_sizes or (SMOKE["batch"] if smoke else BATCH_GRID)
    dims = args.dims or (SMOKE["dim"] if smoke else DIM_GRID)
    fixed_batch = SMOKE["fixed_batch"] if smoke else FIXED_BATCH
    if smoke:
        fixed_dim = SMOKE["fixed_dim"]
    elif args.scale == "cpu":
        fixed_dim = CPU_INTL_PROJECTOR[1]
    else:
        fixed_dim = load_config(args.recipe).method.proj_output_dim
    samples = SPECTRUM_SAMPLES[args.scale]

    def build(point: dict) -> tuple[Path, list[str]]:
        d = point["embedding_dim"]
        ovr = budget.overrides(
            batch_size=point["batch_size"],
            paper_epochs=PAPER_EPOCHS[point["sweep"]],
            spectrum=d < samples,
            spectrum_samples=samples,
        )
        if args.scale == "cpu":
            ovr.append(f"method.proj_hidden_dim={CPU_INTL_PROJECTOR[0]}")
        elif args.scale == "paper" and point["sweep"] == "dim":
            ovr.append(f"method.proj_hidden_dim={d}")
        ovr.append(f"method.proj_output_dim={d}")
        return (args.recipe if args.scale == "paper" else RECIPE), ovr

    points = []
    if "batch" in args.sweeps:
        points += [{"sweep": "batch", "batch_size": b, "embedding_dim": fixed_dim} for b in batches]
    if "dim" in args.sweeps:
        points += [{"sweep": "dim", "batch_size": fixed_batch, "embedding_dim": d} for d in dims]
    specs = plan(points, args.seeds, build, args.set)

    def report(sweep, specs, records) -> Path:
        rows = summarize(records, ["sweep", "batch_size", "embedding_dim"])
        by_batch = sorted((r for r in rows if r["sweep"] == "batch"), key=lambda r: r["batch_size"])
        by_dim = sorted((r for r in rows if r["sweep"] == "dim"), key=lambda r: r["embedding_dim"])
        for row in by_batch:
            row["paper"] = PAPER_TABLE4.get(row["batch_size"])
        batch_cols = [
            Column("batch_size", "batch size", "{}", spread=False),
            KNN200,
            KNN5,
            Z_COND,
            Z_RANK,
            Column("paper", "paper Table 4 (ImageNet, linear)", "{:.1f}", spread=False),
        ]
        dim_cols = [
            Column("embedding_dim", "embedding dim d", "{}", spread=False),
            KNN200,
            KNN5,
            Z_COND,
            Z_RANK,
        ]
        shown = [name for name in SWEEPS if name in args.sweeps]  # the sweeps asked for, in order
        sections = {
            "batch": Section("Batch size (Table 4)", markdown_table(by_batch, batch_cols)),
            "dim": Section("Embedding dimension (Figure 4)", markdown_table(by_dim, dim_cols)),
        }
        b_epochs = budget.epochs_of(PAPER_EPOCHS["batch"])
        d_epochs = budget.epochs_of(PAPER_EPOCHS["dim"])
        return write_report(
            sweep.out_dir,
            sweep.scale,
            title="INTL Table 4 / Figure 4: batch size and embedding dimension",
            intro=(
                "Paper: INTL keeps good accuracy at batch 32 or 64 and improves slowly up to "
                "1024 (Table 4, ImageNet, 100 epochs, d = 8192), and already works with "
                "embedding dimension 64 or 128 (Figure 4, ImageNet, 300 epochs, batch 256). "
                "Accuracy here: weighted kNN (k=200) of the backbone features after the last "
                "epoch; the learning rate is scaled linearly with the batch (base lr for 256), "
                "and every batch size trains the same number of epochs, so small batches take "
                "more steps."
            ),
            setup=[
                budget.describe(PAPER_EPOCHS["batch"]),
                f"batch sweep: d = {fixed_dim}, {b_epochs} epochs; dimension sweep: batch "
                f"{fixed_batch}, {d_epochs} epochs",
                f"recipe `{_shown(args.recipe if args.scale == 'paper' else RECIPE)}`; "
                "extra overrides: " + (" ".join(f"`{s}`" for s in args.set) or "none"),
            ],
            sections=[sections[name] for name in shown],
            records=records,
            specs=specs,
            command=sweep.command,
            figure=lambda path: plot(shown, by_batch, by_dim, path),
            csv_first=["sweep", "batch_size", "embedding_dim"],
            references=sweep.references,
        )

    return execute(args, command_line("table4_batch_dim.py", argv), specs, report)


def _shown(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def plot(sweeps: list[str], by_batch: list[dict], by_dim: list[dict], path: Path) -> None:
    """kNN top-1 against the batch size and/or the embedding dimension (one panel per sweep
    of ``sweeps``, in that order), log2 x; the paper's Table 4 beside the batch sweep."""
    panels = {
        "batch": (by_batch, "batch_size", "batch size"),
        "dim": (by_dim, "embedding_dim", "embedding dimension"),
    }
    fig, axes = new_figure(len(sweeps))
    for name, ax in zip(sweeps, axes[0], strict=True):
        rows, key, label = panels[name]
        if rows:
            xs = [r[key] for r in rows]
            errorbar_series(ax, xs, rows, "knn200_top1", label="kNN top-1 (k=200)", failed_y=0.0)
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
        paper = [(r["batch_size"], r["paper"]) for r in rows if r.get("paper") is not None]
        if paper:  # only batch rows carry the paper's Table 4
            ax.plot(
                *zip(*paper, strict=True), "s--", color="gray", label="paper (ImageNet, linear)"
            )
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
