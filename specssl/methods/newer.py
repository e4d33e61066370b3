"""The newer members of the spectral family: MEC, CorInfoMax, EMP-SSL (total coding rate),
MMCR, FroSSL, LeJEPA (SIGReg) and ReSA.

Each pairs a loss of :mod:`specssl.losses` with the networks and view routing of its authors'
code (cited per class); where this library differs, the class docstring says so (and
``docs/fidelity.md``, section "Newer spectral methods"). The symmetric ones compute their loss
on the gathered global batch; MEC and ReSA have an EMA target network
(:class:`~specssl.methods.momentum.MomentumMethod`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from specssl.core import ConfigError
from specssl.core.distributed import gather_with_grad
from specssl.losses import (
    CorInfoMaxLoss,
    FroSSLLoss,
    MECLoss,
    MMCRLoss,
    ReSALoss,
    SIGRegLoss,
    TCRLoss,
)
from specssl.methods.base import (
    MethodOutput,
    SymmetricLossMethod,
    build_loss,
    encode_views,
    projection_head,
)
from specssl.methods.config import MethodConfig
from specssl.methods.momentum import MomentumMethod
from specssl.methods.siamese import predictor_for


def check_loss_call(method: nn.Module, run: Callable[[torch.Generator], torch.Tensor]) -> None:
    """Run ``run(generator)`` once (no gradient, own RNG state) and turn a failure into the
    one-line :class:`ConfigError` of :meth:`SymmetricLossMethod.check_loss`."""
    cfg = method.cfg
    values = ", ".join(f"{k}={v!r}" for k, v in cfg.loss.items()) or "defaults"
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            value = run(torch.Generator().manual_seed(0))
    except (ValueError, TypeError, RuntimeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            f"config key 'method.loss' for method {method.name!r} ({values}): {reason}"
        ) from None
    if not torch.isfinite(value):
        raise ConfigError(
            f"config key 'method.loss' for method {method.name!r}: the loss is not finite on "
            "random embeddings of the training shapes"
        )


# ------------------------------------------------------------------------------------ MEC


class MEC(MomentumMethod):
    """MEC (Liu et al., NeurIPS 2022), as the authors' code builds it (xinliu20/MEC
    ``mec/builder.py``, ``main_pretrain.py``): a SimSiam-style student (backbone, projector
    ending in an affine-free BN, predictor ``proj_output_dim -> pred_hidden_dim ->
    proj_output_dim``) against an EMA teacher (backbone + projector, no predictor), the
    teacher's momentum on BYOL's cosine schedule from ``base_tau`` (authors: 0.996) to 1.

    Loss: :meth:`specssl.losses.MECLoss.momentum` of the student's predictions against the
    teacher's embeddings of the other views (for two views ``½ (L(p1, z2) + L(p2, z1))``), on
    the gathered global batch. ``method.loss``: eps_sq, order.

    ``method.options``: ``lambda_warmup`` (fraction of the training steps over which ``1/λ``
    falls linearly from ``lambda_warmup_start / λ`` to ``1/λ``; authors: 10 of 100 epochs =
    0.1, start 8). The factor is kept in the loss's ``lambda_inv_scale`` buffer.

    Differences from the authors': the warm-up is a fraction of the steps (theirs: 10
    epochs). ``MethodOutput.embeddings`` are the student's projector outputs.
    """

    name = "mec"
    needs_global_batch = True
    OPTIONS: ClassVar[dict[str, Any]] = {"lambda_warmup": 0.1, "lambda_warmup_start": 8.0}

    def build_heads(self) -> None:
        cfg, opts = self.cfg, self.options
        warmup, start = opts["lambda_warmup"], opts["lambda_warmup_start"]
        if not 0 <= warmup <= 1:
            raise ConfigError(
                f"config key 'method.options.lambda_warmup': must be in [0, 1], got {warmup!r}"
            )
        if not start > 0:
            raise ConfigError(
                f"config key 'method.options.lambda_warmup_start': must be > 0, got {start!r}"
            )
        self.projector = projection_head(
            self.backbone.out_dim,
            cfg,
            last_batch_norm=True,
            last_bias=False,
        )
        self.predictor = predictor_for(cfg)
        self.loss_fn = build_loss(MECLoss, dict(cfg.loss), self.name)
        self.loss_fn.lambda_inv_scale.fill_(float(start) if warmup > 0 else 1.0)

    def lambda_inv_scale(self, step: int, total_steps: int) -> float:
        """The authors' ``lamda_schedule``: ``linspace(start, 1, W)[step]`` for the first
        ``W = round(lambda_warmup · total_steps)`` steps, then 1."""
        start = float(self.options["lambda_warmup_start"])
        w = round(float(self.options["lambda_warmup"]) * total_steps)
        if step >= w:
            return 1.0
        return start + (1.0 - start) * (step / (w - 1) if w > 1 else 0.0)

    def forward(self, views: list[torch.Tensor]) -> MethodOutput:
        feats, z = self.embed(views)
        p = self.apply_head(self.predictor, z)
        targets = self.target_embed(views)
        result = self.loss_fn.compute_momentum(
            [gather_with_grad(v) for v in p], [gather_with_grad(t) for t in targets]
        )
        terms = dict(result.terms)
        terms["tau"] = torch.tensor(self.tau)
        terms["lambda_inv_scale"] = self.loss_fn.lambda_inv_scale.detach().clone()
        return MethodOutput(result.loss, embeddings=z, features=feats, terms=terms)

    @torch.no_grad()
    def on_train_step_end(self, step: int, total_steps: int) -> None:
        super().on_train_step_end(step, total_steps)
        self.loss_fn.lambda_inv_scale.fill_(self.lambda_inv_scale(step, total_steps))

    def check_loss(self, batch: int, n_views: int) -> None:
        d = self.embedding_dim

        def run(gen: torch.Generator) -> torch.Tensor:
            zs = [torch.randn(batch, d, generator=gen) for _ in range(2 * n_views)]
            return self.loss_fn.momentum(zs[:n_views], zs[n_views:])

        check_loss_call(self, run)


# ----------------------------------------------------------------------------- CorInfoMax


class CorInfoMax(SymmetricLossMethod):
    """CorInfoMax (Ozsoy et al., NeurIPS 2022), as the authors' CIFAR code builds it
    (serdarozsoy/corinfomax-ssl ``cifars-tiny/loss.py``, ``model_base_resnet.py``): every
    view through backbone and projector separately, :class:`specssl.losses.CorInfoMaxLoss`
    on the (l2-normalised) projector outputs of the gathered global batch.

    ``method.loss``: sim_weight, cov_weight, la_R, la_mu, R_ini, R_eps_weight, normalize.
    ``method.options``: ``projector_batch_norm`` (False: the authors' projector is
    ``(Linear - ReLU) x (proj_layers - 1)`` then a bias-free ``Linear``, without BN).

    The loss keeps EMA estimates (its ``R``/``mu`` buffers, saved in checkpoints); they are
    allocated by :meth:`check_loss` before training, and the check itself runs on a copy so it
    does not move them.
    """

    name = "corinfomax"
    loss_cls = CorInfoMaxLoss
    OPTIONS: ClassVar[dict[str, Any]] = {"projector_batch_norm": False}

    def __init__(self, backbone: nn.Module, cfg: MethodConfig) -> None:
        super().__init__(backbone, cfg)
        self.projector = projection_head(
            backbone.out_dim,
            cfg,
            batch_norm=bool(self.options["projector_batch_norm"]),
            last_bias=False,
        )

    def check_loss(self, batch: int, n_views: int) -> None:
        live = self.loss_fn
        self.loss_fn = copy.deepcopy(live)  # the check must not update the estimates
        try:
            super().check_loss(batch, n_views)
        finally:
            self.loss_fn = live
        live.init_state(n_views, self.embedding_dim)


# ------------------------------------------------------------------------ EMP-SSL (TCR)


class EMPSSL(SymmetricLossMethod):
    """EMP-SSL (Tong et al. 2023): :class:`specssl.losses.TCRLoss` over many fixed-size
    patches per image, which are the data layer's views (``data.num_views`` patches from a
    views preset, e.g. ``configs/cifar10/emp_ssl.yaml``). All patches share one backbone and
    projector pass, as the authors' ``main.py`` concatenates them (``authors_forward =
    "joint"``). ``method.loss``: eps_sq, inv_weight, tcr_weight, normalize.

    Not reproduced: the authors evaluate a bag-of-features (the mean embedding of 128 test
    patches); this library's monitors and evaluations embed whole images.
    """

    name = "emp_ssl"
    loss_cls = TCRLoss
    authors_forward = "joint"


# ----------------------------------------------------------------------------------- MMCR


class MMCR(SymmetricLossMethod):
    """MMCR (Yerxa et al., NeurIPS 2023), as the authors' CIFAR code builds it
    (ThomasYerxa/mmcr ``mmcr/cifar_stl/``): all views in one backbone pass (``"joint"``), a
    projector without biases (``Linear - BN - ReLU`` then ``Linear``), and
    :class:`specssl.losses.MMCRLoss` on the gathered global batch. ``method.loss``: lmbda.
    """

    name = "mmcr"
    loss_cls = MMCRLoss
    authors_forward = "joint"

    def __init__(self, backbone: nn.Module, cfg: MethodConfig) -> None:
        super().__init__(backbone, cfg)
        self.projector = projection_head(
            backbone.out_dim,
            cfg,
            last_bias=False,
        )


# --------------------------------------------------------------------------------- FroSSL


class FroSSL(SymmetricLossMethod):
    """FroSSL (Skean et al., ECCV 2024), as the authors' solo-learn fork builds it
    (OFSkean/FroSSL ``solo/methods/frossl.py``): each view through backbone and projector
    (``Linear - BN - ReLU`` x 2 + ``Linear``) separately, :class:`specssl.losses.FroSSLLoss`
    on the gathered global batch. ``method.loss``: invariance_weight. The spectrum monitor's
    ``Ẑ`` is the column-normalised embedding whose Frobenius norm the loss regularises.
    """

    name = "frossl"
    loss_cls = FroSSLLoss


# --------------------------------------------------------------------------------- LeJEPA


class LeJEPA(SymmetricLossMethod):
    """LeJEPA (Balestriero & LeCun 2025) with :class:`specssl.losses.SIGRegLoss`, as the
    authors' ``MINIMAL.md`` builds it: all views in one backbone and projector pass
    (``"joint"``), no predictor, no stop-gradient, no EMA. ``method.loss``: lamb, num_slices,
    t_max, knots, centre_views. SIGReg acts on the raw projector output (no transform for the
    spectrum monitor). The slices are drawn from torch's global generator each step.
    """

    name = "lejepa"
    loss_cls = SIGRegLoss
    authors_forward = "joint"


# ----------------------------------------------------------------------------------- ReSA


class ReSA(MomentumMethod):
    """ReSA (Weng et al., ICML 2025), as the authors' code builds it (winci-ai/resa_cifar
    ``method/resa.py``, ``method/base.py``, ``src/model.py``; winci-ai/resa for ImageNet).

    Every view through the online backbone and projector separately (projector ending in an
    affine-free BN); views 0 and 1 through the EMA target (backbone + projector; momentum on
    BYOL's cosine schedule from ``base_tau``, authors 0.996, to 1). The assignment comes from
    the backbone features (the *encoding*) of view 0, online (detached) against target; the
    loss is :meth:`specssl.losses.ReSALoss.momentum` on the gathered global batch.
    ``method.loss``: temperature, sinkhorn_temperature, sinkhorn_iterations.

    ``method.options``: ``predictor`` (False: the CIFAR code has none; the ImageNet code adds
    ``emb -> pred_hidden_dim -> emb`` on the online side).

    Differences from the authors': the EMA update runs after each optimiser step (theirs at
    the start of the next forward: the same sequence of updates shifted by one step).
    ``MethodOutput.embeddings`` are the online projector outputs.
    """

    name = "resa"
    needs_global_batch = True
    OPTIONS: ClassVar[dict[str, Any]] = {"predictor": False}

    def build_heads(self) -> None:
        cfg = self.cfg
        self.projector = projection_head(
            self.backbone.out_dim,
            cfg,
            last_batch_norm=True,
            last_bias=False,
        )
        self.predictor = predictor_for(cfg) if self.options["predictor"] else None
        self.loss_fn = build_loss(ReSALoss, dict(cfg.loss), self.name)

    def forward(self, views: list[torch.Tensor]) -> MethodOutput:
        if len(views) < 2:
            raise ValueError(f"ReSA needs at least 2 views, got {len(views)}")
        feats, z = self.embed(views)
        online = z if self.predictor is None else self.apply_head(self.predictor, z)
        with torch.no_grad():
            t_feats, t_z = encode_views(
                self.target_backbone, self.target_projector, views[:2], self.forward_mode
            )
        result = self.loss_fn.compute_momentum(
            [gather_with_grad(v) for v in online],
            [gather_with_grad(t) for t in t_z],
            gather_with_grad(feats[0].detach()),
            gather_with_grad(t_feats[0]),
        )
        terms = {**result.terms, "tau": torch.tensor(self.tau)}
        return MethodOutput(result.loss, embeddings=z, features=feats, terms=terms)

    def check_loss(self, batch: int, n_views: int) -> None:
        d, f = self.embedding_dim, self.backbone.out_dim

        def run(gen: torch.Generator) -> torch.Tensor:
            zs = [torch.randn(batch, d, generator=gen) for _ in range(n_views + 2)]
            h, h_t = (torch.randn(batch, f, generator=gen) for _ in range(2))
            return self.loss_fn.momentum(zs[:n_views], zs[n_views:], h, h_t)

        check_loss_call(self, run)


__all__ = [
    "EMPSSL",
    "MEC",
    "MMCR",
    "CorInfoMax",
    "FroSSL",
    "LeJEPA",
    "ReSA",
    "check_loss_call",
]
