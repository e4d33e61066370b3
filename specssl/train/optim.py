"""Optimisers (SGD, AdamW, LARS) with parameter groups, and the warm-up + cosine schedule."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable

import torch
from torch import nn

from specssl.train.config import ConfigError, OptimConfig


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(max(progress, 0.0), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def cosine_value(step: int, total: int, start: float, end: float) -> float:
    """Cosine from ``start`` (step 0) to ``end`` (step ``total``, clamped): DINO's
    ``cosine_scheduler`` without warm-up, used for its weight-decay schedule."""
    progress = min(max(step / max(1, total), 0.0), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def _is_bias_or_norm(name: str, param: torch.nn.Parameter) -> bool:
    return param.ndim <= 1 or name.endswith(".bias")


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Full names of the parameters of ``model`` that a submodule exempts from weight decay.

    Every submodule with a callable ``no_weight_decay()`` (timm's convention: a ViT returns
    ``{"pos_embed", "cls_token", "reg_token", "dist_token"}``) names parameters relative to
    itself, exactly, as a prefix of dotted names, or as an ``fnmatch`` pattern; they are
    returned with the submodule's path in ``model`` prepended.
    """
    names: set[str] = set()
    for prefix, module in model.named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if not callable(fn):
            continue
        patterns = set(fn())
        if not patterns:
            continue
        for pname, _ in module.named_parameters():
            if any(
                pname == pat or pname.startswith(pat + ".") or fnmatch.fnmatchcase(pname, pat)
                for pat in patterns
            ):
                names.add(f"{prefix}.{pname}" if prefix else pname)
    return names


class LARS(torch.optim.SGD):
    """SGD with layer-wise adaptive rate scaling (You et al., 2017), as used by BYOL/Barlow Twins.

    Each parameter's gradient (plus weight decay) is scaled by the trust ratio
    ``r = eta ‖w‖ / (‖g‖ + wd ‖w‖)`` before the momentum-SGD step with learning rate ``lr``, so
    the step is ``lr · r · (g + wd w)``. With ``clip_lr`` (solo-learn's LARS, used by its CIFAR
    recipes) the factor is ``min(r / lr, 1)`` instead: the step is ``min(r, lr) · (g + wd w)``,
    never larger than plain SGD's and ``1/lr`` times larger than unclipped LARS once ``r < lr``.
    Groups with ``lars_exclude`` (biases and norm layers, by convention) and parameters whose
    weight or gradient norm is 0 take the plain SGD step.
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
        clip_lr: bool = False,
    ) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.eta, self.clip_lr = eta, clip_lr

    @torch.no_grad()
    def step(self, closure=None):
        # The closure (Lightning passes one) computes the gradients: run it first, so the trust
        # ratios are computed from this step's gradients, not from stale or absent ones.
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group.get("lars_exclude", False):
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                w_norm, g_norm = p.norm(), p.grad.norm()
                denom = g_norm + group["weight_decay"] * w_norm
                scaled = (w_norm > 0) & (g_norm > 0)
                trust = self.eta * w_norm / torch.where(scaled, denom, torch.ones_like(denom))
                if self.clip_lr:
                    trust = (trust / group["lr"]).clamp(max=1.0) if group["lr"] > 0 else trust
                trust = torch.where(scaled, trust, torch.ones_like(trust))
                p.grad.add_(p, alpha=group["weight_decay"]).mul_(trust)
            # weight decay already folded into the trust-scaled gradient
        saved = [g["weight_decay"] for g in self.param_groups]
        for g in self.param_groups:
            if not g.get("lars_exclude", False):
                g["weight_decay"] = 0.0
        try:
            super().step()
        finally:
            for g, wd in zip(self.param_groups, saved, strict=True):
                g["weight_decay"] = wd
        return loss


def build_optimizer(
    method: nn.Module, classifier: nn.Module, cfg: OptimConfig, lr: float
) -> torch.optim.Optimizer:
    """Optimiser over the method (lr ``lr``) and the online probe (``cfg.classifier_lr``, no wd).

    EMA target networks (parameters with ``requires_grad=False``) are skipped. Parameters of
    the sub-modules named in ``cfg.static_lr`` get their own groups flagged ``static_lr``:
    :func:`lr_multipliers` keeps them at the base lr (SimSiam's predictor, Chen & He 2021,
    Sec. 4.1: "a fixed lr for the predictor").

    With ``cfg.exclude_bias_and_norm``, biases and every parameter of at most one dimension
    (norm scales and shifts, layer scales) get weight decay 0 (and skip LARS's adaptation);
    with ``cfg.exclude_tokens`` too, so do the parameters a submodule's ``no_weight_decay()``
    names (:func:`no_weight_decay_names`: a timm ViT's position embedding and CLS / register
    tokens), the usual AdamW grouping of ViTs (timm, DeiT, MAE). With
    ``cfg.final_weight_decay`` the decayed groups are flagged ``wd_schedule`` and
    :func:`lr_multipliers` moves their weight decay on a cosine to that value.
    """
    static = set(cfg.static_lr)
    trainable = {n.split(".")[0] for n, p in method.named_parameters() if p.requires_grad}
    unknown = sorted(static - trainable)
    if unknown:
        raise ConfigError(
            f"config key 'optim.static_lr': {unknown} is not a trainable sub-module of the "
            f"method (it has: {sorted(trainable)})"
        )
    tokens = no_weight_decay_names(method) if cfg.exclude_tokens else set()
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in method.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = cfg.exclude_bias_and_norm and (_is_bias_or_norm(name, param) or name in tokens)
        buckets.setdefault((name.split(".")[0] in static, no_decay), []).append(param)
    groups = []
    for (is_static, no_decay), params in sorted(buckets.items()):
        group = {"params": params, "weight_decay": 0.0 if no_decay else cfg.weight_decay}
        if no_decay:
            group["lars_exclude"] = True
        elif cfg.final_weight_decay is not None:
            group["wd_schedule"] = (float(cfg.weight_decay), float(cfg.final_weight_decay))
        if is_static:
            group["static_lr"] = True
        groups.append(group)
    groups.append(
        {
            "params": list(classifier.parameters()),
            "lr": cfg.classifier_lr,
            "weight_decay": 0.0,
            "lars_exclude": True,
        }
    )
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if cfg.name == "lars":
        return LARS(
            groups, lr=lr, momentum=cfg.momentum, eta=cfg.lars_eta, clip_lr=cfg.lars_clip_lr
        )
    raise ConfigError(f"config key 'optim.name': unknown optimizer {cfg.name!r} (sgd|adamw|lars)")


def lr_multipliers(
    optimizer: torch.optim.Optimizer, total: int, warmup: int, min_ratio: float = 0.0
) -> list[Callable[[int], float]]:
    """One ``LambdaLR`` multiplier per parameter group: :func:`warmup_cosine`, or 1 for the
    groups flagged ``static_lr`` by :func:`build_optimizer`.

    The multiplier of a group flagged ``wd_schedule = (start, end)`` also sets that group's
    ``weight_decay`` to :func:`cosine_value` ``(step, total, start, end)``: ``LambdaLR`` calls
    it for every step (and for step 0 when it is built), so the weight decay follows the
    learning rate's clock without a callback, resumed runs included (the group is looked up
    by index at each call: loading an optimizer state replaces the group dicts).
    """

    def scheduled(step: int) -> float:
        return warmup_cosine(step, total, warmup, min_ratio)

    def constant(step: int) -> float:
        return 1.0

    def with_wd(index: int, lr_fn: Callable[[int], float]) -> Callable[[int], float]:
        def multiplier(step: int) -> float:
            group = optimizer.param_groups[index]
            start, end = group["wd_schedule"]
            group["weight_decay"] = cosine_value(step, total, start, end)
            return lr_fn(step)

        return multiplier

    out = []
    for i, g in enumerate(optimizer.param_groups):
        fn = constant if g.get("static_lr") else scheduled
        out.append(with_wd(i, fn) if g.get("wd_schedule") else fn)
    return out
