"""INTL paper, Figure 2(a) and Section 4.2: the 2-D toy study over several seeds.

``specssl toy`` runs one seed and draws it; this script repeats the study for ``--seeds``
seeds and prints, per setting, the median and range of the condition indicators and how
often the setting collapsed — the evidence that the picture of one seed is typical.

    python experiments/toy_2d.py --seeds 8 --steps 500
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from specssl.toy import DEFAULT_SETTINGS, parse_settings, run_toy_study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1 (default: 8)")
    parser.add_argument("--steps", type=int, default=500, help="steps per setting (500)")
    parser.add_argument("--settings", default=",".join(DEFAULT_SETTINGS))
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.steps < 1:
        parser.error("--seeds and --steps must be positive")
    try:
        settings = parse_settings(args.settings)
    except ValueError as err:
        parser.error(str(err))

    start = time.perf_counter()
    runs = [run_toy_study(settings, args.steps, seed) for seed in range(args.seeds)]
    print(f"{args.seeds} seeds x {args.steps} steps ({time.perf_counter() - start:.0f} s)")
    print(
        f"{'setting':<10} {'cond(Z) median [min, max]':>28} {'cond(Zhat) median [min, max]':>30}"
        f"  collapsed (Z / Zhat)"
    )
    for j, setting in enumerate(settings):
        rs = [run[j] for run in runs]
        cz = [r.condition_z for r in rs]
        czh = [r.condition_zhat for r in rs]
        n_z = sum("Z" in r.collapsed_parts for r in rs)
        n_zh = sum("Zhat" in r.collapsed_parts for r in rs)
        print(
            f"{setting.name:<10} {statistics.median(cz):>9.4f} [{min(cz):.4f}, {max(cz):.4f}]"
            f" {statistics.median(czh):>11.4f} [{min(czh):.4f}, {max(czh):.4f}]"
            f"  {n_z}/{len(rs)} / {n_zh}/{len(rs)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
