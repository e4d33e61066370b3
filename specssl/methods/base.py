"""The method contract: networks + loss + which views pair with which.

A method is a small ``nn.Module``: ``forward(views)`` takes the list of augmented views
``(B, 3, H, W)`` and returns a :class:`MethodOutput` (the loss, the embeddings, the backbone
features used by the online probe, and named loss terms for logging/diagnosis, from the loss's
:class:`~specssl.losses.LossResult`). Everything else (optimisers, schedules, logging, DDP) is
the trainer's job.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from specssl.core import ConfigError
from specssl.core.distributed import gather_with_grad
from specssl.losses import SSLLoss
from specssl.methods.config import MethodConfig
from specssl.models import MLPHead


@dataclass
class MethodOutput:
    loss: torch.Tensor  # scalar
    embeddings: list[torch.Tensor]  # per view (m, d), this rank's rows
    features: list[torch.Tensor]  # per view (m, feat_dim) backbone features
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # detached loss terms


FORWARDS = ("per_view", "joint", "backbone_per_view")


def resolve_forward(cfg: MethodConfig, authors_forward: str) -> str:
    """``method.forward`` with ``"auto"`` replaced by the method's authors' choice."""
    forward = authors_forward if cfg.forward == "auto" else cfg.forward
    if forward not in FORWARDS:
        raise ConfigError(
            f"config key 'method.forward': {cfg.forward!r} is not one of {['auto', *FORWARDS]}"
        )
    return forward


def encode_views(
    backbone: nn.Module, head: nn.Module, views: list[torch.Tensor], forward: str
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Backbone features and ``head`` embeddings of every view ``(B_v, 3, H, W)``.

    ``forward`` decides which images share a BatchNorm batch (their statistics are computed
    together):

    * ``"per_view"``: backbone and head run on each view separately (the INTL authors'
      code, solo-learn);
    * ``"backbone_per_view"``: the backbone per view, the head once on all views together
      (W-MSE / CW-RGP authors' code);
    * ``"joint"``: views of one resolution share one backbone pass and the head runs on all
      views together (this library before 2026-12-02).

    Returns per-view ``(B_v, feat_dim)`` features and ``(B_v, d)`` embeddings.
    """
    same_shape = all(v.shape[1:] == views[0].shape[1:] for v in views)
    if forward == "joint" and same_shape:
        feats = list(backbone(torch.cat(views)).split([v.shape[0] for v in views]))
    else:  # per view, or multi-crop views of different resolutions
        feats = [backbone(v) for v in views]
    return feats, head_on_views(head, feats, forward)


def head_on_views(head: nn.Module, xs: list[torch.Tensor], forward: str) -> list[torch.Tensor]:
    """``head`` on every view's ``(B_v, k)`` input: per view when ``forward`` is
    ``"per_view"``, else once on all views together."""
    if forward == "per_view":
        return [head(x) for x in xs]
    return list(head(torch.cat(xs)).split([x.shape[0] for x in xs]))


def projection_head(in_dim: int, cfg: MethodConfig, **head_options: Any) -> MLPHead:
    """The projector of ``cfg``: ``cfg.proj_layers`` Linear layers ``in_dim -> proj_hidden_dim
    -> ... -> proj_output_dim``; ``head_options`` are :class:`~specssl.models.MLPHead`'s
    (``batch_norm``, ``last_batch_norm``, ``last_bias``, ...)."""
    return MLPHead(
        in_dim, cfg.proj_hidden_dim, cfg.proj_output_dim, num_layers=cfg.proj_layers, **head_options
    )


class Method(nn.Module):
    """Base class. Subclasses set ``name`` and build their loss in ``__init__``."""

    name: ClassVar[str] = ""
    needs_global_batch: ClassVar[bool] = False  # gather embeddings across ranks before the loss
    OPTIONS: ClassVar[dict[str, Any]] = {}  # accepted ``method.options`` keys and defaults
    #: ``method.forward="auto"``: how the authors' code batches views for BatchNorm.
    authors_forward: ClassVar[str] = "per_view"

    def __init__(self, backbone: nn.Module, cfg: MethodConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.options = method_options(cfg, self.name, self.OPTIONS)
        self.forward_mode = resolve_forward(cfg, self.authors_forward)
        self.backbone = backbone
        self.projector = projection_head(backbone.out_dim, cfg)

    @property
    def embedding_dim(self) -> int:
        return self.cfg.proj_output_dim

    def embed(self, views: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Backbone features and projector embeddings of every view, batched for BatchNorm
        as :attr:`forward_mode` says (:func:`encode_views`)."""
        return encode_views(self.backbone, self.projector, views, self.forward_mode)

    def apply_head(self, head: nn.Module, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """:func:`head_on_views` with this method's :attr:`forward_mode` (predictors follow the
        projector)."""
        return head_on_views(head, xs, self.forward_mode)

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """Hook after each optimiser step (momentum methods update their target here)."""

    def on_before_optimizer_step(self, epoch: int, step: int) -> None:
        """Hook between backward and the optimiser step: gradients exist and may be edited
        (SwAV/DINO freeze their prototypes / last layer during the first epoch here)."""

    @property
    def spectral_axis(self) -> str:
        """The covariance axis of :meth:`spectral_transform` (``"batch"`` or ``"channel"``)."""
        return getattr(getattr(self, "loss_fn", None), "axis", "batch")

    def spectral_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The transformation the loss applies to an embedding batch ``(m, d)`` (for the
        spectrum monitor): :meth:`specssl.losses.SSLLoss.spectral_transform` of ``loss_fn``,
        or ``None`` when the method has none."""
        loss = getattr(self, "loss_fn", None)
        return loss.spectral_transform() if isinstance(loss, SSLLoss) else None

    def check_loss(self, batch: int, n_views: int) -> None:
        """Run the loss once on random embeddings of the training shapes (``n_views`` views of
        ``(batch, d)``), so a bad ``method.loss`` value (a wrong type, groups that do not divide
        ``d``, a sub-batch that does not divide the batch) is a one-line :class:`ConfigError`
        before the first step. Methods whose loss takes other inputs skip it (default)."""


def method_options(cfg: MethodConfig, method: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` updated by ``cfg.options``; an unknown key is a one-line ConfigError."""
    for key in cfg.options:
        if key not in defaults:
            raise ConfigError(
                f"config key 'method.options.{key}': unknown option for method {method!r} "
                f"(accepted: {sorted(defaults)})"
            )
    return {**defaults, **dict(cfg.options)}


def build_loss(loss_cls: type[SSLLoss], kwargs: dict, method: str) -> SSLLoss:
    """Instantiate ``loss_cls(**kwargs)``; a wrong key is a one-line :class:`ConfigError`."""
    try:
        return loss_cls(**kwargs)
    except TypeError as err:
        accepted = [n for n in inspect.signature(loss_cls).parameters if n != "self"]
        raise ConfigError(
            f"config key 'method.loss' for method {method!r}: {err} "
            f"({loss_cls.__name__} accepts: {', '.join(accepted)})"
        ) from err


class SymmetricLossMethod(Method):
    """Siamese method: every view through the same network, loss on all views' embeddings.

    Covers INTL, IterNorm-only, ST-power, W-MSE and CW-RGP. Embeddings are gathered across
    ranks first when ``needs_global_batch`` (whitening needs the global batch statistics).
    """

    loss_cls: ClassVar[type[SSLLoss]]
    needs_global_batch = True

    def __init__(self, backbone: nn.Module, cfg: MethodConfig) -> None:
        super().__init__(backbone, cfg)
        self.loss_fn = build_loss(self.loss_cls, dict(cfg.loss), self.name)

    def check_loss(self, batch: int, n_views: int) -> None:
        gen = torch.Generator().manual_seed(0)
        zs = [torch.randn(batch, self.embedding_dim, generator=gen) for _ in range(n_views)]
        try:  # own RNG state: the check must not shift the run's random stream
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                value = self.loss_fn(zs)
        except (ValueError, TypeError, RuntimeError) as err:
            raise ConfigError(
                f"config key 'method.loss' for method {self.name!r} "
                f"({', '.join(f'{k}={v!r}' for k, v in self.cfg.loss.items()) or 'defaults'}): "
                + (str(err).splitlines()[0] if str(err) else type(err).__name__)
            ) from None
        if not torch.isfinite(value):
            raise ConfigError(
                f"config key 'method.loss' for method {self.name!r}: the loss is not finite "
                "on random embeddings of the training shapes"
            )

    def forward(self, views: list[torch.Tensor]) -> MethodOutput:
        feats, z = self.embed(views)
        zs = [gather_with_grad(v) for v in z] if self.needs_global_batch else z
        result = self.loss_fn.compute(zs)
        return MethodOutput(result.loss, embeddings=z, features=feats, terms=dict(result.terms))
