"""Barlow Twins, VICReg and SwAV: losses against float64 transcriptions of the papers, invariants,
lightly as an outside reference, the Sinkhorn codes under 2-process DDP, and the methods.

The references below are written from the papers' equations in numpy float64 and share no code
with ``specssl/losses``: Barlow Twins Eqn. 2 in its cosine form, VICReg Eqns. 1-6 with
``np.cov``, SwAV's Sinkhorn-Knopp (Algorithm 1, without the max shift) and Eqns. 1-2.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import make_views as shared_views
from helpers import run_gloo
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from specssl.core.distributed import gather_with_grad
from specssl.losses import BarlowTwinsLoss, SwAVLoss, VICRegLoss, sinkhorn_knopp
from specssl.train.config import ConfigError, MethodConfig

# specssl.methods / specssl.models (torchvision) are imported inside the method tests only: the
# spawned DDP workers import this module, and keeping them light keeps the spawn fast.

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def make_views(n_views: int, m: int, d: int, seed: int, noise: float = 0.5, dtype=F64):
    return shared_views(n_views, m, d, seed, noise, dtype, min_scale=0.3)


def make_scores(n_views: int, b: int, k: int, dim: int, seed: int, dtype=F64):
    """Cosine prototype scores ``(b, k)`` per view: unit embeddings times unit prototypes."""
    g = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(k, dim, generator=g, dtype=F64), dim=1)
    base = torch.randn(b, dim, generator=g, dtype=F64)
    views = []
    for _ in range(n_views):
        z = F.normalize(base + 0.7 * torch.randn(b, dim, generator=g, dtype=F64), dim=1)
        views.append((z @ protos.T).to(dtype))
    return views


# =========================================================================== references


def ref_barlow(za: torch.Tensor, zb: torch.Tensor, lam: float) -> float:
    """Barlow Twins Eqns. 1-2: C_ij = Σ_b a_bi b_bj / (‖a_i‖ ‖b_j‖) of batch-centred columns."""
    a, b = za.detach().numpy().astype(np.float64), zb.detach().numpy().astype(np.float64)
    a, b = a - a.mean(0), b - b.mean(0)
    c = (a.T @ b) / np.outer(np.sqrt((a**2).sum(0)), np.sqrt((b**2).sum(0)))
    d = c.shape[0]
    on = sum((1 - c[i, i]) ** 2 for i in range(d))
    off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    return on + lam * off


def ref_vicreg_terms(za, zb, eps: float, gamma: float = 1.0) -> tuple[float, float, float]:
    """VICReg Eqns. 1-5 (``s`` as Algorithm 1's mse): returns s, v(Z)+v(Z'), c(Z)+c(Z')."""
    a, b = za.detach().numpy().astype(np.float64), zb.detach().numpy().astype(np.float64)
    n, d = a.shape
    s = float(((a - b) ** 2).sum() / (n * d))

    def v(z):
        var = ((z - z.mean(0)) ** 2).sum(0) / (n - 1)
        return float(np.maximum(0.0, gamma - np.sqrt(var + eps)).mean())

    def c(z):
        cov = np.cov(z, rowvar=False)
        return float((cov**2).sum() - (np.diag(cov) ** 2).sum()) / d

    return s, v(a) + v(b), c(a) + c(b)


def ref_sinkhorn(scores: torch.Tensor, n_iters: int, eps: float) -> np.ndarray:
    """SwAV Algorithm 1 in numpy float64, unshifted: returns B · Qᵀ, shape (B, K)."""
    q = np.exp(scores.detach().numpy().astype(np.float64) / eps).T  # (K, B)
    k, b = q.shape
    q /= q.sum()
    for _ in range(n_iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    return (q * b).T


def ref_swav(large, small, temperature: float, n_iters: int, eps: float) -> float:
    """SwAV Eqns. 1-2 with multi-crop: teachers are the large views, mean over (teacher,
    student ≠ teacher) per teacher, then over teachers."""
    views = [v.detach().numpy().astype(np.float64) for v in list(large) + list(small)]
    total = 0.0
    for s in range(len(large)):
        q = ref_sinkhorn(large[s], n_iters, eps)
        sub = 0.0
        for v, p in enumerate(views):
            if v == s:
                continue
            x = p / temperature
            mx = x.max(axis=1, keepdims=True)
            log_p = x - (mx + np.log(np.exp(x - mx).sum(axis=1, keepdims=True)))
            sub += -(q * log_p).sum(axis=1).mean()
        total += sub / (len(views) - 1)
    return total / len(large)


# =========================================================================== Barlow Twins


def test_barlow_matches_eqn2_transcription_for_two_and_three_views():
    za, zb, zc = make_views(3, m=20, d=7, seed=0)
    loss = BarlowTwinsLoss(lambda_offdiag=0.0051, eps=0.0)
    assert loss(za, zb).item() == pytest.approx(ref_barlow(za, zb, 0.0051), rel=1e-12)
    ref3 = np.mean([ref_barlow(x, y, 0.0051) for x, y in combinations([za, zb, zc], 2)])
    assert loss([za, zb, zc]).item() == pytest.approx(ref3, rel=1e-12)
    # the terms: unweighted on/off-diagonal sums; scale multiplies the whole loss
    terms = loss.compute(za, zb).terms
    on, off = terms["on_diag"], terms["off_diag"]
    assert (on + 0.0051 * off).item() == pytest.approx(ref_barlow(za, zb, 0.0051), rel=1e-12)
    scaled = BarlowTwinsLoss(lambda_offdiag=0.0051, scale=0.1, eps=0.0)(za, zb)
    assert scaled.item() == pytest.approx(0.1 * ref_barlow(za, zb, 0.0051), rel=1e-12)


def test_barlow_is_zero_for_a_decorrelated_standardised_identical_pair():
    m, d = 16, 6
    g = torch.Generator().manual_seed(1)
    # Orthonormal columns orthogonal to the ones vector: centred, and sqrt(m) times them has
    # biased variance 1 and zero cross-correlation exactly.
    basis = torch.cat([torch.ones(m, 1, dtype=F64), torch.randn(m, d, generator=g, dtype=F64)], 1)
    q, _ = torch.linalg.qr(basis)
    z = math.sqrt(m) * q[:, 1:]
    torch.testing.assert_close(z.T @ z / m, torch.eye(d, dtype=F64))
    # an affine change per column is undone by the standardisation
    z = z * torch.linspace(0.2, 5.0, d, dtype=F64) + torch.randn(d, generator=g, dtype=F64)
    loss = BarlowTwinsLoss(lambda_offdiag=0.5, eps=0.0)
    assert loss(z, z).item() < 1e-20
    # mirrored pair: C = -I, so every diagonal term is (1 - (-1))² = 4
    assert loss(z, -z).item() == pytest.approx(4 * d, rel=1e-12)


def test_barlow_identical_correlated_pair_costs_lambda_times_squared_correlations():
    (z,) = make_views(1, m=30, d=5, seed=2)
    r = np.corrcoef(z.numpy(), rowvar=False)
    expected = 0.3 * float((r**2).sum() - (np.diag(r) ** 2).sum())
    assert BarlowTwinsLoss(lambda_offdiag=0.3, eps=0.0)(z, z).item() == pytest.approx(
        expected, rel=1e-10
    )


def test_barlow_computes_in_float32_for_half_precision_input():
    za, zb = make_views(2, m=32, d=8, seed=3, dtype=torch.float32)
    ref = BarlowTwinsLoss()(za, zb)
    out = BarlowTwinsLoss()(za.bfloat16(), zb.bfloat16())
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref.item(), rel=0.05)


def test_barlow_rejects_bad_input_and_arguments():
    za, zb = make_views(2, m=8, d=4, seed=4)
    with pytest.raises(ValueError, match="at least 2 samples"):
        BarlowTwinsLoss()(za[:1], zb[:1])
    with pytest.raises(ValueError, match="share one shape"):
        BarlowTwinsLoss()(za, zb[:, :3])
    with pytest.raises(ValueError, match="lambda_offdiag"):
        BarlowTwinsLoss(lambda_offdiag=-1.0)
    with pytest.raises(ValueError, match="scale"):
        BarlowTwinsLoss(scale=0.0)


# =========================================================================== VICReg


def test_vicreg_terms_by_hand_on_a_three_sample_case():
    """Z = [[0,0],[2,0],[0,2]], Z' = Z / 4, ε = 0.

    Columns of Z: mean 2/3, unbiased variance 4/3 (std > 1: no variance penalty), covariance
    -2/3. Z' has variance 1/12 and covariance -1/24. s = mean((3/4 Z)²) = 9/16 · 8/6 = 3/4.
    """
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]], dtype=F64)
    loss_fn = VICRegLoss(sim_weight=25, var_weight=25, cov_weight=1, eps=0.0)
    result = loss_fn.compute(z, z / 4)
    loss, terms = result.loss, result.terms
    s, v, c = 3 / 4, 1 - 1 / math.sqrt(12), 4 / 9 + 1 / 576
    assert terms["invariance"].item() == pytest.approx(s, rel=1e-12)
    assert terms["variance"].item() == pytest.approx(v, rel=1e-12)
    assert terms["covariance"].item() == pytest.approx(c, rel=1e-12)
    assert loss.item() == pytest.approx(25 * s + 25 * v + c, rel=1e-12)


def test_vicreg_matches_transcription_and_averages_view_pairs():
    za, zb, zc = make_views(3, m=24, d=6, seed=5)
    za = 0.6 * za  # some columns below the target std, some above
    loss_fn = VICRegLoss(sim_weight=25, var_weight=25, cov_weight=1, eps=1e-4)

    def ref(x, y):
        s, v, c = ref_vicreg_terms(x, y, eps=1e-4)
        return 25 * s + 25 * v + c

    assert loss_fn(za, zb).item() == pytest.approx(ref(za, zb), rel=1e-12)
    ref3 = np.mean([ref(x, y) for x, y in combinations([za, zb, zc], 2)])
    assert loss_fn([za, zb, zc]).item() == pytest.approx(ref3, rel=1e-12)


def test_vicreg_variance_term_vanishes_above_gamma_and_is_linear_in_std_below():
    (z,) = make_views(1, m=40, d=4, seed=6)
    z = (z - z.mean(0)) / z.std(0)  # unit std per column
    loss_fn = VICRegLoss(eps=0.0)
    assert loss_fn.compute(3 * z, 3 * z).terms["variance"].item() == 0.0
    variance = loss_fn.compute(0.25 * z, 0.25 * z).terms["variance"]
    assert variance.item() == pytest.approx(2 * 0.75, rel=1e-12)


def test_vicreg_rejects_bad_input_and_arguments():
    za, zb = make_views(2, m=8, d=4, seed=7)
    with pytest.raises(ValueError, match="at least 2 samples"):
        VICRegLoss()(za[:1], zb[:1])
    with pytest.raises(ValueError, match="non-finite"):
        VICRegLoss()(za * float("nan"), zb)
    with pytest.raises(ValueError, match="var_weight"):
        VICRegLoss(var_weight=-1.0)


# =========================================================================== Sinkhorn + SwAV


def test_sinkhorn_matches_algorithm_transcription():
    (scores,) = make_scores(1, b=12, k=7, dim=5, seed=8)
    for n_iters in (1, 3, 10):
        codes = sinkhorn_knopp(scores, n_iters=n_iters, epsilon=0.05)
        np.testing.assert_allclose(codes.numpy(), ref_sinkhorn(scores, n_iters, 0.05), rtol=1e-12)


def test_sinkhorn_codes_have_the_transport_polytope_marginals():
    """B · Qᵀ: each sample's code sums to 1 exactly after every run (the iteration ends with the
    sample marginal 1/B); each prototype's codes sum to B/K over the batch at convergence."""
    b, k = 12, 8
    (scores,) = make_scores(1, b=b, k=k, dim=5, seed=9)
    codes = sinkhorn_knopp(scores, n_iters=3, epsilon=0.05)
    torch.testing.assert_close(codes.sum(1), torch.ones(b, dtype=F64), rtol=0, atol=1e-12)
    assert (codes >= 0).all()
    errors = []
    for n_iters in (1, 3, 30, 2000):
        col = sinkhorn_knopp(scores, n_iters=n_iters, epsilon=0.05).sum(0)
        errors.append((col - b / k).abs().max().item())
    assert errors == sorted(errors, reverse=True)  # the prototype marginal converges
    assert errors[-1] < 1e-10


def test_sinkhorn_limit_has_the_scaling_form_and_is_the_entropic_optimum():
    """Eqn. 3's solution ``Q* = Diag(u) exp(CᵀZ/ε) Diag(v)``: log Q - S/ε is a sum of a row and
    a column term; and a feasible perturbation (zero row/column sums) lowers
    ``Tr(Qᵀ S) + ε H(Q)``."""
    b, k, eps = 10, 6, 0.1
    (scores,) = make_scores(1, b=b, k=k, dim=4, seed=10)
    q = sinkhorn_knopp(scores, n_iters=3000, epsilon=eps) / b  # (B, K) = Q*ᵀ, total mass 1
    resid = torch.log(q) - scores / eps
    resid = resid - resid.mean(0, keepdim=True) - resid.mean(1, keepdim=True) + resid.mean()
    assert resid.abs().max().item() < 1e-9

    def objective(p):
        return (p * scores).sum() - eps * (p * torch.log(p)).sum()

    best = objective(q)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        i, j = torch.randperm(b, generator=g)[:2]
        u, w = torch.randperm(k, generator=g)[:2]
        delta = torch.zeros(b, k, dtype=F64)
        delta[i, u], delta[j, w], delta[i, w], delta[j, u] = 1, 1, -1, -1
        step = 0.5 * q.min().item()
        for sign in (1, -1):
            assert objective(q + sign * step * delta) < best


def test_sinkhorn_is_shift_invariant_has_no_gradient_and_upcasts_half_precision():
    (scores,) = make_scores(1, b=16, k=10, dim=6, seed=11, dtype=torch.float32)
    scores.requires_grad_(True)
    codes = sinkhorn_knopp(scores)
    assert not codes.requires_grad and codes.dtype == torch.float32
    torch.testing.assert_close(sinkhorn_knopp(scores + 3.0), codes)
    half = sinkhorn_knopp(scores.detach().half())
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    # large scores would overflow exp(s / ε) without the max shift
    assert torch.isfinite(sinkhorn_knopp(scores.detach() * 20)).all()


def test_sinkhorn_rejects_bad_input():
    (scores,) = make_scores(1, b=4, k=3, dim=2, seed=12)
    with pytest.raises(ValueError, match=r"shape \(B, K\)"):
        sinkhorn_knopp(scores[None])
    with pytest.raises(ValueError, match="non-finite"):
        sinkhorn_knopp(scores * float("inf"))
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn_knopp(scores, epsilon=0.0)
    with pytest.raises(ValueError, match="n_iters"):
        sinkhorn_knopp(scores, n_iters=0)


def test_swav_matches_transcription_with_and_without_small_crops():
    large = make_scores(2, b=10, k=6, dim=4, seed=13)
    small = make_scores(3, b=10, k=6, dim=4, seed=14)
    loss_fn = SwAVLoss(temperature=0.1, sinkhorn_iters=3, epsilon=0.05)
    assert loss_fn(*large).item() == pytest.approx(ref_swav(large, [], 0.1, 3, 0.05), rel=1e-12)
    assert loss_fn(large).item() == pytest.approx(ref_swav(large, [], 0.1, 3, 0.05), rel=1e-12)
    out = loss_fn(large, small_views=small).item()
    assert out == pytest.approx(ref_swav(large, small, 0.1, 3, 0.05), rel=1e-12)
    ent = loss_fn.compute(large, small_views=small).terms["code_entropy"].item()
    assert 0 < ent <= math.log(6)


def test_swav_codes_are_stop_gradient_targets():
    """The gradient w.r.t. a teacher's scores only comes from its role as a student: it equals
    the gradient of the cross-entropies with the codes precomputed as constants."""
    p1, p2 = (p.requires_grad_(True) for p in make_scores(2, b=8, k=5, dim=3, seed=15))
    SwAVLoss()(p1, p2).backward()
    q1, q2 = sinkhorn_knopp(p1), sinkhorn_knopp(p2)
    r1, r2 = (p.detach().clone().requires_grad_(True) for p in (p1, p2))

    def ce(q, p):
        return -(q * F.log_softmax(p / 0.1, dim=1)).sum(1).mean()

    (0.5 * (ce(q1, r2) + ce(q2, r1))).backward()
    torch.testing.assert_close(p1.grad, r1.grad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(p2.grad, r2.grad, rtol=1e-12, atol=1e-14)


def test_swav_rejects_bad_input_and_arguments():
    large = make_scores(2, b=6, k=4, dim=3, seed=16)
    with pytest.raises(ValueError, match="at least 2 views"):
        SwAVLoss()(large[0])
    with pytest.raises(ValueError, match="share one shape"):
        SwAVLoss()(large[0], large[1][:, :3])
    with pytest.raises(ValueError, match="temperature"):
        SwAVLoss(temperature=0.0)
    with pytest.raises(ValueError, match="sinkhorn_iters"):
        SwAVLoss(sinkhorn_iters=0)


# =========================================================================== gradcheck


def test_gradcheck_barlow_and_vicreg():
    za, zb = (z.requires_grad_(True) for z in make_views(2, m=6, d=3, seed=17))
    assert torch.autograd.gradcheck(
        lambda a, b: BarlowTwinsLoss(lambda_offdiag=0.1)(a, b), (za, zb)
    )
    # rescaled columns: two with std below γ = 1 (hinge active), one above; none near the kink
    col_scale = torch.tensor([0.3, 0.3, 2.0], dtype=F64)
    xa, xb = (z.detach().mul(col_scale).requires_grad_(True) for z in (za, zb))
    for x in (xa, xb):
        assert ((x.detach().std(0) - 1).abs() > 0.1).all()
    assert torch.autograd.gradcheck(lambda a, b: VICRegLoss()(a, b), (xa, xb))


def test_gradcheck_swav_through_the_student_only_small_crops():
    """Perturbing a small crop's scores never changes the codes, so finite differences see the
    same function autograd differentiates."""
    large = make_scores(2, b=5, k=4, dim=3, seed=18)
    small = [p.requires_grad_(True) for p in make_scores(2, b=5, k=4, dim=3, seed=19)]
    assert torch.autograd.gradcheck(lambda s1, s2: SwAVLoss()(large, small_views=[s1, s2]), small)


# =========================================================================== lightly


def test_barlow_equals_lightly():
    from lightly.loss import BarlowTwinsLoss as LightlyBarlow

    # lightly standardises with F.batch_norm (biased variance, eps 1e-5): our default eps.
    za, zb = make_views(2, m=64, d=32, seed=20, dtype=torch.float32)
    ours = BarlowTwinsLoss(lambda_offdiag=0.0051)(za, zb)
    theirs = LightlyBarlow(lambda_param=0.0051)(za, zb)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_vicreg_equals_lightly_with_the_variance_weight_halved():
    from lightly.loss import VICRegLoss as LightlyVICReg

    # Deliberate difference: lightly (like the authors' released code) *averages* the two
    # views' variance terms, 0.5 (v(Z) + v(Z')); Eqn. 6 and Algorithm 1 of the paper (and
    # solo-learn, whose CIFAR weights our recipe uses) *sum* them. Ours with μ/2 equals
    # lightly with μ; everything else (mse invariance, unbiased var, cov/d) agrees.
    za, zb = make_views(2, m=64, d=32, seed=21, dtype=torch.float32)
    za = 0.5 * za
    ours = VICRegLoss(sim_weight=25, var_weight=12.5, cov_weight=1)(za, zb)
    theirs = LightlyVICReg(lambda_param=25, mu_param=25, nu_param=1)(za, zb)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_swav_and_sinkhorn_equal_lightly():
    from lightly.loss import SwaVLoss as LightlySwAV
    from lightly.loss.swav_loss import sinkhorn as lightly_sinkhorn

    # lightly exponentiates the unshifted scores; our max shift cancels in the normalisation.
    large = make_scores(2, b=32, k=20, dim=8, seed=22, dtype=torch.float32)
    small = make_scores(2, b=32, k=20, dim=8, seed=23, dtype=torch.float32)
    torch.testing.assert_close(
        sinkhorn_knopp(large[0]), lightly_sinkhorn(large[0]), rtol=1e-5, atol=1e-6
    )
    ours = SwAVLoss()(large, small_views=small)
    theirs = LightlySwAV()(large, small).squeeze()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


# =========================================================================== 2-process DDP

B_GLOBAL, K, D_IN, D = 12, 7, 10, 6


def ddp_data():
    scores = make_scores(3, b=B_GLOBAL, k=K, dim=5, seed=24)
    x1, x2 = make_views(2, m=B_GLOBAL, d=D_IN, seed=25)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(D_IN, 10), nn.Tanh(), nn.Linear(10, D)).double()
    return scores, x1, x2, model


def _body(rank: int, size: int, out: dict) -> None:
    torch.set_num_threads(1)
    scores, x1, x2, model = ddp_data()
    rows = slice(rank * B_GLOBAL // size, (rank + 1) * B_GLOBAL // size)
    out[(rank, "codes")] = sinkhorn_knopp(scores[0][rows], n_iters=3, epsilon=0.05)
    out[(rank, "swav")] = SwAVLoss()(scores[0][rows], scores[1][rows]).item()
    for name, loss_cls in (("barlow", BarlowTwinsLoss), ("vicreg", VICRegLoss)):
        _, x1, x2, model = ddp_data()
        ddp = DistributedDataParallel(model)
        z1, z2 = gather_with_grad(ddp(x1[rows])), gather_with_grad(ddp(x2[rows]))
        loss = loss_cls()(z1, z2)
        loss.backward()
        out[(rank, name)] = (loss.item(), [p.grad.clone() for p in model.parameters()])


@pytest.fixture(scope="module")
def two_rank_results() -> dict:
    return run_gloo(_body)


def test_two_rank_sinkhorn_and_swav_equal_one_process_on_the_concatenated_batch(
    two_rank_results,
):
    scores, *_ = ddp_data()
    ref = sinkhorn_knopp(scores[0], n_iters=3, epsilon=0.05)
    both = torch.cat([two_rank_results[(r, "codes")] for r in range(2)])
    torch.testing.assert_close(both, ref, rtol=1e-12, atol=1e-14)
    # per-rank mean cross-entropies average (DDP's gradient averaging) to the global mean
    swav = np.mean([two_rank_results[(r, "swav")] for r in range(2)])
    assert swav == pytest.approx(SwAVLoss()(scores[0], scores[1]).item(), rel=1e-12)


@pytest.mark.parametrize("name", ["barlow", "vicreg"])
def test_two_rank_global_batch_statistics_equal_one_process(name, two_rank_results):
    _, x1, x2, model = ddp_data()
    loss = {"barlow": BarlowTwinsLoss, "vicreg": VICRegLoss}[name]()(model(x1), model(x2))
    loss.backward()
    for rank in range(2):
        value, grads = two_rank_results[(rank, name)]
        assert value == pytest.approx(loss.item(), rel=1e-12)
        for g, p in zip(grads, model.parameters(), strict=True):
            torch.testing.assert_close(g, p.grad, rtol=1e-8, atol=1e-10)


# =========================================================================== methods


def tiny(name: str, loss: dict | None = None, options: dict | None = None, out_dim: int = 8):
    from specssl.methods import build_method
    from specssl.models import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone("resnet18", cifar_stem=True, width=4)
    cfg = MethodConfig(
        name=name,
        proj_hidden_dim=32,
        proj_output_dim=out_dim,
        loss=loss or {},
        options=options or {},
    )
    return build_method(backbone, cfg)


def images(n: int, size: int = 16, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 3, size, size, generator=g) for _ in range(n)]


@pytest.mark.parametrize("name", ["barlow_twins", "vicreg"])
def test_redundancy_methods_forward_backward(name):
    from specssl.methods import METHODS

    method = tiny(name)
    assert type(method) is METHODS[name] and method.needs_global_batch
    out = method(images(2))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert [z.shape for z in out.embeddings] == [(8, 8)] * 2
    assert [f.shape for f in out.features] == [(8, method.backbone.out_dim)] * 2
    torch.testing.assert_close(out.loss, method.loss_fn(out.embeddings))
    expected = {
        "barlow_twins": {"on_diag", "off_diag"},
        "vicreg": {"invariance", "variance", "covariance"},
    }
    assert set(out.terms) == expected[name]
    out.loss.backward()
    grads = [p.grad for p in method.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_barlow_method_monitors_the_standardised_embedding():
    method = tiny("barlow_twins", loss={"eps": 0.0})
    zhat = method.spectral_transform()(torch.randn(32, 8) * 3 + 1)
    torch.testing.assert_close(zhat.mean(0), torch.zeros(8), atol=1e-6, rtol=0)
    torch.testing.assert_close(zhat.pow(2).mean(0), torch.ones(8), atol=1e-5, rtol=0)
    assert tiny("vicreg").spectral_transform() is None


def test_methods_reject_unknown_options_and_loss_keys():
    for name in ("barlow_twins", "vicreg", "swav"):
        with pytest.raises(ConfigError, match=r"method\.options\.bogus"):
            tiny(name, options={"bogus": 1})
    with pytest.raises(ConfigError, match=r"method\.loss"):
        tiny("vicreg", loss={"lambda_param": 25})
    with pytest.raises(ConfigError, match=r"method\.options\.num_prototypes"):
        tiny("swav", options={"num_prototypes": 0})


def proto_norms(method: nn.Module) -> torch.Tensor:
    return method.prototypes.weight.norm(dim=1)


def test_swav_prototypes_stay_unit_norm():
    method = tiny("swav", options={"num_prototypes": 10})
    assert method.prototypes.bias is None and method.prototypes.weight.shape == (10, 8)
    torch.testing.assert_close(proto_norms(method), torch.ones(10))
    with torch.no_grad():
        method.prototypes.weight.mul_(torch.linspace(0.1, 4.0, 10)[:, None])
    method.train()
    out = method(images(2))  # re-normalised before the forward
    torch.testing.assert_close(proto_norms(method), torch.ones(10))
    out.loss.backward()
    method.on_before_optimizer_step(epoch=1, step=0)
    torch.optim.SGD(method.parameters(), lr=5.0).step()
    assert (proto_norms(method) - 1).abs().max() > 1e-3  # the step moved them off the sphere
    method.on_train_step_end(step=0, total_steps=10)
    torch.testing.assert_close(proto_norms(method), torch.ones(10))


def test_swav_prototypes_are_frozen_during_the_first_epochs():
    method = tiny("swav", options={"num_prototypes": 10, "freeze_prototypes_epochs": 1})
    opt = torch.optim.SGD(method.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    for epoch, frozen in ((0, True), (1, False)):
        opt.zero_grad(set_to_none=True)
        method(images(2, seed=epoch)).loss.backward()
        assert method.prototypes.weight.grad.abs().sum() > 0
        method.on_before_optimizer_step(epoch=epoch, step=epoch)
        before = method.prototypes.weight.detach().clone()
        proj_before = method.projector[0].weight.detach().clone()
        opt.step()
        moved = not torch.equal(method.prototypes.weight, before)
        assert moved is not frozen
        assert not torch.equal(method.projector[0].weight, proj_before)  # the rest trains


def test_swav_multicrop_small_views_are_students_only():
    method = tiny("swav", options={"num_prototypes": 12})
    views = images(2, size=16, seed=1) + images(2, size=8, seed=2)
    out = method(views)
    assert [z.shape for z in out.embeddings] == [(8, 8)] * 4
    scores = [method.scores(z) for z in out.embeddings]
    expected = SwAVLoss()(scores[:2], small_views=scores[2:])
    torch.testing.assert_close(out.loss, expected)
    assert "code_entropy" in out.terms
    out.loss.backward()
    assert method.prototypes.weight.grad is not None
    assert all(torch.isfinite(p.grad).all() for p in method.backbone.parameters())
