"""IterNorm (INTL paper Eqn. 3, Theorem 1, Propositions 1-2) and its numerical stability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specssl.spectral import f_T, h_T, iternorm, newton_schulz_inverse_sqrt, zca_whiten

AXES = ("batch", "channel")


# ----------------------------------------------------------------------------- scalar functions


def scalar_f(x: float, T: int) -> float:
    """Plain-Python transcription of Theorem 1: f_0 = 1, f_{k+1} = 3/2 f_k - 1/2 x f_k^3."""
    f = 1.0
    for _ in range(T):
        f = 1.5 * f - 0.5 * x * f * f * f
    return f


@pytest.mark.parametrize("T", [0, 1, 2, 3, 5, 8, 40])
def test_f_T_matches_scalar_loop(T):
    xs = [0.0, 1e-6, 0.003, 0.1, 0.37, 0.5, 0.9, 1.0, 1.7]
    got = f_T(torch.tensor(xs, dtype=torch.float64), T)
    want = torch.tensor([scalar_f(x, T) for x in xs], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0)
    # Python scalars are accepted too (evaluated in the default dtype), and h_T = x f_T^2.
    assert float(f_T(0.25, T)) == pytest.approx(scalar_f(0.25, T), rel=1e-6)
    assert float(h_T(0.25, T)) == pytest.approx(0.25 * scalar_f(0.25, T) ** 2, rel=1e-6)
    x = torch.tensor(xs, dtype=torch.float64)
    torch.testing.assert_close(h_T(x, T), x * want**2, rtol=1e-14, atol=0)


def test_f_T_known_values():
    # f_1(x) = 3/2 - x/2 and f_T(1) = 1 for every T; f_T(0) = (3/2)^T.
    x = torch.tensor([0.2, 0.6], dtype=torch.float64)
    torch.testing.assert_close(f_T(x, 1), 1.5 - 0.5 * x, rtol=0, atol=1e-15)
    assert float(f_T(1.0, 17)) == 1.0
    assert float(f_T(0.0, 6)) == pytest.approx(1.5**6, rel=1e-15)


@pytest.mark.parametrize("bad", [-1, 2.0, True])
def test_T_must_be_non_negative_int(bad):
    with pytest.raises(ValueError, match="iteration number T must be a non-negative int"):
        f_T(0.5, bad)
    with pytest.raises(ValueError, match="iteration number T must be a non-negative int"):
        iternorm(torch.randn(6, 3, dtype=torch.float64), bad)


X_GRID = torch.cat(
    [
        torch.logspace(-8, -1, 70, dtype=torch.float64),
        torch.linspace(0.11, 0.999, 50, dtype=torch.float64),
    ]
)
ROUND = 8 * torch.finfo(torch.float64).eps  # rounding slack once h_T has converged to 1


@pytest.mark.parametrize("T", range(0, 13))
def test_proposition_1_range_and_monotone_in_x(T):
    h = h_T(X_GRID, T)
    assert bool((h > 0).all())
    assert bool((h <= 1 + ROUND).all())  # h reaches 1 only up to rounding, once converged
    # Strictly increasing in x wherever float64 can still resolve the distance to 1.
    resolvable = (1 - h[1:]) > 1e-10
    assert int(resolvable.sum()) >= 45  # the strict check is not vacuous
    dh = h[1:] - h[:-1]
    assert bool((dh[resolvable] > 0).all())
    assert bool((dh >= -ROUND).all())


@pytest.mark.parametrize("T", range(0, 12))
def test_proposition_2_increasing_in_T(T):
    h0, h1 = h_T(X_GRID, T), h_T(X_GRID, T + 1)
    resolvable = (1 - h1) > 1e-10
    assert int(resolvable.sum()) >= 45
    assert bool((h1[resolvable] > h0[resolvable]).all())
    assert bool((h1 >= h0 - ROUND).all())


def test_h_T_tends_to_one():
    """lim_{T->inf} h_T(x) = 1 for x in (0, 1] (the paper's equation after Theorem 1)."""
    x = torch.tensor([1e-4, 0.01, 0.3, 0.999, 1.0], dtype=torch.float64)
    torch.testing.assert_close(h_T(x, 40), torch.ones_like(x), rtol=0, atol=1e-13)
    # ... but the smaller the eigenvalue, the more steps it needs (Sec. 3.3).
    small = torch.tensor(1e-4, dtype=torch.float64)
    assert float(h_T(small, 8)) < 0.1 < 0.999 < float(h_T(small, 20))


# ------------------------------------------------------------------------------- Theorem 1


def numpy_iternorm(z: np.ndarray, T: int, axis: str, groups: int) -> np.ndarray:
    """Independent float64 reference: Z_c U diag(f_T(x)) U^T / sqrt(tr Σ) per group."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    c = z.shape[1] // groups
    for k in range(groups):
        block = z[:, k * c : (k + 1) * c]
        x = block if axis == "batch" else block.T  # (n, c')
        xc = x - x.mean(axis=0, keepdims=True)
        sigma = xc.T @ xc / (x.shape[0] - 1)
        tr = np.trace(sigma)
        evals, evecs = np.linalg.eigh(sigma / tr)
        f = np.ones_like(evals)
        for _ in range(T):  # Theorem 1's scalar iteration on each eigenvalue
            f = 1.5 * f - 0.5 * evals * f**3
        y = xc @ (evecs * f) @ evecs.T / np.sqrt(tr)
        out[:, k * c : (k + 1) * c] = y if axis == "batch" else y.T
    return out


def spectra_for(axis, groups, gen):
    """Per-group prescribed spectra: batch (m=12, d=8), channel (m=5, d=16)."""
    k = 8 // groups if axis == "batch" else 5
    lams = []
    for _ in range(groups):
        lam = torch.logspace(0.5, -2.5, k, dtype=torch.float64)
        lams.append(lam * torch.empty(k, dtype=torch.float64).uniform_(0.5, 2, generator=gen))
    return lams


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("T", [0, 1, 3, 6, 10])
@pytest.mark.parametrize("use_gram", [None, False, True])
@pytest.mark.parametrize("groups", [1, 2])
def test_theorem_1_spectrum(
    axis, T, use_gram, groups, gen, make_axis_embedding, covariances, h_ref
):
    m, d = (12, 8) if axis == "batch" else (5, 16)
    lams = spectra_for(axis, groups, gen)
    z = make_axis_embedding(m, d, lams, axis)
    out = iternorm(z, T, axis, groups=groups, use_gram=use_gram)
    assert out.shape == z.shape and out.dtype == torch.float64
    # Theorem 1: the covariance of each group has eigenvalues h_T(λ_i / tr Σ).
    for cov, lam in zip(covariances(out.numpy(), axis, groups), lams, strict=True):
        x = (lam / lam.sum()).numpy()
        want = np.sort(h_ref(x, T))
        np.testing.assert_allclose(np.linalg.eigvalsh(cov), want, rtol=0, atol=1e-10)
    # The output itself equals Z_c P_T / sqrt(tr Σ) with P_T = U f_T(Λ_N) U^T.
    want = numpy_iternorm(z.numpy(), T, axis, groups)
    np.testing.assert_allclose(out.numpy(), want, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("m", "d", "axis", "groups"),
    [(12, 5, "batch", 1), (5, 12, "batch", 1), (7, 24, "channel", 2), (20, 6, "channel", 3)],
)
@pytest.mark.parametrize("T", [1, 5, 9])
def test_push_through_gram_equals_covariance_path(m, d, axis, groups, T, gen):
    z = torch.randn(3, m, d, generator=gen, dtype=torch.float64)  # leading batch dim too
    a = iternorm(z, T, axis, groups=groups, use_gram=False)
    b = iternorm(z, T, axis, groups=groups, use_gram=True)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    # leading dimensions are independent problems
    torch.testing.assert_close(a[1], iternorm(z[1], T, axis, groups=groups), rtol=0, atol=1e-12)


def test_T_zero_only_centres_and_scales(gen):
    z = torch.randn(9, 4, generator=gen, dtype=torch.float64) * 3 + 1
    zc = z - z.mean(0)
    tr = (zc**2).sum() / 8
    torch.testing.assert_close(iternorm(z, 0), zc / tr.sqrt(), rtol=0, atol=1e-14)


def test_newton_schulz_is_eqn_3(gen):
    """The coupled form equals the naive Eqn. 3 recursion in float64 on a mild matrix."""
    a = torch.randn(10, 4, generator=gen, dtype=torch.float64)
    s = a.T @ a
    s_n = s / s.trace()
    p = torch.eye(4, dtype=torch.float64)
    for T in range(7):
        torch.testing.assert_close(newton_schulz_inverse_sqrt(s_n, T), p, rtol=0, atol=1e-12)
        p = 0.5 * (3 * p - p @ p @ p @ s_n)


@pytest.mark.parametrize("axis", AXES)
def test_large_T_whitens(axis, gen, make_axis_embedding, covariances):
    """T = 40 in float64 reaches the whitened fixed point: covariance = I on the range."""
    m, d = (30, 6) if axis == "batch" else (6, 30)
    lam = torch.logspace(0, -3, 6, dtype=torch.float64)
    z = make_axis_embedding(m, d, [lam], axis)
    (cov,) = covariances(iternorm(z, 40, axis).numpy(), axis)
    np.testing.assert_allclose(cov, np.eye(6), rtol=0, atol=1e-10)


@pytest.mark.parametrize("axis", AXES)
def test_large_T_equals_zca_when_rank_deficient(axis, gen):
    """d > m (batch) / m > d (channel): large T converges to ZCA (the projector on the range).

    T = 30, not 40: the null space is multiplied by f_T(0) = 1.5^T, which turns float64
    rounding (~1e-16) into 1.5^40 * 1e-16 ~ 1e-9 at T = 40."""
    z = torch.randn(6, 10, generator=gen, dtype=torch.float64)
    if axis == "channel":
        z = z.T.contiguous()
    torch.testing.assert_close(iternorm(z, 30, axis), zca_whiten(z, axis), rtol=0, atol=1e-10)


# --------------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("use_gram", [None, False, True])
@pytest.mark.parametrize("T", [2, 5, 10])
def test_rank_deficient_batch_axis(use_gram, T, gen, covariances, h_ref):
    """d > m on the batch axis: zero eigenvalues stay 0, the non-zero ones follow h_T."""
    m, d = 6, 10
    z = torch.randn(m, d, generator=gen, dtype=torch.float64)
    out = iternorm(z, T, use_gram=use_gram)
    assert bool(torch.isfinite(out).all())
    (cov_in,) = covariances(z.numpy(), "batch")
    (cov_out,) = covariances(out.numpy(), "batch")
    lam = np.linalg.eigvalsh(cov_in).clip(0)
    x = lam / lam.sum()
    want = h_ref(np.where(x > 1e-13, x, 0.0), T)  # rank m - 1 = 5: five exact zeros
    got = np.linalg.eigvalsh(cov_out)
    np.testing.assert_allclose(got, np.sort(want), rtol=0, atol=1e-10)
    assert np.abs(got[: d - m + 1]).max() < 1e-12


def test_duplicated_channel_is_finite_and_symmetric(gen, covariances, h_ref):
    z = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    z = torch.cat([z, z[:, 2:3]], dim=1)  # channel 5 duplicates channel 2
    out = iternorm(z, 6)
    assert bool(torch.isfinite(out).all())
    # P_T is a polynomial in Σ, which is invariant under swapping channels 2 and 5.
    torch.testing.assert_close(out[:, 2], out[:, 5], rtol=0, atol=1e-12)
    evals = np.linalg.eigvalsh(covariances(out.numpy(), "batch")[0])
    assert abs(evals[0]) < 1e-12  # the duplicated direction stays at h_T(0) = 0
    assert evals[1] > 1e-3


def collapsed(axis: str, dtype: torch.dtype) -> torch.Tensor:
    """(6, 4) input with zero covariance on ``axis``: all rows equal (batch) or every row
    constant over its channels (channel), with non-zero, non-uniform values."""
    if axis == "batch":
        return torch.tensor([[0.8, -1.3, 3.7, 1.2]], dtype=dtype).expand(6, 4).clone()
    return torch.linspace(-2.0, 3.0, 6, dtype=dtype)[:, None].expand(6, 4).clone()


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("use_gram", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_constant_input_gives_zeros_and_finite_grad(axis, use_gram, dtype):
    z = collapsed(axis, dtype).requires_grad_(True)
    out = iternorm(z, 5, axis, use_gram=use_gram)
    assert torch.equal(out, torch.zeros_like(out))
    w = torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)
    (grad,) = torch.autograd.grad((out * w).sum(), z)
    assert bool(torch.isfinite(grad).all())


# ------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("use_gram", [False, True])
def test_iternorm_gradcheck(axis, groups, use_gram, gen):
    z = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: iternorm(t, 5, axis, groups=groups, use_gram=use_gram), (z,)
    )


# ------------------------------------------------------------------------------- stability


def naive_uncoupled_iternorm(z: torch.Tensor, T: int) -> torch.Tensor:
    """Eqn. 3 transcribed literally (uncoupled Newton): why the library uses the coupled form."""
    zc = z - z.mean(0)
    sigma_n = zc.T @ zc / (z.shape[0] - 1) / (zc.T @ zc / (z.shape[0] - 1)).trace()
    p = torch.eye(z.shape[1], dtype=z.dtype)
    for _ in range(T):
        p = 0.5 * (3 * p - p @ p @ p @ sigma_n)
    return zc @ p / ((zc**2).sum() / (z.shape[0] - 1)).sqrt()


@pytest.fixture(scope="module")
def ill_conditioned(embedding_fn):
    """float32 (512, 64) embedding with covariance eigenvalues logspace(0, -6): cond = 1e6."""
    lam = torch.logspace(0, -6, 64, dtype=torch.float64)
    z = embedding_fn(512, lam, torch.Generator().manual_seed(1234))
    return z.float(), lam


def relative_spectrum_error(out: torch.Tensor, lam: torch.Tensor, T: int) -> float:
    zc = out.double() - out.double().mean(0)
    got = torch.linalg.eigvalsh(zc.T @ zc / (out.shape[0] - 1))
    want = h_T(lam / lam.sum(), T).sort().values
    return float(((got - want).abs() / want).max())


# Measured max relative error (seed 1234; worst of seeds 0-7 in brackets): T=4: 3e-6 (7e-6),
# 11: 1.4e-5 (2e-5), 15: 3.7e-4 (5e-4), 20: 1.2e-2 (1.3e-2), 30: 2.9e-2 (3.4e-2).
@pytest.mark.parametrize(("T", "tol"), [(4, 3e-5), (11, 1e-4), (15, 2e-3), (20, 3e-2), (30, 0.05)])
def test_float32_large_T_is_stable(ill_conditioned, T, tol):
    z, lam = ill_conditioned
    out = iternorm(z, T)
    assert out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())
    assert relative_spectrum_error(out, lam, T) < tol


def test_naive_uncoupled_eqn_3_diverges(ill_conditioned):
    """The paper's NaN for T >= 11 is reproduced by the uncoupled form on the same input."""
    z, lam = ill_conditioned
    for T in (4,):  # sanity: the transcription is right while it is still stable
        assert relative_spectrum_error(naive_uncoupled_iternorm(z, T), lam, T) < 1e-4
    out = naive_uncoupled_iternorm(z, 11)
    assert not bool(torch.isfinite(out).all()) or relative_spectrum_error(out, lam, 11) > 1.0


@pytest.mark.parametrize("T", [10, 20, 25, 30])
def test_float32_collapsed_embedding_large_T(T, gen):
    """Dimensional collapse (rank 4 of 8) is exactly the regime where large T is wanted.

    T >= 11 runs in float64 for float32 input (``FLOAT64_FROM_T``); in float32 this input
    diverged at T = 25-30 (rounding makes null eigenvalues negative, f_T(x < 0) explodes)."""
    z = torch.randn(32, 4, generator=gen) @ torch.randn(4, 8, generator=gen)
    out = iternorm(z, T)
    assert bool(torch.isfinite(out).all())
    zc = z.double() - z.double().mean(0)
    lam = torch.linalg.eigvalsh(zc.T @ zc / 31).clamp_min(0)
    want = h_T(torch.where(lam > 1e-6 * lam.max(), lam / lam.sum(), 0), T)
    oc = out.double() - out.double().mean(0)
    got = torch.linalg.eigvalsh(oc.T @ oc / 31)
    torch.testing.assert_close(got, want.sort().values, rtol=0, atol=1e-3)


@pytest.mark.parametrize("T", [40, 60])
def test_float32_collapsed_embedding_very_large_T_stays_finite_and_bounded(T, gen):
    """Beyond T ~ 35 the float32 data's own tiny (~1e-15 relative) eigenvalues get whitened
    too, as Theorem 1 says they should, but they are only known to ~10% in float64, so their
    output eigenvalues land near (not at) 1. What must hold: finite, no blow-up."""
    z = torch.randn(32, 4, generator=gen) @ torch.randn(4, 8, generator=gen)
    out = iternorm(z, T).double()
    assert bool(torch.isfinite(out).all())
    oc = out - out.mean(0)
    assert float(torch.linalg.eigvalsh(oc.T @ oc / 31).max()) <= 1.5


# ------------------------------------------------------------- plain iteration (Eqn. 3 as is)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("T", [0, 1, 3, 6])
@pytest.mark.parametrize("use_gram", [None, False, True])
@pytest.mark.parametrize("groups", [1, 2])
def test_plain_iteration_matches_eigh_reference(
    axis, T, use_gram, groups, gen, make_axis_embedding
):
    """``iteration="plain"`` in float64 equals the eigendecomposition reference
    ``Z_c U f_T(Λ_N) U^T / sqrt(tr Σ)`` (Theorem 1) on a cond-~1e3 spectrum for T <= 6.

    Not at T = 10: there the plain form's error on these inputs has already grown to 8e-7 in
    float64 (the coupled form: < 1e-10, test_theorem_1_spectrum) — the start of the breakdown
    that test_plain_breakdown_is_reported_not_hidden follows to NaN."""
    m, d = (12, 8) if axis == "batch" else (5, 16)
    z = make_axis_embedding(m, d, spectra_for(axis, groups, gen), axis)
    out = iternorm(z, T, axis, groups=groups, use_gram=use_gram, iteration="plain")
    assert out.dtype == torch.float64
    want = numpy_iternorm(z.numpy(), T, axis, groups)
    np.testing.assert_allclose(out.numpy(), want, rtol=0, atol=1e-10)
    coupled = iternorm(z, T, axis, groups=groups, use_gram=use_gram)
    torch.testing.assert_close(out, coupled, rtol=0, atol=1e-10)


@pytest.mark.parametrize("T", [1, 2, 4, 8])
def test_plain_iteration_equals_authors_transcription(T, gen):
    """Same as the independent transcription of the authors' Whitening2dIterNorm (channel)."""
    from specssl.reference.authors import authors_iternorm_channel

    z = torch.randn(8, 32, generator=gen, dtype=torch.float64)
    got = iternorm(z, T, "channel", iteration="plain")
    torch.testing.assert_close(got, authors_iternorm_channel(z, T), rtol=0, atol=1e-12)


@pytest.mark.parametrize("T", [0, 1, 4, 7])
def test_plain_newton_schulz_inverse_sqrt_is_eqn_3(T, gen):
    a = torch.randn(10, 4, generator=gen, dtype=torch.float64)
    s_n = a.T @ a / (a.T @ a).trace()
    p = torch.eye(4, dtype=torch.float64)
    for _ in range(T):
        p = 1.5 * p - 0.5 * torch.linalg.matrix_power(p, 3) @ s_n
    got = newton_schulz_inverse_sqrt(s_n, T, "plain")
    torch.testing.assert_close(got, p, rtol=0, atol=1e-13)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("use_gram", [False, True])
def test_plain_iternorm_gradcheck(axis, use_gram, gen):
    z = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: iternorm(t, 5, axis, use_gram=use_gram, iteration="plain"), (z,)
    )


def test_unknown_iteration_is_rejected():
    z = torch.randn(6, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="iteration must be one of"):
        iternorm(z, 3, iteration="uncoupled")
    with pytest.raises(ValueError, match="iteration must be one of"):
        newton_schulz_inverse_sqrt(torch.eye(3), 2, "newton")


def test_plain_breakdown_is_reported_not_hidden(ill_conditioned):
    """The unstable reference breaks down on the cond-1e6 float32 input, and the breakdown
    reaches the caller. Measured max relative spectrum error on this input, float32: <= 1.2e-5
    up to T = 8, 6e-4 at T = 9, 0.32 at T = 10, 6.7e3 at T = 11 (the paper's "NaN for
    T >= 11"), non-finite output from T = 15. float64 (same input): 1.4e-6 (the float32
    rounding of the input) up to T = 12, 0.058 at T = 13, 1e5 at T = 14, overflow later. It
    stays float32 (no upcast, unlike the coupled form's T >= 11). Nothing raises, nothing is
    clamped. The coupled form on the same input stays finite (test_float32_large_T_is_stable).
    """
    z, lam = ill_conditioned
    assert relative_spectrum_error(iternorm(z, 4, iteration="plain"), lam, 4) < 3e-5
    late = iternorm(z, 11, iteration="plain")
    assert late.dtype == torch.float32
    assert not bool(torch.isfinite(late).all()) or relative_spectrum_error(late, lam, 11) > 1.0
    assert not bool(torch.isfinite(iternorm(z, 20, iteration="plain")).all())
    z64 = z.double()
    assert relative_spectrum_error(iternorm(z64, 11, iteration="plain"), lam, 11) < 1e-4
    assert relative_spectrum_error(iternorm(z64, 14, iteration="plain"), lam, 14) > 1.0
    assert not bool(torch.isfinite(iternorm(z64, 40, iteration="plain")).all())
    # The gradient of the broken-down output is non-finite too, and returned as such.
    zg = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(iternorm(zg, 20, iteration="plain").sum(), zg)
    assert not bool(torch.isfinite(grad).all())


def test_losses_thread_the_iteration_option(gen):
    """``INTLLoss(iteration=...)`` / ``IterNormLoss`` use the chosen form; the recipe override
    ``method.loss.iteration=plain`` reaches the loss (method.loss is passed as kwargs)."""
    from specssl.losses import INTLLoss, IterNormLoss
    from specssl.methods import build_method
    from specssl.models import build_backbone
    from specssl.train.config import ConfigError, load_config

    z1, z2 = (torch.randn(16, 32, generator=gen, dtype=torch.float64) for _ in range(2))
    plain = INTLLoss(T=4, beta=0.05, iteration="plain")
    assert plain.iteration == "plain" and "iteration=plain" in repr(plain)
    torch.testing.assert_close(plain(z1, z2), INTLLoss(T=4, beta=0.05)(z1, z2), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        IterNormLoss(T=3, iteration="plain").whiten(z1),
        iternorm(z1, 3, "channel", iteration="plain"),
        rtol=0,
        atol=0,
    )
    with pytest.raises(ValueError, match="iteration must be one of"):
        INTLLoss(iteration="bogus")
    for name in ("intl", "iternorm"):
        cfg = load_config(
            None,
            [
                f"method.name={name}",
                "method.proj_hidden_dim=16",
                "method.proj_output_dim=8",
                "method.loss.iteration=plain",
            ],
        )
        method = build_method(build_backbone("resnet18", width=4), cfg.method)
        assert method.loss_fn.iteration == "plain"
    cfg = load_config(None, ["method.name=intl", "method.loss.iteration=bogus"])
    with pytest.raises((ConfigError, ValueError), match="iteration"):
        build_method(build_backbone("resnet18", width=4), cfg.method)
