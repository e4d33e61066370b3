"""Shared fixtures of the spectral-core tests.

The central helper, :func:`make_embedding`, builds an embedding whose covariance spectrum is
known *exactly* (up to float64 rounding), so spectral properties can be checked against theory
with tight tolerances instead of against another implementation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from specssl.experiments.numerics import embedding_with_spectrum, random_orthogonal

SEED = 0


@pytest.fixture
def gen() -> torch.Generator:
    """A freshly seeded CPU generator (every test sees the same stream)."""
    return torch.Generator().manual_seed(SEED)


@pytest.fixture(scope="session")
def embedding_fn() -> Callable[..., torch.Tensor]:
    """:func:`embedding_with_spectrum` itself, for module-scoped fixtures with their own seed."""
    return embedding_with_spectrum


@pytest.fixture
def make_embedding(gen) -> Callable[..., torch.Tensor]:
    """Factory: ``make_embedding(n, lam, offset=True)`` -> see :func:`embedding_with_spectrum`."""

    def make(n: int, lam, *, offset: bool = True) -> torch.Tensor:
        return embedding_with_spectrum(n, lam, gen, offset=offset)

    return make


@pytest.fixture
def make_axis_embedding(gen) -> Callable[..., torch.Tensor]:
    """Factory: ``(m, d, lams, axis)`` -> ``(m, d)`` float64 embedding with known group spectra.

    ``lams`` is a list with one spectrum per group (contiguous channel blocks of ``d / g``).
    On the batch axis each group's ``d/g x d/g`` covariance over the ``m`` samples has spectrum
    ``lams[k]`` (length ``d/g``); on the channel axis each group's ``m x m`` covariance over its
    ``d/g`` channels (each sample centred within the group) has spectrum ``lams[k]`` (length
    ``m``).
    """

    def make(m: int, d: int, lams, axis: str) -> torch.Tensor:
        g = len(lams)
        c = d // g
        blocks = []
        for lam in lams:
            if axis == "batch":
                blocks.append(embedding_with_spectrum(m, lam, gen))  # (m, d/g)
            else:
                blocks.append(embedding_with_spectrum(c, lam, gen).T)  # (m, d/g)
        return torch.cat(blocks, dim=1)

    return make


@pytest.fixture
def make_spd(gen) -> Callable[..., torch.Tensor]:
    """Factory: ``make_spd(evals)`` -> symmetric ``Q diag(evals) Q^T`` with random orthogonal Q."""

    def make(evals) -> torch.Tensor:
        evals = torch.as_tensor(evals, dtype=torch.float64)
        q = random_orthogonal(evals.numel(), gen)
        return (q * evals) @ q.T

    return make


def np_covariances(z: np.ndarray, axis: str, groups: int = 1) -> list[np.ndarray]:
    """Independent float64 reference: the per-group covariance matrices of ``z: (m, d)``."""
    z = np.asarray(z, dtype=np.float64)
    blocks = np.split(z, groups, axis=1)
    if axis == "batch":
        return [np.cov(b, rowvar=False) for b in blocks]  # (d/g, d/g), divisor m - 1
    return [np.cov(b, rowvar=True) for b in blocks]  # (m, m) over the d/g channels


def np_h(x: np.ndarray, T: int) -> np.ndarray:
    """Independent numpy transcription of Theorem 1's ``h_T(x) = x f_T(x)^2``."""
    x = np.asarray(x, dtype=np.float64)
    f = np.ones_like(x)
    for _ in range(T):
        f = 1.5 * f - 0.5 * x * f**3
    return x * f**2


@pytest.fixture
def covariances() -> Callable[..., list[np.ndarray]]:
    return np_covariances


@pytest.fixture
def h_ref() -> Callable[[np.ndarray, int], np.ndarray]:
    return np_h


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices: one intra-op thread is faster and immune to a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
