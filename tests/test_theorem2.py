"""Theorem 2 of the INTL paper, checked numerically on Eqn. 7.

    INTL(x) = Σ_j ( Σ_i [1 - h_T(x_i)] u_ji² )²,   x on the simplex (x_i >= 0, Σ x_i = 1),

with ``u_ji = U[j, i]`` (eigenvector ``u_i`` is column ``i`` of an orthogonal ``U``). The theorem
says INTL is strictly convex for every ``T >= 1`` and ``x* = 1/d · 1`` is its unique minimiser.

Everything here is an independent float64 transcription of the paper's scalar recursions, not
the library (only ``test_library_h_T_matches_scalar_loop`` and the Eqn. 6 -> Eqn. 7 bridge call
``specssl``).

Numerics: ``1 - h_T(x)`` converges to 0 quadratically in ``T`` (like ``(1 - x)^(2^T)``), so for
``T = 8`` the naive ``1 - x f_T(x)^2`` is 0 in float64 on most of the simplex and INTL would be
identically 0 near ``x*``. We therefore evaluate the residual ``r_T(x) = 1 - h_T(x)`` by its own
exact recursion, derived from ``f_{k+1} = f_k (3 - x f_k²) / 2``:

    r_0 = 1 - x,   r_{k+1} = r_k² (3 + r_k) / 4,

which has no cancellation (checked against the plain scalar loop below), and minimise
``log INTL`` (same minimiser, well scaled) in the optimisation test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from specssl.losses import trace_loss
from specssl.spectral import h_T, iternorm

TS = (1, 2, 4, 8)
DS = (2, 3, 5, 16)
TINY = 1e-250  # below this, T = 8 residuals have lost digits to float64 underflow


# --------------------------------------------------------------------------- references


def h_scalar(x: float, T: int) -> float:
    """Theorem 1, one float at a time: ``f_0 = 1``, ``f_{k+1} = 3/2 f_k - 1/2 x f_k³``, x f_T²."""
    f = 1.0
    for _ in range(T):
        f = 1.5 * f - 0.5 * x * f**3
    return x * f * f


def residual(x: np.ndarray, T: int) -> np.ndarray:
    """``1 - h_T(x)`` by the cancellation-free recursion of the module docstring."""
    r = 1.0 - np.asarray(x, dtype=np.float64)
    for _ in range(T):
        r = r * r * (3.0 + r) / 4.0
    return r


def residual_grad(x: np.ndarray, T: int) -> np.ndarray:
    """``d/dx (1 - h_T(x))``: chain rule through ``r -> r²(3 + r)/4`` (derivative 3r(2 + r)/4)."""
    r = 1.0 - np.asarray(x, dtype=np.float64)
    grad = -np.ones_like(r)
    for _ in range(T):
        grad = grad * 3.0 * r * (2.0 + r) / 4.0
        r = r * r * (3.0 + r) / 4.0
    return grad


def intl(x: np.ndarray, u: np.ndarray, T: int) -> np.ndarray:
    """Eqn. 7 for ``x: (..., d)``; ``u[j, i]`` is the j-th entry of eigenvector ``u_i``."""
    inner = residual(x, T) @ (u**2).T  # (..., j): Σ_i r(x_i) u_ji²
    return (inner**2).sum(-1)


def intl_and_grad(x: np.ndarray, u: np.ndarray, T: int) -> tuple[float, np.ndarray]:
    a = u**2
    inner = a @ residual(x, T)
    return float(inner @ inner), 2.0 * (a.T @ inner) * residual_grad(x, T)


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def bases(d: int) -> dict[str, np.ndarray]:
    return {"identity": np.eye(d), "random": random_orthogonal(d, np.random.default_rng(100 + d))}


# --------------------------------------------------------------------------- h_T itself


def test_residual_recursion_equals_one_minus_scalar_loop() -> None:
    xs = np.linspace(0.0, 1.0, 201)
    for T in (0, 1, 2, 3, 4, 8, 12):
        plain = np.array([1.0 - h_scalar(float(x), T) for x in xs])
        np.testing.assert_allclose(residual(xs, T), plain, rtol=0, atol=1e-14)
    # Boundary values: h_T(0) = 0 and h_T(1) = 1 for every T.
    assert residual(np.array([0.0, 1.0]), 8).tolist() == [1.0, 0.0]


def test_residual_grad_matches_finite_differences() -> None:
    xs = np.linspace(0.02, 0.98, 25)
    step = 1e-6
    for T in TS:
        fd = (residual(xs + step, T) - residual(xs - step, T)) / (2 * step)
        np.testing.assert_allclose(residual_grad(xs, T), fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("T", [0, 1, 2, 4, 8, 30])
def test_library_h_T_matches_scalar_loop(T: int) -> None:
    xs = [0.0, 1e-6, 0.01, 1 / 16, 0.2, 1 / 3, 0.5, 0.77, 0.999, 1.0]
    expected = torch.tensor([h_scalar(x, T) for x in xs], dtype=torch.float64)
    got = h_T(torch.tensor(xs, dtype=torch.float64), T)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-13, atol=1e-15)
    # Python floats work too (a float32 scalar tensor).
    assert abs(float(h_T(0.2, T)) - h_scalar(0.2, T)) < 1e-6


def test_h_T_is_strictly_concave_on_unit_interval() -> None:
    """The property behind Theorem 2: 1 - h_T is strictly convex (second differences > 0)."""
    xs = np.linspace(0.0, 1.0, 401)
    for T in TS:
        r = residual(xs, T)
        second = r[2:] - 2 * r[1:-1] + r[:-2]
        # For T = 8, r_T(x) ~ (1 - x)^256 drops below 1e-250 for x > ~0.86: compare only where
        # all three values are representable (the whole grid for T <= 4).
        representable = r[2:] > TINY
        assert representable.mean() > (0.85 if T == 8 else 0.99), T
        assert (second[representable] > 0).all(), T
    # T = 0 is linear (not strictly convex): the theorem needs T >= 1.
    r0 = residual(xs, 0)
    np.testing.assert_allclose(r0[2:] - 2 * r0[1:-1] + r0[:-2], 0.0, atol=1e-15)


# --------------------------------------------------------------------------- Eqn. 6 -> Eqn. 7


def embedding_with_covariance(m: int, lam: np.ndarray, u: np.ndarray, seed: int) -> torch.Tensor:
    """``(m, d)`` rows (plus a random mean) with batch covariance exactly ``U diag(lam) U^T``."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((m, lam.size))
    q, _ = np.linalg.qr(g - g.mean(0))  # orthonormal, centred columns
    z = math.sqrt(m - 1) * (q * np.sqrt(lam)) @ u.T + rng.standard_normal(lam.size)
    return torch.from_numpy(z)


@pytest.mark.parametrize("T", TS)
@pytest.mark.parametrize("d", [3, 5])
@pytest.mark.parametrize("basis", ["identity", "random"])
def test_trace_loss_of_iternorm_equals_eqn7(T: int, d: int, basis: str) -> None:
    """The library's trace loss (Eqn. 6) on IterNorm_T(Z) is INTL(λ / tr Σ) of Eqn. 7."""
    u = bases(d)[basis]
    rng = np.random.default_rng(T * 10 + d)
    x = rng.dirichlet(np.ones(d))
    z = embedding_with_covariance(32, 3.7 * x, u, seed=T + d)
    got = trace_loss(iternorm(z, T, "batch"), "batch").item()
    expected = float(intl(x, u, T))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-13)
    # The channel axis is the same statement for the transposed data.
    got_channel = trace_loss(iternorm(z.T.contiguous(), T, "channel"), "channel").item()
    assert got_channel == pytest.approx(expected, rel=1e-9, abs=1e-13)


# --------------------------------------------------------------------------- Theorem 2


def near_boundary_points(d: int) -> np.ndarray:
    """Vertices, points near vertices, edge midpoints and points near edges of the simplex."""
    eye = np.eye(d)
    pts = [eye]
    for eps in (1e-9, 1e-4, 1e-2):
        pts.append((1 - eps) * eye + eps * (1 - eye) / max(d - 1, 1))
    for a in range(d):
        for b in range(a + 1, min(d, a + 4)):
            for t in (0.5, 0.1, 1e-3):
                edge = t * eye[a] + (1 - t) * eye[b]
                pts.append(edge[None])
                pts.append((0.999 * edge + 0.001 / d)[None])
    return np.concatenate(pts)


@pytest.mark.parametrize("T", TS)
@pytest.mark.parametrize("d", DS)
def test_uniform_point_is_the_minimum(T: int, d: int) -> None:
    rng = np.random.default_rng(1000 * T + d)
    centre = np.full(d, 1.0 / d)
    samples = np.concatenate(
        [rng.dirichlet(np.full(d, alpha), size=400) for alpha in (0.1, 1.0, 10.0, 100.0)]
        + [near_boundary_points(d)]
    )
    assert np.allclose(samples.sum(1), 1.0) and (samples >= 0).all()
    for name, u in bases(d).items():
        f_star = float(intl(centre, u, T))
        # At x* every eigenvalue is 1/d, so Σ_Ẑ = h_T(1/d) I and INTL = d (1 - h_T(1/d))².
        assert f_star == pytest.approx(d * residual(1.0 / d, T) ** 2, rel=1e-12)
        values = intl(samples, u, T)
        far = np.abs(samples - centre).max(1) > 1e-3
        assert far.sum() > 0.9 * len(samples)
        assert (values[far] > f_star).all(), (name, values[far].min(), f_star)
        assert (values >= f_star * (1 - 1e-12)).all(), name


@pytest.mark.parametrize("T", TS)
@pytest.mark.parametrize("d", DS)
def test_constrained_minimisation_converges_to_uniform(T: int, d: int) -> None:
    """SLSQP on the simplex from random starts ends at x* = 1/d (tolerance 1e-4).

    We minimise ``log INTL`` (strictly increasing transform: same unique minimiser) because
    INTL itself spans ~200 orders of magnitude for T = 8.
    """
    rng = np.random.default_rng(7 * T + d)
    centre = np.full(d, 1.0 / d)
    for name, u in bases(d).items():

        def objective(x: np.ndarray, u: np.ndarray = u) -> tuple[float, np.ndarray]:
            value, grad = intl_and_grad(np.clip(x, 0.0, 1.0), u, T)
            return math.log(value), grad / value

        starts = [rng.dirichlet(np.full(d, 0.5)) for _ in range(3)]
        starts.append(0.98 * np.eye(d)[0] + 0.02 / d)  # next to a vertex
        for x0 in starts:
            res = minimize(
                objective,
                x0,
                jac=True,
                method="SLSQP",
                bounds=[(0.0, 1.0)] * d,
                constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0}],
                options={"ftol": 1e-15, "maxiter": 1000},
            )
            err = np.abs(res.x - centre).max()
            assert err < 1e-4, (name, T, d, x0, res.x, res.message)
            assert math.exp(res.fun) >= float(intl(centre, u, T)) * (1 - 1e-9)


@pytest.mark.parametrize("T", TS)
@pytest.mark.parametrize("d", DS)
def test_strict_convexity_along_random_segments(T: int, d: int) -> None:
    rng = np.random.default_rng(31 * T + d)
    n = 300
    # Segments inside the simplex (mixed concentrations) and inside the cube [0, 1]^d, where
    # the theorem states convexity.
    a = np.concatenate([rng.dirichlet(np.full(d, 0.3), n), rng.dirichlet(np.full(d, 3.0), n)])
    b = np.concatenate([rng.dirichlet(np.full(d, 1.0), n), rng.dirichlet(np.full(d, 3.0), n)])
    a = np.concatenate([a, rng.uniform(0, 1, (n, d))])
    b = np.concatenate([b, rng.uniform(0, 1, (n, d))])
    for name, u in bases(d).items():
        for t in (0.5, 0.2):
            mid = t * a + (1 - t) * b
            chord = t * intl(a, u, T) + (1 - t) * intl(b, u, T)
            value = intl(mid, u, T)
            # T = 8 with every x_i > ~0.7 (cube corner) underflows to 0: skip those few.
            ok = chord > TINY
            assert ok.mean() > 0.95, (name, ok.mean())
            assert (value[ok] < chord[ok]).all(), name
            # Not a rounding tie: the gap is a visible fraction of the chord.
            gap = (chord[ok] - value[ok]) / chord[ok]
            assert np.median(gap) > 1e-3, (name, np.median(gap))
