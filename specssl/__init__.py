"""specssl: self-supervised learning with spectral transformation of the embedding covariance."""

__version__ = "0.1.0"
