"""``specssl export`` — write a checkpoint's backbone for downstream code.

``--format auto`` (default): the backbone's own library, timm for ``timm:`` backbones (and the
ViT presets), torchvision for the others. ``--format torchvision``: a plain torchvision
``state_dict`` (``.pth``; specssl ResNets load into ``torchvision.models.resnetXX``, a ``tv:``
backbone into its constructor with the classifier replaced, as ``<file>.json`` records; or
load either with ``specssl.eval.export.load_exported``). ``--format timm``: timm's local model
folder (``timm.create_model("local-dir:<folder>", pretrained=True)``). ``--format
detectron2``: the MoCo-style ``.pkl`` of a ResNet for detectron2's ``MODEL.WEIGHTS``. See
:mod:`specssl.eval.export`. Torch is imported inside :func:`run` only.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

HELP = "export a checkpoint's backbone as a torchvision state_dict, a timm folder or a .pkl"

_SUFFIX = {"torchvision": ".torchvision.pth", "timm": ".timm", "detectron2": ".detectron2.pkl"}
FORMATS = ("auto", *_SUFFIX)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .ckpt written by specssl pretrain, or its run dir")
    parser.add_argument(
        "--format",
        "-f",
        choices=FORMATS,
        default="auto",
        help="output layout (auto: timm for timm backbones, else torchvision)",
    )
    parser.add_argument(
        "--out", "-o", help="output file (default: beside the checkpoint, <stem>" + "<suffix>)"
    )
    parser.add_argument(
        "--include-classifier",
        action="store_true",
        help="torchvision / timm: also write the online linear probe as the model's classifier",
    )


def run(args: argparse.Namespace) -> int:
    from specssl.eval.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
    from specssl.eval.export import export_backbone, library_of

    if args.include_classifier and args.format == "detectron2":
        raise argparse.ArgumentTypeError(
            "--include-classifier works with --format torchvision or timm"
        )
    try:
        ckpt = resolve_checkpoint(args.checkpoint)
        loaded = load_checkpoint(ckpt)
        fmt = args.format
        if fmt == "auto":
            fmt = "timm" if library_of(loaded) == "timm" else "torchvision"
        out = Path(args.out) if args.out else ckpt.with_name(ckpt.stem + _SUFFIX[fmt])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = export_backbone(loaded, out, fmt=fmt, include_classifier=args.include_classifier)
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise argparse.ArgumentTypeError(text.strip("'\"")) from None
    for warning in caught:
        print(f"note: {warning.message}")
    print(f"written: {path} ({fmt})")
    return 0
