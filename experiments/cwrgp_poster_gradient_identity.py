"""CW-RGP poster (c): the whitening loss L = 1/m ||Ẑ1 - Ẑ2||² and its stop-gradient proxy
L' = 1/m ||Ẑ1 - sg(Ẑ2)||² + 1/m ||sg(Ẑ1) - Ẑ2||² have the same parameter gradient, measured on
one real CIFAR-10 batch (CW-RGP network at CPU scale; ZCA / PCA / IterNorm; float32 and float64).
Under a minute.

    python experiments/cwrgp_poster_gradient_identity.py --data-root ../shared/data
    python experiments/cwrgp_poster_gradient_identity.py --report-only

Writes docs/results/cwrgp_poster_gradient_identity/{records.json,records.csv,README.md}.
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
    parser = nx.experiment_parser(__doc__, exp.OUT_C)
    parser.add_argument("--data-root", default=os.environ.get("SPECSSL_DATA"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.report_only:
        meta, records = nx.read_records(args.out)
    else:
        if not args.data_root:
            parser.error("pass --data-root or set SPECSSL_DATA (CIFAR-10)")
        argv = sys.argv[1:] if argv is None else argv
        start = time.perf_counter()
        records = exp.run_gradient_identity(args.data_root, args.seed)
        command = shlex.join(["python", "experiments/cwrgp_poster_gradient_identity.py", *argv])
        meta = nx.provenance(command, time.perf_counter() - start)
        nx.write_records(args.out, meta, records)
    print(nx.write_markdown(args.out, exp.report_c(meta, records)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
