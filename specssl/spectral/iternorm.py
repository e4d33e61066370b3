"""IterNorm: implicit spectral transformation by Newton's iteration (INTL paper, Section 3.3).

Given centred embeddings with covariance Σ and ``Σ_N = Σ / tr(Σ)``, IterNorm (Eqn. 3) runs

    P_0 = I,    P_k = ½ (3 P_{k-1} - P_{k-1}^3 Σ_N),    k = 1..T

and outputs ``Ẑ = Z_c P_T / sqrt(tr Σ)``. By Theorem 1 it maps each eigenvalue ``λ`` of Σ to
``h_T(λ / tr Σ)`` where ``h_T(x) = x f_T(x)^2`` and ``f_{k+1} = 3/2 f_k - 1/2 x f_k^3``,
``f_0 = 1``.

Numerical stability (why T = 30 works here while the paper saw NaN for T >= 11)
--------------------------------------------------------------------------------
Eqn. 3 as written is the *uncoupled* Newton iteration. In exact arithmetic every ``P_k`` is a
polynomial in ``Σ_N`` and commutes with it, but in floating point each step leaves a small
non-commuting error, and the uncoupled map amplifies such errors: linearised at its fixed
point ``Σ_N^{-1/2}``, it multiplies the ``(i, j)`` eigenbasis component of an error by
``1 - (r + r^2) / 2`` with ``r = sqrt(λ_j / λ_i)``, which exceeds 1 in magnitude as soon as
``λ_j / λ_i > 2.44`` and reaches ``(κ + sqrt κ) / 2 - 1`` for condition number ``κ`` (Higham,
*Functions of Matrices*, Sec. 6.4 and 7.3, for the analogous square-root iteration). After
enough steps the error dominates and the iterate diverges — the NaN of the paper's Figure 3(d).
We run the algebraically identical *coupled* Newton–Schulz form

    Y_0 = Σ_N, Z_0 = I,   M_k = ½ (3 I - Z_{k-1} Y_{k-1}),   Y_k = Y_{k-1} M_k,   Z_k = M_k Z_{k-1}

for which ``Z_k = P_k`` and ``Y_k = Σ_N P_k`` exactly, but whose iteration map has a bounded,
idempotent Fréchet derivative at the fixed point, so rounding errors are not amplified
(Higham, Thm. 6.9). It costs the same three matrix products per step.

The plain (uncoupled) form is kept as an explicit option, ``iteration="plain"``: Eqn. 3
evaluated as the INTL authors' ``Whitening2dIterNorm`` does, ``P_k = 3/2 P_{k-1} - 1/2
P_{k-1}^3 Σ_N``, in the input's precision (float32 stays float32 for every T, no upcast). It
is the *unstable reference* that reproduces the paper's Figure 3(d): on an ill-conditioned
Σ_N the error of ``P_T`` stays at rounding level for the first steps, then grows
geometrically once the slow eigenvalues have converged and the non-commuting rounding error
takes over, and the output becomes Inf/NaN a few steps later. The breakdown is *not*
hidden: no clamping, no fallback, NaN/Inf propagate to the caller (and to the loss, where the
trainer reports the run as diverged). ``experiments/fig3d_iternorm_divergence.py`` measures
where it happens (docs/results/fig3d_iternorm_divergence/).

Push-through: ``P_T`` is a polynomial in ``Σ_N = Z_c^T Z_c / ((n-1) tr Σ)``, hence
``Z_c P_T(Z_c^T Z_c α) = P_T(Z_c Z_c^T α) Z_c``. When the covariance side ``c`` exceeds the
number of observations ``n`` the iteration runs on the ``n x n`` Gram matrix instead
(O(n² c + T n³) instead of O(c² n + T c³)), with the same result.

Cost, with ``k = min(n, c)``: ``3T - 3`` products of ``k x k`` matrices forward (9 for T = 4)
and twice that in autograd's backward, plus five ``k x k`` by ``k x max(n, c)`` products (the
covariance or Gram, the output, and three in their backward). ``bench/spectral.py`` measures it
against the eigendecomposition path.
"""

from __future__ import annotations

from typing import Literal

import torch

from specssl.spectral.common import (
    Axis,
    centred_moments,
    grouped_apply,
    should_use_gram,
)

#: Iteration count from which float32 inputs are whitened in float64 by the coupled form
#: (see :func:`iternorm`; the plain form never upcasts).
FLOAT64_FROM_T = 11

Iteration = Literal["coupled", "plain"]
#: The two evaluations of Eqn. 3: the stable default and the authors' unstable reference.
ITERATIONS: tuple[str, ...] = ("coupled", "plain")


def check_iteration(iteration: str) -> None:
    """Raise ``ValueError`` unless ``iteration`` is one of :data:`ITERATIONS`."""
    if iteration not in ITERATIONS:
        raise ValueError(f"iteration must be one of {ITERATIONS}, got {iteration!r}")


def _check_T(T: int) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T < 0:
        raise ValueError(f"iteration number T must be a non-negative int, got {T!r}")


def f_T(x: torch.Tensor | float, T: int) -> torch.Tensor:
    """The scalar Newton iterate of Theorem 1: ``f_0 = 1``, ``f_{k+1} = 3/2 f_k - 1/2 x f_k^3``.

    ``f_T(x) -> x^{-1/2}`` as ``T -> ∞`` for ``x ∈ (0, 1]``. Elementwise on any tensor shape.
    """
    _check_T(T)
    x = torch.as_tensor(x)
    f = torch.ones_like(x)
    for _ in range(T):
        f = 1.5 * f - 0.5 * x * f.pow(3)
    return f


def h_T(x: torch.Tensor | float, T: int) -> torch.Tensor:
    """The T-whitening function ``h_T(x) = x f_T(x)^2`` (Theorem 1).

    Maps a trace-normalised eigenvalue ``x = λ / tr Σ`` of the embedding covariance to the
    corresponding eigenvalue of the IterNorm output's covariance. For ``x ∈ (0, 1)``:
    ``h_T(x) ∈ (0, 1)``, increasing in ``x`` (Proposition 1) and in ``T`` (Proposition 2).
    """
    x = torch.as_tensor(x)
    return x * f_T(x, T).pow(2)


def _coupled_newton_schulz(a_n: torch.Tensor, T: int) -> torch.Tensor:
    """Coupled Newton–Schulz on ``a_n: (b, k, k)`` for ``T >= 1``; returns ``Z_T = P_T``.

    ``3T - 3`` products: ``Z_1`` needs none, ``M_k = 3/2 I - 1/2 Z_{k-1} Y_{k-1}`` is a single
    fused ``baddbmm``, and ``Y_T`` is never formed. Autograd differentiates through the loop:
    checked against 80-digit arithmetic, that gradient stays accurate at T = 30 on singular
    input, where a hand-written backward along Theorem 1's scalar recursions lost 4 digits.
    """
    eye = torch.eye(a_n.shape[-1], dtype=a_n.dtype, device=a_n.device).expand_as(a_n)
    # k = 1 with Z_0 = I: M_1 = ½(3I - Σ_N), Z_1 = M_1, Y_1 = Σ_N M_1.
    z_k = 1.5 * eye - 0.5 * a_n
    if T == 1:
        return z_k
    y_k = a_n @ z_k
    for step in range(2, T + 1):
        m_k = torch.baddbmm(eye, z_k, y_k, beta=1.5, alpha=-0.5)
        if step < T:
            y_k = y_k @ m_k
        z_k = m_k @ z_k
    return z_k


def _plain_newton(a_n: torch.Tensor, T: int) -> torch.Tensor:
    """Plain (uncoupled) Eqn. 3 on ``a_n: (b, k, k)`` for ``T >= 1``; returns ``P_T``.

    ``P_0 = I``, ``P_k = 3/2 P_{k-1} - 1/2 P_{k-1}^3 Σ_N``, with the product ordered as the INTL
    authors' ``Whitening2dIterNorm`` orders it (cube first, then ``Σ_N`` on the right; one
    fused ``baddbmm``). ``P_1 = 3/2 I - 1/2 Σ_N`` needs no product; each later step three, so
    ``3T - 3`` in all, like the coupled form. Numerically unstable for large ``T`` on an
    ill-conditioned ``Σ_N`` (module docstring); nothing here guards against that.
    """
    eye = torch.eye(a_n.shape[-1], dtype=a_n.dtype, device=a_n.device).expand_as(a_n)
    p_k = 1.5 * eye - 0.5 * a_n
    for _ in range(2, T + 1):
        cube = p_k @ p_k @ p_k
        p_k = torch.baddbmm(p_k, cube, a_n, beta=1.5, alpha=-0.5)
    return p_k


def newton_schulz_inverse_sqrt(
    a_n: torch.Tensor, T: int, iteration: Iteration = "coupled"
) -> torch.Tensor:
    """``P_T`` of Eqn. 3 for a trace-normalised symmetric PSD ``a_n: (..., k, k)``.

    ``iteration="coupled"`` (default): the coupled Newton–Schulz form; ``"plain"``: Eqn. 3 as
    written (the authors' evaluation, unstable for large ``T``; see module docstring). Both
    give ``P_T -> a_n^{-1/2}`` on the range of ``a_n`` as ``T`` grows in exact arithmetic.
    Computed in ``a_n``'s dtype. Returns ``(..., k, k)``.
    """
    _check_T(T)
    check_iteration(iteration)
    k = a_n.shape[-1]
    if T == 0:
        return torch.eye(k, dtype=a_n.dtype, device=a_n.device).expand_as(a_n).clone()
    step = _coupled_newton_schulz if iteration == "coupled" else _plain_newton
    return step(a_n.reshape(-1, k, k), T).view_as(a_n)


def iternorm(
    z: torch.Tensor,
    T: int = 4,
    axis: Axis = "batch",
    *,
    groups: int = 1,
    use_gram: bool | None = None,
    check_finite: bool = True,
    centre: bool = True,
    iteration: Iteration = "coupled",
) -> torch.Tensor:
    """IterNorm whitening by ``T`` Newton steps (INTL paper Eqn. 3, Theorem 1).

    Args:
        z: embeddings ``(..., m, d)``; leading dims are independent problems.
        T: Newton iterations; ``T = 0`` only centres and divides by ``sqrt(tr Σ)``.
        axis: ``"batch"`` (``d x d`` covariance over the batch, the paper's text) or
            ``"channel"`` (each sample centred over its channels, ``m x m`` covariance; the
            authors' released code and the right choice when ``d > m``).
        groups: split the ``d`` channels into this many contiguous groups, each whitened
            independently (batched): ``d/g x d/g`` covariances on the batch axis, ``m x m``
            covariances over ``d/g`` channels on the channel axis.
        use_gram: iterate on the ``n x n`` Gram instead of the ``c x c`` covariance (same
            result, see module docstring). ``None`` picks the smaller one.
        check_finite: raise ``ValueError`` on NaN/Inf input (one device sync).
        centre: centre each group over its observations first (default). ``False`` uses the
            input as already centred (its second moments as the covariance), for callers that
            centre once before grouping.
        iteration: ``"coupled"`` (default, stable Newton–Schulz) or ``"plain"`` (Eqn. 3 as
            the authors evaluate it: the unstable reference of Figure 3(d), computed in the
            input's precision for every ``T`` and left to overflow to Inf/NaN when it breaks
            down; see the module docstring).

    Returns:
        ``Ẑ`` with ``z``'s shape and dtype; its covariance (divisor ``n - 1``) has eigenvalues
        ``h_T(λ_i / tr Σ)``. Computed in float32 (float64 for float64 input), autocast off.

    Large T: for ``T >= 11`` (:data:`FLOAT64_FROM_T`) the coupled form whitens a float32 input
    in float64. A rank-deficient Σ has zero eigenvalues that rounding turns into ``±eps``; for
    ``x < 0`` the scalar iterate ``f_T(x)`` grows without bound, by ~1.5x per step until
    ``|x| f^2 ~ 1``, so in float32 (``eps ~ 1e-7``) a collapsed embedding blows up near
    T = 25-30. In float64 the same needs ``T > ~45``. T <= 10 (the paper uses 4) stays float32.
    The plain form never upcasts: it reproduces the authors' float32 computation, breakdown
    included.

    Edge cases: a rank-deficient Σ (``d > m`` on the batch axis, duplicated channels) is fine —
    zero eigenvalues stay zero (``h_T(0) = 0``). A numerically constant group (complete
    collapse) maps to exact zeros with finite gradients. One sample (``m = 1``) works on the
    channel axis only; the batch axis raises ``ValueError``.
    """
    _check_T(T)
    check_iteration(iteration)

    def run(x: torch.Tensor) -> torch.Tensor:
        if iteration == "coupled" and T >= FLOAT64_FROM_T and x.dtype == torch.float32:
            x = x.double()  # see "Large T" in the docstring
        gram_side = should_use_gram(x, use_gram)
        xc, s, trace, zero = centred_moments(x, gram_side, centre)
        p_t = newton_schulz_inverse_sqrt(s / trace[..., None, None], T, iteration)
        # 1 / sqrt(tr Σ) and the zero-group mask go into the small k x k factor, not the output.
        scale = torch.where(zero[..., 0, 0], torch.zeros_like(trace), trace.rsqrt())
        p_t = p_t * scale[..., None, None]
        return p_t @ xc if gram_side else xc @ p_t

    return grouped_apply(z, run, axis=axis, groups=groups, op="iternorm", check_finite=check_finite)
