"""The bottom layer every other one shares: typed errors and collectives across ranks.

Imports nothing of the package; every sub-package may import it.
"""

from specssl.core.distributed import (
    all_gather_rows,
    all_reduce_,
    gather_with_grad,
    is_distributed,
    world_size,
)
from specssl.core.errors import ConfigError, NonFiniteError, SingularCovarianceError

__all__ = [
    "ConfigError",
    "NonFiniteError",
    "SingularCovarianceError",
    "all_gather_rows",
    "all_reduce_",
    "gather_with_grad",
    "is_distributed",
    "world_size",
]
