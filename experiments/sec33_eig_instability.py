"""INTL paper, Section 3.3: eigendecomposition-based ST (p = 0.5) vs IterNorm, float32 vs
float64, from well-conditioned to collapsed embeddings — forward and gradient error against an
exact float64 reference and the rate of failed / non-finite steps; then how often it happens
along a real short CPU training of ST-power (CIFAR-10 subset).

    python experiments/sec33_eig_instability.py --data-root ../shared/data
    python experiments/sec33_eig_instability.py --train-steps 0          # part 1 only, seconds
    python experiments/sec33_eig_instability.py --report-only            # rebuild from records

Writes docs/results/sec33_eig_instability/{records.json,records.csv,figure.png,README.md}.
"""

from __future__ import annotations

import os
import shlex
import sys
import time

import torch

from specssl.experiments import eig_instability as exp
from specssl.experiments import numerics as nx


def main(argv: list[str] | None = None) -> int:
    parser = nx.experiment_parser(__doc__, exp.OUT)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument(
        "--train-steps", type=int, default=200, help="steps of each training (0: skip part 2)"
    )
    parser.add_argument("--data-root", default=os.environ.get("SPECSSL_DATA"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.report_only:
        path = exp.write(args.out, *exp.read(args.out))
        print(path)
        return 0
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "experiments/sec33_eig_instability.py", *argv])
    start = time.perf_counter()
    records = exp.run_spectra(args.seeds)
    trainings = []
    if args.train_steps:
        if not args.data_root:
            parser.error("part 2 trains on CIFAR-10: pass --data-root or set SPECSSL_DATA")
        for loss in ("library", "eig autograd"):
            trainings.append(exp.train(loss, args.train_steps, args.data_root))
    meta = nx.provenance(command, time.perf_counter() - start)
    meta.update(seeds=args.seeds, train_steps=args.train_steps)
    print(exp.write(args.out, meta, records, trainings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
