"""Typed errors, so callers branch on the type of a failure and never on its message.

* :class:`ConfigError` — a bad configuration key, value or path (one line naming it);
* :class:`NonFiniteError` — a NaN/Inf reached a spectral op or a loss (the embedding diverged
  before it);
* :class:`SingularCovarianceError` — a whitening needs a positive-definite covariance and got
  a singular one (e.g. Cholesky with more channels than observations).

All are ``ValueError`` subclasses, so code catching ``ValueError`` keeps working. The
training divergence error, which carries the step and the diagnosis, belongs to the trainer
(:class:`specssl.train.module.TrainingDivergedError`).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad configuration key, value or path, reported in one line."""


class NonFiniteError(ValueError):
    """A tensor given to a spectral op or loss contains NaN or Inf."""


class SingularCovarianceError(ValueError):
    """A covariance that must be positive definite is singular."""
