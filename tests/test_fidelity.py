"""Fidelity to the authors' code: INTL / INTL-M multi-view pairing, CW-RGP centring and
permutations, and which views share a BatchNorm batch.

The references (:mod:`specssl.reference.authors`) follow the authors' semantics (winci-ai/INTL
``methods/intl.py``, ``methods/intl_m.py``, ``methods/whitening.py``; winci-ai/CW-RGP
``base/methods/whitening.py``, ``base/methods/cwrgp.py``), in float64, with plain loops and
the plain Newton iteration / an eigendecomposition — not with the library's spectral code.
Each test also checks that the library's earlier behaviour (kept as an explicit option) does
*not* match, i.e. the test fails when that behaviour is planted back as the default.
"""

from __future__ import annotations

import pytest
import torch
from helpers import F64, make_views
from torch import nn

from specssl.losses import CWRGPLoss, INTLLoss
from specssl.methods import INTL, INTLM, WMSE
from specssl.reference.authors import authors_cwrgp, authors_intl, authors_intl_m
from specssl.train.config import MethodConfig

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _value_and_grads(fn, views):
    leaves = [v.clone().requires_grad_() for v in views]
    value = fn(leaves)
    grads = torch.autograd.grad(value, leaves, allow_unused=True, materialize_grads=True)
    return value.detach(), grads


@pytest.mark.parametrize("n_views", [2, 3, 4, 6])
def test_intl_loss_is_the_authors_pairing_for_any_number_of_views(n_views) -> None:
    views = make_views(n_views, 32, 48, seed=n_views)  # m = 32: β = 0.02 by the authors' rule
    ours, our_grads = _value_and_grads(lambda vs: INTLLoss(T=4)(vs), views)
    ref, ref_grads = _value_and_grads(lambda vs: authors_intl(vs, 4), views)
    torch.testing.assert_close(ours, ref, **TOL)
    for g, r in zip(our_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, **TOL)
    # planted: the earlier all-pairs form differs from three views on
    earlier = INTLLoss(T=4, pairing="all_pairs")(views).detach()
    if n_views == 2:
        torch.testing.assert_close(earlier, ref, **TOL)
    else:
        assert abs(earlier.item() - ref.item()) > 1e-3 * abs(ref.item())


@pytest.mark.parametrize("n_views", [2, 3, 4, 6])
def test_intl_m_loss_is_the_authors_momentum_form(n_views) -> None:
    views = make_views(n_views, 32, 48, seed=100 + n_views)
    target = views[0] * 1.1 + 0.05  # a different (EMA) network's embedding of view 0

    def ours_fn(vs):
        return INTLLoss(T=4).momentum(vs[1:], target)

    def ref_fn(vs):
        return authors_intl_m(vs[1:], target, 4)

    ours, our_grads = _value_and_grads(ours_fn, views)
    ref, ref_grads = _value_and_grads(ref_fn, views)
    torch.testing.assert_close(ours, ref, **TOL)
    for g, r in zip(our_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, **TOL)
    assert torch.count_nonzero(our_grads[0]) == 0  # view 0 only feeds the target


# --------------------------------------------------------- INTL-M as a method (view routing)


class TinyBackbone(nn.Module):
    """Flatten -> Linear -> BatchNorm -> ReLU: enough to see which images share BN stats."""

    def __init__(self, in_dim: int = 3 * 4 * 4, out_dim: int = 12) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.ReLU()
        )
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _images(n_views: int, batch: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, 4, 4, generator=g, dtype=F64) for _ in range(n_views)]


def _method(cls, **cfg):
    torch.manual_seed(0)
    config = MethodConfig(
        name=cls.name, proj_hidden_dim=16, proj_output_dim=20, proj_layers=2, **cfg
    )
    return cls(TinyBackbone(), config).double().train()


@pytest.mark.parametrize("n_views", [2, 4])
def test_intl_m_routes_view0_to_the_target_and_the_rest_to_the_online_network(n_views) -> None:
    method = _method(INTLM, loss={"T": 4})
    with torch.no_grad():  # make the target differ from the online network
        for p in method.target_projector.parameters():
            p.mul_(0.9).add_(0.01)
    images = _images(n_views, 16, seed=n_views)
    out = method(images)
    online = [method.projector(method.backbone(x)) for x in images[1:]]  # one view per BN batch
    with torch.no_grad():
        target = method.target_projector(method.target_backbone(images[0]))
    expected = authors_intl_m(online, target, 4)
    torch.testing.assert_close(out.loss, expected, **TOL)
    params = list(method.projector.parameters())
    ours = torch.autograd.grad(out.loss, params)
    ref = torch.autograd.grad(expected, params)
    for g, r in zip(ours, ref, strict=True):
        torch.testing.assert_close(g, r, **TOL)
    # planted: the earlier symmetric form (every view online and target) differs
    method.options["pairing"] = "symmetric"
    assert abs(method(images).loss.item() - expected.item()) > 1e-3


# ------------------------------------------------------------------- authors' CW-RGP, float64


class PermutationLog:
    """Wraps ``torch.randperm`` to record every permutation the loss draws, in order."""

    def __init__(self, monkeypatch) -> None:
        self.drawn: list[torch.Tensor] = []
        original = torch.randperm

        def randperm(n, *args, **kwargs):
            perm = original(n, *args, **kwargs)
            self.drawn.append(perm.clone())
            return perm

        monkeypatch.setattr(torch, "randperm", randperm)


@pytest.mark.parametrize("n_views", [2, 3, 4, 6])
def test_cwrgp_centres_once_and_permutes_per_sub_batch_and_view(n_views, monkeypatch) -> None:
    views = make_views(n_views, 16, 32, seed=200 + n_views)  # w = 8 <= d/g = 16: full rank
    log = PermutationLog(monkeypatch)
    loss = CWRGPLoss(groups=2, w_size=8, w_iter=2)
    leaves = [v.clone().requires_grad_() for v in views]
    torch.manual_seed(3)
    ours = loss(leaves)
    our_grads = torch.autograd.grad(ours, leaves)
    assert len(log.drawn) == 2 * (1 + n_views * 2)  # rounds x (rows + views x sub-batches)
    ref_leaves = [v.clone().requires_grad_() for v in views]
    ref = authors_cwrgp(ref_leaves, 2, 8, 2, log.drawn)
    ref_grads = torch.autograd.grad(ref, ref_leaves)
    torch.testing.assert_close(ours.detach(), ref.detach(), **TOL)
    for g, r in zip(our_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, **TOL)


def test_cwrgp_earlier_forms_differ_from_the_authors(monkeypatch) -> None:
    """Planted checks: per-group centring changes the value; one permutation per view shares
    it across sub-batches (fewer draws, so the authors' sequence cannot be followed)."""
    views = make_views(2, 16, 32, seed=7)
    log = PermutationLog(monkeypatch)
    torch.manual_seed(3)
    authors = CWRGPLoss(groups=2, w_size=8)(views)
    n_authors = len(log.drawn)
    torch.manual_seed(3)
    group_centred = CWRGPLoss(groups=2, w_size=8, centre="group")(views)
    assert abs(group_centred.item() - authors.item()) > 1e-4
    log.drawn.clear()
    CWRGPLoss(groups=2, w_size=8, permute="per_view")(views)
    assert len(log.drawn) == 1 + 2 < n_authors


# ------------------------------------------------------------ which views share a BN batch


@pytest.mark.parametrize(
    "cls,forward,expected",
    [
        (INTL, "auto", "per_view"),
        (WMSE, "auto", "backbone_per_view"),
        (INTL, "joint", "joint"),
        (WMSE, "per_view", "per_view"),
    ],
)
def test_forward_mode_defaults_to_the_authors_and_can_be_set(cls, forward, expected) -> None:
    assert _method(cls, forward=forward).forward_mode == expected


def test_per_view_forward_normalises_each_view_with_its_own_statistics() -> None:
    images = _images(3, 8, seed=1)
    per_view = _method(INTL, forward="per_view")
    feats, z = per_view.embed(images)
    for x, f, e in zip(images, feats, z, strict=True):
        torch.testing.assert_close(f, per_view.backbone(x), **TOL)
        torch.testing.assert_close(e, per_view.projector(per_view.backbone(x)), **TOL)
    head_joint = _method(WMSE)  # backbone per view, projector on all views at once
    feats, z = head_joint.embed(images)
    torch.testing.assert_close(feats[1], head_joint.backbone(images[1]), **TOL)
    torch.testing.assert_close(torch.cat(z), head_joint.projector(torch.cat(feats)), **TOL)
    assert not torch.allclose(z[1], head_joint.projector(feats[1]))
    joint = _method(INTL, forward="joint")  # the earlier behaviour: one BN batch of all views
    feats, _ = joint.embed(images)
    torch.testing.assert_close(torch.cat(feats), joint.backbone(torch.cat(images)), **TOL)
    assert not torch.allclose(feats[0], joint.backbone(images[0]))
