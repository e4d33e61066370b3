"""``specssl eval`` — evaluate a pretrained checkpoint by the standard protocols.

Protocols (any subset, in one call): ``knn`` (cosine kNN: temperature-weighted for k > 20,
majority vote otherwise; default k = 200 and 5), ``linear`` (the fast probe on cached frozen
features, :func:`specssl.eval.linear.linear_probe`) and ``linear-sgd`` (the standard SGD
protocol with augmentations, :func:`specssl.eval.linear.linear_eval_sgd`). Data: the run's own
dataset config (``--data-root`` overrides where it lives). Prints a table and writes JSON
beside the checkpoint (``<checkpoint stem>.eval-<protocols>.json``) or to ``--out``.
Torch is imported inside :func:`run` only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from specssl.cli import non_negative_float, positive_float, positive_int

HELP = "evaluate a checkpoint: kNN, fast linear probe, or the SGD linear protocol"

PROTOCOLS = ("knn", "linear", "linear-sgd")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .ckpt written by specssl pretrain, or its run dir")
    parser.add_argument(
        "--protocol",
        "-p",
        nargs="+",
        choices=PROTOCOLS,
        default=["knn"],
        help="evaluation protocol(s) (default: knn)",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data-root", help="dataset directory (default: the run's data.root)")
    data.add_argument("--train-subset", type=positive_int, help="use this many training images")
    data.add_argument("--test-subset", type=positive_int, help="use this many test images")
    data.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="images per batch (feature extraction; linear-sgd training) (default: 256)",
    )
    data.add_argument("--num-workers", type=int, default=0, help="data loader workers")
    data.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    data.add_argument("--no-cache", action="store_true", help="do not read/write feature cache")
    data.add_argument("--cache-dir", help="feature cache directory (default: beside the ckpt)")
    knn = parser.add_argument_group("knn")
    knn.add_argument(
        "--k",
        nargs="+",
        type=positive_int,
        default=[200, 5],
        help="neighbour counts (default: 200 5); k > 20 temperature-weighted, else majority",
    )
    knn.add_argument(
        "--temperature", type=positive_float, default=0.1, help="vote temperature (0.1)"
    )
    lin = parser.add_argument_group("linear / linear-sgd")
    lin.add_argument("--epochs", type=positive_int, help="default 100")
    lin.add_argument(
        "--lr",
        type=positive_float,
        help="linear: lbfgs 1, adam 1e-3, sgd 0.1; linear-sgd: 0.1 per 256 images",
    )
    lin.add_argument(
        "--weight-decay",
        nargs="+",
        type=non_negative_float,
        help="linear: 1e-4 (several values: chosen on a validation split); linear-sgd: 0",
    )
    lin.add_argument(
        "--optimizer", choices=("lbfgs", "adam", "sgd"), default="lbfgs", help="linear probe"
    )
    lin.add_argument("--seed", type=int, default=0)
    lin.add_argument(
        "--milestones", nargs="+", type=positive_int, help="linear-sgd: default 60%%/80%%"
    )
    lin.add_argument("--accelerator", default="auto", help="linear-sgd: Lightning accelerator")
    lin.add_argument("--devices", default="auto", help="linear-sgd: Lightning devices")
    lin.add_argument("--precision", default="32-true", help="linear-sgd: Lightning precision")
    parser.add_argument("--out", help="JSON output path (default: beside the checkpoint)")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise argparse.ArgumentTypeError(f"--device: {err}") from None


def _usage_error(err: BaseException) -> argparse.ArgumentTypeError:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return argparse.ArgumentTypeError(text.strip("'\""))


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen protocols; returns the JSON-ready report (raises on bad input)."""
    from specssl.eval.checkpoint import load_checkpoint
    from specssl.eval.features import cached_features, eval_splits

    ckpt = load_checkpoint(args.checkpoint)
    cfg = ckpt.config
    device = _device(args.device)
    train_split, test_split = eval_splits(cfg.data)
    report: dict[str, Any] = {
        "checkpoint": str(ckpt.path),
        "epoch": ckpt.epoch,
        "global_step": ckpt.global_step,
        "dataset": cfg.data.name,
        "data_root": args.data_root or cfg.data.root,
        "train_split": train_split,
        "test_split": test_split,
        "train_subset": args.train_subset,
        "test_subset": args.test_subset,
        "method": cfg.method.name,
        "backbone": f"{cfg.backbone.name} width {cfg.backbone.width}"
        + (" cifar-stem" if cfg.backbone.cifar_stem else ""),
        "results": {},
    }
    features = None
    fast = [p for p in args.protocol if p != "linear-sgd"]
    if fast:
        common = {
            "root": args.data_root,
            "cache_dir": args.cache_dir,
            "use_cache": not args.no_cache,
            "batch_size": args.batch_size,
            "num_workers": args.num_workers,
            "device": device,
        }
        start = time.perf_counter()
        train = cached_features(ckpt, train_split, subset=args.train_subset, **common)
        test = cached_features(ckpt, test_split, subset=args.test_subset, **common)
        features = (train, test)
        report["feature_time_s"] = time.perf_counter() - start
        report["n_train"], report["n_test"] = int(train[0].shape[0]), int(test[0].shape[0])
        report["feature_dim"] = int(train[0].shape[1])
    for protocol in dict.fromkeys(args.protocol):
        start = time.perf_counter()
        if protocol == "knn":
            result = _knn(features, args)
        elif protocol == "linear":
            result = _linear(features, args)
        else:
            result = _linear_sgd(ckpt, args, device)
        result["time_s"] = time.perf_counter() - start
        report["results"][protocol] = result
    return report


def _num_classes(train_y, test_y) -> int:
    return int(max(int(train_y.max()), int(test_y.max()))) + 1


def _knn(features, args) -> dict[str, Any]:
    from specssl.eval.knn import knn_accuracy

    (train_x, train_y), (test_x, test_y) = features
    labeled = train_y >= 0
    train_x, train_y = train_x[labeled], train_y[labeled]
    n_cls = _num_classes(train_y, test_y)
    out: dict[str, Any] = {"temperature": args.temperature}
    for k in dict.fromkeys(args.k):
        acc = knn_accuracy(
            train_x,
            train_y,
            test_x,
            test_y,
            n_cls,
            k=k,
            temperature=args.temperature,
            weighted=k > 20,
        )
        out[f"top1_k{k}"], out[f"top5_k{k}"] = acc["top1"], acc["top5"]
    return out


def _linear(features, args) -> dict[str, Any]:
    from specssl.eval.linear import linear_probe

    (train_x, train_y), (test_x, test_y) = features
    wd = args.weight_decay if args.weight_decay else [1e-4]
    result = linear_probe(
        train_x,
        train_y,
        test_x,
        test_y,
        epochs=args.epochs or 100,
        lr=args.lr,
        weight_decay=wd[0] if len(wd) == 1 else wd,
        seed=args.seed,
        optimizer=args.optimizer,
    )
    return {**result, "optimizer": args.optimizer, "epochs": args.epochs or 100}


def _linear_sgd(ckpt, args, device) -> dict[str, Any]:
    from specssl.eval.features import (
        eval_splits,
        linear_train_transform,
        normalizer,
        split_dataset,
    )
    from specssl.eval.linear import LinearSGDConfig, linear_eval_sgd

    data = ckpt.config.data
    train_split, test_split = eval_splits(data)
    if args.weight_decay and len(args.weight_decay) > 1:
        raise argparse.ArgumentTypeError("--weight-decay: linear-sgd takes a single value")
    sgd = LinearSGDConfig(
        epochs=args.epochs or 100,
        milestones=args.milestones,
        lr=args.lr or 0.1,
        weight_decay=args.weight_decay[0] if args.weight_decay else 0.0,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        accelerator=args.accelerator if args.device == "auto" else device.type,
        devices=args.devices,
        precision=args.precision,
        seed=args.seed,
    )
    seed = ckpt.config.seed
    train_set = split_dataset(
        data,
        train_split,
        root=args.data_root,
        subset=args.train_subset,
        transform=linear_train_transform(data, sgd.crop_scale),
        seed=seed,
    )
    test_set = split_dataset(
        data, test_split, root=args.data_root, subset=args.test_subset, seed=seed
    )
    result = linear_eval_sgd(
        ckpt.backbone, train_set, test_set, normalizer(data), test_set.num_classes, sgd
    )
    return {
        **result,
        "epochs": sgd.epochs,
        "milestones": sgd.resolved_milestones(),
        "lr": sgd.lr,
        "weight_decay": sgd.weight_decay,
        "batch_size": sgd.batch_size,
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as an aligned text table (one row per protocol and metric)."""
    head = (
        f"{report['checkpoint']} (epoch {report['epoch']}, step {report['global_step']}): "
        f"{report['method']} on {report['dataset']}, {report['backbone']}"
    )
    rows = [("protocol", "metric", "value")]
    for protocol, result in report["results"].items():
        for key, value in result.items():
            if key.startswith("top"):
                rows.append((protocol, key, f"{value:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [head]
    for i, row in enumerate(rows):
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}")
        if i == 0:
            lines.append("-" * (sum(widths) + 4))
    return "\n".join(lines)


def default_output(checkpoint: str, protocols: list[str]) -> Path:
    """``<checkpoint dir>/<checkpoint stem>.eval-<protocol>[+<protocol>...].json``."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}.eval-{'+'.join(dict.fromkeys(protocols))}.json")


def run(args: argparse.Namespace) -> int:
    from specssl.eval.checkpoint import CheckpointError

    if args.num_workers < 0:
        raise argparse.ArgumentTypeError("--num-workers must be >= 0")
    try:
        report = evaluate(args)
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        raise _usage_error(err) from None
    out = Path(args.out) if args.out else default_output(report["checkpoint"], args.protocol)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(format_table(report))
    print(f"written: {out}")
    return 0
