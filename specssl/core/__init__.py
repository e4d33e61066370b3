"""The bottom layer every other one shares: typed errors (here), collectives across ranks
(:mod:`specssl.core.distributed`), the kNN classifier (:mod:`specssl.core.knn`) and the
command line's value types (:mod:`specssl.core.arguments`).

Imports nothing of the package. This ``__init__`` imports no torch, so the command line can
use :mod:`specssl.core.arguments` and stay torch-free for ``specssl --help``.
"""

from specssl.core.errors import ConfigError, NonFiniteError, SingularCovarianceError

__all__ = ["ConfigError", "NonFiniteError", "SingularCovarianceError"]
