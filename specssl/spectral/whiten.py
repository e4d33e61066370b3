"""One entry point for every whitening / spectral transformation, plus group partition.

:func:`whiten` dispatches by ``method`` to the ops of :mod:`~specssl.spectral.iternorm` and
:mod:`~specssl.spectral.eig`, so W-MSE, CW-RGP, Shuffled-DBN, ST-power, IterNorm and INTL all
run the same code. :func:`random_group_whiten` is CW-RGP's random group partition: a fresh
random channel permutation per call, contiguous groups of the permuted channels whitened
independently, then un-permuted. :func:`sub_batch_whiten` is W-MSE's ``w_size`` sub-batching.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from specssl.spectral.common import Axis, check_axis
from specssl.spectral.eig import cholesky_whiten, pca_whiten, power_transform
from specssl.spectral.iternorm import iternorm

Method = Literal["iternorm", "zca", "power", "pca", "cholesky"]
METHODS = ("iternorm", "zca", "power", "pca", "cholesky")


def whiten(
    z: torch.Tensor,
    method: Method = "iternorm",
    axis: Axis = "batch",
    *,
    groups: int = 1,
    T: int = 4,
    p: float = 0.5,
    eps: float = 0.0,
    check_finite: bool = True,
    centre: bool = True,
) -> torch.Tensor:
    """Whiten / spectrally transform ``z: (..., m, d)`` with the named method.

    ``iternorm`` uses ``T``; ``power`` uses ``p`` (``zca`` is ``p = 0.5``); ``eps`` is the
    eigenvalue regulariser of ``power``/``zca``/``pca`` and the shrinkage of ``cholesky``.
    ``centre=False`` whitens ``z`` as already centred (see :func:`centre_channels`).
    """
    check_axis(axis)
    common = {"groups": groups, "check_finite": check_finite, "centre": centre}
    if method == "iternorm":
        return iternorm(z, T, axis, **common)
    if method == "zca":
        return power_transform(z, 0.5, axis, eps, **common)
    if method == "power":
        return power_transform(z, p, axis, eps, **common)
    if method == "pca":
        return pca_whiten(z, axis, eps, **common)
    if method == "cholesky":
        return cholesky_whiten(z, axis, eps, **common)
    raise ValueError(f"unknown whitening method {method!r}; choose one of {METHODS}")


def centre_channels(z: torch.Tensor) -> torch.Tensor:
    """Centre every sample of ``z: (..., m, d)`` over all its ``d`` channels:
    ``Z_C = Z - mean_j Z[:, j]`` (the CW-RGP poster's ``Z_C``, before any group partition)."""
    return z - z.mean(dim=-1, keepdim=True)


def random_channel_permutations(
    shape: torch.Size, d: int, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One uniformly random permutation of ``d`` channels per leading index: ``(*shape, d)``.

    Drawn with ``torch.randperm`` on CPU (reproducible across devices), one per problem in
    row-major order, so a single problem gets exactly ``torch.randperm(d, generator=...)``.
    """
    count = shape.numel()
    perms = [torch.randperm(d, generator=generator) for _ in range(count)]
    return torch.stack(perms).view(*shape, d).to(device)


def random_group_whiten(
    z: torch.Tensor,
    groups: int,
    method: Method = "zca",
    axis: Axis = "channel",
    *,
    generator: torch.Generator | None = None,
    per_problem: bool = True,
    **kwargs,
) -> torch.Tensor:
    """Random group partition (CW-RGP): permute channels, whiten ``groups`` groups, un-permute.

    ``z: (..., m, d)``; every leading index is an independent problem (a sub-batch). With
    ``per_problem`` (default, the CW-RGP authors' code) each problem gets its own fresh
    permutation of the ``d`` channels; otherwise one permutation is shared by all problems of
    the call. Permutations come from ``generator`` if given, drawn on CPU so runs are
    reproducible across devices. ``kwargs`` go to :func:`whiten`.
    """
    d = z.shape[-1]
    lead = z.shape[:-2] if per_problem else torch.Size()
    perm = random_channel_permutations(lead, d, z.device, generator)
    inverse = perm.argsort(dim=-1)

    def per_row(index: torch.Tensor) -> torch.Tensor:  # (*lead, d) or (d,) -> z's shape
        return index.expand(*z.shape[:-2], d).unsqueeze(-2).expand(z.shape)

    out = whiten(z.gather(-1, per_row(perm)), method, axis, groups=groups, **kwargs)
    return out.gather(-1, per_row(inverse))


def sub_batch_whiten(
    z: torch.Tensor,
    w_size: int,
    perm: torch.Tensor,
    whiten_fn,
) -> torch.Tensor:
    """W-MSE sub-batching: whiten rows ``perm`` of ``z: (m, d)`` in chunks of ``w_size``.

    ``perm`` is a permutation of the ``m`` rows; chunk ``k`` is ``z[perm[k w : (k+1) w]]``.
    All chunks are whitened in one batched call of ``whiten_fn`` on ``(m / w, w, d)``; the
    result is returned in the original row order.
    """
    m, d = z.shape
    if w_size < 2 or m % w_size != 0:
        raise ValueError(f"w_size={w_size} must be >= 2 and divide the batch size m={m}")
    chunks = whiten_fn(z[perm].view(m // w_size, w_size, d)).reshape(m, d)
    out = torch.empty_like(chunks)
    out[perm] = chunks
    return out


class Whitening(nn.Module):
    """Module form of :func:`whiten` (optionally with random group partition).

    Args:
        method: ``"iternorm" | "zca" | "power" | "pca" | "cholesky"``.
        axis: ``"batch"`` or ``"channel"``.
        groups: number of channel groups whitened independently.
        random_groups: draw a fresh channel permutation per call (CW-RGP) before grouping.
        T, p, eps: method parameters (see :func:`whiten`).

    Shape: ``(..., m, d) -> (..., m, d)``. Stateless (no running statistics).
    """

    def __init__(
        self,
        method: Method = "iternorm",
        axis: Axis = "batch",
        groups: int = 1,
        random_groups: bool = False,
        T: int = 4,
        p: float = 0.5,
        eps: float = 0.0,
    ) -> None:
        super().__init__()
        check_axis(axis)
        if method not in METHODS:
            raise ValueError(f"unknown whitening method {method!r}; choose one of {METHODS}")
        self.method, self.axis, self.groups = method, axis, groups
        self.random_groups, self.T, self.p, self.eps = random_groups, T, p, eps

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        kwargs = {"T": self.T, "p": self.p, "eps": self.eps}
        if self.random_groups and self.groups > 1:
            return random_group_whiten(z, self.groups, self.method, self.axis, **kwargs)
        return whiten(z, self.method, self.axis, groups=self.groups, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"method={self.method}, axis={self.axis}, groups={self.groups}, "
            f"random_groups={self.random_groups}, T={self.T}, p={self.p}, eps={self.eps}"
        )
