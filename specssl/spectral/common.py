"""Shared plumbing of the spectral layer: input checks, precision, and the grouped layout.

Every spectral op works on embeddings ``z`` of shape ``(..., m, d)`` (``m`` samples, ``d``
channels; leading dimensions are independent problems). Internally each op sees one canonical
layout, ``x`` of shape ``(..., g, n, c)``: ``g`` independent groups, each whose covariance is
the ``c x c`` matrix ``x^T x / (n - 1)`` over ``n`` observations, with ``x`` centred over ``n``.

* ``axis="batch"`` (batch whitening, the INTL paper's text, W-MSE): observations are the ``m``
  samples, the covariance is ``d x d`` (or ``d/g x d/g`` per group).
* ``axis="channel"`` (channel whitening, CW-RGP and the INTL authors' code): observations are
  the ``d`` channels (``d/g`` per group), the covariance is ``m x m``. This is the batch layout of
  ``z^T``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch

from specssl.core.errors import NonFiniteError

Axis = Literal["batch", "channel"]
AXES = ("batch", "channel")


def check_embedding(z: torch.Tensor, name: str = "z", *, check_finite: bool = True) -> None:
    """Raise a ``ValueError`` naming the problem when ``z`` is not a usable embedding batch
    (:class:`~specssl.core.NonFiniteError` for NaN/Inf).

    Checks: a floating tensor with at least 2 dims ``(..., m, d)``, no empty dimension, and (when
    ``check_finite``) no NaN/Inf. The finiteness check costs one device sync.
    """
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if not z.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {z.dtype}")
    if z.dim() < 2:
        raise ValueError(f"{name} must have shape (..., m, d), got shape {tuple(z.shape)}")
    if z.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(z.shape)}")
    if check_finite and not bool(torch.isfinite(z).all()):
        n_nan = int(torch.isnan(z).sum())
        n_inf = int(torch.isinf(z).sum())
        raise NonFiniteError(
            f"{name} contains non-finite values ({n_nan} NaN, {n_inf} Inf of {z.numel()}); "
            "the embedding diverged before the spectral op"
        )


def check_axis(axis: str) -> None:
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got {axis!r}")


def compute_dtype(z: torch.Tensor) -> torch.dtype:
    """Spectral math runs in float64 when given float64, else float32 (never half precision)."""
    return torch.float64 if z.dtype == torch.float64 else torch.float32


@contextmanager
def full_precision(z: torch.Tensor) -> Iterator[None]:
    """Disable autocast on ``z``'s device so matmuls stay in float32/float64 under AMP."""
    with torch.autocast(device_type=z.device.type, enabled=False):
        yield


def to_groups(z: torch.Tensor, axis: Axis, groups: int) -> torch.Tensor:
    """``(..., m, d)`` -> ``(..., g, n, c)`` (see module docstring). Centring is not done here."""
    check_axis(axis)
    d = z.shape[-1]
    if groups < 1 or d % groups != 0:
        raise ValueError(f"groups={groups} must be a positive divisor of the dimension d={d}")
    x = z.unflatten(-1, (groups, d // groups))  # (..., m, g, d/g)
    if axis == "batch":
        return x.movedim(-2, -3)  # (..., g, m, d/g): n = m, c = d/g
    return x.movedim(-3, -1)  # (..., g, d/g, m): n = d/g, c = m


def from_groups(x: torch.Tensor, axis: Axis) -> torch.Tensor:
    """Inverse of :func:`to_groups`: ``(..., g, n, c)`` -> ``(..., m, d)``."""
    if axis == "batch":
        return x.movedim(-3, -2).flatten(-2)
    return x.movedim(-1, -3).flatten(-2)


def observations_needed(z: torch.Tensor, axis: Axis, groups: int, op: str) -> None:
    """A covariance over ``n`` observations needs ``n >= 2`` (divisor ``n - 1``)."""
    m, d = z.shape[-2:]
    n = m if axis == "batch" else d // groups
    if n < 2:
        what = "samples (m)" if axis == "batch" else "channels per group (d / groups)"
        raise ValueError(
            f"{op} on the {axis} axis needs at least 2 {what} to estimate a covariance, got {n}"
        )


def center(x: torch.Tensor) -> torch.Tensor:
    """Centre ``x: (..., n, c)`` over its observations ``n``."""
    return x - x.mean(dim=-2, keepdim=True)


class _SelfProduct(torch.autograd.Function):
    """``xc^T xc / (n - 1)`` (or ``xc xc^T / (n - 1)``) with a one-product backward.

    Autograd would treat the two factors as different tensors and spend two products on the
    backward; for ``S = xc^T xc / (n - 1)`` the gradient is ``xc (G + G^T) / (n - 1)``, one
    product (``(G + G^T) xc / (n - 1)`` for the Gram). The backward is written in differentiable
    ops, so double backward still works.
    """

    @staticmethod
    def forward(ctx, xc: torch.Tensor, gram: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.gram = gram
        ctx.save_for_backward(xc)
        n = xc.shape[-2]
        return (xc @ xc.mT if gram else xc.mT @ xc) / (n - 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (xc,) = ctx.saved_tensors
        sym = (grad + grad.mT) / (xc.shape[-2] - 1)
        return (sym @ xc if ctx.gram else xc @ sym), None


def covariance(xc: torch.Tensor) -> torch.Tensor:
    """``xc: (..., n, c)`` centred -> ``(..., c, c)`` covariance ``xc^T xc / (n - 1)``."""
    return _SelfProduct.apply(xc, False)


def gram(xc: torch.Tensor) -> torch.Tensor:
    """``xc: (..., n, c)`` centred -> ``(..., n, n)`` Gram ``xc xc^T / (n - 1)``.

    Same non-zero eigenvalues as :func:`covariance` (push-through identity); cheaper when c > n.
    """
    return _SelfProduct.apply(xc, True)


def zero_variance_mask(x: torch.Tensor, xc: torch.Tensor, trace: torch.Tensor) -> torch.Tensor:
    """Boolean ``(..., 1, 1)`` mask of groups whose variance is zero up to rounding.

    A group is *numerically constant* when ``tr(Σ)/c <= (16 eps)^2 * mean(x^2)``: its centred
    values are then rounding noise of the mean, and whitening would amplify that noise to unit
    scale. Such groups are mapped to exact zeros by the spectral ops (documented behaviour for a
    completely collapsed input).
    """
    c = xc.shape[-1]
    eps = torch.finfo(xc.dtype).eps
    with torch.no_grad():  # a boolean mask: keep it out of the autograd graph
        scale = x.pow(2).mean(dim=(-2, -1))
        return (trace / c <= (16 * eps) ** 2 * scale)[..., None, None]


def batched_trace(a: torch.Tensor) -> torch.Tensor:
    return a.diagonal(dim1=-2, dim2=-1).sum(-1)


def should_use_gram(x: torch.Tensor, use_gram: bool | None) -> bool:
    """Auto choice: iterate on the smaller of the ``c x c`` covariance and ``n x n`` Gram."""
    n, c = x.shape[-2:]
    return c > n if use_gram is None else bool(use_gram)


def centred_moments(
    x: torch.Tensor, use_gram: bool, centre: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre ``x: (..., n, c)`` and form its second-moment matrix.

    ``centre=False`` takes ``x`` as already centred by the caller (e.g. over all ``d``
    channels before a group partition, as CW-RGP's authors do) and uses it as is.

    Returns ``(xc, s, trace, zero)``: ``xc`` centred, ``s`` the covariance ``(..., c, c)`` or,
    when ``use_gram``, the Gram ``(..., n, n)`` (same non-zero spectrum), ``trace`` of ``s`` with
    numerically constant groups replaced by 1 (so divisions stay finite), and ``zero`` the
    ``(..., 1, 1)`` mask of those groups (see :func:`zero_variance_mask`).
    """
    xc = center(x) if centre else x
    s = gram(xc) if use_gram else covariance(xc)
    trace = batched_trace(s)
    zero = zero_variance_mask(x, xc, trace)
    safe_trace = torch.where(zero[..., 0, 0], torch.ones_like(trace), trace)
    return xc, s, safe_trace, zero


def grouped_apply(
    z: torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    axis: Axis,
    groups: int,
    op: str,
    check_finite: bool,
) -> torch.Tensor:
    """Run ``fn`` on the grouped, full-precision layout of ``z`` and map back.

    ``fn`` receives ``x: (..., g, n, c)`` (not yet centred) in float32/float64 with autocast
    disabled, and returns the same shape. The result has ``z``'s shape and dtype.
    """
    check_embedding(z, check_finite=check_finite)
    check_axis(axis)
    observations_needed(z, axis, groups, op)
    with full_precision(z):
        x = to_groups(z.to(compute_dtype(z)), axis, groups)
        out = fn(x)
        return from_groups(out, axis).to(z.dtype)


def covariance_diagonal(zhat: torch.Tensor, axis: Axis, groups: int = 1) -> torch.Tensor:
    """Diagonal of the covariance of an already-centred output ``zhat: (..., m, d)``.

    Returns ``(..., g, c)``: per group, ``diag(x^T x) / (n - 1)`` in the canonical layout
    (``c = d/g`` entries per group on the batch axis, ``c = m`` on the channel axis). This is
    ``(Σ_Ẑ)_jj`` of the trace loss (INTL paper, Eqn. 6). ``zhat`` must be centred over the
    observations, which every whitening output of this package is.
    """
    x = to_groups(zhat, axis, groups)
    return x.pow(2).sum(dim=-2) / (x.shape[-2] - 1)
