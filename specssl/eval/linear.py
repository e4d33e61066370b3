"""Linear evaluation of frozen representations: a fast probe and the standard SGD protocol.

* :func:`linear_probe` — the fast path on *precomputed* frozen features ``(n, f)``:
  standardise with training statistics, fit a multinomial logistic regression
  (softmax cross-entropy + ``weight_decay/2 · ||W||²``) from zero initialisation by full-batch
  L-BFGS (default: deterministic, no learning rate to tune) or by mini-batch Adam/SGD with a
  cosine schedule or a per-epoch exponential one (the W-MSE / CW-RGP / INTL-CIFAR probe:
  Adam 1e-2 -> 1e-6 over 500 epochs on raw features, ``standardize=False``; seeded
  shuffling), report top-1/top-5 in percent. A list of weight decays
  selects one on a seeded, stratified 10% validation split of the training features, then
  refits on all of them. 50k × 512 features: 1–3 CPU-seconds (one thread) per fit.
* :func:`linear_eval_sgd` — the standard protocol of the SSL papers (MoCo, SimSiam, BYOL and
  the INTL paper's Table 1/2 via solo-learn's settings): a linear layer on the frozen backbone
  (kept in eval mode, so BatchNorm statistics never change) trained on *augmented* images
  (random resized crop + horizontal flip), SGD momentum 0.9, lr divided by 10 at epochs
  60 and 80 of 100 (or a per-epoch cosine; optionally with LARS as CW-RGP's ImageNet
  protocol); evaluated on the centre (un-augmented) test images. Runs on Lightning, so
  GPUs / DDP / mixed precision come from the trainer options. Named presets of the authors'
  settings: :mod:`specssl.eval.protocols`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from specssl.train.optim import LARS

__all__ = ["LinearSGDConfig", "linear_eval_sgd", "linear_probe", "topk_accuracy"]

_OPTIMIZERS = ("adam", "sgd", "lbfgs")
_PROBE_SCHEDULES = ("cos", "exp")
_SGD_SCHEDULES = ("step", "cos")
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


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 and top-``min(5, C)`` accuracy (%) of ``logits: (n, C)`` for ``labels: (n,)``."""
    ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
    hit = ranked == labels[:, None].to(ranked.device)
    return {
        "top1": 100.0 * float(hit[:, 0].float().mean()),
        "top5": 100.0 * float(hit.any(1).float().mean()),
    }


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
    total = max(1, epochs * steps_per_epoch)
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


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


# ------------------------------------------------------------------------------------------
# The standard SGD protocol with augmentations
# ------------------------------------------------------------------------------------------


@dataclass
class LinearSGDConfig:
    """Settings of :func:`linear_eval_sgd` (defaults: the ImageNet protocol of the papers).

    ``lr`` is for a global batch of 256 and scales linearly with the global batch.
    ``schedule="step"``: ``milestones`` default to 60% and 80% of ``epochs`` (60/80 of 100); the
    lr is multiplied by ``gamma`` at each. ``schedule="cos"``: ``0.5 (1 + cos(pi e / epochs))``
    at epoch ``e`` (MoCo's / CW-RGP's ``adjust_learning_rate``). ``lars``: the SGD step is
    taken by :class:`specssl.train.optim.LARS` (trust ``lars_trust``, unclipped, as apex's
    ``LARC(clip=False)``). ``crop_scale`` is the random-resized-crop area range.
    """

    epochs: int = 100
    milestones: list[int] | None = None
    gamma: float = 0.1
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 256
    crop_scale: tuple[float, float] = (0.08, 1.0)
    schedule: str = "step"
    lars: bool = False
    lars_trust: float = 0.001
    num_workers: int = 4
    accelerator: str = "auto"
    devices: str = "auto"
    precision: str = "32-true"
    enable_progress_bar: bool = True
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_milestones(self) -> list[int]:
        if self.milestones is not None:
            return sorted(int(m) for m in self.milestones)
        return [round(0.6 * self.epochs), round(0.8 * self.epochs)]

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.schedule not in _SGD_SCHEDULES:
            raise ValueError(
                f"linear-sgd schedule must be one of {list(_SGD_SCHEDULES)}, got {self.schedule!r}"
            )


class _FrozenBackbone(nn.Module):
    """Normalisation + backbone, always in eval mode with no gradients (features ``(B, f)``)."""

    def __init__(self, backbone: nn.Module, normalize: nn.Module) -> None:
        super().__init__()
        self.backbone, self.normalize = backbone, normalize
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> _FrozenBackbone:  # always eval, whatever ``mode``
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(images)).float()


def _linear_module(backbone: nn.Module, normalize: nn.Module, num_classes: int, cfg, lr: float):
    import lightning as L

    class LinearEvalModule(L.LightningModule):
        """A linear classifier ``(f -> C)`` on a frozen backbone (kept in eval mode)."""

        def __init__(self) -> None:
            super().__init__()
            self.frozen = _FrozenBackbone(backbone, normalize)
            self.classifier = nn.Linear(backbone.out_dim, num_classes)
            nn.init.normal_(self.classifier.weight, std=0.01)
            nn.init.zeros_(self.classifier.bias)

        def training_step(self, batch, batch_idx: int) -> torch.Tensor:
            images, labels = batch
            loss = F.cross_entropy(self.classifier(self.frozen(images)), labels)
            self.log("train/loss", loss, prog_bar=True, batch_size=labels.shape[0])
            return loss

        def validation_step(self, batch, batch_idx: int) -> None:
            images, labels = batch
            acc = topk_accuracy(self.classifier(self.frozen(images)), labels)
            for key, value in acc.items():
                self.log(f"val/{key}", value, batch_size=labels.shape[0], sync_dist=True)

        def configure_optimizers(self):
            sgd = {"lr": lr, "momentum": cfg.momentum, "weight_decay": cfg.weight_decay}
            if cfg.lars:
                opt = LARS(self.classifier.parameters(), eta=cfg.lars_trust, **sgd)
            else:
                opt = torch.optim.SGD(self.classifier.parameters(), **sgd)
            if cfg.schedule == "cos":
                sched = torch.optim.lr_scheduler.LambdaLR(
                    opt, lambda e: 0.5 * (1.0 + math.cos(math.pi * min(e, cfg.epochs) / cfg.epochs))
                )
            else:
                sched = torch.optim.lr_scheduler.MultiStepLR(
                    opt, cfg.resolved_milestones(), gamma=cfg.gamma
                )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    return LinearEvalModule()


def linear_eval_sgd(
    backbone: nn.Module,
    train_set,
    test_set,
    normalize: nn.Module,
    num_classes: int,
    cfg: LinearSGDConfig | None = None,
) -> dict[str, float]:
    """The standard linear evaluation on a frozen ``backbone``; returns test top-1/top-5 (%).

    Args:
        backbone: ``(B, 3, H, W) -> (B, f)`` with ``out_dim = f``; frozen and kept in eval
            mode throughout (its BatchNorm running statistics are not updated).
        train_set: dataset of ``(augmented image tensor (3, H, W), label)`` (uint8 or float in
            [0, 1]; see :func:`specssl.eval.features.linear_train_transform`).
        test_set: dataset of un-augmented ``(image, label)`` of the same size.
        normalize: maps a batch of those images to the backbone's input (mean/std).
        num_classes: number of classes ``C``.
        cfg: the protocol's settings (:class:`LinearSGDConfig`).
    """
    import lightning as L
    from torch.utils.data import DataLoader

    cfg = cfg or LinearSGDConfig()
    cfg.validate()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    devices: int | str = int(cfg.devices) if str(cfg.devices).isdigit() else cfg.devices
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=devices,
        precision=cfg.precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.enable_progress_bar,
        num_sanity_val_steps=0,
        log_every_n_steps=min(50, max(1, len(train_set) // cfg.batch_size)),
        **cfg.extra,
    )
    lr = cfg.lr * cfg.batch_size * max(1, trainer.world_size) / 256
    module = _linear_module(backbone, normalize, num_classes, cfg, lr)
    loader_args = {
        "batch_size": cfg.batch_size,
        "num_workers": cfg.num_workers,
        "persistent_workers": cfg.num_workers > 0,
        "pin_memory": torch.cuda.is_available(),
    }
    train_loader = DataLoader(train_set, shuffle=True, drop_last=False, **loader_args)
    test_loader = DataLoader(test_set, shuffle=False, **loader_args)
    with warnings.catch_warnings():
        # The frozen backbone is in eval mode on purpose; validation runs once, after fit.
        warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")
        warnings.filterwarnings("ignore", ".*no `val_dataloader`.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(module, train_dataloaders=train_loader)
        metrics = trainer.validate(module, dataloaders=test_loader, verbose=False)[0]
    return {"top1": float(metrics["val/top1"]), "top5": float(metrics["val/top5"])}
