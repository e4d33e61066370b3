"""Autograd-aware collectives for methods that need the global batch under DDP."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherRows(torch.autograd.Function):
    """``all_gather`` along dim 0 whose backward sums the incoming gradients over ranks and
    returns this rank's slice (each rank holds a copy of the same global loss)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        size, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(z) for _ in range(size)]
        dist.all_gather(parts, z.contiguous())
        ctx.rows, ctx.rank = z.shape[0], rank
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
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
