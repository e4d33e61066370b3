"""Collectives across ranks, each an identity when not running distributed.

* :func:`gather_with_grad` — rows of every rank, autograd-aware (methods whose loss needs the
  global batch: whitening, the INTL family);
* :func:`all_gather_rows` — rows of every rank without gradient (MoCo's queue);
* :func:`all_reduce_` — an in-place sum or max (SwAV's Sinkhorn, DINO's centre).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """``True`` inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 when not running distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherRows(torch.autograd.Function):
    """``all_gather`` along dim 0 whose backward sums the incoming gradients over ranks and
    returns this rank's slice (each rank holds a copy of the same global loss)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rows, ctx.rank = z.shape[0], dist.get_rank()
        return all_gather_rows(z)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = all_reduce_(grad.contiguous())
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(z: torch.Tensor) -> torch.Tensor:
    """Concatenate ``z: (m, d)`` from every rank into ``(W m, d)`` (rank order), keeping autograd.

    Every rank must pass the same ``m``. Every rank then computes the same global loss; the
    backward sums the ranks' gradients for this rank's rows, and DDP's averaging of parameter
    gradients over the ``W`` ranks turns that into exactly the gradient of the single-process
    loss on the concatenated batch. Identity when not running distributed.
    """
    if world_size() == 1:
        return z
    return _GatherRows.apply(z)


def all_gather_rows(t: torch.Tensor) -> torch.Tensor:
    """``t: (m, ...)`` of every rank concatenated along dim 0 (rank order), without gradient.
    Every rank must pass the same ``m``. Identity when not running distributed."""
    if world_size() == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place ``all_reduce`` of ``t`` (``"sum"`` or ``"max"``) over ranks; returns ``t``.
    Identity when not running distributed."""
    if op not in ("sum", "max"):
        raise ValueError(f"all_reduce_ op must be 'sum' or 'max', got {op!r}")
    if world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t
