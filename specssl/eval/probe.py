"""Linear probe on precomputed frozen features ``(n, f)`` (the fast linear evaluation).

Standardise with training statistics, fit a multinomial logistic regression (softmax
cross-entropy + ``weight_decay/2 · ||W||²``) from zero initialisation by full-batch L-BFGS
(default: deterministic, no learning rate to tune) or by mini-batch Adam/SGD with a cosine
schedule or a per-epoch exponential one (the W-MSE / CW-RGP / INTL-CIFAR probe: Adam 1e-2 ->
1e-6 over 500 epochs on raw features, ``standardize=False``; seeded shuffling), report top-1 /
top-5 in percent. A list of weight decays selects one on a seeded, stratified 10% validation
split of the training features, then refits on all of them. The SGD protocol on augmented
images is :mod:`specssl.eval.linear_sgd`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from specssl.eval.metrics import topk_accuracy
from specssl.train.optim import warmup_cosine

__all__ = ["linear_probe", "probe_lr_factor"]

_OPTIMIZERS = ("adam", "sgd", "lbfgs")
_PROBE_SCHEDULES = ("cos", "exp")
#: Below this many feature entries per step (full batch or mini-batch) the probe runs on one
#: thread: its ops are then too small to split, and on a loaded machine threads that wait on
#: each other cost up to 100x.
_SINGLE_THREAD_BELOW = 2**26


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (``None``: unchanged), then restore."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _check_xy(x: torch.Tensor, y: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"{name}_x must be a 2-D tensor (n, f), got {getattr(x, 'shape', x)}")
    y = torch.as_tensor(y)
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name}_y must have shape ({x.shape[0]},) to match {name}_x, got {tuple(y.shape)}"
        )
    if y.is_floating_point():
        raise ValueError(f"{name}_y must hold integer class labels, got dtype {y.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}_x contains non-finite values")
    return x.detach().float().cpu(), y.detach().long().cpu()


def _fit(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int | None,
    optimizer: str,
    seed: int,
    schedule: str = "cos",
    lr_end: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``CE(x Wᵀ + b, y) + weight_decay/2 · ||W||²_F``; returns ``W: (C, f)``, ``b: (C,)``.

    ``x: (n, f)`` standardised features, ``y: (n,)`` labels in ``[0, C)``.
    """
    n, f = x.shape
    weight = torch.zeros(num_classes, f, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    params = [weight, bias]

    def objective(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(torch.addmm(bias, xb, weight.T), yb)
        if weight_decay:
            loss = loss + 0.5 * weight_decay * weight.pow(2).sum()
        return loss

    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            params,
            lr=lr,
            max_iter=epochs,
            history_size=20,
            tolerance_grad=1e-7,
            tolerance_change=1e-10,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = objective(x, y)
            loss.backward()
            return loss

        opt.step(closure)
        return weight.detach(), bias.detach()

    bs = n if batch_size is None or batch_size >= n else int(batch_size)
    steps_per_epoch = math.ceil(n / bs)
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda step: probe_lr_factor(
            schedule, step, steps_per_epoch, epochs, None if lr_end is None else lr_end / lr
        ),
    )
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen) if bs < n else None
        for start in range(0, n, bs):
            if order is None:
                xb, yb = x, y
            else:
                idx = order[start : start + bs]
                xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            objective(xb, yb).backward()
            opt.step()
            sched.step()
    return weight.detach(), bias.detach()


def probe_lr_factor(
    schedule: str, step: int, steps_per_epoch: int, epochs: int, end_ratio: float | None
) -> float:
    """lr multiplier of the mini-batch probe at optimizer ``step`` (0-based).

    ``"cos"``: ``0.5 (1 + cos(pi t / T))`` per step, ``T = epochs * steps_per_epoch``.
    ``"exp"``: ``end_ratio ** (e / epochs)`` for epoch ``e = step // steps_per_epoch`` — torch's
    ``ExponentialLR(gamma=end_ratio ** (1 / epochs))`` stepped once per epoch (W-MSE's
    ``eval_sgd``), ``end_ratio = lr_end / lr``.
    """
    if schedule == "exp":
        return float(end_ratio) ** (min(step // steps_per_epoch, epochs) / epochs)
    return warmup_cosine(step, max(1, epochs * steps_per_epoch), 0)


def _validation_split(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Boolean mask ``(n,)`` marking a seeded, per-class ``fraction`` of rows as validation."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(y.shape[0], dtype=torch.bool)
    for c in y.unique():
        rows = (y == c).nonzero().flatten()
        take = round(fraction * rows.numel())
        if 0 < take < rows.numel():
            mask[rows[torch.randperm(rows.numel(), generator=gen)[:take]]] = True
    return mask


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    epochs: int = 100,
    lr: float | None = None,
    weight_decay: float | Sequence[float] = 1e-4,
    batch_size: int | None = 4096,
    seed: int = 0,
    optimizer: str = "lbfgs",
    num_classes: int | None = None,
    val_fraction: float = 0.1,
    num_threads: int | None = None,
    schedule: str = "cos",
    lr_end: float | None = None,
    standardize: bool = True,
) -> dict[str, float]:
    """Top-1/top-5 accuracy (%) of a linear classifier on frozen features.

    Features are standardised per dimension with the training mean and standard deviation
    (unless ``standardize=False``); the classifier minimises softmax cross-entropy
    ``+ weight_decay/2 · ||W||²`` (bias not decayed) from zero initialisation. Training rows
    labelled ``-1`` (unlabeled) are dropped.

    Args:
        train_x: ``(n, f)`` training features; train_y: ``(n,)`` integer labels.
        test_x: ``(n_test, f)`` test features; test_y: ``(n_test,)`` labels.
        epochs: passes over the training features (``"lbfgs"``: maximum iterations, each
            one or a few full-batch evaluations).
        lr: learning rate; default 1e-3 (adam), 0.1 (sgd), 1.0 (lbfgs).
        weight_decay: L2 coefficient, or a sequence of candidates: each is fit on 90% of the
            training rows (stratified, seeded), the best validation top-1 wins (ties: the
            larger decay), and the winner is refit on all training rows.
        batch_size: mini-batch size for adam/sgd (``None`` = full batch).
        seed: seeds the validation split and the adam/sgd shuffling; same seed, same result.
        optimizer: ``"lbfgs"`` (default; full batch, strong-Wolfe line search) | ``"adam"`` |
            ``"sgd"`` (Nesterov momentum 0.9), both mini-batch with ``schedule``.
        num_classes: default ``1 + max label``.
        val_fraction: validation share for the weight-decay selection.
        num_threads: torch threads for the fit; default 1 when a step touches fewer than 2^26
            feature entries (full batch: up to e.g. 128k × 512, CIFAR's 50k × 1024),
            else torch's setting (results agree up to float rounding).
        schedule: adam/sgd lr schedule: ``"cos"`` (per step, to zero) or ``"exp"`` (per epoch,
            from ``lr`` to ``lr_end`` at the last epoch; see :func:`probe_lr_factor`).
        lr_end: the ``"exp"`` schedule's final lr (required there, ``0 < lr_end``).
        standardize: standardise the features with the training statistics first.

    Returns:
        ``{"top1", "top5", "weight_decay"}`` (accuracies in percent; top-5 is top-``C`` when
        there are fewer than 5 classes).
    """
    train_x, train_y = _check_xy(train_x, train_y, "train")
    test_x, test_y = _check_xy(test_x, test_y, "test")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"feature dims differ: train {train_x.shape[1]}, test {test_x.shape[1]}")
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(_OPTIMIZERS)}, got {optimizer!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
    if schedule not in _PROBE_SCHEDULES:
        raise ValueError(f"schedule must be one of {list(_PROBE_SCHEDULES)}, got {schedule!r}")
    if schedule == "exp" and optimizer != "lbfgs" and not (lr_end is not None and lr_end > 0):
        raise ValueError(f"the exp schedule needs lr_end > 0, got {lr_end!r}")
    labeled = train_y >= 0
    train_x, train_y = train_x[labeled], train_y[labeled]
    if train_x.shape[0] == 0:
        raise ValueError("no labelled training rows (all labels are -1)")
    if bool((test_y < 0).any()):
        raise ValueError("test_y contains unlabeled rows (-1)")
    if num_classes is None:
        num_classes = int(max(train_y.max(), test_y.max())) + 1
    elif int(max(train_y.max(), test_y.max())) >= num_classes:
        raise ValueError(f"labels exceed num_classes={num_classes}")
    if lr is None:
        lr = {"adam": 1e-3, "sgd": 0.1, "lbfgs": 1.0}[optimizer]
    candidates = (
        [float(weight_decay)]
        if isinstance(weight_decay, int | float)
        else [float(w) for w in weight_decay]
    )
    if not candidates or any(w < 0 for w in candidates):
        raise ValueError(f"weight_decay must be >= 0 (or a non-empty list), got {weight_decay}")
    fit_args: dict[str, Any] = {
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "seed": seed,
        "schedule": schedule,
        "lr_end": lr_end,
    }
    n = train_x.shape[0]
    rows_per_op = n if optimizer == "lbfgs" or batch_size is None else min(n, batch_size)
    if num_threads is None and rows_per_op * train_x.shape[1] < _SINGLE_THREAD_BELOW:
        num_threads = 1
    with _torch_threads(num_threads):
        return _select_and_fit(
            train_x,
            train_y,
            test_x,
            test_y,
            num_classes,
            candidates,
            val_fraction,
            fit_args,
            standardize,
        )


def _standardise(
    fit_x: torch.Tensor, *others: torch.Tensor, enabled: bool = True
) -> list[torch.Tensor]:
    """``(x - mean) / std`` with the statistics of ``fit_x`` (std floored at 1e-6); the
    tensors unchanged when not ``enabled``."""
    if not enabled:
        return [fit_x, *others]
    mean = fit_x.mean(0, keepdim=True)
    std = fit_x.std(0, keepdim=True).clamp_min(1e-6)
    return [(t - mean) / std for t in (fit_x, *others)]


def _select_and_fit(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    candidates: list[float],
    val_fraction: float,
    fit_args: dict[str, Any],
    standardize: bool = True,
) -> dict[str, float]:
    """Weight-decay selection (if several candidates), final fit, test accuracy."""
    chosen = candidates[0]
    if len(candidates) > 1:
        val = _validation_split(train_y, val_fraction, fit_args["seed"])
        if not bool(val.any()) or bool(val.all()):
            raise ValueError("too few training rows per class for a validation split")
        fx, vx = _standardise(train_x[~val], train_x[val], enabled=standardize)
        best = -1.0
        for wd in sorted(candidates):
            w, b = _fit(fx, train_y[~val], num_classes, weight_decay=wd, **fit_args)
            score = topk_accuracy(torch.addmm(b, vx, w.T), train_y[val])["top1"]
            if score >= best:
                best, chosen = score, wd
    fx, tx = _standardise(train_x, test_x, enabled=standardize)
    w, b = _fit(fx, train_y, num_classes, weight_decay=chosen, **fit_args)
    with torch.no_grad():
        result = topk_accuracy(torch.addmm(b, tx, w.T), test_y)
    return {**result, "weight_decay": chosen}
