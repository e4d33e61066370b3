"""What the spectrum monitor's rank metrics do on short runs that collapse and on short runs that
do not: the measurements behind the collapse alarm's default threshold and patience.

Trains the tiny digits runs of ``tests/test_collapse_alarm.py`` (``tests/helpers.py``'s
``TINY_RUN``: width-4 ResNet-18, 16-d embedding, 256 images, batch 64, 4 steps an epoch) for
each method and seed with a spectrum snapshot every epoch, reads every snapshot's scalar
metrics (``spectrum/scalars.csv``, epoch 0 = random init) and the final kNN, and writes
``measurements_<epochs>ep.json`` next to this file. Run from the repository root::

    OMP_NUM_THREADS=1 python docs/results/collapse_alarm/measure.py [--epochs 8] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import TINY_RUN  # noqa: E402

from specssl.experiments.sweep import git_commit  # noqa: E402
from specssl.train.config import load_config  # noqa: E402
from specssl.train.run import pretrain  # noqa: E402

HERE = Path(__file__).parent

#: name -> overrides. The first two are the runs the alarm must catch (the INTL paper's
#: IterNorm-only baseline; ST-power with p = 0: centring and MSE, no whitening), the rest must
#: stay quiet.
RUNS: dict[str, list[str]] = {
    "iternorm": ["method.name=iternorm"],
    "st_power_p0": ["method.name=st_power", "method.loss={p: 0.0}"],
    "intl": ["method.name=intl"],
    "vicreg": ["method.name=vicreg"],
    "st_power_p0.5": ["method.name=st_power", "method.loss={p: 0.5}"],
    "barlow_twins": ["method.name=barlow_twins"],
    "simclr": ["method.name=simclr"],
}

#: Scalars kept per epoch in the record.
KEYS = (
    "z/rankme",
    "z/effective_rank",
    "z/stable_rank",
    "z/condition_indicator",
    "z/lidar",
    "features/rankme",
    "features/effective_rank",
    "zhat/condition_indicator",
    "zhat/effective_rank",
)


def one_run(name: str, overrides: list[str], seed: int, epochs: int, tmp: Path) -> dict:
    cfg = load_config(
        None,
        [
            *TINY_RUN,
            *overrides,
            f"trainer.max_epochs={epochs}",
            "monitor.spectrum_every=1",
            "monitor.spectrum_samples=128",
            "monitor.spectrum_plots=false",
            f"monitor.knn_every={epochs}",
            "monitor.knn_k=[20]",
            "monitor.collapse_alarm=off",
            f"seed={seed}",
            f"output_dir={tmp}",
            f"run_name={name}-{seed}",
        ],
    )
    start = time.perf_counter()
    result = pretrain(cfg, logger=False)
    wall = time.perf_counter() - start
    with open(result.run_dir / "spectrum" / "scalars.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    per_epoch = {
        key: [float(r[key]) if r.get(key) else None for r in rows] for key in KEYS if key in rows[0]
    }
    return {
        "method": name,
        "seed": seed,
        "overrides": overrides,
        "epochs": [int(r["epoch"]) for r in rows],
        "metrics": per_epoch,
        "knn_top1_k20_initial": (result.knn_initial or {}).get("top1_k20"),
        "knn_top1_k20_final": (result.knn_final or {}).get("top1_k20"),
        "rank_bound_z": float(rows[0]["z/rank_bound"]),
        "wall_s": round(wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(RUNS))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.methods:
            for seed in args.seeds:
                runs.append(one_run(name, RUNS[name], seed, args.epochs, Path(tmp)))
                last = runs[-1]
                print(
                    f"{name} seed {seed}: z/rankme "
                    + " ".join(f"{v:.2f}" for v in last["metrics"]["z/rankme"])
                    + f"; kNN {last['knn_top1_k20_final']:.1f}% ({last['wall_s']} s)",
                    flush=True,
                )
    record = {
        "what": "spectrum snapshots every epoch of the collapse alarm's tiny test runs",
        "command": "OMP_NUM_THREADS=1 python docs/results/collapse_alarm/measure.py "
        + " ".join(sys.argv[1:]),
        "base_overrides": TINY_RUN,
        "commit": git_commit(ROOT),
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1_5_15_at_start": list(load),
        "runs": runs,
    }
    out = HERE / f"measurements_{args.epochs}ep.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
