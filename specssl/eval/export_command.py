"""``specssl export`` — write a checkpoint's backbone for downstream code.

``--format torchvision``: a plain torchvision ResNet ``state_dict`` (``.pth``; load it with
``specssl.eval.export.load_exported`` or strictly into ``torchvision.models.resnetXX`` as the
docstring of :mod:`specssl.eval.export` shows). ``--format detectron2``: the MoCo-style
``.pkl`` for detectron2's ``MODEL.WEIGHTS``. Torch is imported inside :func:`run` only.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

HELP = "export a checkpoint's backbone as a torchvision state_dict or a detectron2 .pkl"

_SUFFIX = {"torchvision": ".torchvision.pth", "detectron2": ".detectron2.pkl"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .ckpt written by specssl pretrain, or its run dir")
    parser.add_argument(
        "--format", "-f", choices=tuple(_SUFFIX), default="torchvision", help="output layout"
    )
    parser.add_argument(
        "--out", "-o", help="output file (default: beside the checkpoint, <stem>" + "<suffix>)"
    )
    parser.add_argument(
        "--include-classifier",
        action="store_true",
        help="torchvision: also write the online linear probe as fc.weight / fc.bias",
    )


def run(args: argparse.Namespace) -> int:
    from specssl.eval.checkpoint import CheckpointError, resolve_checkpoint
    from specssl.eval.export import export_detectron2, export_torchvision

    if args.include_classifier and args.format != "torchvision":
        raise argparse.ArgumentTypeError("--include-classifier works with --format torchvision")
    try:
        ckpt = resolve_checkpoint(args.checkpoint)
        out = Path(args.out) if args.out else ckpt.with_name(ckpt.stem + _SUFFIX[args.format])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.format == "torchvision":
                path = export_torchvision(ckpt, out, include_classifier=args.include_classifier)
            else:
                path = export_detectron2(ckpt, out)
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise argparse.ArgumentTypeError(text.strip("'\"")) from None
    for warning in caught:
        print(f"note: {warning.message}")
    print(f"written: {path} ({args.format})")
    return 0
