"""The spectral layer: every whitening and spectral transformation of the papers, in one place.

Embeddings are ``z: (..., m, d)`` (``m`` samples, ``d`` channels). See
:mod:`specssl.spectral._common` for the batch/channel axes and groups.
"""

from specssl.spectral._common import covariance_diagonal
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
    condition_indicator,
    effective_rank,
    spectral_summary,
    spectrum,
    stable_rank,
)
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
    "Whitening",
    "centre_channels",
    "cholesky_whiten",
    "condition_indicator",
    "covariance_diagonal",
    "effective_rank",
    "f_T",
    "h_T",
    "iternorm",
    "newton_schulz_inverse_sqrt",
    "pca_whiten",
    "power_function",
    "power_transform",
    "random_channel_permutations",
    "random_group_whiten",
    "spectral_summary",
    "spectrum",
    "stable_rank",
    "sub_batch_whiten",
    "symmetric_matrix_function",
    "whiten",
    "zca_whiten",
]
