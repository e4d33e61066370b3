"""The global batch under DDP: a 2-process (gloo, CPU) run equals one process on the whole batch."""

from __future__ import annotations

import pytest
import torch
from helpers import run_gloo
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from specssl.core.distributed import gather_with_grad, world_size
from specssl.losses import CWRGPLoss, INTLLoss, WMSELoss

M, D_IN, D = 16, 12, 6  # global batch, input dim, embedding dim


def make_loss(name: str) -> nn.Module:
    return {
        "intl_channel": lambda: INTLLoss(T=4, axis="channel"),
        "intl_batch": lambda: INTLLoss(T=4, axis="batch"),
        "wmse": lambda: WMSELoss(),
        "cwrgp_fixed": lambda: CWRGPLoss(groups=2, random_groups=False),
    }[name]()


def data() -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(M, D_IN, generator=gen, dtype=torch.float64)
    x2 = x1 + 0.3 * torch.randn(M, D_IN, generator=gen, dtype=torch.float64)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(D_IN, 10), nn.Tanh(), nn.Linear(10, D)).double()
    return x1, x2, model


def single_process(loss_name: str) -> tuple[float, list[torch.Tensor]]:
    x1, x2, model = data()
    loss = make_loss(loss_name)(model(x1), model(x2))
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


LOSSES = ["intl_channel", "intl_batch", "wmse", "cwrgp_fixed"]


def _body(rank: int, size: int, out: dict) -> None:
    for loss_name in LOSSES:
        x1, x2, model = data()
        ddp = DistributedDataParallel(model)
        rows = slice(rank * M // size, (rank + 1) * M // size)
        z1 = gather_with_grad(ddp(x1[rows]))
        z2 = gather_with_grad(ddp(x2[rows]))
        assert world_size() == size and z1.shape == (M, D)
        loss = make_loss(loss_name)(z1, z2)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        out[(rank, loss_name)] = (loss.item(), grads)


@pytest.fixture(scope="module")
def two_rank_results() -> dict:
    """One 2-process gloo run computing every loss (spawning costs most of the time)."""
    return run_gloo(_body)


@pytest.mark.parametrize("loss_name", LOSSES)
def test_two_rank_loss_and_gradients_equal_one_rank_on_concatenated_batch(
    loss_name, two_rank_results
):
    ref_loss, ref_grads = single_process(loss_name)
    for rank in range(2):
        loss, grads = two_rank_results[(rank, loss_name)]
        assert loss == pytest.approx(ref_loss, abs=1e-10)
        for g, ref in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, ref, atol=1e-5, rtol=1e-5)


def test_gather_is_identity_without_process_group():
    z = torch.randn(4, 3, requires_grad=True)
    assert gather_with_grad(z) is z
