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
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from specssl.data.augment import BatchedMultiView, cifar_views
from specssl.methods import build_method
from specssl.models import build_backbone
from specssl.train.config import load_config

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


class StepBench:
    """One whole training step of a recipe on a fixed synthetic uint8 batch: batched
    augmentation, method forward (backbone, heads, loss), online-probe loss, backward,
    SGD step and the method's after-step hook (EMA targets, queues)."""

    def __init__(self, cfg, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.batch_size = bs = cfg.data.batch_size
        self.images = torch.randint(0, 256, (bs, 3, 32, 32), dtype=torch.uint8)
        self.labels = torch.randint(0, 10, (bs,))
        self.augment = BatchedMultiView(cifar_views(num_views=cfg.data.num_views))
        backbone = build_backbone(
            cfg.backbone.name, cifar_stem=cfg.backbone.cifar_stem, width=cfg.backbone.width
        )
        self.method = build_method(backbone, cfg.method).train()
        self.probe = torch.nn.Linear(backbone.out_dim, 10)
        params = [p for p in self.method.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(
            params + list(self.probe.parameters()), lr=0.01, momentum=0.9
        )
        self.steps = 0

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        out = self.method(self.augment(self.images))
        probe_loss = F.cross_entropy(self.probe(out.features[0].detach()), self.labels)
        (out.loss + probe_loss).backward()
        self.method.on_before_optimizer_step(0, self.steps)
        self.optimizer.step()
        self.steps += 1
        self.method.on_train_step_end(self.steps, 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs/cifar10/intl_cpu.yaml"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "bench/results"))
    args = parser.parse_args()

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

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "throughput.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    meta = {
        "config": args.config,
        "batch_size": bs,
        "threads": torch.get_num_threads(),
        "step_over_backbone": ratio,
    }
    (out / "throughput.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
