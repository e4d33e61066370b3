"""Momentum (EMA) target networks: the BYOL cosine schedule, target creation and update."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["cosine_momentum", "ema_update_", "make_target"]


def _check_tau(name: str, tau: float) -> None:
    if not 0.0 <= tau <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {tau}")


def cosine_momentum(step: int, total_steps: int, base_tau: float, final_tau: float = 1.0) -> float:
    """BYOL's momentum schedule ``τ = final − (final − base) · (cos(π k / K) + 1) / 2``.

    ``τ = base_tau`` at ``step = 0`` and ``final_tau`` at ``step = total_steps``; ``step`` is
    clamped to ``[0, total_steps]``. With ``total_steps = 0`` the result is ``final_tau``.

    Raises:
        ValueError: ``total_steps < 0`` or a momentum outside ``[0, 1]``.
    """
    if total_steps < 0:
        raise ValueError(f"total_steps must be >= 0, got {total_steps}")
    _check_tau("base_tau", base_tau)
    _check_tau("final_tau", final_tau)
    if total_steps == 0:
        return float(final_tau)
    k = min(max(step, 0), total_steps)
    return float(final_tau - (final_tau - base_tau) * (math.cos(math.pi * k / total_steps) + 1) / 2)


def make_target(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` to serve as its EMA target.

    Parameters have ``requires_grad = False``; the train/eval flags of the copy (every
    submodule) mirror the source, so BN in the target behaves as in the online network.
    """
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


def _check_same(
    kind: str, a: list[tuple[str, torch.Tensor]], b: list[tuple[str, torch.Tensor]]
) -> None:
    """Raise ValueError at the first name or shape difference between two named lists."""
    for (ka, ta), (kb, tb) in zip(a, b, strict=False):
        if ka != kb:
            raise ValueError(f"target and online {kind} differ: {ka!r} vs {kb!r}")
        if ta.shape != tb.shape:
            raise ValueError(
                f"target and online {kind} {ka!r} differ in shape: "
                f"{tuple(ta.shape)} vs {tuple(tb.shape)}"
            )
    if len(a) != len(b):
        longer, which = (a, "target") if len(a) > len(b) else (b, "online")
        raise ValueError(
            f"{kind} counts differ ({len(a)} target vs {len(b)} online); "
            f"first extra {which} key: {longer[min(len(a), len(b))][0]!r}"
        )


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, tau: float) -> None:
    """In place: ``θ' ← τ θ' + (1 − τ) θ`` for every parameter; buffers are copied.

    ``target`` and ``online`` must have the same parameter and buffer names and shapes
    (e.g. ``target = make_target(online)``); the first difference raises ``ValueError``.
    Buffers (BN running statistics, counters) are copied from ``online``, as in BYOL/MoCo
    implementations that do not average them.
    """
    _check_tau("tau", tau)
    t_params, o_params = list(target.named_parameters()), list(online.named_parameters())
    t_bufs, o_bufs = list(target.named_buffers()), list(online.named_buffers())
    _check_same("parameters", t_params, o_params)
    _check_same("buffers", t_bufs, o_bufs)
    if t_params:
        # θ' + (1 − τ)(θ − θ') = τ θ' + (1 − τ) θ
        torch._foreach_lerp_([p for _, p in t_params], [p for _, p in o_params], 1.0 - tau)
    for (_, tb), (_, ob) in zip(t_bufs, o_bufs, strict=True):
        tb.copy_(ob)
