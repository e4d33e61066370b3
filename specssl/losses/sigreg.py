"""LeJEPA / SIGReg: sketched isotropic Gaussian regularisation (Balestriero & LeCun, 2025)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specssl.losses._views import parse_views
from specssl.losses.base import LossResult, SSLLoss
from specssl.spectral.common import compute_dtype, full_precision


def epps_pulley_grid(
    t_max: float, knots: int, dtype: torch.dtype = torch.float32, device=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integration grid of the Epps–Pulley statistic: ``(t, weights, φ)``, each ``(knots,)``.

    ``t`` is ``knots`` equally spaced points on ``[0, t_max]``, ``φ(t) = exp(-t²/2)`` the
    standard normal characteristic function, which is also the weight ``w(t)``. The
    integrand is even in ``t``, so the trapezoidal rule on ``[-t_max, t_max]`` equals twice
    the rule on ``[0, t_max]`` with the point ``t = 0`` counted once: ``weights = Δt · (1, 2,
    .., 2, 1) · φ(t)`` (the authors' ``EppsPulley``/``SIGReg``).
    """
    if isinstance(knots, bool) or not isinstance(knots, int) or knots < 2:
        raise ValueError(f"knots must be an int >= 2, got {knots!r}")
    if not t_max > 0:
        raise ValueError(f"t_max must be > 0, got {t_max}")
    t = torch.linspace(0, t_max, knots, dtype=dtype, device=device)
    dt = t_max / (knots - 1)
    weights = torch.full((knots,), 2 * dt, dtype=dtype, device=device)
    weights[0] = weights[-1] = dt
    phi = torch.exp(-t.square() / 2)
    return t, weights * phi, phi


def epps_pulley(
    x: torch.Tensor, t: torch.Tensor, weights: torch.Tensor, phi: torch.Tensor
) -> torch.Tensor:
    """Epps–Pulley statistic against N(0, 1) of each column of ``x: (..., N, K)`` -> ``(..., K)``.

        EP(x) = N ∫ |φ̂_x(t) - φ(t)|² w(t) dt,   φ̂_x(t) = 1/N Σ_n exp(i t x_n)

    on the grid of :func:`epps_pulley_grid` (real part ``mean cos(t x)``, imaginary part
    ``mean sin(t x)``; ``φ`` is real).
    """
    xt = x.unsqueeze(-1) * t  # (..., N, K, T)
    err = (torch.cos(xt).mean(dim=-3) - phi).square() + torch.sin(xt).mean(dim=-3).square()
    return (err @ weights) * x.shape[-2]


class SIGRegLoss(SSLLoss):
    """LeJEPA's loss (Balestriero & LeCun 2025): SIGReg plus the prediction (invariance) term,
    as the authors' ``MINIMAL.md`` computes it (rbalestr-lab/lejepa).

    For views ``z_v: (m, d)``, ``v = 1..V``, and the centre ``μ = mean of the first
    ``centre_views`` views`` (all views by default, as in ``MINIMAL.md``; the paper's
    algorithm uses the global views),

        L = λ · SIGReg  +  (1 - λ) · mean_{v,b,j} (μ_bj - z_v,bj)²

        SIGReg = mean_{v, k} EP(z_v a_k),   a_k = g_k / ‖g_k‖,   g_k ~ N(0, I_d)

    with the Epps–Pulley statistic ``EP`` of :func:`epps_pulley` on each 1-D projection
    (slice) ``z_v a_k`` of the ``m`` samples: a test that the embedding is an isotropic
    Gaussian. ``μ`` is not detached (no stop-gradient).

    Slices: ``num_slices`` directions (``MINIMAL.md``: 256; the library's README: 1024), shared
    by all views of a call and **re-drawn at every call** from torch's default generator (in
    float32 on the embedding's device, then cast), so ``torch.manual_seed`` reproduces them;
    pass ``directions=`` to fix them. Integration: trapezoidal rule on ``knots`` points of
    ``[0, t_max]`` (authors: 17 on ``[0, 3]``), see :func:`epps_pulley_grid`.

    Args:
        lamb: ``λ`` (``MINIMAL.md`` recommends 0.02; the paper's ImageNet runs 0.05).
        num_slices: number of random directions ``K``.
        t_max: upper end of the integration interval.
        knots: number of integration points.
        centre_views: the first this many views define ``μ`` (``None``: all views).

    Call as ``loss(z1, z2, ...)`` or ``loss([z1, ..., zV], directions=None)`` with views
    ``(m, d)`` on the global batch (``m`` multiplies EP). Computed in float32 (float64 for
    float64 input) with autocast off. Terms of :meth:`compute`: the detached ``sigreg`` and
    ``invariance``. SIGReg acts on the raw embedding (no monitored transform).
    """

    def __init__(
        self,
        lamb: float = 0.02,
        num_slices: int = 256,
        t_max: float = 3.0,
        knots: int = 17,
        centre_views: int | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= lamb <= 1:
            raise ValueError(f"lamb must be in [0, 1], got {lamb}")
        if isinstance(num_slices, bool) or not isinstance(num_slices, int) or num_slices < 1:
            raise ValueError(f"num_slices must be an int >= 1, got {num_slices!r}")
        epps_pulley_grid(t_max, knots)  # validates t_max and knots
        if centre_views is not None and (
            isinstance(centre_views, bool) or not isinstance(centre_views, int) or centre_views < 1
        ):
            raise ValueError(f"centre_views must be None or an int >= 1, got {centre_views!r}")
        self.lamb, self.num_slices, self.t_max, self.knots = lamb, num_slices, t_max, knots
        self.centre_views = centre_views

    def draw_directions(self, d: int, device=None) -> torch.Tensor:
        """``(d, num_slices)`` unit directions from torch's default generator (float32)."""
        a = torch.randn(d, self.num_slices, device=device)
        return a / a.norm(dim=0)

    def compute(
        self, *views: torch.Tensor | list[torch.Tensor], directions: torch.Tensor | None = None
    ) -> LossResult:
        zs = parse_views(views, type(self).__name__)
        n_centre = len(zs) if self.centre_views is None else self.centre_views
        if n_centre > len(zs):
            raise ValueError(
                f"{type(self).__name__}: centre_views={n_centre} but only {len(zs)} views"
            )
        d = zs[0].shape[1]
        dtype = compute_dtype(zs[0])
        if directions is None:
            directions = self.draw_directions(d, zs[0].device)
        if directions.shape != (d, self.num_slices):
            raise ValueError(
                f"{type(self).__name__} directions must have shape (d, num_slices) = "
                f"{(d, self.num_slices)}, got {tuple(directions.shape)}"
            )
        with full_precision(zs[0]):
            z = torch.stack(zs).to(dtype)  # (V, m, d)
            t, weights, phi = epps_pulley_grid(self.t_max, self.knots, dtype, z.device)
            sigreg = epps_pulley(z @ directions.to(dtype), t, weights, phi).mean()
            centre = z[:n_centre].mean(dim=0)
            invariance = F.mse_loss(centre.expand_as(z), z)
            loss = self.lamb * sigreg + (1 - self.lamb) * invariance
        return LossResult(loss, {"sigreg": sigreg.detach(), "invariance": invariance.detach()})

    def extra_repr(self) -> str:
        return (
            f"lamb={self.lamb}, num_slices={self.num_slices}, t_max={self.t_max}, "
            f"knots={self.knots}, centre_views={self.centre_views}"
        )
