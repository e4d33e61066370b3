"""Small input builders shared by the loss tests (imported as ``from helpers import ...``)."""

from __future__ import annotations

import torch

F64 = torch.float64

#: A pretraining run of a few seconds on the built-in digits (tests add epochs and monitors).
TINY_RUN = [
    "data.name=digits",
    "data.batch_size=64",
    "data.subset=256",
    "data.val_subset=128",
    "backbone.width=4",
    "method.proj_hidden_dim=32",
    "method.proj_output_dim=16",
    "trainer.enable_progress_bar=false",
    "optim.warmup_epochs=0",
]


def make_views(
    n_views: int,
    m: int,
    d: int,
    seed: int,
    noise: float = 0.3,
    dtype: torch.dtype = F64,
    *,
    min_scale: float = 0.5,
    anisotropic: bool = True,
) -> list[torch.Tensor]:
    """``n_views`` correlated views ``(m, d)``: a shared signal (column scales from
    ``min_scale`` to 2 and a random offset when ``anisotropic``) plus independent noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(m, d, generator=g, dtype=F64)
    if anisotropic:
        base = base * torch.linspace(min_scale, 2.0, d, dtype=F64) + torch.randn(d, generator=g)
    views = [base + noise * torch.randn(m, d, generator=g, dtype=F64) for _ in range(n_views)]
    return [v.to(dtype) for v in views]


def _gloo_entry(rank: int, size: int, init_file: str, body, out) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        body(rank, size, out)
    finally:
        dist.destroy_process_group()


def run_gloo(body, world_size: int = 2, start_method: str = "spawn") -> dict:
    """Run ``body(rank, world_size, out)`` in ``world_size`` CPU processes joined by a gloo
    process group; ``out`` is a shared dict the ranks write their results into (returned).

    ``body`` must be a module-level function (it is pickled by reference). ``start_method``
    ``"fork"`` lets the children inherit the imported modules (faster when those are heavy).
    """
    import os
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = mp.Manager().dict()
        mp.start_processes(
            _gloo_entry,
            args=(world_size, os.path.join(tmp, "init"), body, out),
            nprocs=world_size,
            start_method=start_method,
        )
        return dict(out)
