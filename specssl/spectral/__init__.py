"""The spectral layer: every whitening and spectral transformation of the papers, in one place.

Embeddings are ``z: (..., m, d)`` (``m`` samples, ``d`` channels). See
:mod:`specssl.spectral.common` for the batch/channel axes and groups.
"""

from specssl.spectral.common import covariance_diagonal
from specssl.spectral.eig import (
    cholesky_whiten,
    pca_whiten,
    power_function,
    power_transform,
    symmetric_matrix_function,
    zca_whiten,
)
from specssl.spectral.iternorm import f_T, h_T, iternorm, newton_schulz_inverse_sqrt
from specssl.spectral.metrics import (
    EmbeddingSpectra,
    condition_indicator,
    effective_rank,
    embedding_spectra,
    rank_bound,
    spectral_summary,
    spectrum,
    spectrum_metrics,
    stable_rank,
)
from specssl.spectral.quality import alpha_req, lidar, lidar_matrix, nesum, rankme
from specssl.spectral.whiten import (
    METHODS,
    Whitening,
    centre_channels,
    random_channel_permutations,
    random_group_whiten,
    sub_batch_whiten,
    whiten,
)

__all__ = [
    "METHODS",
    "EmbeddingSpectra",
    "Whitening",
    "alpha_req",
    "centre_channels",
    "cholesky_whiten",
    "condition_indicator",
    "covariance_diagonal",
    "effective_rank",
    "embedding_spectra",
    "f_T",
    "h_T",
    "iternorm",
    "lidar",
    "lidar_matrix",
    "nesum",
    "newton_schulz_inverse_sqrt",
    "pca_whiten",
    "power_function",
    "power_transform",
    "random_channel_permutations",
    "random_group_whiten",
    "rank_bound",
    "rankme",
    "spectral_summary",
    "spectrum",
    "spectrum_metrics",
    "stable_rank",
    "sub_batch_whiten",
    "symmetric_matrix_function",
    "whiten",
    "zca_whiten",
]
