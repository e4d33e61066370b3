"""Images/s of a pretraining recipe, split into augmentation, forward+backward and loss.

Run from the repository root::

    python bench/throughput.py                                   # configs/cifar10/intl_cpu.yaml
    python bench/throughput.py --config configs/cifar10/intl.yaml --steps 5

Every stage is timed on the same batch shape in one run (median of ``--steps`` after
``--warmup`` steps), with synthetic uint8 images of the recipe's size (throughput does not
depend on pixel values):

* ``augment``: the batched on-device multi-view augmentation of one batch;
* ``backbone fwd+bwd``: the backbone alone on all views of a batch (the reference);
* ``loss fwd+bwd``: the method's loss alone on fixed embeddings;
* ``step``: the whole training step: augmentation, backbone + projector + loss forward and
  backward, online-probe loss, SGD step.

Images/s counts source images (each turned into ``num_views`` views). The ratio
``step / backbone`` is the fraction of the backbone-only throughput the end-to-end step keeps.
Results: ``bench/results/throughput.{csv,json}``.

``--grid`` instead times the backbone fwd+bwd and the whole step of every combination of
precision (float32 / bf16 autocast), memory format (NCHW / channels_last) and compilation
(eager / ``torch.compile`` of the backbone), as the training engine applies them
(``trainer.precision``, ``trainer.channels_last``, ``trainer.compile``), side by side in one
process, for the CPU recipe and a paper-scale recipe at a small batch::

    python bench/throughput.py --grid        # intl_cpu.yaml and intl.yaml at batch 64
    python bench/throughput.py --grid --no-compile

Variants run round-robin (``--rounds``), so a change of load hits every column alike; the
ratio of each cell is against float32 NCHW eager of the same recipe and round. The CPU model,
its bf16 flags and the load average are recorded with the numbers
(``bench/results/throughput_grid.{csv,json}``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from specssl.data.augment import BatchedMultiView, cifar_views
from specssl.methods import build_method
from specssl.models import build_backbone
from specssl.train.config import load_config
from specssl.train.precision import BF16_CPU_FLAGS, cpu_flags

REPO = Path(__file__).resolve().parents[1]


def timed(fn, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class Variant:
    """How the engine runs the networks: ``trainer.precision``, ``.channels_last``,
    ``.compile``."""

    bf16: bool = False
    channels_last: bool = False
    compiled: bool = False

    @property
    def name(self) -> str:
        parts = ["bf16" if self.bf16 else "fp32", "channels_last" if self.channels_last else "NCHW"]
        return " ".join([*parts, "compiled"] if self.compiled else parts)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self):
        """bf16 autocast around the forward passes, as Lightning's ``bf16-mixed`` does."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=torch.bfloat16)


class StepBench:
    """One whole training step of a recipe on a fixed synthetic uint8 batch: batched
    augmentation, method forward (backbone, heads, loss), online-probe loss, backward,
    SGD step and the method's after-step hook (EMA targets, queues), run as ``variant`` says."""

    def __init__(self, cfg, seed: int = 0, variant: Variant = Variant()) -> None:
        self.variant = variant
        torch.manual_seed(seed)
        self.batch_size = bs = cfg.data.batch_size
        self.images = torch.randint(0, 256, (bs, 3, 32, 32), dtype=torch.uint8)
        self.labels = torch.randint(0, 10, (bs,))
        self.augment = BatchedMultiView(cifar_views(num_views=cfg.data.num_views))
        backbone = build_backbone(
            cfg.backbone.name, cifar_stem=cfg.backbone.cifar_stem, width=cfg.backbone.width
        )
        self.method = build_method(backbone, cfg.method).train()
        if variant.channels_last:
            self.method.to(memory_format=torch.channels_last)
        if variant.compiled:
            backbone.compile()
        self.probe = torch.nn.Linear(backbone.out_dim, 10)
        params = [p for p in self.method.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(
            params + list(self.probe.parameters()), lr=0.01, momentum=0.9
        )
        self.steps = 0

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        views = [
            v.contiguous(memory_format=self.variant.memory_format)
            for v in self.augment(self.images)
        ]
        with self.variant.autocast():
            out = self.method(views)
            probe_loss = F.cross_entropy(self.probe(out.features[0].detach()), self.labels)
        (out.loss + probe_loss).backward()
        self.method.on_before_optimizer_step(0, self.steps)
        self.optimizer.step()
        self.steps += 1
        self.method.on_train_step_end(self.steps, 1000)


def machine() -> dict:
    """CPU model, its bf16 flags, threads and load: recorded with every timing."""
    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "bf16_flags": sorted(cpu_flags() & set(BF16_CPU_FLAGS)),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg_before": os.getloadavg()[0],
    }


def grid(args) -> None:
    """Backbone fwd+bwd and whole step of every variant, round-robin, for each recipe."""
    recipes = [
        (str(REPO / "configs/cifar10/intl_cpu.yaml"), None),
        (str(REPO / "configs/cifar10/intl.yaml"), args.paper_batch),
    ]
    compiled = [False] if args.no_compile else [False, True]
    if not args.no_compile:
        # The compiled backbones of all variants share torchvision's ``ResNet.forward`` code
        # object, so dynamo's cache (8 entries by default) would fill with the variants'
        # (autocast x memory format) guards and silently fall back to eager.
        torch._dynamo.config.recompile_limit = 64
    variants = [
        Variant(b, c, k) for k, b, c in itertools.product(compiled, [False, True], [False, True])
    ]
    meta = machine()
    meta.update(
        steps=args.steps, warmup=args.warmup, rounds=args.rounds, compile=not args.no_compile
    )
    rows = []
    for config, batch in recipes:
        overrides = [f"data.batch_size={batch}"] if batch else []
        cfg = load_config(config, overrides)
        benches = {v: StepBench(cfg, variant=v) for v in variants}
        times: dict[tuple[Variant, str], list[float]] = {}
        for _ in range(args.rounds):
            for v, bench in benches.items():
                views = torch.cat(bench.augment(bench.images)).contiguous(
                    memory_format=v.memory_format
                )

                def backbone_only(bench=bench, v=v, views=views) -> None:
                    with v.autocast():
                        out = bench.method.backbone(views)
                    out.float().sum().backward()

                for stage, fn in [("backbone fwd+bwd", backbone_only), ("step", bench.step)]:
                    times.setdefault((v, stage), []).append(timed(fn, args.steps, args.warmup))
        bs = cfg.data.batch_size
        for stage in ("backbone fwd+bwd", "step"):
            base = statistics.median(times[(variants[0], stage)])
            for v in variants:
                seconds = statistics.median(times[(v, stage)])
                rows.append(
                    {
                        "recipe": Path(config).name,
                        "batch_size": bs,
                        "width": cfg.backbone.width,
                        "stage": stage,
                        "variant": v.name,
                        "ms_per_batch": 1e3 * seconds,
                        "images_per_s": bs / seconds,
                        "speedup": base / seconds,
                    }
                )
    meta["load_avg_after"] = os.getloadavg()[0]
    print(
        f"{meta['cpu']} (bf16 flags: {', '.join(meta['bf16_flags']) or 'none'}), "
        f"{meta['threads']} threads, "
        f"load {meta['load_avg_before']:.2f} -> {meta['load_avg_after']:.2f}"
    )
    table = grid_table(rows)
    print(table)
    out = write_records(Path(args.out), "throughput_grid", meta, rows)
    (out / "throughput_grid.md").write_text(grid_report(meta, rows, "throughput_grid.json"))


def write_records(out: Path, name: str, meta: dict, rows: list[dict]) -> Path:
    """``out/<name>.csv`` (the rows) and ``out/<name>.json`` (meta and rows); returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return out


def grid_table(rows: list[dict]) -> str:
    """Markdown table of the grid's rows (ratios against float32 NCHW eager)."""
    lines = [
        "| recipe | batch | stage | variant | ms / batch | images/s | vs fp32 NCHW |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['recipe']} | {r['batch_size']} | {r['stage']} | {r['variant']} | "
        f"{r['ms_per_batch']:.0f} | {r['images_per_s']:.1f} | {r['speedup']:.2f}× |"
        for r in rows
    ]
    return "\n".join(lines)


def grid_report(meta: dict, rows: list[dict], source: str) -> str:
    """The grid as a short markdown report, generated from the same record."""
    return (
        "# Throughput: precision x memory format x compilation\n\n"
        f"Generated by `python bench/throughput.py --grid` from `{source}`: "
        f"{meta['cpu']} (bf16 flags: {', '.join(meta['bf16_flags']) or 'none'}), "
        f"{meta['threads']} threads, torch {meta['torch']}, load average "
        f"{meta['load_avg_before']:.2f} before and {meta['load_avg_after']:.2f} after "
        f"(the benchmark's own threads). Median of {meta.get('rounds', '?')} rounds run "
        f"round-robin, each the median of {meta.get('steps', '?')} steps after "
        f"{meta.get('warmup', '?')} warm-up steps; synthetic "
        "uint8 CIFAR batches; ratios against float32 NCHW eager of the same recipe.\n\n"
        + grid_table(rows)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs/cifar10/intl_cpu.yaml"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "bench/results"))
    parser.add_argument("--grid", action="store_true", help="precision x memory format x compile")
    parser.add_argument("--no-compile", action="store_true", help="--grid without torch.compile")
    parser.add_argument("--rounds", type=int, default=2, help="--grid: round-robin passes")
    parser.add_argument("--paper-batch", type=int, default=64, help="--grid: intl.yaml's batch")
    parser.add_argument(
        "--grid-report", type=Path, help="rewrite throughput_grid.md from this grid JSON"
    )
    args = parser.parse_args()
    if args.grid_report:
        record = json.loads(args.grid_report.read_text())
        md = args.grid_report.with_suffix(".md")
        md.write_text(grid_report(record["meta"], record["rows"], args.grid_report.name))
        print(f"wrote {md}")
        return
    if args.grid:
        grid(args)
        return

    cfg = load_config(args.config)
    bench = StepBench(cfg)
    bs = bench.batch_size
    views = bench.augment(bench.images)
    method = bench.method
    embeddings = [torch.randn(bs, cfg.method.proj_output_dim, requires_grad=True) for _ in views]

    def backbone_only() -> None:
        method.backbone(torch.cat(views)).sum().backward()

    def loss_only() -> None:
        method.loss_fn(embeddings).backward()

    rows = []
    for name, fn in [
        ("augment", lambda: bench.augment(bench.images)),
        ("backbone fwd+bwd", backbone_only),
        ("loss fwd+bwd", loss_only),
        ("step", bench.step),
    ]:
        seconds = timed(fn, args.steps, args.warmup)
        rows.append({"stage": name, "ms_per_batch": 1e3 * seconds, "images_per_s": bs / seconds})
    by = {r["stage"]: r for r in rows}
    ratio = by["step"]["images_per_s"] / by["backbone fwd+bwd"]["images_per_s"]

    print(
        f"recipe {args.config}: batch {bs}, {cfg.data.num_views} views, "
        f"{cfg.backbone.name} width {cfg.backbone.width}, {torch.get_num_threads()} threads"
    )
    print("| stage | ms / batch | images/s |\n|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['ms_per_batch']:.1f} | {r['images_per_s']:.1f} |")
    print(f"end-to-end step / backbone-only fwd+bwd = {ratio:.2f}")

    meta = {
        "config": args.config,
        "batch_size": bs,
        "threads": torch.get_num_threads(),
        "step_over_backbone": ratio,
    }
    write_records(Path(args.out), "throughput", meta, rows)


if __name__ == "__main__":
    main()
