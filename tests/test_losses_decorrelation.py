"""Decorrelation baselines: Shuffled-DBN, Zero-CL, and our W-MSE against lightly's.

References are float64 transcriptions written here with an explicit ``torch.linalg.eigh`` ZCA
(``U diag(λ^{-1/2}) U^T`` of a hand-built covariance); none calls ``specssl.spectral``.
Shuffled-DBN's random channel permutations are reproduced by seeding the global RNG and drawing
one ``torch.randperm(d)`` per view, in view order, as ``specssl/losses/shuffled_dbn.py`` does.
"""

from __future__ import annotations

from itertools import combinations

import pytest
import torch
from helpers import make_views

from specssl.losses import ShuffledDBNLoss, WMSELoss, ZeroCLLoss
from specssl.losses.shuffled_dbn import auto_groups
from specssl.losses.zero_cl import shrunk_zca, standardize
from specssl.methods import build_method
from specssl.models import build_backbone
from specssl.train.config import MethodConfig

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def pairs(n: int):
    return list(combinations(range(n), 2))


# =========================================================================== references


def ref_zca_batch(x: torch.Tensor, divisor_offset: int = 1) -> torch.Tensor:
    """ZCA of ``x: (n, c)`` over its rows: ``X_c U diag(λ^{-1/2}) U^T``, Σ = X_cᵀX_c/(n - off)."""
    x = x.to(F64)
    n = x.shape[0]
    xc = x - x.mean(dim=0, keepdim=True)
    lam, u = torch.linalg.eigh(xc.T @ xc / (n - divisor_offset))
    return xc @ (u @ torch.diag(lam**-0.5) @ u.T)


def ref_shuffled_whiten(z: torch.Tensor, groups: int, perm: torch.Tensor, off: int = 1):
    """Group ``k`` = original channels ``perm[k c : (k+1) c]``, each ZCA-whitened on its own."""
    m, d = z.shape
    c = d // groups
    out = torch.empty(m, d, dtype=F64)
    for k in range(groups):
        cols = perm[k * c : (k + 1) * c]
        out[:, cols] = ref_zca_batch(z[:, cols], off)
    return out


def ref_mse(a, b):
    return ((a - b) ** 2).sum(dim=1).mean()


def ref_nmse(a, b):
    cos = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))
    return 2 - 2 * cos.mean()


def ref_shuffled_dbn(views, groups: int, distance: str, seed: int | None, off: int = 1):
    """Shuffled-DBN loss; ``seed=None`` means no shuffling (identity permutations)."""
    d = views[0].shape[1]
    if seed is not None:
        torch.manual_seed(seed)
        perms = [torch.randperm(d) for _ in views]
    else:
        perms = [torch.arange(d) for _ in views]
    outs = [ref_shuffled_whiten(z, groups, p, off) for z, p in zip(views, perms, strict=True)]
    dist = ref_mse if distance == "mse" else ref_nmse
    ps = pairs(len(views))
    return sum(dist(outs[i], outs[j]) for i, j in ps) / len(ps)


def ref_standardize(z: torch.Tensor, axis: str) -> torch.Tensor:
    """Columns (batch axis) or rows (channel axis) to mean 0, unbiased std 1."""
    dim = 0 if axis == "batch" else 1
    return (z - z.mean(dim=dim, keepdim=True)) / z.std(dim=dim, keepdim=True)


def ref_zero_cl_whiten(z, axis: str, s: float, eps: float, detach: bool) -> torch.Tensor:
    """Zero-CL whitening by eigh: x standardized, W = ((1-s)Σ + sI + eps I)^{-1/2}, Ẑ = x W."""
    x = ref_standardize(z.to(F64), axis)
    x = x if axis == "batch" else x.T  # (n observations, c variables)
    n, c = x.shape

    def matrix(xx):
        sigma = (1 - s) * (xx.T @ xx / (n - 1)) + s * torch.eye(c, dtype=F64)
        lam, u = torch.linalg.eigh(sigma)
        return u @ torch.diag((lam + eps) ** -0.5) @ u.T

    if detach:
        with torch.no_grad():
            w = matrix(x.detach())
    else:
        w = matrix(x)
    out = x @ w
    return out if axis == "batch" else out.T


def ref_zero_cl(views, wi: float, wf: float, s: float, eps: float, detach: bool):
    """(total, instance, feature): Σ_i (1 - ⟨a_i, b_i⟩/d)² and Σ_j (1 - ⟨a_j, b_j⟩/m)²."""
    m, d = views[0].shape
    ps = pairs(len(views))
    ins = [ref_zero_cl_whiten(z, "channel", s, eps, detach) for z in views]
    fea = [ref_zero_cl_whiten(z, "batch", s, eps, detach) for z in views]
    instance = sum(((1 - (ins[i] * ins[j]).sum(1) / d) ** 2).sum() for i, j in ps) / len(ps)
    feature = sum(((1 - (fea[i] * fea[j]).sum(0) / m) ** 2).sum() for i, j in ps) / len(ps)
    return wi * instance + wf * feature, instance, feature


# =========================================================================== Shuffled-DBN


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("distance", ["mse", "nmse"])
@pytest.mark.parametrize("n_views", [2, 3])
def test_shuffled_dbn_matches_reference_with_the_same_permutations(groups, distance, n_views):
    m, d = 32, 16
    views = make_views(n_views, m, d, seed=groups + 7 * n_views)
    loss = ShuffledDBNLoss(groups=groups, loss=distance)
    torch.manual_seed(123)
    got = loss(*views)
    expected = ref_shuffled_dbn(views, groups, distance, seed=123)
    assert got.dtype == F64 and got.shape == ()
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)
    assert loss.last_groups == groups
    if groups > 1:  # another permutation gives a different value: the shuffle is not vacuous
        assert abs(ref_shuffled_dbn(views, groups, distance, seed=321) - expected) > 1e-6


def test_shuffled_dbn_draws_a_new_permutation_per_call_and_per_view():
    views = make_views(2, 32, 16, seed=1)
    loss = ShuffledDBNLoss(groups=4)
    torch.manual_seed(5)
    first, second = loss(*views), loss(*views)
    assert abs(first.item() - second.item()) > 1e-6
    # The second call continued the RNG stream: views 3 and 4 of the stream.
    torch.manual_seed(5)
    d = 16
    perms = [torch.randperm(d) for _ in range(4)]
    outs = [ref_shuffled_whiten(z, 4, p) for z, p in zip(views * 2, perms, strict=True)]
    torch.testing.assert_close(second, ref_mse(outs[2], outs[3]), rtol=1e-9, atol=1e-11)
    # Same view content, different permutation per view: identical views give a non-zero loss,
    # while without shuffling they give exactly 0.
    z = views[0]
    assert loss(z, z.clone()).item() > 1e-3
    assert abs(ShuffledDBNLoss(groups=4, shuffle=False)(z, z.clone()).item()) < 1e-12


def test_shuffled_dbn_without_shuffle_is_contiguous_group_dbn():
    views = make_views(2, 32, 16, seed=2)
    for distance in ("mse", "nmse"):
        got = ShuffledDBNLoss(groups=4, shuffle=False, loss=distance)(*views)
        torch.testing.assert_close(got, ref_shuffled_dbn(views, 4, distance, seed=None))


def test_shuffled_dbn_generator_makes_it_reproducible_without_touching_the_global_rng():
    views = make_views(2, 32, 16, seed=3)
    state = torch.random.get_rng_state()
    a = ShuffledDBNLoss(groups=4, generator=torch.Generator().manual_seed(9))(*views)
    b = ShuffledDBNLoss(groups=4, generator=torch.Generator().manual_seed(9))(*views)
    assert a.item() == b.item()
    assert torch.equal(state, torch.random.get_rng_state())
    g = torch.Generator().manual_seed(9)
    perms = [torch.randperm(16, generator=g) for _ in range(2)]
    outs = [ref_shuffled_whiten(z, 4, p) for z, p in zip(views, perms, strict=True)]
    torch.testing.assert_close(a, ref_mse(*outs), rtol=1e-9, atol=1e-11)


def test_shuffled_dbn_whitened_groups_have_identity_covariance_and_only_them():
    m, d, groups = 64, 24, 3
    z = make_views(1, m, d, seed=4)[0]
    loss = ShuffledDBNLoss(groups=groups)
    torch.manual_seed(77)
    zhat = loss.transform(z)
    torch.manual_seed(77)
    perm = torch.randperm(d)
    c = d // groups
    assert torch.allclose(zhat.mean(0), torch.zeros(d, dtype=F64), atol=1e-12)
    cov = zhat.T @ zhat / (m - 1)
    for k in range(groups):
        cols = perm[k * c : (k + 1) * c]
        torch.testing.assert_close(cov[cols][:, cols], torch.eye(c, dtype=F64), atol=1e-10, rtol=0)
    # Channels of different groups stay correlated (each group is whitened on its own) ...
    off = cov[perm[:c]][:, perm[c : 2 * c]]
    assert off.abs().max() > 0.05
    # ... and the per-channel layout is the original one (un-permuted): equal to the reference.
    torch.testing.assert_close(zhat, ref_shuffled_whiten(z, groups, perm), rtol=1e-9, atol=1e-10)


def test_shuffled_dbn_authors_divisor_is_a_constant_factor():
    """Authors' code divides the covariance by m; ours by m - 1: mse_ours = (m-1)/m mse_theirs."""
    m = 32
    views = make_views(2, m, 16, seed=6)
    torch.manual_seed(1)
    ours = ShuffledDBNLoss(groups=2)(*views)
    theirs = ref_shuffled_dbn(views, 2, "mse", seed=1, off=0)
    torch.testing.assert_close(ours, (m - 1) / m * theirs, rtol=1e-9, atol=1e-11)
    torch.manual_seed(1)
    ours_n = ShuffledDBNLoss(groups=2, loss="nmse")(*views)
    torch.testing.assert_close(ours_n, ref_shuffled_dbn(views, 2, "nmse", seed=1, off=0))


@pytest.mark.parametrize(
    ("m", "d", "expected"),
    [(256, 512, 4), (128, 512, 8), (32, 12, 1), (10, 12, 3), (8, 10, 5), (4, 7, 7)],
)
def test_shuffled_dbn_auto_groups(m, d, expected):
    g = auto_groups(m, d)
    assert g == expected and d % g == 0
    if m >= 4:
        assert d // g <= m // 2 or g == d
    views = make_views(2, m, d, seed=8)
    loss = ShuffledDBNLoss()
    torch.manual_seed(2)
    auto = loss(*views)
    assert loss.last_groups == expected
    torch.manual_seed(2)
    assert auto.item() == ShuffledDBNLoss(groups=expected)(*views).item()


def test_shuffled_dbn_gradcheck_float64():
    m, d = 10, 4
    z1, z2 = (v.requires_grad_() for v in make_views(2, m, d, seed=9))

    def fn(a, b):  # the same permutations on every evaluation
        gen = torch.Generator().manual_seed(4)
        return ShuffledDBNLoss(groups=2, generator=gen)(a, b)

    assert torch.autograd.gradcheck(fn, (z1, z2), eps=1e-6, atol=1e-6)
    nmse = lambda a, b: ShuffledDBNLoss(groups=1, loss="nmse")(a, b)  # noqa: E731
    assert torch.autograd.gradcheck(nmse, (z1, z2), eps=1e-6, atol=1e-6)


def test_shuffled_dbn_float32_close_to_float64_reference():
    views = make_views(2, 64, 16, seed=10)
    torch.manual_seed(3)
    got = ShuffledDBNLoss(groups=2)(*[v.float() for v in views])
    assert got.dtype == torch.float32
    expected = ref_shuffled_dbn(views, 2, "mse", 3)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"groups": 0}, "groups"),
        ({"groups": 2.5}, "groups"),
        ({"loss": "l1"}, "loss"),
        ({"eps": -1.0}, "eps"),
    ],
)
def test_shuffled_dbn_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShuffledDBNLoss(**kwargs)


def test_shuffled_dbn_bad_input_names_the_problem():
    with pytest.raises(ValueError, match=r"groups=3 must divide the dimension d=16"):
        ShuffledDBNLoss(groups=3)(torch.randn(8, 16), torch.randn(8, 16))
    with pytest.raises(ValueError, match="at least 2 views"):
        ShuffledDBNLoss()(torch.randn(8, 16))
    with pytest.raises(ValueError, match="non-finite"):
        ShuffledDBNLoss()(torch.full((8, 4), float("nan")), torch.randn(8, 4))


# =========================================================================== Zero-CL


ZERO_CL_SHAPES = [(8, 24), (24, 8)]  # d > m (ICL full rank, FCL via the Gram) and m > d


@pytest.mark.parametrize("shape", ZERO_CL_SHAPES)
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize(("s", "eps"), [(0.1, 1e-5), (0.3, 0.0)])
@pytest.mark.parametrize("n_views", [2, 3])
def test_zero_cl_matches_reference(shape, detach, s, eps, n_views):
    m, d = shape
    views = make_views(n_views, m, d, seed=m + n_views)
    loss = ZeroCLLoss(0.7, 1.3, shrinkage=s, eps=eps, detach_whitening=detach)
    got = loss(*views)
    terms = loss.compute(*views).terms
    total, ins, fea = ref_zero_cl(views, 0.7, 1.3, s, eps, detach)
    assert got.dtype == F64 and got.shape == ()
    torch.testing.assert_close(got, total, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(terms["instance"], ins, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(terms["feature"], fea, rtol=1e-9, atol=1e-10)
    assert not terms["instance"].requires_grad
    assert ins > 1e-3 and fea > 1e-3  # both terms matter for the comparison


@pytest.mark.parametrize(
    ("shape", "detach"),
    # Not (8, 24) without detach: the d x d feature covariance of 8 samples has a repeated
    # eigenvalue (s, d - 7 times), where eigh's autograd in the reference is NaN; that case is
    # covered by the gradcheck below (our Daleckii–Krein backward is finite there).
    [((8, 24), True), ((24, 8), True), ((24, 8), False)],
)
def test_zero_cl_gradient_matches_reference(shape, detach):
    m, d = shape
    a, b = make_views(2, m, d, seed=11)
    a1, a2 = a.clone().requires_grad_(), a.clone().requires_grad_()
    ZeroCLLoss(detach_whitening=detach)(a1, b).backward()
    ref_zero_cl([a2, b], 1.0, 1.0, 0.1, 1e-5, detach)[0].backward()
    torch.testing.assert_close(a1.grad, a2.grad, rtol=1e-8, atol=1e-10)


def test_zero_cl_detaching_the_whitening_changes_the_gradient_not_the_value():
    a, b = make_views(2, 8, 24, seed=12)
    grads, values = [], []
    for detach in (True, False):
        x = a.clone().requires_grad_()
        value = ZeroCLLoss(detach_whitening=detach)(x, b)
        value.backward()
        grads.append(x.grad)
        values.append(value.item())
    assert values[0] == pytest.approx(values[1], rel=1e-12)
    assert (grads[0] - grads[1]).norm() > 1e-3 * grads[1].norm()


@pytest.mark.parametrize("shape", [(5, 7), (7, 5)])
def test_zero_cl_gradcheck_float64(shape):
    """Full gradient (no stop-gradient; with it the finite differences would see W move)."""
    z1, z2 = (v.requires_grad_() for v in make_views(2, *shape, seed=13))
    loss = ZeroCLLoss(detach_whitening=False)
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b), (z1, z2), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("axis", ["batch", "channel"])
def test_zero_cl_whitening_invariants(axis):
    m, d = (64, 8) if axis == "batch" else (8, 64)
    z = make_views(1, m, d, seed=14)[0]
    x = standardize(z, axis)
    dim = 0 if axis == "batch" else 1
    torch.testing.assert_close(x.mean(dim), torch.zeros(x.shape[1 - dim], dtype=F64))
    torch.testing.assert_close(x.std(dim), torch.ones(x.shape[1 - dim], dtype=F64))
    n = m if axis == "batch" else d

    def cov(t):
        return t.T @ t / (n - 1) if axis == "batch" else t @ t.T / (n - 1)

    # No shrinkage, no eps: exact ZCA, covariance I.
    zhat = shrunk_zca(z, axis, shrinkage=0.0, eps=0.0)
    c = cov(zhat)
    torch.testing.assert_close(c, torch.eye(c.shape[0], dtype=F64), atol=1e-10, rtol=0)
    # With shrinkage s the spectrum is λ / ((1 - s) λ + s) for the correlation eigenvalues λ.
    s = 0.25
    lam = torch.linalg.eigvalsh(cov(x))
    got = torch.linalg.eigvalsh(cov(shrunk_zca(z, axis, shrinkage=s, eps=0.0)))
    torch.testing.assert_close(got, lam / ((1 - s) * lam + s), atol=1e-10, rtol=1e-9)
    assert got.min() < 0.9  # shrinkage genuinely leaves the output un-whitened


def test_zero_cl_single_terms_and_axis():
    views = make_views(2, 8, 24, seed=15)
    _, ins, fea = ref_zero_cl(views, 1, 1, 0.1, 1e-5, True)
    only_i = ZeroCLLoss(feature_weight=0.0)
    torch.testing.assert_close(only_i(*views), ins)
    assert only_i.axis == "channel" and only_i.compute(*views).terms["feature"].item() == 0.0
    only_f = ZeroCLLoss(instance_weight=0.0)
    torch.testing.assert_close(only_f(*views), fea)
    assert only_f.axis == "batch"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"instance_weight": -1.0}, "instance_weight"),
        ({"instance_weight": 0.0, "feature_weight": 0.0}, "feature_weight"),
        ({"shrinkage": 1.0}, "shrinkage"),
        ({"eps": -1e-3}, "eps"),
    ],
)
def test_zero_cl_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ZeroCLLoss(**kwargs)


def test_zero_cl_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="at least 2 samples and 2 channels"):
        ZeroCLLoss()(torch.randn(1, 8), torch.randn(1, 8))
    with pytest.raises(ValueError, match="share one shape"):
        ZeroCLLoss()(torch.randn(4, 8), torch.randn(4, 6))


# =========================================================================== methods


@pytest.mark.parametrize(
    ("name", "loss", "axis"),
    [
        ("shuffled_dbn", {"groups": 2}, "batch"),
        ("shuffled_dbn", {}, "batch"),
        ("zero_cl", {}, "batch"),
        ("zero_cl", {"feature_weight": 0.0}, "channel"),
    ],
)
def test_method_forward_backward_and_spectral_transform(name, loss, axis):
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", cifar_stem=True, width=4)
    cfg = MethodConfig(name=name, proj_hidden_dim=32, proj_output_dim=8, proj_layers=2, loss=loss)
    method = build_method(backbone, cfg)
    views = [torch.randn(16, 3, 16, 16), torch.randn(16, 3, 16, 16)]
    out = method(views)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert [z.shape for z in out.embeddings] == [(16, 8)] * 2
    out.loss.backward()
    grads = [p.grad for p in method.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert method.spectral_axis == axis
    zhat = method.spectral_transform()(torch.randn(16, 8))
    assert zhat.shape == (16, 8) and torch.isfinite(zhat).all()
    if name == "zero_cl":
        assert set(out.terms) == {"instance", "feature"}


# =========================================================================== W-MSE vs lightly


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize(("n_views", "w_iter", "eps"), [(2, 1, 0.0), (3, 2, 0.0), (2, 2, 0.1)])
def test_wmse_matches_lightly(dtype, n_views, w_iter, eps):
    """Our W-MSE against ``lightly.loss.WMSELoss`` (lightly 1.6.0) on the same sub-batches.

    Conventions read from lightly's source, all equal to ours: Cholesky whitening
    ``Ẑ = Z_c L^{-T}`` of ``(1 - eps) Σ + eps I`` with ``Σ = Z_cᵀ Z_c / (w - 1)`` per sub-batch of
    ``w_size`` rows, one ``torch.randperm(m)`` per ``w_iter`` round (the same global-RNG draw as
    ours), normalized MSE ``2 - 2 mean cos`` averaged over all view pairs and rounds.

    Gradients: W-MSE as published (Ermolov et al. 2021, Eqn. 2 and Algorithm 1) back-propagates
    through the whitening of both views — there is no stop-gradient — and ours is faithful to
    that. lightly 1.6.0 does not detach anything either (its ``Whitening2d`` builds the Cholesky
    factor inside autograd), so the gradients must agree as well. (CW-RGP's analysis rewrites the
    same gradient as a sum of two stop-gradient terms, which is an identity, not a change.)

    Differences outside this test: lightly takes one concatenated ``(n_views * m, d)`` tensor,
    requires ``w_size >= 2 d``, and in ``eval()`` mode whitens with running statistics it tracks
    during training; our loss is stateless and always uses the batch statistics.
    """
    from lightly.loss import WMSELoss as LightlyWMSE

    m, d, w_size = 64, 8, 32
    views = make_views(n_views, m, d, seed=16 + n_views + w_iter, dtype=dtype)
    ours_in = [v.clone().requires_grad_() for v in views]
    theirs_in = [v.clone().requires_grad_() for v in views]

    torch.manual_seed(42)
    ours = WMSELoss(w_size=w_size, w_iter=w_iter, eps=eps)(*ours_in)
    torch.manual_seed(42)
    lightly_loss = LightlyWMSE(
        embedding_dim=d, eps=eps, w_iter=w_iter, w_size=w_size, num_samples=n_views
    )
    theirs = lightly_loss(torch.cat(theirs_in))

    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-11}
    torch.testing.assert_close(ours.double(), theirs.double(), **tol)
    assert ours.item() > 1e-2  # non-trivial value

    ours.backward()
    theirs.backward()
    for a, b in zip(ours_in, theirs_in, strict=True):
        assert b.grad is not None and b.grad.abs().max() > 0
        torch.testing.assert_close(a.grad.double(), b.grad.double(), **tol)

    # The comparison is sharp: a different sub-batch partition changes the value.
    torch.manual_seed(43)
    other = WMSELoss(w_size=w_size, w_iter=w_iter, eps=eps)(*views)
    assert abs(other.item() - ours.item()) > 1e-4
