"""Projector and predictor MLP heads."""

from __future__ import annotations

from torch import nn

__all__ = ["MLPHead"]


class MLPHead(nn.Sequential):
    """``(Linear – BN – ReLU) × (num_layers − 1)`` then ``Linear`` [then affine-free BN].

    The projector of INTL / BYOL / SimSiam / Barlow Twins ("Linear–BN–ReLU ×2 + Linear") is
    ``num_layers=3``; a BYOL predictor (Linear–BN–ReLU–Linear) is ``num_layers=2``;
    ``num_layers=1`` is a single ``Linear(in_dim, out_dim)`` (``hidden_dim`` unused).

    Args:
        in_dim: input dimension.
        hidden_dim: width of the hidden layers.
        out_dim: output (embedding) dimension.
        num_layers: number of Linear layers, ``>= 1``.
        batch_norm: put ``BatchNorm1d`` after each hidden Linear. The hidden Linears then have
            no bias (the BN shift makes it redundant); without BN they have one.
        last_batch_norm: append ``BatchNorm1d(out_dim, affine=False)`` after the last Linear
            (SimSiam's projector).
        last_bias: give the last Linear a bias.

    Forward: ``x: (B, in_dim)`` -> ``(B, out_dim)``. Submodules are indexed as in any
    ``nn.Sequential``; ``in_dim``, ``hidden_dim``, ``out_dim`` and ``num_layers`` are kept as
    attributes.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 3,
        *,
        batch_norm: bool = True,
        last_batch_norm: bool = False,
        last_bias: bool = True,
    ) -> None:
        for arg, value in (
            ("in_dim", in_dim),
            ("hidden_dim", hidden_dim),
            ("out_dim", out_dim),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=last_bias))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        super().__init__(*layers)
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.num_layers = num_layers
