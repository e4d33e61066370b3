"""Explicit spectral transformations: power transform / ZCA, PCA and Cholesky whitening."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from specssl.spectral import (
    cholesky_whiten,
    pca_whiten,
    power_function,
    power_transform,
    symmetric_matrix_function,
    zca_whiten,
)

AXES = ("batch", "channel")
LAM = [3.0, 1.7, 0.9, 0.4, 0.15]  # distinct, well separated: a 5-dim covariance spectrum


def canonical(z: np.ndarray, axis: str) -> np.ndarray:
    """Observations x (n, c) of one group: z itself (batch) or z^T (channel)."""
    return z if axis == "batch" else z.T


def from_canonical(x: np.ndarray, axis: str) -> np.ndarray:
    return x if axis == "batch" else x.T


def np_power_transform(z: np.ndarray, p: float, axis: str, eps: float = 0.0) -> np.ndarray:
    """Reference ST: Z_c U (Λ + eps)^-p U^T, null space (λ ~ 0, eps = 0) mapped to 0."""
    x = canonical(np.asarray(z, dtype=np.float64), axis)
    xc = x - x.mean(axis=0)
    evals, evecs = np.linalg.eigh(xc.T @ xc / (x.shape[0] - 1))
    if eps > 0:
        g = (evals.clip(0) + eps) ** -p
    else:
        null = evals <= 1e-12 * evals.max()
        g = np.where(null, 1.0, evals) ** -p
        g[null] = 0.0 if p > 0 else 1.0
    return from_canonical(xc @ (evecs * g) @ evecs.T, axis)


def embedding(make_axis_embedding, axis: str, lam=LAM) -> torch.Tensor:
    """(m, d) with group spectrum ``lam``: batch (m=11, d=5), channel (m=5, d=11)."""
    m, d = (11, len(lam)) if axis == "batch" else (len(lam), 11)
    return make_axis_embedding(m, d, [torch.tensor(lam, dtype=torch.float64)], axis)


# ---------------------------------------------------------------------------- power transform


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 1.0, 1.5])
@pytest.mark.parametrize("use_gram", [False, True])
def test_power_transform_spectrum(axis, p, use_gram, make_axis_embedding, covariances):
    """Sec. 3.2: the output covariance has eigenvalues λ^(1 - 2p)."""
    z = embedding(make_axis_embedding, axis)
    out = power_transform(z, p, axis, use_gram=use_gram)
    assert out.shape == z.shape and out.dtype == torch.float64
    (cov,) = covariances(out.numpy(), axis)
    want = np.sort(np.asarray(LAM) ** (1 - 2 * p))
    np.testing.assert_allclose(np.linalg.eigvalsh(cov), want, rtol=1e-10, atol=0)
    np.testing.assert_allclose(out.numpy(), np_power_transform(z.numpy(), p, axis), atol=1e-10)


@pytest.mark.parametrize("axis", AXES)
def test_power_zero_is_centring(axis, gen):
    z = torch.randn(7, 9, generator=gen, dtype=torch.float64) + 5
    zc = z - z.mean(0) if axis == "batch" else z - z.mean(1, keepdim=True)
    torch.testing.assert_close(power_transform(z, 0.0, axis), zc, rtol=0, atol=1e-12)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("p", [0.5, 1.0])
def test_power_transform_eps_regularises(axis, p, make_axis_embedding):
    z = embedding(make_axis_embedding, axis)
    out = power_transform(z, p, axis, eps=0.3)
    np.testing.assert_allclose(out.numpy(), np_power_transform(z.numpy(), p, axis, 0.3), atol=1e-10)


@pytest.mark.parametrize("axis", AXES)
def test_zca_is_identity_covariance_and_symmetric(axis, make_axis_embedding, covariances):
    z = embedding(make_axis_embedding, axis)
    out = zca_whiten(z, axis)
    torch.testing.assert_close(out, power_transform(z, 0.5, axis), rtol=0, atol=0)
    (cov,) = covariances(out.numpy(), axis)
    np.testing.assert_allclose(cov, np.eye(5), rtol=0, atol=1e-10)
    # ZCA = the *symmetric* whitening matrix: Ẑ = Z_c W with W = Σ^-1/2 symmetric, so the
    # cross-covariance Z_c^T Ẑ = Σ W = Σ^1/2 is symmetric positive definite.
    x, y = canonical(z.numpy(), axis), canonical(out.numpy(), axis)
    cross = (x - x.mean(0)).T @ y
    np.testing.assert_allclose(cross, cross.T, atol=1e-10)
    assert np.linalg.eigvalsh(cross).min() > 0


@pytest.mark.parametrize("groups", [2, 4])
def test_power_transform_groups_are_independent(groups, gen):
    z = torch.randn(10, 8, generator=gen, dtype=torch.float64)
    out = power_transform(z, 0.75, "batch", groups=groups)
    c = 8 // groups
    for k in range(groups):
        block = slice(k * c, (k + 1) * c)
        torch.testing.assert_close(
            out[:, block], power_transform(z[:, block], 0.75), atol=1e-12, rtol=0
        )


# ----------------------------------------------------------------------------- rank deficiency


@pytest.mark.parametrize("p", [0.5, 1.5])
@pytest.mark.parametrize("use_gram", [False, True])
def test_power_transform_rank_deficient(p, use_gram, gen, covariances):
    """d > m on the batch axis: identity on the range (ZCA), zeros on the null space."""
    m, d = 6, 10
    z = torch.randn(m, d, generator=gen, dtype=torch.float64)
    out = power_transform(z, p, use_gram=use_gram)
    assert bool(torch.isfinite(out).all())
    (cov_in,) = covariances(z.numpy(), "batch")
    evals, evecs = np.linalg.eigh(cov_in)
    r = m - 1
    range_basis = evecs[:, -r:]
    (cov_out,) = covariances(out.numpy(), "batch")
    want = (range_basis * evals[-r:] ** (1 - 2 * p)) @ range_basis.T
    np.testing.assert_allclose(cov_out, want, rtol=0, atol=1e-9)
    if p == 0.5:  # ZCA: the orthogonal projector onto the range of Σ
        np.testing.assert_allclose(cov_out, range_basis @ range_basis.T, rtol=0, atol=1e-10)


@pytest.mark.parametrize("fn", [zca_whiten, pca_whiten, lambda z, a: power_transform(z, 1.5, a)])
@pytest.mark.parametrize("axis", AXES)
def test_constant_input_gives_zeros_and_finite_grad(fn, axis):
    """Complete collapse maps to exact zeros. The gradient is finite for the matrix-function
    ops; pca_whiten differentiates eigh's eigenvectors, which is documented as undefined at
    repeated eigenvalues (here all λ = 0), so only its forward is checked."""
    z = torch.full((6, 4), 2.5, dtype=torch.float64)
    if axis == "batch":
        z = z + torch.tensor([0.0, 1.0, -3.0, 0.25], dtype=torch.float64)
    else:
        z = z * torch.arange(1.0, 7.0, dtype=torch.float64)[:, None]
    z.requires_grad_(True)
    out = fn(z, axis)
    assert torch.equal(out, torch.zeros_like(out))
    if fn is pca_whiten:
        return
    w = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)
    (grad,) = torch.autograd.grad((out * w).sum(), z)
    assert bool(torch.isfinite(grad).all())


# --------------------------------------------------------------------------------- PCA


@pytest.mark.parametrize("axis", AXES)
def test_pca_whiten_matches_eigh_reference(axis, make_axis_embedding, covariances):
    z = embedding(make_axis_embedding, axis)
    out = pca_whiten(z, axis)
    (cov,) = covariances(out.numpy(), axis)
    np.testing.assert_allclose(cov, np.eye(5), rtol=0, atol=1e-10)
    x = canonical(z.numpy(), axis)
    xc = x - x.mean(0)
    evals, evecs = np.linalg.eigh(xc.T @ xc / (x.shape[0] - 1))
    evals, evecs = evals[::-1], evecs[:, ::-1]  # descending: component 0 = top eigenvector
    np.testing.assert_allclose(evals, LAM, rtol=1e-10)
    want = xc @ evecs / np.sqrt(evals)
    got = canonical(out.numpy(), axis)
    np.testing.assert_allclose(np.abs(got), np.abs(want), rtol=0, atol=1e-10)  # up to sign
    # each component is ±1 times the reference component (one sign per column)
    signs = np.sign((got * want).sum(0))
    np.testing.assert_allclose(got, want * signs, rtol=0, atol=1e-10)


def test_pca_whiten_rank_deficient_zeros_null_components(gen):
    z = torch.randn(4, 7, generator=gen, dtype=torch.float64)
    out = pca_whiten(z)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out[:, 3:], torch.zeros(4, 4, dtype=torch.float64), rtol=0, atol=0)
    cov = np.cov(out.numpy(), rowvar=False)
    np.testing.assert_allclose(cov[:3, :3], np.eye(3), atol=1e-10)


# ------------------------------------------------------------------------------- Cholesky


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_cholesky_whiten_matches_scipy(axis, eps, make_axis_embedding, covariances):
    z = embedding(make_axis_embedding, axis)
    out = cholesky_whiten(z, axis, eps)
    x = canonical(z.numpy(), axis)
    xc = x - x.mean(0)
    sigma = xc.T @ xc / (x.shape[0] - 1)
    sigma = (1 - eps) * sigma + eps * np.eye(5)
    chol = scipy.linalg.cholesky(sigma, lower=True)
    want = scipy.linalg.solve_triangular(chol, xc.T, lower=True).T  # Z_c L^-T
    np.testing.assert_allclose(canonical(out.numpy(), axis), want, rtol=0, atol=1e-10)
    if eps == 0:
        (cov,) = covariances(out.numpy(), axis)
        np.testing.assert_allclose(cov, np.eye(5), rtol=0, atol=1e-10)


def test_cholesky_whiten_groups(gen):
    z = torch.randn(9, 6, generator=gen, dtype=torch.float64)
    out = cholesky_whiten(z, groups=3)
    for k in range(3):
        torch.testing.assert_close(
            out[:, 2 * k : 2 * k + 2], cholesky_whiten(z[:, 2 * k : 2 * k + 2])
        )


@pytest.mark.parametrize(("m", "d"), [(6, 10), (6, 6)])
def test_cholesky_rank_deficient_raises(m, d, gen):
    """c > n - 1 observations: the covariance is singular."""
    z = torch.randn(m, d, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match=f"the {d}x{d} covariance is not positive definite"):
        cholesky_whiten(z)
    # shrinkage makes it positive definite again
    assert bool(torch.isfinite(cholesky_whiten(z, eps=0.1)).all())


@pytest.mark.parametrize("eps", [-0.1, 1.0, 2.0])
def test_cholesky_eps_range(eps, gen):
    with pytest.raises(ValueError, match=r"shrinkage eps must be in \[0, 1\)"):
        cholesky_whiten(torch.randn(8, 3, generator=gen, dtype=torch.float64), eps=eps)


# ----------------------------------------------------------------- symmetric matrix function


def test_power_function_values():
    g, dg = power_function(0.5)
    lam = torch.tensor([0.0, 0.25, 4.0], dtype=torch.float64)
    torch.testing.assert_close(g(lam), torch.tensor([0.0, 2.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(dg(lam), torch.tensor([0.0, -4.0, -1.0 / 16], dtype=torch.float64))
    g, _ = power_function(1.0, eps=1.0)
    torch.testing.assert_close(g(lam), 1 / (lam + 1))
    g, _ = power_function(0.0)
    torch.testing.assert_close(g(lam), torch.ones(3, dtype=torch.float64))


def test_symmetric_matrix_function_forward(make_spd):
    s = make_spd([4.0, 2.0, 1.0, 0.5, 0.1])
    out = symmetric_matrix_function(s, torch.exp, torch.exp)
    np.testing.assert_allclose(out.numpy(), scipy.linalg.expm(s.numpy()), rtol=1e-12, atol=1e-12)
    g, dg = power_function(0.5)
    np.testing.assert_allclose(
        symmetric_matrix_function(s, g, dg).numpy(),
        np.linalg.inv(scipy.linalg.sqrtm(s.numpy()).real),
        rtol=0,
        atol=1e-10,
    )


def sym(a: torch.Tensor) -> torch.Tensor:
    return 0.5 * (a + a.mT)


@pytest.mark.parametrize(
    "evals",
    [
        [3.0, 2.0, 1.0, 0.5],  # distinct
        [2.0, 2.0, 2.0, 0.5],  # a repeated eigenvalue (identity block)
        [1.0, 1.0, 1.0, 1.0],  # fully repeated: s = I
        [1.5, 1.5, 1.5 + 1e-10, 0.7],  # nearly repeated (divided-difference cancellation)
    ],
)
@pytest.mark.parametrize("p", [0.5, 1.5])
def test_symmetric_matrix_function_gradcheck_repeated(evals, p, gen, make_spd):
    """Daleckii–Krein backward: finite and equal to finite differences at repeated λ."""
    s0 = make_spd(evals)
    g, dg = power_function(p)
    # Symmetric parametrisation: the input is any matrix, the function sees sym(s).
    s = s0.clone().requires_grad_(True)
    fn = lambda a: symmetric_matrix_function(sym(a), g, dg)  # noqa: E731
    grad_out = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad((fn(s) * grad_out).sum(), s)
    assert bool(torch.isfinite(grad).all())
    assert torch.autograd.gradcheck(fn, (s,))


@pytest.mark.parametrize("p", [0.5, 1.5])
def test_float32_gradient_on_ill_conditioned_spectrum_matches_float64(p, gen, make_spd):
    """Small, distinct eigenvalues (1e-4 and 2e-5 of λ_max, as a whitening loss meets them)
    keep their own divided differences in float32: closeness is judged relative to the pair,
    not to λ_max (which would give them the mean derivative, a several-fold wrong gradient)."""
    s64 = make_spd([1.0, 0.3, 1e-4, 2e-5])
    g, dg = power_function(p)
    grad_out = torch.randn(4, 4, generator=gen, dtype=torch.float64)

    def grad_at(s: torch.Tensor) -> torch.Tensor:
        s = s.clone().requires_grad_(True)
        out = symmetric_matrix_function(s, g, dg)
        (grad,) = torch.autograd.grad((out * grad_out.to(s.dtype)).sum(), s)
        return grad.double()

    reference, float32 = grad_at(s64), grad_at(s64.float())
    rel = (float32 - reference).norm() / reference.norm()
    assert rel < 1e-2, f"float32 gradient off by {rel:.2e} relative"


def test_zca_gradcheck_on_exactly_white_input(make_embedding):
    """All covariance eigenvalues equal (Σ = I): the worst case for an eigh-based backward."""
    z = make_embedding(8, [1.0, 1.0, 1.0, 1.0]).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: zca_whiten(t), (z,))


# --------------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("p", [0.0, 0.5, 1.0, 1.5])
@pytest.mark.parametrize("use_gram", [False, True])
def test_power_transform_gradcheck(axis, p, use_gram, gen):
    m, d = (7, 4) if axis == "batch" else (4, 7)  # full-rank covariance side
    z = torch.randn(m, d, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: power_transform(t, p, axis, use_gram=use_gram), (z,))


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("fn", [zca_whiten, pca_whiten, cholesky_whiten])
def test_whitening_gradcheck(fn, axis, gen):
    m, d = (6, 4) if axis == "batch" else (4, 6)
    z = torch.randn(m, d, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fn(t, axis), (z,))


@pytest.mark.parametrize("fn", [zca_whiten, pca_whiten, cholesky_whiten])
def test_whitening_gradcheck_groups(fn, gen):
    z = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fn(t, "batch", groups=2), (z,))
