"""LARS and the warm-up cosine schedule against hand-computed single steps."""

from __future__ import annotations

import math

import pytest
import torch

from specssl.train.optim import LARS, warmup_cosine

ETA, WD = 0.02, 1e-4


def one_step(lr: float, clip_lr: bool, weight: torch.Tensor, grad: torch.Tensor, **group):
    p = torch.nn.Parameter(weight.clone())
    opt = LARS([{"params": [p], "weight_decay": WD, **group}], lr=lr, eta=ETA, clip_lr=clip_lr)
    p.grad = grad.clone()
    opt.step()
    return weight - p.detach()  # the step taken


@pytest.mark.parametrize("clip_lr", [False, True])
@pytest.mark.parametrize("lr", [0.3, 1e-4])
def test_lars_step_matches_the_trust_ratio_formula(lr, clip_lr):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    g = 5 * torch.randn(6, 4, generator=gen, dtype=torch.float64)
    trust = ETA * w.norm() / (g.norm() + WD * w.norm())
    factor = min(trust / lr, 1.0) if clip_lr else trust
    expected = lr * factor * (g + WD * w)
    torch.testing.assert_close(one_step(lr, clip_lr, w, g), expected, rtol=1e-6, atol=1e-9)


def test_lars_clip_makes_the_step_min_of_trust_and_lr():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(8, generator=gen, dtype=torch.float64)
    g = torch.randn(8, generator=gen, dtype=torch.float64)
    trust = float(ETA * w.norm() / (g.norm() + WD * w.norm()))
    lr = 0.3
    assert trust < lr  # the regime where clipping enlarges the step by 1 / lr
    clipped, plain = one_step(lr, True, w, g), one_step(lr, False, w, g)
    torch.testing.assert_close(clipped, plain / lr, rtol=1e-5, atol=1e-9)


def test_lars_excluded_groups_and_zero_norm_parameters_take_the_plain_sgd_step():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(5, generator=gen, dtype=torch.float64)
    g = torch.randn(5, generator=gen, dtype=torch.float64)
    excluded = one_step(0.3, True, w, g, lars_exclude=True)
    torch.testing.assert_close(excluded, 0.3 * (g + WD * w))
    zeros = torch.zeros(5, dtype=torch.float64)
    torch.testing.assert_close(one_step(0.3, False, zeros, g), 0.3 * g)


def test_warmup_cosine_endpoints():
    assert warmup_cosine(0, 100, 10) < warmup_cosine(9, 100, 10) <= 1.0
    assert math.isclose(warmup_cosine(10, 100, 10), 1.0, rel_tol=1e-9)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("clip_lr", [False, True])
def test_lars_with_a_closure_scales_the_gradients_the_closure_computes(clip_lr):
    """Lightning calls ``optimizer.step(closure)`` with gradients still unset; the trust ratio
    must come from the gradients the closure computes (it once did not: LARS was plain SGD)."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    x = torch.randn(10, 4, generator=gen, dtype=torch.float64)
    p = torch.nn.Parameter(w.clone())
    opt = LARS([{"params": [p], "weight_decay": WD}], lr=0.3, eta=ETA, clip_lr=clip_lr)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = (x @ p.T).pow(2).sum()
        loss.backward()
        return loss

    grad = torch.autograd.functional.jacobian(lambda v: (x @ v.T).pow(2).sum(), w)
    loss = opt.step(closure)
    assert loss is not None
    torch.testing.assert_close(w - p.detach(), one_step(0.3, clip_lr, w, grad), rtol=1e-7, atol=0)


def test_static_lr_groups_keep_the_base_lr_while_the_rest_follows_the_schedule():
    from torch import nn

    from specssl.train.config import ConfigError, OptimConfig
    from specssl.train.optim import build_optimizer, lr_multipliers

    method = nn.ModuleDict({"projector": nn.Linear(4, 4), "predictor": nn.Linear(4, 4)})
    cfg = OptimConfig(name="sgd", exclude_bias_and_norm=True, static_lr=["predictor"])
    opt = build_optimizer(method, nn.Linear(4, 2), cfg, lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multipliers(opt, total=10, warmup=2))
    lrs = {id(p): [] for p in method.parameters()}
    for _ in range(10):
        for g in opt.param_groups:
            for p in g["params"]:
                if id(p) in lrs:
                    lrs[id(p)].append(g["lr"])
        opt.step()
        sched.step()
    expected = [0.5 * warmup_cosine(s, 10, 2) for s in range(10)]
    for p in method["projector"].parameters():
        assert lrs[id(p)] == pytest.approx(expected)
    for p in method["predictor"].parameters():
        assert lrs[id(p)] == [0.5] * 10
    # weight decay split kept inside the static sub-module
    decays = {(g.get("static_lr", False), g["weight_decay"]) for g in opt.param_groups[:-1]}
    assert decays == {
        (False, cfg.weight_decay),
        (False, 0.0),
        (True, cfg.weight_decay),
        (True, 0.0),
    }
    with pytest.raises(ConfigError, match=r"optim\.static_lr.*'head'"):
        build_optimizer(method, nn.Linear(4, 2), OptimConfig(static_lr=["head"]), lr=0.5)
