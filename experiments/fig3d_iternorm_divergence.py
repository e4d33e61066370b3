"""INTL paper, Figure 3(d): IterNorm's numeric divergence (NaN for T >= 11), reproduced.

Plain (the authors' Eqn. 3) vs coupled (this library's default) Newton iteration, float32 vs
float64, T = 1..30, on 256 x 256 covariances with prescribed spectra (log-uniform condition
numbers 1e2..1e8 and two recorded embedding spectra), against an exact float64
eigendecomposition reference. No training; about 10 minutes on one CPU core.

    python experiments/fig3d_iternorm_divergence.py
    python experiments/fig3d_iternorm_divergence.py --report-only   # rebuild from records
    python experiments/fig3d_iternorm_divergence.py --seeds 0 --t-max 15 --size 64 --out /tmp/x

Writes docs/results/fig3d_iternorm_divergence/{records.json,records.csv,figure.png,README.md}.
"""

from __future__ import annotations

import shlex
import sys

import torch

from specssl.experiments import iternorm_divergence as exp
from specssl.experiments.numerics import experiment_parser, read_records


def main(argv: list[str] | None = None) -> int:
    parser = experiment_parser(__doc__, exp.OUT)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--t-max", type=int, default=30, help="largest T (default 30)")
    parser.add_argument(
        "--axes", nargs="+", choices=["channel", "batch"], default=["channel", "batch"]
    )
    parser.add_argument("--size", type=int, default=256, help="covariance side (default 256)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.report_only:
        meta, records = read_records(args.out)
        path = exp.write(args.out, meta, records)
    else:
        argv = sys.argv[1:] if argv is None else argv
        command = shlex.join(["python", "experiments/fig3d_iternorm_divergence.py", *argv])
        path = exp.main(args.out, args.seeds, args.t_max, args.axes, args.size, command)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
