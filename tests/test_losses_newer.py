"""The newer spectral-family objectives: MEC, CorInfoMax, EMP-SSL's total coding rate, MMCR,
FroSSL, LeJEPA's SIGReg and ReSA.

Each loss is checked against an independent float64 transcription of its paper's formula in
the authors' semantics (:mod:`specssl.reference.newer`: other numerics wherever there is a
choice), value and gradient to ~1e-10; then against invariants of its formula; and each
method trains one step through the real training engine (tiny digits run, spectrum monitor
on, so the transform each method exposes is exercised).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from helpers import F64, TINY_RUN, make_views

from specssl.losses import (
    CorInfoMaxLoss,
    FroSSLLoss,
    MECLoss,
    MMCRLoss,
    ReSALoss,
    SIGRegLoss,
    TCRLoss,
    self_assignment,
    total_coding_rate,
)
from specssl.reference.newer import (
    ref_corinfomax,
    ref_emp_ssl,
    ref_frossl,
    ref_lejepa,
    ref_mec,
    ref_mmcr,
    ref_resa,
    ref_sinkhorn,
    ref_total_coding_rate,
)

TOL = {"rtol": 1e-10, "atol": 1e-12}

pytestmark = pytest.mark.usefixtures("one_thread")


def value_and_grads(fn, views: list[torch.Tensor]):
    leaves = [v.clone().requires_grad_() for v in views]
    value = fn(leaves)
    grads = torch.autograd.grad(value, leaves, allow_unused=True, materialize_grads=True)
    return value.detach(), grads


def assert_same(ours_fn, ref_fn, views: list[torch.Tensor]) -> torch.Tensor:
    """Value and gradient of ``ours_fn`` and ``ref_fn`` agree in float64; returns the value."""
    ours, our_grads = value_and_grads(ours_fn, views)
    ref, ref_grads = value_and_grads(ref_fn, views)
    assert ours.dtype == F64
    torch.testing.assert_close(ours, ref, **TOL)
    for g, r in zip(our_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, **TOL)
    assert any(g.abs().sum() > 0 for g in our_grads)
    return ref


def assert_differs(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> None:
    """``a`` and ``b`` differ by more than ``rel`` relative: a variant the test must see."""
    assert abs(float(a) - float(b)) > rel * max(abs(float(b)), 1e-3)


# ==================================================================================== MEC


@pytest.mark.parametrize(("n_views", "m", "d"), [(2, 24, 12), (2, 12, 24), (3, 16, 16)])
def test_mec_momentum_is_the_authors_loss(n_views, m, d) -> None:
    """Student predictions against EMA-teacher embeddings (the authors' ``loss_func`` over the
    ``m x m`` batch-wise matrix), also during the ``1/λ`` warm-up."""
    views = make_views(2 * n_views, m, d, seed=m + n_views)
    loss = MECLoss(eps_sq=64.0, order=4)

    def ours(vs):
        return loss.momentum(vs[:n_views], vs[n_views:])

    def ref(vs):
        return ref_mec(vs[n_views:], vs[:n_views], 64.0, 4)

    value = assert_same(ours, ref, views)
    result = loss.compute_momentum(views[:n_views], views[n_views:])
    assert torch.equal(result.loss, ours(views))
    terms = result.terms  # the authors' logged MEC = μ tr / m
    mu = (m + d) / 2
    torch.testing.assert_close(terms["coding_length"], -value * mu * d / (m * 64.0), **TOL)
    loss.lambda_inv_scale.fill_(5.0)  # mid warm-up
    warm = assert_same(ours, lambda vs: ref_mec(vs[n_views:], vs[:n_views], 64.0, 4, 5.0), views)
    assert_differs(warm, value)
    # the teacher side carries no gradient
    _, grads = value_and_grads(ours, views)
    assert all(torch.count_nonzero(g) == 0 for g in grads[n_views:])


@pytest.mark.parametrize(("order", "eps_sq"), [(1, 64.0), (4, 16.0), (6, 64.0)])
def test_mec_symmetric_form_is_the_mean_over_view_pairs(order, eps_sq) -> None:
    views = make_views(3, 20, 10, seed=order)
    assert_same(
        lambda vs: MECLoss(eps_sq, order)(vs),
        lambda vs: ref_mec(vs, vs, eps_sq, order, detach_teachers=False),
        views,
    )


def test_mec_taylor_series_converges_to_the_log_det() -> None:
    """Eqn. 3: ``tr Σ_k (-1)^{k+1}/k (λC)^k -> log det(I + λC)`` for ``‖λC‖₂ < 1``."""
    za, zb = make_views(2, 32, 16, seed=3, anisotropic=False)
    m, d = za.shape
    c = torch.nn.functional.normalize(za, dim=1) @ torch.nn.functional.normalize(zb, dim=1).T
    lam = 0.4 / torch.linalg.matrix_norm(c, ord=2)  # ‖λC‖₂ = 0.4: every order matters
    exact = torch.logdet(torch.eye(m, dtype=F64) + lam * c)
    errors = {}
    for order in (1, 2, 8, 30):
        value = MECLoss(eps_sq=float(d / (m * lam)), order=order)(za, zb)  # = -tr / (λ m)
        errors[order] = abs(float(-value * lam * m - exact))
    assert errors[30] < 1e-9 < 1e-3 < errors[1]
    assert errors[8] < errors[2] < errors[1]


def test_mec_lambda_warmup_follows_the_authors_schedule() -> None:
    """``lamda_inv`` falls linearly ``8/λ -> 1/λ`` over the warm-up steps (numpy
    ``linspace`` of the authors' ``lamda_scheduler``), then stays at ``1/λ``."""
    method = tiny_method("mec", options={"lambda_warmup": 0.5})
    assert float(method.loss_fn.lambda_inv_scale) == 8.0  # step 0
    total = 20
    expected = torch.linspace(8.0, 1.0, 10, dtype=F64).tolist() + [1.0] * 10
    got = [method.lambda_inv_scale(step, total) for step in range(total)]
    torch.testing.assert_close(torch.tensor(got, dtype=F64), torch.tensor(expected, dtype=F64))
    method.on_train_step_end(3, total)
    assert float(method.loss_fn.lambda_inv_scale) == pytest.approx(expected[3])


# ============================================================================= CorInfoMax


def test_corinfomax_matches_the_authors_loss_over_successive_steps() -> None:
    """Three steps thread the EMA estimates exactly as the authors' ``CovarianceLoss``: the
    value and gradient from the current estimates (eval mode: not updated), then a training
    call moves them to the reference's new estimates."""
    d, la_r, la_mu = 12, 0.3, 0.2
    loss = CorInfoMaxLoss(sim_weight=250.0, la_R=la_r, la_mu=la_mu, R_eps_weight=1e-8)
    R, mu = [torch.eye(d, dtype=F64)] * 2, [torch.zeros(d, dtype=F64)] * 2

    def ref(vs):
        return ref_corinfomax(vs, R, mu, 250.0, la_r, la_mu, 1e-8)[0]

    for step in range(3):
        views = make_views(2, 24, d, seed=10 + step)
        assert_same(lambda vs: loss.eval()(vs), ref, views)
        loss.train()(views)
        _, R, mu = ref_corinfomax(views, R, mu, 250.0, la_r, la_mu, 1e-8)
        torch.testing.assert_close(loss.R, torch.stack(R), **TOL)
        torch.testing.assert_close(loss.mu, torch.stack(mu), **TOL)
    assert_differs(loss.R[0, 0, 0], torch.tensor(1.0))


def test_corinfomax_state_updates_only_in_training_and_round_trips() -> None:
    views = make_views(2, 16, 6, seed=2, dtype=torch.float32)
    loss = CorInfoMaxLoss().eval()
    loss(views)
    torch.testing.assert_close(loss.R, torch.eye(6, dtype=F64).expand(2, 6, 6))  # unchanged
    loss.train()
    first = loss(views)
    assert loss.R.dtype == F64 and first.dtype == torch.float32
    fresh = CorInfoMaxLoss()  # empty estimates: loading takes the checkpoint's shapes
    fresh.load_state_dict(loss.state_dict())
    torch.testing.assert_close(fresh.R, loss.R)
    torch.testing.assert_close(fresh(views), loss(views))
    with pytest.raises(ValueError, match="3 views"):
        loss([*views, views[0]])


def test_corinfomax_method_check_allocates_the_estimates_without_moving_them() -> None:
    method = tiny_method("corinfomax")
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in method.projector.modules())
    method.check_loss(32, 2)
    torch.testing.assert_close(method.loss_fn.R, torch.eye(8, dtype=F64).expand(2, 8, 8))
    assert "loss_fn.R" in method.state_dict()


# ================================================================================ EMP-SSL


@pytest.mark.parametrize(("n", "m", "d"), [(4, 24, 12), (3, 10, 20), (2, 16, 16)])
def test_emp_ssl_loss_is_the_authors_objective(n, m, d) -> None:
    views = make_views(n, m, d, seed=n * m)
    assert_same(
        lambda vs: TCRLoss(eps_sq=0.2, inv_weight=200.0, tcr_weight=1.0)(vs),
        lambda vs: ref_emp_ssl(vs, 0.2, 200.0, 1.0),
        views,
    )
    assert_differs(TCRLoss(eps_sq=0.5)(views), ref_emp_ssl(views, 0.2, 200.0, 1.0))


@pytest.mark.parametrize(("m", "d"), [(30, 8), (8, 30)])
def test_total_coding_rate_is_the_d_by_d_log_det_on_either_side(m, d) -> None:
    (z,) = make_views(1, m, d, seed=m)
    assert_same(
        lambda vs: total_coding_rate(vs[0], 0.3), lambda vs: ref_total_coding_rate(vs[0], 0.3), [z]
    )


# =================================================================================== MMCR


@pytest.mark.parametrize(("lmbda", "n_views", "m", "d"), [(0.0, 3, 20, 10), (0.5, 4, 10, 20)])
def test_mmcr_loss_is_the_authors_nuclear_norm_objective(lmbda, n_views, m, d) -> None:
    views = make_views(n_views, m, d, seed=n_views)
    assert_same(lambda vs: MMCRLoss(lmbda)(vs), lambda vs: ref_mmcr(vs, lmbda), views)
    if lmbda:
        assert_differs(MMCRLoss(0.0)(views), ref_mmcr(views, lmbda))


# ================================================================================= FroSSL


@pytest.mark.parametrize(("n_views", "m", "d", "w"), [(2, 24, 12, 1.0), (4, 10, 20, 0.5)])
def test_frossl_loss_is_the_authors_multiview_objective(n_views, m, d, w) -> None:
    views = make_views(n_views, m, d, seed=7 * n_views)
    assert_same(lambda vs: FroSSLLoss(w)(vs), lambda vs: ref_frossl(vs, w), views)


def test_frossl_is_invariant_to_the_scale_of_each_embedding_dimension() -> None:
    views = make_views(2, 16, 8, seed=1)
    scales = torch.linspace(0.1, 10.0, 8, dtype=F64)
    torch.testing.assert_close(FroSSLLoss()([v * scales for v in views]), FroSSLLoss()(views))


# ================================================================================= LeJEPA


def unit_directions(d: int, k: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, k, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return a / a.norm(dim=0)


@pytest.mark.parametrize(
    ("n_views", "lamb", "knots", "centre"),
    [(2, 0.02, 17, None), (4, 0.5, 9, None), (4, 0.1, 17, 2)],
)
def test_lejepa_loss_is_sigreg_plus_the_prediction_term(n_views, lamb, knots, centre) -> None:
    """With the centre the mean of *all* views its gradient path is zero (``Σ_v (μ - z_v) =
    0``); with the centre of the first two views (the paper's global views) it is not."""
    views = make_views(n_views, 32, 10, seed=n_views)
    a = unit_directions(10, 64, seed=1)
    loss = SIGRegLoss(lamb=lamb, num_slices=64, t_max=3.0, knots=knots, centre_views=centre)
    assert_same(
        lambda vs: loss(vs, directions=a),
        lambda vs: ref_lejepa(vs, a, lamb, 3.0, knots, centre_views=centre),
        views,
    )


def test_sigreg_slices_are_redrawn_each_call_from_the_torch_generator() -> None:
    views = make_views(2, 64, 8, seed=5)
    loss = SIGRegLoss(lamb=1.0, num_slices=32)
    torch.manual_seed(11)
    first, second = loss(views), loss(views)
    torch.manual_seed(11)
    again = loss(views)
    torch.manual_seed(11)
    drawn = loss.draw_directions(8)
    assert drawn.shape == (8, 32) and torch.allclose(drawn.norm(dim=0), torch.ones(32))
    torch.testing.assert_close(again, first)
    torch.testing.assert_close(loss(views, directions=drawn.double()), first)
    assert_differs(second, first, rel=1e-6)


def test_sigreg_is_small_for_an_isotropic_gaussian_and_large_otherwise() -> None:
    g = torch.Generator().manual_seed(0)
    gauss = torch.randn(2048, 16, generator=g, dtype=F64)
    loss = SIGRegLoss(lamb=1.0, num_slices=128)
    a = unit_directions(16, 128, seed=2)
    iso = loss(gauss, gauss, directions=a)
    assert iso < 3  # under the null E[N · EP] -> ∫ (1 - e^{-t²}) e^{-t²/2} dt ≈ 1.06
    collapsed = gauss * (torch.arange(16) < 2)  # dimensional collapse to 2 of 16 dimensions
    for bad in (gauss * 3, gauss + 1, collapsed):  # wrong scale, wrong mean, collapsed
        assert loss(bad, bad, directions=a) > 10 * iso
    # the centre of the first view only (the paper's global views)
    va, vb = make_views(2, 8, 4, seed=4)
    centred = SIGRegLoss(lamb=0.0, centre_views=1)(va, vb)
    torch.testing.assert_close(centred, ((va - vb) ** 2).mean() / 2)


# =================================================================================== ReSA


def test_resa_assignment_is_the_authors_sinkhorn() -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.nn.functional.normalize(torch.randn(24, 16, generator=g, dtype=F64), dim=1)
    scores = h @ (h + 0.2 * torch.randn(24, 16, generator=g, dtype=F64)).T
    ours = self_assignment(scores, 0.05, 3)
    torch.testing.assert_close(ours, ref_sinkhorn(scores, 0.05, 3), **TOL)
    torch.testing.assert_close(ours.sum(dim=1), torch.ones(24, dtype=F64), **TOL)
    assert (self_assignment(scores, 0.05, 1) - ours).abs().max() > 1e-4  # iterations count


@pytest.mark.parametrize(("n_online", "m"), [(2, 24), (4, 16)])
def test_resa_momentum_loss_is_the_authors_loss(n_online, m) -> None:
    views = make_views(n_online + 2, m, 12, seed=n_online)
    g = torch.Generator().manual_seed(m)
    h = torch.randn(m, 20, generator=g, dtype=F64)
    h_m = h + 0.3 * torch.randn(m, 20, generator=g, dtype=F64)
    loss = ReSALoss(temperature=0.4)

    def ours(vs):
        return loss.momentum(vs[:n_online], vs[n_online:], h, h_m)

    def ref(vs):
        return ref_resa(vs[:n_online], vs[n_online:], h, h_m, 0.4)

    assert_same(ours, ref, views)
    _, grads = value_and_grads(ours, views)
    assert all(torch.count_nonzero(gr) == 0 for gr in grads[n_online:])  # targets: no gradient
    assert_differs(
        ReSALoss(temperature=0.2).momentum(views[:n_online], views[n_online:], h, h_m), ref(views)
    )


def test_resa_without_ema_pairs_the_online_views_with_each_other() -> None:
    views = make_views(3, 16, 12, seed=9)
    h = torch.randn(16, 10, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert_same(
        lambda vs: ReSALoss()(vs, encoding=h),
        lambda vs: ref_resa(vs, vs, h, h, 0.4, detach_targets=False),
        views,
    )


# ======================================================================= shared behaviour


LOSSES = {
    "mec": MECLoss,
    "corinfomax": CorInfoMaxLoss,
    "tcr": TCRLoss,
    "mmcr": lambda: MMCRLoss(0.5),
    "frossl": FroSSLLoss,
    "sigreg": lambda: SIGRegLoss(num_slices=16),
    "resa": ReSALoss,
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_half_precision_inputs_give_the_float32_value(name) -> None:
    """bf16 views under bf16 autocast: the math runs in float32 (the float32 value of the same
    rounded views), the result is float32, the named terms are detached."""
    views = [v.bfloat16() for v in make_views(3, 32, 8, seed=1, dtype=torch.float32)]
    loss = LOSSES[name]()
    twin = copy.deepcopy(loss)  # CorInfoMax: the same starting estimates
    torch.manual_seed(0)  # SIGReg: the same slices
    ref = twin([v.float() for v in views])
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = loss.compute(views)
    got = result.loss
    assert got.dtype == torch.float32 and math.isfinite(float(got))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert result.terms and all(not t.requires_grad for t in result.terms.values())


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_bad_views_are_one_line_errors(name) -> None:
    loss = LOSSES[name]()
    with pytest.raises(ValueError, match="at least 2 views"):
        loss([torch.randn(8, 4)])
    with pytest.raises(ValueError, match="non-finite"):
        loss(torch.randn(8, 4), torch.full((8, 4), float("nan")))


# ============================================================= methods: one training step


def tiny_method(name: str, **cfg):
    from specssl.methods import build_method
    from specssl.methods.config import MethodConfig
    from specssl.models import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone("resnet18", cifar_stem=True, width=4)
    return build_method(
        backbone, MethodConfig(name=name, proj_hidden_dim=16, proj_output_dim=8, **cfg)
    )


#: per method: extra overrides (views per image) of the tiny digits run
SMOKE = {
    "mec": [],
    "corinfomax": [],
    "emp_ssl": ["data.num_views=4"],
    "mmcr": ["data.num_views=3"],
    "frossl": ["data.num_views=3"],
    "lejepa": ["data.num_views=3", "method.loss={num_slices: 32}"],
    "resa": ["data.num_views=3"],
}


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_method_trains_through_the_engine_with_its_spectrum(name, tmp_path) -> None:
    from specssl.train.config import load_config
    from specssl.train.run import pretrain

    overrides = [
        *TINY_RUN,
        "data.subset=64",
        "data.batch_size=32",
        "data.val_subset=32",
        "trainer.max_epochs=1",
        "monitor.knn_every=0",
        "monitor.knn_on_init=false",
        "monitor.spectrum_every=1",
        "monitor.spectrum_samples=64",
        "monitor.spectrum_plots=false",
        f"method.name={name}",
        *SMOKE[name],
        f"output_dir={tmp_path}",
        "run_name=run",
    ]
    result = pretrain(load_config(None, overrides), logger=False)
    assert result.steps == 2
    assert 0 <= result.spectrum["z/stable_rank"] <= 1
    transform_expected = name != "lejepa"  # SIGReg acts on the raw projector output
    assert ("zhat/stable_rank" in result.spectrum) == transform_expected
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    weights = ckpt["state_dict"]
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    if name == "corinfomax":  # the EMA estimates travel with the checkpoint
        assert weights["method.loss_fn.R"].shape == (2, 16, 16)
