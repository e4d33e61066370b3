"""The INTL paper's 2-D study (Section 3.2, Figure 2(a); Section 4.2): collapse in the plane.

A small MLP ``R^2 -> R^2`` is trained on a 2-D point set with two augmented views per point,
once per *setting* (same data, same initial weights, same augmentation noise for all):

* ``p=<power>`` — :class:`~specssl.losses.STPowerLoss`: ``Ẑ = Z_c U Λ^{-p} U^T`` and the
  normalized MSE between the views' ``Ẑ`` (Definition 1). Output spectrum ``λ^{1-2p}``.
* ``iternorm`` — :class:`~specssl.losses.IterNormLoss`: ``Ẑ = IterNorm_T(Z)`` (Eqn. 3),
  output spectrum ``h_T(λ / tr Σ)`` (Theorem 1); the paper's failing baseline.
* ``intl`` — :class:`~specssl.losses.INTLLoss`: IterNorm plus the trace loss (Eqn. 6).

All losses use the *batch* axis: with ``d = 2`` the embedding covariance is the ``2 x 2``
matrix over the ``m`` samples of a batch, exactly the setting of Section 3.2. (The channel
axis would centre each sample over its 2 channels, leaving an ``m x m`` Gram of rank <= 1.)

Data and augmentation (:class:`ToyConfig`). The inputs are ``n`` points drawn from 16 Gaussian
blobs on a 4 x 4 grid in ``[-1, 1]^2``. A view adds Gaussian jitter with a *larger* standard
deviation along the input's y axis (default ``(0.1, 0.7)``) than along x: the two views
agree on a point's column but often not on its row. The invariance term alone is therefore
minimised by discarding y, i.e. by a 1-D embedding — a built-in pull towards dimensional
collapse that a spectral transformation has to resist (the 2-D stand-in for image
augmentations that destroy some directions of input space). With isotropic jitter the
unwhitened baseline (``p = 0``) has no such pull and, in our runs, did not reliably collapse.

Measurement (:class:`ToyResult`). After training, the condition indicator
``c^{-1} = λ_min / λ_max`` (Figure 2(b)) of the ``2 x 2`` covariance is computed on the whole
un-augmented data set, for the embedding ``Z`` and for the setting's transformed output ``Ẑ``
(``power_transform`` with the same ``p``, or ``iternorm`` with the same ``T``). For the power
family ``c^{-1}(Ẑ) = c^{-1}(Z)^{|1 - 2p|}``, so ``p`` near 0.5 keeps ``Ẑ`` well conditioned even
when ``Z`` drifts. Section 3.2 of the paper ties collapse to the spectrum of the transformed
output ``Ẑ``; Section 4.2 (IterNorm-only vs INTL) to the spectrum of the embedding ``Z`` as
well. Both are reported.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from specssl.losses import INTLLoss, IterNormLoss, STPowerLoss
from specssl.spectral import condition_indicator, iternorm, power_transform, spectrum
from specssl.toy.config import (
    COLLAPSE_THRESHOLD,
    DEFAULT_SETTINGS,
    GRID_SIDE,
    Setting,
    ToyConfig,
    parse_setting,
    parse_settings,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "Setting",
    "ToyConfig",
    "ToyResult",
    "augment",
    "format_table",
    "make_blobs",
    "make_mlp",
    "parse_setting",
    "parse_settings",
    "run_toy_study",
    "toy_inputs",
    "train_setting",
]


@dataclass
class ToyResult:
    """Outcome of one setting.

    Attributes:
        setting: the setting's name (``"p=0.5"``, ``"iternorm"``, ``"intl"``).
        condition_z: ``λ_min / λ_max`` of the embedding covariance (whole data set).
        condition_zhat: the same for the transformed output ``Ẑ`` of the setting.
        final_loss: mean training loss over the last ``min(20, steps)`` steps.
        z, zhat: ``(n, 2)`` float64 CPU tensors, the embedding and transformed output.
        labels: ``(n,)`` blob index ``GRID_SIDE * column + row`` of each input point.
        diverged: the loss became non-finite; training stopped at ``steps_done``.
    """

    setting: str
    condition_z: float
    condition_zhat: float
    final_loss: float
    z: torch.Tensor = field(repr=False)
    zhat: torch.Tensor = field(repr=False)
    labels: torch.Tensor = field(repr=False)
    steps_done: int = 0
    diverged: bool = False

    @property
    def collapsed_parts(self) -> list[str]:
        """Which of ``"Z"`` / ``"Zhat"`` have a condition indicator below the threshold (or
        are not finite)."""
        parts = []
        for name, value in (("Z", self.condition_z), ("Zhat", self.condition_zhat)):
            if not (value >= COLLAPSE_THRESHOLD):  # also catches NaN
                parts.append(name)
        return parts

    @property
    def collapsed(self) -> bool:
        """True when the embedding or the transformed output has (numerically) lost a
        dimension, or training diverged."""
        return self.diverged or bool(self.collapsed_parts)


def make_blobs(
    n: int, blob_std: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points from 16 Gaussian blobs on a 4 x 4 grid of ``[-1, 1]^2``.

    Returns ``x: (n, 2)`` float32 and ``labels: (n,)`` int64, ``label = 4 * column + row``
    (column indexes x, row indexes y).
    """
    labels = torch.randint(0, GRID_SIDE * GRID_SIDE, (n,), generator=generator)
    column, row = labels // GRID_SIDE, labels % GRID_SIDE
    step = 2.0 / (GRID_SIDE - 1)
    centres = torch.stack([column, row], dim=1).float() * step - 1.0
    return centres + blob_std * torch.randn(n, 2, generator=generator), labels


def toy_inputs(seed: int, config: ToyConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """The data set of a run: ``(x: (n, 2), labels: (n,), generator)``.

    The returned generator has drawn the data and continues the run's random stream (model
    initialisation, batches and views come next), so every setting of a seed is identical.
    """
    gen = torch.Generator().manual_seed(seed)
    x, labels = make_blobs(config.n_points, config.blob_std, gen)
    return x, labels, gen


def augment(x: torch.Tensor, jitter: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """One view of ``x: (m, 2)``: ``x + ε ⊙ (σ_x, σ_y)``, ``ε ~ N(0, I)`` drawn on the CPU."""
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    return x + noise * torch.tensor(jitter, dtype=x.dtype, device=x.device)


def make_mlp(hidden: int, generator: torch.Generator) -> nn.Sequential:
    """The ``2 -> hidden -> hidden -> 2`` ReLU MLP, initialised from ``generator`` only.

    PyTorch's default ``nn.Linear`` initialisation (uniform, ``±1/sqrt(fan_in)``), drawn from
    ``generator``; the layers are built with ``skip_init`` so the global RNG is neither used
    nor changed.
    """
    sizes = [(2, hidden), (hidden, hidden), (hidden, 2)]
    layers: list[nn.Module] = []
    for fan_in, fan_out in sizes:
        linear = nn.utils.skip_init(nn.Linear, fan_in, fan_out)
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            for param in (linear.weight, linear.bias):
                param.copy_(torch.rand(param.shape, generator=generator) * 2 * bound - bound)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (``None``: leave it alone).

    The study's ops are tiny (``256 x 64`` matmuls, ``2 x 2`` decompositions): thread start-up
    costs more than it saves, and on a busy machine extra threads slow it down many times.
    """
    if num_threads is None:
        yield
        return
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def build_loss(setting: Setting, config: ToyConfig) -> nn.Module:
    """The loss module of a setting, on the batch axis (see module docstring)."""
    if setting.kind == "power":
        return STPowerLoss(p=setting.p, axis="batch")
    if setting.kind == "iternorm":
        return IterNormLoss(T=config.T, axis="batch")
    if setting.kind == "intl":
        return INTLLoss(T=config.T, beta=config.beta, axis="batch")
    raise ValueError(f"unknown setting kind {setting.kind!r}")


def transform(z: torch.Tensor, setting: Setting, config: ToyConfig) -> torch.Tensor:
    """The setting's spectral transformation ``Ẑ`` of ``z: (n, 2)`` (no gradient needed)."""
    if setting.kind == "power":
        return power_transform(z, setting.p, axis="batch")
    return iternorm(z, config.T, axis="batch")


def condition(z: torch.Tensor) -> float:
    """``λ_min / λ_max`` of the ``2 x 2`` batch covariance of ``z: (n, 2)``; NaN if not
    finite."""
    if not bool(torch.isfinite(z).all()):
        return math.nan
    return float(condition_indicator(spectrum(z, "batch")))


def train_setting(
    setting: Setting | str,
    steps: int,
    seed: int = 0,
    config: ToyConfig | None = None,
    device: torch.device | str = "cpu",
    num_threads: int | None = 1,
) -> ToyResult:
    """Train the toy MLP with one setting's loss and measure it (see module docstring).

    Data, initial weights, batch order and augmentation noise depend only on ``seed`` (and
    ``config``), so every setting starts from the same point and sees the same views.
    ``num_threads``: torch intra-op threads during the call (see :func:`torch_threads`).
    Raises ``ValueError`` for ``steps < 1`` or an unknown setting.
    """
    config = config or ToyConfig()
    setting = parse_setting(setting) if isinstance(setting, str) else setting
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    device = torch.device(device)

    with torch_threads(num_threads):
        x, labels, gen = toy_inputs(seed, config)
        x = x.to(device)
        net = make_mlp(config.hidden, gen).to(device)
        recent, steps_done, diverged = _train(net, x, setting, steps, config, gen)
        with torch.no_grad():
            z = net(x).double()
            finite = bool(torch.isfinite(z).all())
            zhat = transform(z, setting, config) if finite else torch.full_like(z, math.nan)
        return ToyResult(
            setting=setting.name,
            condition_z=condition(z),
            condition_zhat=condition(zhat),
            final_loss=sum(recent) / len(recent) if recent else math.nan,
            z=z.cpu(),
            zhat=zhat.cpu(),
            labels=labels,
            steps_done=steps_done,
            diverged=diverged or not finite,
        )


def _train(
    net: nn.Module,
    x: torch.Tensor,
    setting: Setting,
    steps: int,
    config: ToyConfig,
    gen: torch.Generator,
) -> tuple[list[float], int, bool]:
    """Adam on ``loss(net(view1), net(view2))`` of random batches of ``x: (n, 2)``.

    Returns the last 20 loss values, the number of completed steps, and whether training
    stopped early on a non-finite embedding or loss.
    """
    loss_fn = build_loss(setting, config)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    m = min(config.batch_size, config.n_points)
    recent: list[float] = []
    for step in range(steps):
        idx = torch.randperm(config.n_points, generator=gen)[:m].to(x.device)
        batch = x[idx]
        view1, view2 = augment(batch, config.jitter, gen), augment(batch, config.jitter, gen)
        z1, z2 = net(view1), net(view2)
        if not bool(torch.isfinite(z1).all() & torch.isfinite(z2).all()):
            return recent, step, True
        loss = loss_fn(z1, z2)
        value = float(loss.detach())
        if not math.isfinite(value):
            return recent, step, True
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recent = [*recent[-19:], value]
    return recent, steps, False


def run_toy_study(
    settings: str | Iterable[str | Setting] = DEFAULT_SETTINGS,
    steps: int = 500,
    seed: int = 0,
    config: ToyConfig | None = None,
    device: torch.device | str = "cpu",
    num_threads: int | None = 1,
) -> list[ToyResult]:
    """Run :func:`train_setting` for each setting (same seed) and return the results in order.

    ``settings`` is a comma-separated string (``"p=0,p=0.5,intl"``, ``"all"``) or an iterable of
    names / :class:`Setting`.
    """
    parsed = parse_settings(settings)
    config = config or ToyConfig()
    with torch_threads(num_threads):
        return [train_setting(s, steps, seed, config, device, None) for s in parsed]


def format_table(results: Sequence[ToyResult]) -> str:
    """The study's table (ASCII), one row per setting.

    Columns: setting | cond(Z) | cond(Zhat) | final loss | collapsed? — ``cond`` is the
    condition indicator ``λ_min / λ_max``; ``collapsed?`` names the parts below
    :data:`COLLAPSE_THRESHOLD` (``Z``, ``Zhat``) or says ``no``.
    """
    header = f"{'setting':<10} {'cond(Z)':>9} {'cond(Zhat)':>10} {'final loss':>10}  collapsed?"
    lines = [header, "-" * len(header)]
    for r in results:
        verdict = ", ".join(r.collapsed_parts) or "no"
        if r.diverged:
            verdict = f"diverged at step {r.steps_done + 1}"
        lines.append(
            f"{r.setting:<10} {r.condition_z:>9.4f} {r.condition_zhat:>10.4f} "
            f"{r.final_loss:>10.4f}  {verdict}"
        )
    return "\n".join(lines)
