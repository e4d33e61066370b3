"""The loss contract: ``compute`` returns the value with its terms, ``forward`` the value alone;
methods log the terms (averaged over view pairs) and take ``Ẑ`` from their loss."""

from __future__ import annotations

from itertools import permutations

import pytest
import torch
import torch.nn.functional as F

import specssl.losses as losses
from specssl.losses import LossResult, SSLLoss, mean_result
from specssl.losses.barlow import batch_standardize
from specssl.methods import METHODS, build_method
from specssl.methods.momentum import MomentumMethod
from specssl.models import build_backbone
from specssl.spectral import iternorm, power_transform, whiten
from specssl.train.config import MethodConfig

F64 = torch.float64


def _views(n: int, m: int = 16, d: int = 8, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(m, d, generator=g, dtype=F64)
    return [base + 0.5 * torch.randn(m, d, generator=g, dtype=F64) for _ in range(n)]


def _loss_calls() -> dict[str, tuple[SSLLoss, tuple, dict]]:
    """Every exported loss with arguments of its call signature."""
    z = _views(3)
    queue = torch.randn(5, 8, dtype=F64, generator=torch.Generator().manual_seed(1))
    calls: dict[str, tuple[SSLLoss, tuple, dict]] = {
        "NegativeCosineLoss": (losses.NegativeCosineLoss(), (z[0], z[1]), {}),
        "MoCoLoss": (losses.MoCoLoss(), (z[0], z[1], queue), {}),
        "DINOLoss": (losses.DINOLoss(out_dim=8), (z[:2], z), {"epoch": 0}),
        "SwAVLoss": (losses.SwAVLoss(), (z[:2],), {"small_views": z[2:]}),
        "ReSALoss": (losses.ReSALoss(), (*z,), {"encoding": z[0] * 2}),
        "CWRGPLoss": (losses.CWRGPLoss(groups=2), (*z,), {}),
        "WMSELoss": (losses.WMSELoss(w_size=16), (*z,), {}),
    }
    for name in losses.__all__:
        cls = getattr(losses, name)
        is_loss = isinstance(cls, type) and issubclass(cls, SSLLoss) and cls is not SSLLoss
        if is_loss and name not in calls:
            calls[name] = (cls(), (*z,), {})
    return calls


CALLS = _loss_calls()


def test_every_exported_loss_is_an_ssl_loss():
    exported = {n for n in losses.__all__ if n.endswith("Loss") and n != "SSLLoss"}
    assert exported == set(CALLS)
    assert all(issubclass(getattr(losses, n), SSLLoss) for n in exported)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_forward_is_compute_loss_and_terms_are_detached(name):
    loss, args, kwargs = CALLS[name]
    loss.eval()  # stateful losses (CorInfoMax, DINO) do not move their estimates
    torch.manual_seed(3)  # SIGReg's slices, W-MSE's / Shuffled-DBN's permutations
    value = loss(*args, **kwargs)
    torch.manual_seed(3)
    result = loss.compute(*args, **kwargs)
    assert isinstance(result, LossResult) and isinstance(value, torch.Tensor)
    assert torch.equal(value, result.loss) and value.ndim == 0
    assert all(not t.requires_grad and t.ndim == 0 for t in result.terms.values())
    assert not hasattr(loss, "last_terms")  # no side channel


def test_mean_result_averages_the_loss_and_every_term():
    a = LossResult(torch.tensor(1.0), {"x": torch.tensor(2.0), "y": torch.tensor(4.0)})
    b = LossResult(torch.tensor(3.0), {"x": torch.tensor(6.0), "y": torch.tensor(-1.0)})
    got = mean_result([a, b])
    assert got.loss.item() == 2.0
    assert got.terms["x"].item() == 4.0 and got.terms["y"].item() == 1.5
    with pytest.raises(ValueError, match="at least one"):
        mean_result([])


# ===================================================================== methods


def tiny(name: str, **options):
    torch.manual_seed(0)
    loss = {"intl": {"T": 4}, "intl_m": {"T": 4}, "cwrgp": {"groups": 2}}.get(name, {})
    if name == "wmse":
        loss = {"w_size": 16}
    cfg = MethodConfig(
        name=name,
        proj_hidden_dim=16,
        proj_output_dim=8,
        proj_layers=2,
        loss=loss,
        options=options,
    )
    return build_method(build_backbone("resnet18", cifar_stem=True, width=4), cfg)


def _images(n: int, b: int = 16) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return [torch.randn(b, 3, 16, 16, generator=g) for _ in range(n)]


def _assert_terms(got: dict, expected: dict) -> None:
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value)


def test_intl_m_symmetric_logs_the_mean_terms_over_all_view_pairs():
    method = tiny("intl_m", pairing="symmetric")
    views = _images(3)
    out = method(views)
    targets = method.target_embed(views)  # train-mode BN: the same batch statistics
    pairs = [
        method.loss_fn.compute(out.embeddings[i], targets[j]) for i, j in permutations(range(3), 2)
    ]
    expected = mean_result(pairs)
    torch.testing.assert_close(out.loss, expected.loss)
    _assert_terms(out.terms, expected.terms)
    last = pairs[-1].terms["invariance"]
    assert not torch.allclose(out.terms["invariance"], last)  # not the last pair's terms


def test_intl_m_view0_target_logs_the_momentum_terms():
    method = tiny("intl_m")
    views = _images(3)
    out = method(views)
    target = method.target_embed(views[:1])[0]
    expected = method.loss_fn.compute_momentum(out.embeddings, target)
    torch.testing.assert_close(out.loss, expected.loss)
    _assert_terms(out.terms, expected.terms)
    assert set(out.terms) == {"invariance", "trace", "tau"}


def test_mocov2_is_a_momentum_method():
    method = tiny("mocov2", queue_size=20)
    assert isinstance(method, MomentumMethod)
    assert [t for t, _ in method.momentum_pairs()] == [
        method.target_backbone,
        method.target_projector,
    ]


#: ``Ẑ`` of each method as the spectrum monitor measured it before the losses carried it
#: (written out from the spectral layer; SwAV's normalisation lives in the method).
EXPECTED_ZHAT = {
    "intl": lambda loss, z: iternorm(z, T=loss.T, axis=loss.axis, groups=loss.groups),
    "intl_m": lambda loss, z: iternorm(z, T=loss.T, axis=loss.axis, groups=loss.groups),
    "iternorm": lambda loss, z: iternorm(z, T=loss.T, axis=loss.axis, groups=loss.groups),
    "st_power": lambda loss, z: power_transform(z, loss.p, loss.axis, loss.eps, groups=1),
    "wmse": lambda loss, z: whiten(z, loss.method, loss.axis, eps=loss.eps),
    "barlow_twins": lambda loss, z: batch_standardize(z, eps=loss.eps),
    "frossl": lambda loss, z: F.normalize(z, dim=0),
    "swav": lambda loss, z: F.normalize(z, dim=1),
    **{
        name: (lambda loss, z: F.normalize(z, dim=-1))
        for name in ("mec", "corinfomax", "emp_ssl", "mmcr", "resa")
    },
}
RANDOMISED = {"cwrgp", "shuffled_dbn", "zero_cl"}  # checked against the loss's own transform
NO_ZHAT = {"simclr", "mocov2", "vicreg", "byol", "simsiam", "dino", "lejepa"}


def test_the_zhat_tables_cover_every_method():
    assert set(EXPECTED_ZHAT) | RANDOMISED | NO_ZHAT == set(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_zhat_is_its_loss_spectral_transform(name):
    method = tiny(name)
    transform = method.spectral_transform()
    if name in NO_ZHAT:
        assert transform is None and method.loss_fn.spectral_transform() is None
        return
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(5)
    got = transform(z)
    assert got.shape == z.shape and torch.isfinite(got).all()
    if name in EXPECTED_ZHAT:
        torch.testing.assert_close(got, EXPECTED_ZHAT[name](method.loss_fn, z))
    else:
        torch.manual_seed(5)
        torch.testing.assert_close(got, method.loss_fn.spectral_transform()(z))
    if name != "swav":  # SwAV normalises before its prototypes, outside the loss
        torch.manual_seed(5)
        torch.testing.assert_close(got, method.loss_fn.spectral_transform()(z))


def test_monitored_transform_follows_the_plain_iteration():
    """Ẑ of the monitor is what the loss whitens with: the plain Eqn. 3 form when asked (it
    differs from the coupled form where the iteration has not converged)."""
    from specssl.losses import INTLLoss
    from specssl.spectral.iternorm import iternorm

    z = torch.randn(64, 16, dtype=torch.float64) @ torch.diag(torch.logspace(0, -3, 16)).double()
    loss = INTLLoss(T=14, axis="batch", iteration="plain")
    plain = iternorm(z, 14, "batch", iteration="plain")
    coupled = iternorm(z, 14, "batch", iteration="coupled")
    assert not torch.allclose(plain, coupled)
    torch.testing.assert_close(loss.spectral_transform()(z), plain)
    torch.testing.assert_close(loss.whiten(z), plain)
