"""CW-RGP poster (d): PCA whitening gives a volatile sequence of whitened targets (axis sign
flips and permutations from step to step), ZCA does not — measured along a short real training
of the CW-RGP recipe at CPU scale (CIFAR-10 subset). About 5 minutes for 100 steps on one core.

    python experiments/cwrgp_poster_target_volatility.py --data-root ../shared/data
    python experiments/cwrgp_poster_target_volatility.py --report-only

Writes docs/results/cwrgp_poster_target_volatility/{records.json,figure.png,README.md}.
"""

from __future__ import annotations

import os
import shlex
import sys
import time

import torch

from specssl.experiments import cwrgp_poster as exp
from specssl.experiments import numerics as nx


def main(argv: list[str] | None = None) -> int:
    parser = nx.experiment_parser(__doc__, exp.OUT_D)
    parser.add_argument("--data-root", default=os.environ.get("SPECSSL_DATA"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.report_only:
        data = nx.read_json(args.out)
        meta, run = data["meta"], data["run"]
    else:
        if not args.data_root:
            parser.error("pass --data-root or set SPECSSL_DATA (CIFAR-10)")
        argv = sys.argv[1:] if argv is None else argv
        start = time.perf_counter()
        run = exp.target_volatility(args.data_root, args.steps, args.seed)
        command = shlex.join(["python", "experiments/cwrgp_poster_target_volatility.py", *argv])
        meta = nx.provenance(command, time.perf_counter() - start)
        rows = [
            {"step": t + 1, "whitening": name, **{k: v[k][t] for k in v}}
            for name, v in run["series"].items()
            for t in range(len(v["change"]))
        ]
        nx.write_records(args.out, meta, [], rows, extra={"run": run})
    text = exp.report_d(meta, run)
    print(nx.write_markdown(args.out, text, lambda p: exp.plot_d(run, p)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
