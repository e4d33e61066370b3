"""Cost of the spectrum monitor (with its label-free metrics) against one epoch of the CPU recipe.

Order of magnitude only (the machine may be shared): times a few training steps of
``configs/cifar10/intl_cpu.yaml`` and the monitor's snapshot (embedding the 1024-image spectrum
sample, LiDAR's 256 x 4 augmented views, and every metric of
:func:`specssl.spectral.embedding_spectra`) in the same process, interleaved, and writes
``monitor_cost.json`` next to this file with the CPU model and the load average. Run from the
repository root::

    SPECSSL_DATA=/path/to/data python docs/results/label_free/monitor_cost.py
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from specssl.spectral import embedding_spectra
from specssl.train.callbacks import SpectrumMonitor, embed_spectrum_sample, method_spectra
from specssl.train.config import load_config
from specssl.train.run import build_run

OUT = Path(__file__).with_name("monitor_cost.json")
RECIPE = "configs/cifar10/intl_cpu.yaml"


def lscpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    lines = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name")]
    return lines[0] if lines else "unknown"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    root = os.environ.get("SPECSSL_DATA")
    if not root:
        print("set SPECSSL_DATA to the directory holding cifar-10-batches-py", file=sys.stderr)
        return 2
    load_start = os.getloadavg()
    cfg = load_config(RECIPE, [f"data.root={root}"])
    torch.manual_seed(cfg.seed)
    dm, module = build_run(cfg)
    opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    loader = iter(dm.train_dataloader())
    trainer = SimpleNamespace(datamodule=dm)

    def step() -> None:
        images, _ = next(loader)
        module.train()
        out = module.method(module.views_of(images))
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    monitor = SpectrumMonitor(1, cfg.monitor.spectrum_samples, "/tmp/unused", plots=False)
    plain = SpectrumMonitor(
        1, cfg.monitor.spectrum_samples, "/tmp/unused", plots=False, lidar_views=0
    )
    step()  # warm-up (allocations, first batch)
    monitor.snapshot(trainer, module, 0)
    steps, snaps, snaps_plain = [], [], []
    for _ in range(3):  # interleaved, so that both see the same load
        steps += [timed(step), timed(step)]
        snaps.append(timed(lambda: monitor.snapshot(trainer, module, 0)))
        snaps_plain.append(timed(lambda: plain.snapshot(trainer, module, 0)))
    # Split one snapshot into embedding (forward passes) and the metrics themselves.
    images = dm.spectrum_images(cfg.monitor.spectrum_samples)
    from specssl.data.augment import BatchedAugment

    view = BatchedAugment(dm.view_configs[0])
    method = module.method
    module.eval()
    t0 = time.perf_counter()
    sample = embed_spectrum_sample(
        method.backbone,
        method.projector,
        images,
        chunk=dm.batch_size,
        normalize=module.eval_transform,
        augment=view,
        seed=cfg.seed,
    )
    t_embed = time.perf_counter() - t0
    t_metrics = timed(lambda: method_spectra(method, sample, dm.batch_size))
    t_label_free_only = timed(
        lambda: embedding_spectra(sample.z, features=sample.features, views=sample.views)
    )
    steps_per_epoch = len(dm.train_set) // cfg.data.batch_size
    step_s = statistics.median(steps)
    epoch_s = steps_per_epoch * step_s
    snap_s, snap_plain_s = statistics.median(snaps), statistics.median(snaps_plain)
    result = {
        "what": "spectrum monitor snapshot (once per epoch in the recipe: monitor.spectrum_every=1)"
        " vs one training epoch estimated as steps_per_epoch x median step time",
        "recipe": RECIPE,
        "command": "SPECSSL_DATA=... python docs/results/label_free/monitor_cost.py",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": lscpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1_5_15_at_start": list(load_start),
        "load_avg_1_5_15_at_end": list(os.getloadavg()),
        "spectrum_samples": cfg.monitor.spectrum_samples,
        "lidar_images_x_views": [monitor.lidar_images, monitor.lidar_views],
        "embedding_dim": method.embedding_dim,
        "feature_dim": int(sample.features.shape[1]),
        "batch_size": cfg.data.batch_size,
        "steps_per_epoch": steps_per_epoch,
        "step_times_s": [round(t, 3) for t in steps],
        "median_step_s": round(step_s, 3),
        "estimated_epoch_s": round(epoch_s, 1),
        "snapshot_s_with_lidar": [round(t, 3) for t in snaps],
        "snapshot_s_without_lidar": [round(t, 3) for t in snaps_plain],
        "snapshot_split_s": {
            "embedding_forward_passes": round(t_embed, 3),
            "all_metrics_of_method_spectra": round(t_metrics, 3),
            "label_free_and_z_feature_metrics_without_zhat": round(t_label_free_only, 3),
        },
        "monitor_fraction_of_epoch_with_lidar": round(snap_s / epoch_s, 4),
        "monitor_fraction_of_epoch_without_lidar": round(snap_plain_s / epoch_s, 4),
        "note": "order of magnitude only: 2 shared CPU cores, the load average is recorded",
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
