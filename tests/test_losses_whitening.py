"""Whitening losses (INTL, IterNorm, ST-power, W-MSE, CW-RGP) against independent references.

Every reference below is a plain float64 transcription of the papers' equations written in this
file (explicit Newton loop of Eqn. 3, ``torch.linalg.eigh`` / ``cholesky`` on a hand-built
covariance); none calls ``specssl.spectral``. Random sub-batch / group permutations of W-MSE and
CW-RGP are reproduced by seeding the global RNG and drawing ``torch.randperm`` in the same order
as ``specssl/losses/wmse.py`` does: per round one ``randperm(m)`` for the sub-batches, then (CW-RGP
with random groups) one ``randperm(d)`` per view.
"""

from __future__ import annotations

import math
import warnings
from itertools import combinations

import pytest
import torch
from helpers import make_views

from specssl.losses import (
    CWRGPLoss,
    INTLLoss,
    IterNormLoss,
    STPowerLoss,
    WMSELoss,
    default_trace_weight,
)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


# =========================================================================== references


def ref_iternorm(z: torch.Tensor, T: int, axis: str) -> torch.Tensor:
    """IterNorm, Eqn. 3, uncoupled Newton loop ``P_k = ½(3 P_{k-1} - P_{k-1}³ Σ_N)``."""
    z = z.to(F64)
    m, d = z.shape
    if axis == "batch":
        zc = z - z.mean(dim=0, keepdim=True)  # centre each column over the batch
        sigma = zc.T @ zc / (m - 1)  # d x d
    else:
        zc = z - z.mean(dim=1, keepdim=True)  # centre each row over the channels
        sigma = zc @ zc.T / (d - 1)  # m x m
    tr = torch.trace(sigma)
    sigma_n = sigma / tr
    p = torch.eye(sigma.shape[0], dtype=F64)
    for _ in range(T):
        p = 0.5 * (3 * p - p @ p @ p @ sigma_n)
    return (zc @ p if axis == "batch" else p @ zc) / tr.sqrt()


def ref_cov_diag(zhat: torch.Tensor, axis: str) -> torch.Tensor:
    """Diagonal of the covariance of ``zhat`` on ``axis`` (centred again, divisor n - 1)."""
    m, d = zhat.shape
    if axis == "batch":
        c = zhat - zhat.mean(dim=0, keepdim=True)
        return (c * c).sum(dim=0) / (m - 1)  # d entries
    c = zhat - zhat.mean(dim=1, keepdim=True)
    return (c * c).sum(dim=1) / (d - 1)  # m entries


def ref_trace(zhat: torch.Tensor, axis: str) -> torch.Tensor:
    """Eqn. 6: Σ_j (1 - (Σ_Ẑ)_jj)²."""
    return ((1 - ref_cov_diag(zhat, axis)) ** 2).sum()


def ref_nmse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """2 - 2 mean_i cos(a_i, b_i)."""
    cos = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))
    return 2 - 2 * cos.mean()


def ref_pairwise(outs: list[torch.Tensor]) -> torch.Tensor:
    pairs = list(combinations(range(len(outs)), 2))
    return sum(ref_nmse(outs[i], outs[j]) for i, j in pairs) / len(pairs)


def ref_beta(n: int) -> float:
    return max(0.0, 0.01 * (math.log2(n) - 3))


def ref_intl(views, T: int, axis: str, beta: float):
    """(total, invariance, trace) of INTL: mean pairwise invariance + β Σ_views trace."""
    outs = [ref_iternorm(z, T, axis) for z in views]
    invariance = ref_pairwise(outs)
    trace = sum(ref_trace(o, axis) for o in outs)
    return invariance + beta * trace, invariance, trace


def ref_power(z: torch.Tensor, p: float, axis: str) -> torch.Tensor:
    """ST with g(λ) = λ^{-p} (Definition 1) by eigendecomposition: Ẑ = Z_c U diag(λ^-p) U^T."""
    z = z.to(F64)
    m, d = z.shape
    if axis == "batch":
        zc = z - z.mean(dim=0, keepdim=True)
        lam, u = torch.linalg.eigh(zc.T @ zc / (m - 1))
        return zc @ (u @ torch.diag(lam ** (-p)) @ u.T)
    zc = z - z.mean(dim=1, keepdim=True)
    lam, u = torch.linalg.eigh(zc @ zc.T / (d - 1))
    return (u @ torch.diag(lam ** (-p)) @ u.T) @ zc


def ref_cholesky_whiten(z: torch.Tensor, eps: float) -> torch.Tensor:
    """W-MSE: Σ_ε = (1 - eps) Σ + eps I = L L^T,  Ẑ = Z_c L^{-T} (batch axis)."""
    m, d = z.shape
    zc = z.to(F64) - z.to(F64).mean(dim=0, keepdim=True)
    sigma = (1 - eps) * (zc.T @ zc / (m - 1)) + eps * torch.eye(d, dtype=F64)
    chol = torch.linalg.cholesky(sigma)
    return zc @ torch.linalg.inv(chol).T


def ref_group_zca_channel(z: torch.Tensor, groups: int) -> torch.Tensor:
    """CW(-GP): per contiguous channel group, centre each row, ZCA-whiten the m x m covariance."""
    z = z.to(F64)
    d = z.shape[1]
    c = d // groups
    out = torch.empty_like(z)
    for k in range(groups):
        block = z[:, k * c : (k + 1) * c]
        bc = block - block.mean(dim=1, keepdim=True)
        lam, u = torch.linalg.eigh(bc @ bc.T / (c - 1))
        out[:, k * c : (k + 1) * c] = u @ torch.diag(lam**-0.5) @ u.T @ bc
    return out


def ref_sub_batched(views, w_size, w_iter: int, seed: int, whiten_view) -> torch.Tensor:
    """W-MSE's sub-batching with the implementation's draw order (module docstring).

    ``whiten_view(rows (w, d), view_index, shuffles)`` whitens one sub-batch; ``shuffles`` are the
    per-view channel permutations drawn in this round (used by random-group CW-RGP only).
    """
    m, d = views[0].shape
    w = m if w_size is None else w_size
    torch.manual_seed(seed)
    pairs = list(combinations(range(len(views)), 2))
    total = torch.zeros((), dtype=F64)
    for _ in range(w_iter):
        perm = torch.randperm(m)
        shuffles = whiten_view.draw(len(views), d)
        outs = []
        for v, z in enumerate(views):
            out = torch.empty(m, d, dtype=F64)
            for k in range(m // w):
                rows = perm[k * w : (k + 1) * w]
                out[rows] = whiten_view(z.to(F64)[rows], v, shuffles)
            outs.append(out)
        total = total + sum(ref_nmse(outs[i], outs[j]) for i, j in pairs)
    return total / (w_iter * len(pairs))


class CholeskyRef:
    def __init__(self, eps: float = 0.0) -> None:
        self.eps = eps

    def draw(self, n_views: int, d: int) -> None:
        return None

    def __call__(self, rows, v, shuffles):
        return ref_cholesky_whiten(rows, self.eps)


class GroupZCARef:
    def __init__(self, groups: int, random_groups: bool) -> None:
        self.groups, self.random_groups = groups, random_groups

    def draw(self, n_views: int, d: int):
        if self.random_groups and self.groups > 1:
            return [torch.randperm(d) for _ in range(n_views)]
        return None

    def __call__(self, rows, v, shuffles):
        if shuffles is None:
            return ref_group_zca_channel(rows, self.groups)
        perm = shuffles[v]
        out = torch.empty_like(rows)
        out[:, perm] = ref_group_zca_channel(rows[:, perm], self.groups)  # un-permute
        return out


# =========================================================================== INTL


SHAPES = {
    # (m, d): batch axis well-posed and rank-deficient (d > m); channel axis d > m and d < m.
    "batch": [(32, 8), (8, 12)],
    "channel": [(8, 24), (24, 10)],
}


@pytest.mark.parametrize("axis", ["batch", "channel"])
@pytest.mark.parametrize("shape_index", [0, 1])
@pytest.mark.parametrize("T", [1, 4, 7])
@pytest.mark.parametrize("n_views", [2, 3])
def test_intl_matches_reference(axis, shape_index, T, n_views) -> None:
    m, d = SHAPES[axis][shape_index]
    views = make_views(n_views, m, d, seed=T + 10 * n_views + shape_index)
    beta = 0.07
    # ref_intl is the all-pairs form; the authors' anchor pairing is tested in test_fidelity.py
    loss = INTLLoss(T=T, beta=beta, axis=axis, pairing="all_pairs")
    total = loss(*views)
    terms = loss.compute(*views).terms
    ref_total, ref_inv, ref_tr = ref_intl(views, T, axis, beta)
    assert total.dtype == F64 and total.shape == ()
    torch.testing.assert_close(total, ref_total, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(terms["invariance"], ref_inv, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(terms["trace"], ref_tr, rtol=1e-9, atol=1e-11)
    assert not terms["trace"].requires_grad
    # The β-weighted trace part is far above the tolerance, so a wrong β or trace would show
    # (for T = 7 it is small, ~1e-7 of the total, as the output is nearly white).
    assert beta * ref_tr > 100 * 1e-9 * ref_total
    # List / tuple input == positional input.
    assert loss(list(views)).item() == total.item()
    assert loss(tuple(views)).item() == total.item()


@pytest.mark.parametrize("axis", ["batch", "channel"])
def test_intl_default_beta(axis) -> None:
    assert default_trace_weight(256) == pytest.approx(0.05, abs=1e-15)
    assert default_trace_weight(64) == pytest.approx(0.03, abs=1e-15)
    for n in (1, 2, 4, 8):
        assert default_trace_weight(n) == 0.0  # clamped, never negative
    assert default_trace_weight(9) == pytest.approx(ref_beta(9))

    # n = m on the channel axis, n = d on the batch axis.
    m, d = (256, 32) if axis == "channel" else (48, 256)
    views = make_views(2, m, d, seed=3)
    loss = INTLLoss(T=2, axis=axis)
    assert loss.trace_weight(views[0]) == pytest.approx(0.05, abs=1e-15)
    expected, _, tr = ref_intl(views, 2, axis, 0.05)
    torch.testing.assert_close(loss(*views), expected, rtol=1e-9, atol=1e-11)
    assert 0.05 * tr > 1e-3  # the β-weighted part matters for the comparison

    small = make_views(2, 8, 8, seed=4)
    assert INTLLoss(axis=axis).trace_weight(small[0]) == 0.0
    _, inv, _ = ref_intl(small, 4, axis, 0.0)
    torch.testing.assert_close(INTLLoss(axis=axis)(*small), inv, rtol=1e-9, atol=1e-11)


def test_intl_default_beta_with_groups_uses_group_size() -> None:
    z = torch.zeros(16, 64, dtype=F64)
    assert INTLLoss(axis="batch", groups=2).trace_weight(z) == pytest.approx(ref_beta(32))
    assert INTLLoss(axis="channel", groups=2).trace_weight(z) == pytest.approx(ref_beta(16))


@pytest.mark.parametrize("axis", ["batch", "channel"])
def test_iternorm_loss_is_intl_without_trace(axis) -> None:
    m, d = SHAPES[axis][0]
    views = make_views(2, m, d, seed=5)
    got = IterNormLoss(T=3, axis=axis)(*views)
    assert got.item() == INTLLoss(T=3, beta=0.0, axis=axis)(*views).item()
    _, inv, _ = ref_intl(views, 3, axis, 0.0)
    torch.testing.assert_close(got, inv, rtol=1e-9, atol=1e-11)
    # With β > 0 the value differs (so the equality above is not vacuous).
    assert INTLLoss(T=3, beta=0.5, axis=axis)(*views).item() > got.item() + 1e-6


@pytest.mark.parametrize("axis", ["batch", "channel"])
def test_intl_large_T_trace_vanishes_on_well_conditioned_embedding(axis) -> None:
    m, d = (256, 8) if axis == "batch" else (8, 256)
    g = torch.Generator().manual_seed(11)
    z = torch.randn(m, d, generator=g, dtype=F64)
    loss = INTLLoss(T=30, beta=1.0, axis=axis)
    terms = loss.compute(z, z + 0.1 * torch.randn(m, d, generator=g, dtype=F64)).terms
    assert terms["trace"].item() < 1e-12
    # ... whereas one Newton step is far from whitening.
    short = INTLLoss(T=1, beta=1.0, axis=axis)
    assert short.compute(z, z).terms["trace"].item() > 0.1


# =========================================================================== identical views


def _identical(m, d, seed=21):
    z = make_views(1, m, d, seed=seed)[0]
    return z, z.clone()


@pytest.mark.parametrize("axis", ["batch", "channel"])
def test_intl_identical_views_leave_only_the_trace_part(axis) -> None:
    m, d = SHAPES[axis][0]
    z1, z2 = _identical(m, d)
    loss = INTLLoss(T=2, beta=0.3, axis=axis)
    total = loss(z1, z2)
    assert abs(loss.compute(z1, z2).terms["invariance"].item()) < 1e-12
    expected = 0.3 * 2 * ref_trace(ref_iternorm(z1, 2, axis), axis)
    torch.testing.assert_close(total, expected, rtol=1e-9, atol=1e-12)
    assert expected > 1e-3


@pytest.mark.parametrize(
    "loss",
    [
        IterNormLoss(T=4, axis="batch"),
        IterNormLoss(T=4, axis="channel"),
        STPowerLoss(p=0.5),
        STPowerLoss(p=1.5),
        WMSELoss(),
        WMSELoss(w_size=16, w_iter=3),
        CWRGPLoss(groups=2, random_groups=False),
        CWRGPLoss(groups=1, random_groups=True),
    ],
    ids=repr,
)
def test_identical_views_have_zero_invariance(loss) -> None:
    shape = (8, 48) if isinstance(loss, CWRGPLoss) else (64, 8)
    if isinstance(loss, IterNormLoss) and loss.axis == "channel":
        shape = (8, 24)
    z1, z2 = _identical(*shape)
    assert abs(loss(z1, z2).item()) < 1e-12
    # and a genuinely different second view is not 0
    other = make_views(1, *shape, seed=99)[0]
    assert loss(z1, other).item() > 1e-3


def test_cwrgp_random_groups_identical_views_are_not_zero() -> None:
    """Faithful to the CW-RGP authors' code: a fresh channel shuffle per view, so identical
    views get different group partitions and a positive loss (unlike every other loss here)."""
    z1, z2 = _identical(8, 48)
    torch.manual_seed(0)
    assert CWRGPLoss(groups=4, random_groups=True)(z1, z2).item() > 1e-3
    earlier = {"centre": "group", "permute": "per_view"}  # what GroupZCARef transcribes
    torch.manual_seed(0)
    value = CWRGPLoss(groups=4, random_groups=True, **earlier)(z1, z2)
    assert value.item() > 1e-3
    torch.manual_seed(0)
    expected = ref_sub_batched([z1, z2], None, 1, 0, GroupZCARef(4, True))
    torch.testing.assert_close(value, expected, rtol=1e-9, atol=1e-11)


# =========================================================================== ST power


@pytest.mark.parametrize("p", [0.3, 0.5, 1.5])
@pytest.mark.parametrize("axis", ["batch", "channel"])
def test_st_power_matches_eigh_reference(p, axis) -> None:
    m, d = (64, 8) if axis == "batch" else (8, 40)
    views = make_views(3, m, d, seed=int(10 * p))
    got = STPowerLoss(p=p, axis=axis)(*views)
    expected = ref_pairwise([ref_power(z, p, axis) for z in views])
    assert got.dtype == F64
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)
    assert STPowerLoss(p=p, axis=axis)([views[0], views[1]]).item() == pytest.approx(
        ref_nmse(ref_power(views[0], p, axis), ref_power(views[1], p, axis)).item(), rel=1e-9
    )


def _ill_conditioned_views(m: int = 256, d: int = 16, ratio: float = 1e-9):
    """Two float32 views whose covariance has λ_min/λ_max = ``ratio`` (below float32's
    null-space threshold ``d eps_32``) and an informative smallest direction."""
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(m, d, generator=gen, dtype=F64)
    scales = torch.logspace(0, math.log10(ratio) / 2, d, dtype=F64)  # std: λ spans 1..ratio
    noise = torch.where(torch.arange(d) < d // 2, 1.0, 0.0).to(F64)  # small half: agreeing
    views = [(base + noise * torch.randn(m, d, generator=gen, dtype=F64)) * scales for _ in "ab"]
    return [v.float() for v in views]


def test_st_power_float64_precision_resolves_ill_conditioned_directions() -> None:
    """float64 spectral math whitens an embedding whose smallest eigenvalues float32 cannot
    resolve: equal to the float64 reference, while float32 drops directions (a larger loss,
    as the embedding's agreeing-but-tiny directions vanish from Ẑ)."""
    views = _ill_conditioned_views()
    got = STPowerLoss(p=0.5, precision="float64")(*views)
    assert got.dtype == torch.float32  # the loss keeps the input's (float32) dtype
    expected = ref_pairwise([ref_power(z.double(), 0.5, "batch") for z in views])
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    float32 = STPowerLoss(p=0.5)(*views)
    assert float32.item() > expected.item() + 0.1


class PowerRef:
    def __init__(self, p: float) -> None:
        self.p = p

    def draw(self, n_views: int, d: int) -> None:
        return None

    def __call__(self, rows, v, shuffles):
        return ref_power(rows, self.p, "batch")


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_st_power_sub_batches_match_reference(p) -> None:
    """``w_size`` transforms random sub-batches of rows, each with its own covariance (W-MSE's
    slicing), averaged over ``w_iter`` partitions; p = 0.5 equals W-MSE with ZCA."""
    views = make_views(2, 64, 4, seed=11, noise=1.0)
    loss = STPowerLoss(p=p, w_size=16, w_iter=2)
    torch.manual_seed(99)
    got = loss(*views)
    expected = ref_sub_batched(views, 16, 2, 99, PowerRef(p))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)
    whole = ref_pairwise([ref_power(z, p, "batch") for z in views])
    assert abs(whole.item() - got.item()) > 1e-4
    if p == 0.5:
        torch.manual_seed(99)
        zca = WMSELoss(w_size=16, w_iter=2, method="zca")(*views)
        torch.testing.assert_close(got, zca, rtol=1e-9, atol=1e-11)


def test_st_power_rejects_unknown_precision() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        STPowerLoss(precision="bfloat16")


# =========================================================================== W-MSE


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("n_views", [2, 3])
def test_wmse_whole_batch_matches_cholesky_reference(eps, n_views) -> None:
    views = make_views(n_views, 40, 6, seed=n_views)
    got = WMSELoss(eps=eps)(*views)
    expected = ref_pairwise([ref_cholesky_whiten(z, eps) for z in views])
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("n_views", [2, 3])
def test_wmse_sub_batches_match_reference(n_views) -> None:
    views = make_views(n_views, 64, 4, seed=7, noise=1.0)
    loss = WMSELoss(w_size=16, w_iter=2)
    torch.manual_seed(1234)
    got = loss(*views)
    expected = ref_sub_batched(views, 16, 2, 1234, CholeskyRef())
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)
    # Sub-batching matters: the whole-batch loss is a different number ...
    whole = ref_pairwise([ref_cholesky_whiten(z, 0.0) for z in views])
    assert abs(whole.item() - got.item()) > 1e-4
    # ... and so does the draw: another seed gives other sub-batches.
    torch.manual_seed(4321)
    assert abs(loss(*views).item() - got.item()) > 1e-6


# =========================================================================== CW-RGP


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("n_views", [2, 3])
def test_cwrgp_fixed_groups_match_reference(groups, n_views) -> None:
    views = make_views(n_views, 8, 48, seed=groups)
    # per-group centring (the library's earlier form); the authors' is in test_fidelity.py
    got = CWRGPLoss(groups=groups, random_groups=False, centre="group")(*views)
    expected = ref_pairwise([ref_group_zca_channel(z, groups) for z in views])
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)


def test_cwrgp_fixed_groups_with_sub_batches_match_reference() -> None:
    views = make_views(2, 16, 48, seed=8, noise=1.0)
    torch.manual_seed(5)
    got = CWRGPLoss(groups=2, w_size=4, w_iter=2, random_groups=False, centre="group")(*views)
    expected = ref_sub_batched(views, 4, 2, 5, GroupZCARef(2, False))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("w_size,w_iter", [(None, 1), (None, 2), (4, 2)])
def test_cwrgp_random_groups_match_reference_with_reproduced_permutations(w_size, w_iter) -> None:
    views = make_views(3, 8, 48, seed=9)
    earlier = {"centre": "group", "permute": "per_view"}  # the authors' form: test_fidelity.py
    loss = CWRGPLoss(groups=4, w_size=w_size, w_iter=w_iter, random_groups=True, **earlier)
    torch.manual_seed(77)
    got = loss(*views)
    assert torch.isfinite(got)
    expected = ref_sub_batched(views, w_size, w_iter, 77, GroupZCARef(4, True))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)
    # The partition is random: another seed gives a different value, fixed groups another.
    torch.manual_seed(78)
    assert abs(loss(*views).item() - got.item()) > 1e-6
    fixed = CWRGPLoss(groups=4, w_size=w_size, w_iter=w_iter, random_groups=False, **earlier)
    torch.manual_seed(77)
    assert abs(fixed(*views).item() - got.item()) > 1e-6


# =========================================================================== gradcheck


def _gradcheck(fn, m, d, seed=0):
    views = make_views(2, m, d, seed=seed, noise=0.5)
    inputs = tuple(v.clone().requires_grad_() for v in views)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def _seeded(loss):
    def fn(a, b):
        torch.manual_seed(0)
        return loss(a, b)

    return fn


@pytest.mark.parametrize(
    "loss,m,d",
    [
        (INTLLoss(T=4, beta=0.3, axis="batch"), 8, 4),
        (INTLLoss(T=4, beta=0.3, axis="channel"), 8, 6),
        (INTLLoss(T=4, beta=0.3, axis="channel"), 4, 8),
        (IterNormLoss(T=3, axis="batch"), 8, 4),
        (STPowerLoss(p=0.5), 8, 4),
        (STPowerLoss(p=0.3), 8, 4),
        (STPowerLoss(p=1.5), 8, 4),
        (WMSELoss(), 8, 4),
        (WMSELoss(eps=0.1, w_size=4, w_iter=2), 8, 2),
        (CWRGPLoss(groups=2, random_groups=False), 4, 12),
        (CWRGPLoss(groups=2, random_groups=True), 4, 12),
    ],
    ids=repr,
)
def test_gradcheck(loss, m, d) -> None:
    _gradcheck(_seeded(loss), m, d)


# =========================================================================== edge cases

ALL_LOSSES = [
    INTLLoss(),
    IterNormLoss(),
    STPowerLoss(),
    WMSELoss(),
    CWRGPLoss(groups=2),
]
loss_ids = pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda x: type(x).__name__)


@loss_ids
def test_mismatched_shapes_raise_naming_both(loss) -> None:
    a, b = torch.randn(8, 4), torch.randn(8, 6)
    with pytest.raises(ValueError, match=r"\(8, 4\)") as info:
        loss(a, b)
    assert "(8, 6)" in str(info.value)


@loss_ids
def test_wrong_number_or_rank_of_views_raises(loss) -> None:
    z = torch.randn(8, 4)
    with pytest.raises(ValueError, match="at least 2 views"):
        loss(z)
    with pytest.raises(ValueError, match="at least 2 views"):
        loss([z])
    with pytest.raises(ValueError, match=r"\(m, d\)"):
        loss(z[None], z[None])


@loss_ids
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_view_raises_naming_the_view(loss, bad) -> None:
    a, b = torch.randn(8, 16), torch.randn(8, 16)
    b[3, 2] = bad
    with pytest.raises(ValueError, match="view 1") as info:
        loss(a, b)
    assert "non-finite" in str(info.value)


@pytest.mark.parametrize(
    "loss",
    [
        INTLLoss(T=4, beta=0.2, axis="batch"),
        INTLLoss(T=4, beta=0.2, axis="channel"),
        STPowerLoss(p=0.5),
        WMSELoss(w_size=32, w_iter=2),
        CWRGPLoss(groups=2, w_size=16),
    ],
    ids=repr,
)
@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_half_precision_views_under_autocast(loss, half) -> None:
    m, d = (64, 8) if not isinstance(loss, CWRGPLoss) else (16, 48)
    if isinstance(loss, INTLLoss) and loss.axis == "channel":
        m, d = 16, 48
    views = [v.to(half) for v in make_views(2, m, d, seed=12, dtype=torch.float32)]
    torch.manual_seed(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(*views)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    torch.manual_seed(3)
    upcast = loss(*[v.float() for v in views])
    torch.testing.assert_close(got, upcast, rtol=1e-5, atol=1e-6)
    # float32 views under autocast: the spectral math must not silently drop to bfloat16.
    f32 = [v.float() for v in views]
    torch.manual_seed(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = loss(*f32)
    torch.manual_seed(3)
    torch.testing.assert_close(under, loss(*f32), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "m,d,w_size,axis",
    [
        (32, 8, 8, "batch"),
        (32, 16, 8, "batch"),
        (32, 32, None, "batch"),
        (64, 9, 8, "batch"),
        (8, 4, None, "channel"),  # channel axis: 8 x 8 covariance from 4 channels
    ],
)
def test_wmse_singular_covariance_raises(m, d, w_size, axis) -> None:
    for seed in range(8):  # rounding must never let a singular covariance through
        views = make_views(2, m, d, seed=seed, dtype=torch.float32)
        with pytest.raises(ValueError, match="positive definite"):
            WMSELoss(w_size=w_size, axis=axis)(*views)


def test_cwrgp_cholesky_groups_decide_positive_definiteness() -> None:
    """Batch-axis Cholesky with groups: each d/g x d/g covariance needs d/g <= m - 1."""
    views = make_views(2, 8, 16, seed=2)
    with pytest.raises(ValueError, match="positive definite"):  # 8x8 from 8 samples
        CWRGPLoss(groups=2, method="cholesky", axis="batch", random_groups=False)(*views)
    got = CWRGPLoss(groups=4, method="cholesky", axis="batch", random_groups=False)(*views)
    expected = ref_pairwise(
        [
            torch.cat([ref_cholesky_whiten(z[:, 4 * k : 4 * k + 4], 0.0) for k in range(4)], 1)
            for z in views
        ]
    )
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)


def test_wmse_shrinkage_makes_small_sub_batches_usable() -> None:
    views = make_views(2, 32, 8, seed=1)
    torch.manual_seed(0)
    got = WMSELoss(w_size=8, eps=0.5)(*views)
    expected = ref_sub_batched(views, 8, 1, 0, CholeskyRef(0.5))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)


def test_negative_beta_raises() -> None:
    with pytest.raises(ValueError, match="beta"):
        INTLLoss(beta=-0.1)


@pytest.mark.parametrize("axis", ["batch", "channel"])
def test_constant_views_complete_collapse(axis) -> None:
    """All entries equal: the whitened output is exactly 0, so invariance = 2 (cosine 0) and each
    view's trace loss is the full size n of the whitened covariance: total = 2 + 2 β n."""
    m, d = 16, 12
    z1 = torch.full((m, d), 0.7, dtype=F64, requires_grad=True)
    z2 = torch.full((m, d), 0.7, dtype=F64, requires_grad=True)
    beta = 0.25
    loss = INTLLoss(T=4, beta=beta, axis=axis)
    total = loss(z1, z2)
    terms = loss.compute(z1, z2).terms
    n = m if axis == "channel" else d
    assert total.item() == pytest.approx(2 + 2 * beta * n, rel=1e-12)
    assert terms["invariance"].item() == pytest.approx(2.0, rel=1e-12)
    assert terms["trace"].item() == pytest.approx(2 * n, rel=1e-12)
    total.backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    # The default β on the channel axis: n = m = 16 -> 0.01.
    assert INTLLoss(axis="channel")(z1, z2).item() == pytest.approx(2 + 2 * 0.01 * m, rel=1e-9)


def test_rows_collapsed_to_one_vector_on_channel_axis() -> None:
    """Every sample equal to one non-constant vector c: on the channel axis Σ = s 1 1^T has the
    single eigenvalue tr Σ (x = 1, h_T(1) = 1), so Ẑ = Z_c / sqrt(tr Σ), (Σ_Ẑ)_jj = 1/m, and the
    trace loss per view is m (1 - 1/m)²; the views agree, so invariance is 0."""
    m, d = 8, 12
    c = torch.linspace(-1.0, 2.0, d, dtype=F64)
    z1 = c.expand(m, d).clone().requires_grad_()
    z2 = c.expand(m, d).clone().requires_grad_()
    beta = 0.5
    total = INTLLoss(T=3, beta=beta, axis="channel")(z1, z2)
    assert total.item() == pytest.approx(beta * 2 * m * (1 - 1 / m) ** 2, rel=1e-10)
    total.backward()
    assert torch.isfinite(z1.grad).all()


# =========================================================================== training sanity


def _condition(z: torch.Tensor) -> float:
    zc = z - z.mean(dim=0)
    lam = torch.linalg.eigvalsh((zc.T @ zc / (z.shape[0] - 1)).double())
    return (lam[0] / lam[-1]).item()


def _train(loss_fn, seed: int = 0, steps: int = 200) -> float:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 16, generator=g)
    w = (0.25 * torch.randn(16, 8, generator=g)).requires_grad_()
    opt = torch.optim.Adam([w], lr=1e-2)
    for _ in range(steps):
        v1 = x + 0.1 * torch.randn(64, 16, generator=g)
        v2 = x + 0.1 * torch.randn(64, 16, generator=g)
        loss = loss_fn(v1 @ w, v2 @ w)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _condition((x @ w).detach())


def test_training_intl_keeps_spectrum_iternorm_collapses() -> None:
    """Section 4.2 in miniature: z = x W (64 x 16 -> 8), two noisy views, 200 Adam steps.

    Measured (seed 0, batch axis, T = 4): initial λ_min/λ_max ≈ 0.019; IterNorm-only ends at
    ≈ 2e-6 (dimensional collapse); INTL with β = 0.1 ends at ≈ 0.91.
    """
    intl = _train(INTLLoss(T=4, beta=0.1, axis="batch"))
    iternorm_only = _train(IterNormLoss(T=4, axis="batch"))
    assert intl > 0.5
    assert iternorm_only < 1e-3
    assert intl > 100 * iternorm_only


def test_default_beta_of_zero_warns_that_intl_is_iternorm_only():
    z1, z2 = torch.randn(16, 4), torch.randn(16, 4)
    loss = INTLLoss(axis="batch")
    with pytest.warns(UserWarning, match="IterNorm-only"):
        loss(z1, z2)
    assert loss.trace_weight(z1) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        INTLLoss(axis="batch", beta=0.1)(z1, z2)  # explicit beta: no warning
