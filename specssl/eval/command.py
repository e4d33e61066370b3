"""``specssl eval`` — evaluate a pretrained checkpoint by the standard protocols.

Protocols (any subset, in one call): ``knn`` (cosine kNN: temperature-weighted for k > 20,
majority vote otherwise; default k = 200 and 5), ``linear`` (the fast probe on cached frozen
features, :func:`specssl.eval.probe.linear_probe`) and ``linear-sgd`` (the standard SGD
protocol with augmentations, :func:`specssl.eval.linear_sgd.linear_eval_sgd`). Data: the run's own
dataset config (``--data-root`` overrides where it lives). Prints a table and writes JSON
beside the checkpoint (``<checkpoint stem>.eval-<protocols>[-<preset>].json``) or to ``--out``.

``--preset NAME`` (:data:`specssl.eval.protocols.EVAL_PRESETS`) takes the settings of a named
protocol of the papers' authors: ``intl_linear`` etc. configure ``linear-sgd``,
``wmse_probe`` / ``intl_cifar_probe`` configure ``knn`` and ``linear``; without ``-p`` the
preset's protocols run. Options given explicitly override single values; the JSON's
``preset`` entry records the name, source, resolved values and overrides.
Torch is imported inside :func:`run` only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from specssl.core.arguments import non_negative_float, positive_float, positive_int
from specssl.eval.protocols import EVAL_PRESETS, add_preset_argument, record

HELP = "evaluate a checkpoint: kNN, fast linear probe, or the SGD linear protocol"

PROTOCOLS = ("knn", "linear", "linear-sgd")

#: Built-in settings of each protocol (what runs without a preset or flag).
KNN_DEFAULTS: dict[str, Any] = {"knn_k": (200, 5), "knn_metric": "cosine"}
PROBE_DEFAULTS: dict[str, Any] = {
    "optimizer": "lbfgs",
    "lr": None,  # per optimizer: lbfgs 1, adam 1e-3, sgd 0.1
    "lr_end": None,
    "schedule": "cos",
    "epochs": 100,
    "batch_size": 4096,
    "weight_decay": 1e-4,
    "standardize": True,
}
SGD_DEFAULTS: dict[str, Any] = {
    "epochs": 100,
    "lr": 0.1,
    "batch_size": 256,
    "weight_decay": 0.0,
    "schedule": "step",
    "milestones": None,  # 60% / 80% of the epochs
    "gamma": 0.1,
    "momentum": 0.9,
    "lars": False,
    "crop_scale": (0.08, 1.0),
}
#: The linear-sgd settings passed to LinearSGDConfig as they are.
_PLAIN_SGD_KEYS = [k for k in SGD_DEFAULTS if k not in ("milestones", "crop_scale")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .ckpt written by specssl pretrain, or its run dir")
    parser.add_argument(
        "--protocol",
        "-p",
        nargs="+",
        choices=PROTOCOLS,
        help="evaluation protocol(s) (default: the preset's, else knn)",
    )
    add_preset_argument(parser, EVAL_PRESETS)
    data = parser.add_argument_group("data")
    data.add_argument("--data-root", help="dataset directory (default: the run's data.root)")
    data.add_argument("--train-subset", type=positive_int, help="use this many training images")
    data.add_argument("--test-subset", type=positive_int, help="use this many test images")
    data.add_argument(
        "--batch-size",
        type=positive_int,
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
        help="neighbour counts (default: 200 5); cosine k > 20 temperature-weighted, else majority",
    )
    knn.add_argument(
        "--temperature", type=positive_float, default=0.1, help="vote temperature (0.1)"
    )
    knn.add_argument(
        "--knn-metric",
        choices=("cosine", "euclidean"),
        help="cosine (default) | euclidean (raw features, majority vote)",
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
    lin.add_argument("--optimizer", choices=("lbfgs", "adam", "sgd"), help="linear (lbfgs)")
    lin.add_argument(
        "--schedule",
        choices=("cos", "exp", "step"),
        help="linear (adam/sgd): cos (default) | exp; linear-sgd: step (default) | cos",
    )
    lin.add_argument(
        "--lr-end", type=positive_float, help="linear, exp schedule: lr of the last epoch"
    )
    lin.add_argument(
        "--probe-batch-size", type=positive_int, help="linear (adam/sgd): features per step (4096)"
    )
    lin.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        help="linear: standardise the features first (default on)",
    )
    lin.add_argument("--seed", type=int, default=0)
    lin.add_argument(
        "--milestones", nargs="+", type=positive_int, help="linear-sgd: default 60%%/80%%"
    )
    lin.add_argument(
        "--lars", action=argparse.BooleanOptionalAction, help="linear-sgd: LARC (default off)"
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


def protocols(args: argparse.Namespace) -> list[str]:
    """The protocols to run: ``-p``, else the preset's, else ``knn`` (duplicates dropped)."""
    if args.protocol:
        chosen = list(dict.fromkeys(args.protocol))
    elif args.preset is not None:
        chosen = list(args.preset.protocols)
    else:
        chosen = ["knn"]
    if args.preset is not None and not set(chosen) & set(args.preset.protocols):
        raise argparse.ArgumentTypeError(
            f"--preset {args.preset.name} configures {' / '.join(args.preset.protocols)}, "
            f"not -p {' '.join(chosen)}"
        )
    return chosen


def _resolve(
    defaults: dict[str, Any], preset, protocol: str, explicit: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """``defaults``, then the preset's values (if it configures ``protocol``), then the
    explicit (non-None) options; returns the settings and the preset values overridden."""
    values = dict(defaults)
    applies = preset is not None and protocol in preset.protocols
    if applies:
        values.update({k: v for k, v in preset.values().items() if k in defaults})
    given = {k: v for k, v in explicit.items() if v is not None}
    values.update(given)
    return values, sorted(given) if applies else []


def _single_wd(args: argparse.Namespace, protocol: str) -> float | None:
    if args.weight_decay and len(args.weight_decay) > 1:
        raise argparse.ArgumentTypeError(f"--weight-decay: {protocol} takes a single value")
    return args.weight_decay[0] if args.weight_decay else None


def knn_settings(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Resolved kNN settings (``knn_k``, ``knn_metric``) and the preset values overridden."""
    explicit = {"knn_k": tuple(args.k) if args.k else None, "knn_metric": args.knn_metric}
    return _resolve(KNN_DEFAULTS, args.preset, "knn", explicit)


def probe_settings(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Resolved fast-probe settings (:data:`PROBE_DEFAULTS` keys) and the overridden ones."""
    if args.schedule == "step":
        raise argparse.ArgumentTypeError("--schedule step is for linear-sgd (linear: cos | exp)")
    wd = args.weight_decay
    explicit = {
        "optimizer": args.optimizer,
        "lr": args.lr,
        "lr_end": args.lr_end,
        "schedule": args.schedule,
        "epochs": args.epochs,
        "batch_size": args.probe_batch_size,
        "weight_decay": (wd[0] if len(wd) == 1 else list(wd)) if wd else None,
        "standardize": args.standardize,
    }
    values, overridden = _resolve(PROBE_DEFAULTS, args.preset, "linear", explicit)
    if "optimizer" in overridden and args.lr is None:
        values["lr"] = None  # the preset's lr belongs to the preset's optimizer
    if values["lr"] is None:
        values["lr"] = {"adam": 1e-3, "sgd": 0.1, "lbfgs": 1.0}[values["optimizer"]]
    return values, overridden


def sgd_settings(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Resolved linear-sgd settings (:data:`SGD_DEFAULTS` keys) and the overridden ones."""
    if args.schedule == "exp":
        raise argparse.ArgumentTypeError("--schedule exp is for linear (linear-sgd: step | cos)")
    explicit = {
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "weight_decay": _single_wd(args, "linear-sgd"),
        "schedule": args.schedule,
        "milestones": tuple(args.milestones) if args.milestones else None,
        "lars": args.lars,
    }
    values, overridden = _resolve(SGD_DEFAULTS, args.preset, "linear-sgd", explicit)
    if values["schedule"] == "cos" and values["milestones"] is not None:
        if args.milestones:
            raise argparse.ArgumentTypeError("--milestones: only for the step schedule")
        values["milestones"] = None  # the preset's step milestones do not apply
    return values, overridden


def preset_record(args: argparse.Namespace, chosen: list[str]) -> dict[str, Any] | None:
    """The JSON record of ``--preset`` (None without one): name, source, resolved values of
    the protocols it configures among ``chosen``, the options that overrode it."""
    preset = args.preset
    if preset is None:
        return None
    applied = [p for p in chosen if p in preset.protocols]
    resolved: dict[str, Any] = {}
    overridden: set[str] = set()
    for protocol, settings in (
        ("knn", knn_settings),
        ("linear", probe_settings),
        ("linear-sgd", sgd_settings),
    ):
        if protocol in applied:
            values, over = settings(args)
            resolved.update({k: v for k, v in values.items() if k in preset.values()})
            overridden.update(k for k in over if k in preset.values())
    return record(preset, resolved, sorted(overridden), applied)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen protocols; returns the JSON-ready report (raises on bad input)."""
    from specssl.eval.checkpoint import load_checkpoint
    from specssl.eval.features import cached_features, eval_splits

    chosen = protocols(args)
    settings = {"knn": knn_settings, "linear": probe_settings, "linear-sgd": sgd_settings}
    for protocol in chosen:  # option errors before any work
        settings[protocol](args)
    preset = preset_record(args, chosen)
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
        "protocols": chosen,
        "preset": preset,
        "results": {},
    }
    features = None
    fast = [p for p in chosen if p != "linear-sgd"]
    if fast:
        common = {
            "root": args.data_root,
            "cache_dir": args.cache_dir,
            "use_cache": not args.no_cache,
            "batch_size": args.batch_size or 256,
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
    for protocol in chosen:
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
    from specssl.core.knn import knn_accuracy

    (train_x, train_y), (test_x, test_y) = features
    labeled = train_y >= 0
    train_x, train_y = train_x[labeled], train_y[labeled]
    n_cls = _num_classes(train_y, test_y)
    settings, _ = knn_settings(args)
    metric = settings["knn_metric"]
    out: dict[str, Any] = {"metric": metric}
    if metric == "cosine":
        out["temperature"] = args.temperature
    for k in dict.fromkeys(settings["knn_k"]):
        weighted = metric == "cosine" and k > 20
        acc = knn_accuracy(
            train_x,
            train_y,
            test_x,
            test_y,
            n_cls,
            k=k,
            temperature=args.temperature,
            weighted=weighted,
            metric=metric,
        )
        out[f"top1_k{k}"], out[f"top5_k{k}"] = acc["top1"], acc["top5"]
    return out


def _linear(features, args) -> dict[str, Any]:
    from specssl.eval.probe import linear_probe

    (train_x, train_y), (test_x, test_y) = features
    s, _ = probe_settings(args)  # PROBE_DEFAULTS' keys: linear_probe's arguments
    result = linear_probe(train_x, train_y, test_x, test_y, seed=args.seed, **s)
    return {**{k: v for k, v in s.items() if k != "weight_decay"}, **result}


def _linear_sgd(ckpt, args, device) -> dict[str, Any]:
    from specssl.eval.features import eval_splits, linear_train_transform, normalizer, split_dataset
    from specssl.eval.linear_sgd import LinearSGDConfig, linear_eval_sgd

    data = ckpt.config.data
    train_split, test_split = eval_splits(data)
    s, _ = sgd_settings(args)
    sgd = LinearSGDConfig(
        **{k: s[k] for k in _PLAIN_SGD_KEYS},
        milestones=list(s["milestones"]) if s["milestones"] else None,
        crop_scale=tuple(s["crop_scale"]),
        num_workers=args.num_workers,
        accelerator=args.accelerator if args.device == "auto" else device.type,
        devices=args.devices,
        precision=args.precision,
        seed=args.seed,
    )
    common = {"root": args.data_root, "seed": ckpt.config.seed}
    transform = linear_train_transform(data, sgd.crop_scale)
    train_set = split_dataset(data, train_split, subset=args.train_subset, transform=transform,
                              **common)  # fmt: skip
    test_set = split_dataset(data, test_split, subset=args.test_subset, **common)
    result = linear_eval_sgd(
        ckpt.backbone, train_set, test_set, normalizer(data), test_set.num_classes, sgd
    )
    milestones = sgd.resolved_milestones() if sgd.schedule == "step" else None
    used = {k: getattr(sgd, k) for k in SGD_DEFAULTS}  # the report's order: SGD_DEFAULTS'
    return {**result, **used, "milestones": milestones, "crop_scale": list(sgd.crop_scale)}


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


def default_output(checkpoint: str, protocols: list[str], preset: str | None = None) -> Path:
    """``<checkpoint dir>/<checkpoint stem>.eval-<protocol>[+<protocol>...][-<preset>].json``."""
    path = Path(checkpoint)
    tail = f"-{preset}" if preset else ""
    return path.with_name(f"{path.stem}.eval-{'+'.join(dict.fromkeys(protocols))}{tail}.json")


def run(args: argparse.Namespace) -> int:
    from specssl.eval.checkpoint import CheckpointError

    if args.num_workers < 0:
        raise argparse.ArgumentTypeError("--num-workers must be >= 0")
    try:
        report = evaluate(args)
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        raise _usage_error(err) from None
    preset = report["preset"]["name"] if report["preset"] else None
    out = (
        Path(args.out)
        if args.out
        else default_output(report["checkpoint"], report["protocols"], preset)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(format_table(report))
    print(f"written: {out}")
    return 0
