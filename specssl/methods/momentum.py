"""Methods with a momentum (EMA) target network: the shared base, INTL-M and DINO.

The other momentum methods live next to their families: BYOL in :mod:`specssl.methods.siamese`,
MoCo v2 in :mod:`specssl.methods.contrastive`, MEC and ReSA in :mod:`specssl.methods.newer`.
"""

from __future__ import annotations

import math
from itertools import permutations
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from specssl.core import ConfigError
from specssl.core.distributed import gather_with_grad
from specssl.losses import DINOLoss, INTLLoss, mean_result
from specssl.methods.base import Method, MethodOutput, build_loss, encode_views, method_options
from specssl.methods.config import MethodConfig
from specssl.models import cosine_momentum, ema_update_, make_target


class MomentumMethod(Method):
    """A method whose target is an EMA copy of some online modules.

    The modules named in ``momentum_modules`` (default backbone and projector) are copied into
    frozen ``target_<name>`` modules after :meth:`build_heads`. After every optimiser step the
    targets follow ``θ' <- τ θ' + (1 - τ) θ`` (:func:`specssl.models.ema_update_`) and then
    ``τ`` moves on BYOL's cosine schedule from ``method.base_tau`` (step 0) to
    ``method.final_tau`` (last step) (Grill et al. 2020, Section 3.2). Target outputs carry no
    gradient.
    """

    momentum_modules: ClassVar[tuple[str, ...]] = ("backbone", "projector")

    def __init__(self, backbone: nn.Module, cfg: MethodConfig) -> None:
        super().__init__(backbone, cfg)
        self.build_heads()
        for name in self.momentum_modules:
            setattr(self, f"target_{name}", make_target(getattr(self, name)))
        self.tau = cfg.base_tau

    def build_heads(self) -> None:
        """Replace or add online heads before the targets are copied (default: none)."""

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """``(target, online)`` module pairs updated by EMA."""
        return [(getattr(self, f"target_{n}"), getattr(self, n)) for n in self.momentum_modules]

    @torch.no_grad()
    def target_embed(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Target projector embeddings ``(B_v, d)`` of every view (no gradient), batched for
        BatchNorm as the online network's (:attr:`forward_mode`)."""
        _, embeddings = encode_views(
            self.target_backbone, self.target_projector, views, self.forward_mode
        )
        return embeddings

    @torch.no_grad()
    def on_train_step_end(self, step: int, total_steps: int) -> None:
        for target, online in self.momentum_pairs():
            ema_update_(target, online, self.tau)
        self.tau = cosine_momentum(step, total_steps, self.cfg.base_tau, self.cfg.final_tau)


class INTLM(MomentumMethod):
    """INTL with a momentum (EMA) target network, the INTL authors' ImageNet method
    (``methods/intl_m.py``, Table 1's 76.6% with multi-crop).

    ``method.options.pairing``:

    * ``"view0_target"`` (default, the authors): view 0 goes through the EMA target only, views
      ``1..V-1`` through the online network only, and
      ``L = 1/(V-1) Σ_{i>=1} [ℓ(Ẑ^online_i, Ẑ^target_0) + β TL(Ẑ^online_i)]``
      (:meth:`specssl.losses.INTLLoss.momentum`);
    * ``"symmetric"`` (this library before 2026-12-02): every view through both networks,
      ``L = mean_{i != j} INTL(z^online_i, z^target_j)``, so small multi-crop views also
      serve as targets.

    The target (backbone + projector) follows the :class:`MomentumMethod` EMA; target
    embeddings carry no gradient. ``MethodOutput.features``/``embeddings`` are those of the
    online views; the logged terms are those of the loss (averaged over the view pairs for
    ``"symmetric"``).
    """

    name = "intl_m"
    needs_global_batch = True
    PAIRINGS = ("view0_target", "symmetric")
    OPTIONS: ClassVar[dict[str, Any]] = {"pairing": "view0_target"}

    def __init__(self, backbone: nn.Module, cfg: MethodConfig) -> None:
        super().__init__(backbone, cfg)
        if self.options["pairing"] not in self.PAIRINGS:
            raise ConfigError(
                f"config key 'method.options.pairing': {self.options['pairing']!r} is not one "
                f"of {list(self.PAIRINGS)}"
            )
        self.loss_fn = build_loss(INTLLoss, dict(cfg.loss), self.name)

    def forward(self, views: list[torch.Tensor]) -> MethodOutput:
        if self.options["pairing"] == "symmetric":
            feats, z = self.embed(views)
            target = [gather_with_grad(t) for t in self.target_embed(views)]
            online = [gather_with_grad(v) for v in z]
            pairs = permutations(range(len(views)), 2)
            result = mean_result([self.loss_fn.compute(online[i], target[j]) for i, j in pairs])
        else:
            feats, z = self.embed(views[1:])
            target = gather_with_grad(self.target_embed(views[:1])[0])
            result = self.loss_fn.compute_momentum([gather_with_grad(v) for v in z], target)
        terms = {**result.terms, "tau": torch.tensor(self.tau)}
        return MethodOutput(result.loss, embeddings=z, features=feats, terms=terms)


# ------------------------------------------------------------------------------------- DINO


def dino_mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, use_bn: bool):
    """DINO's projection MLP: ``(Linear [-BN] - GELU) × (num_layers - 1)`` then ``Linear`` to
    the bottleneck; Linear weights truncated-normal (std 0.02), biases 0 (Caron et al. 2021,
    Section 3.1 / Appendix). ``x: (B, in_dim) -> (B, out_dim)``."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim))
        if use_bn:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.GELU())
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    mlp = nn.Sequential(*layers)
    for layer in mlp:
        if isinstance(layer, nn.Linear):
            nn.init.trunc_normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)
    return mlp


class PrototypeLayer(nn.Module):
    """DINO's weight-normalised last layer: ``x (g ⊙ V / ‖V‖_row)ᵀ`` without bias.

    Weight normalisation (Salimans & Kingma 2016) with the row norms ``g`` initialised to 1;
    ``norm_last_layer=True`` (DINO's default) keeps ``g = 1`` fixed, so the prototypes are the
    unit rows ``v_k / ‖v_k‖`` and only ``V: (K, d)`` is learned. ``x: (B, d) -> (B, K)``.
    """

    def __init__(self, in_dim: int, out_dim: int, norm_last_layer: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's initialisation
        self.scale = None if norm_last_layer else nn.Parameter(torch.ones(out_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.normalize(self.weight, dim=1)
        if self.scale is not None:
            w = self.scale * w
        return x @ w.t()


class DINO(MomentumMethod):
    """DINO: self-distillation with no labels (Caron et al. 2021, Algorithm 1).

    Student = backbone + projection MLP to a ``proj_output_dim`` bottleneck + L2 normalisation
    + :class:`PrototypeLayer` with ``out_dim`` prototypes; the teacher is the EMA of all three
    (:class:`MomentumMethod`, τ from ``base_tau`` to ``final_tau``). The teacher sees the global
    views (the leading views with the shape of view 0), the student every view; the loss is
    :class:`specssl.losses.DINOLoss` (``method.loss``: teacher_temp, student_temp,
    center_momentum, warmup_teacher_temp, warmup_teacher_temp_epochs).

    ``method.options``: ``out_dim`` (prototypes, 4096), ``use_bn`` (BN in the MLP, False),
    ``norm_last_layer`` (True), ``freeze_last_layer_epochs`` (1: the prototypes' gradients are
    dropped during the first epoch(s), in :meth:`on_before_optimizer_step`, as DINO does).
    The bottleneck width is ``method.proj_output_dim`` (DINO: 256), its hidden width
    ``proj_hidden_dim`` and its depth ``proj_layers``.

    ``MethodOutput.embeddings`` are the student's bottleneck embeddings before normalisation and
    prototypes (``(m, proj_output_dim)``, what :attr:`projector` computes, so the spectrum
    monitor sees the same space): the prototype scores are a softmax-classifier output over
    ``out_dim`` clusters, not a representation.

    The teacher-temperature warm-up reads the epoch last passed to
    :meth:`on_before_optimizer_step`, so the first step of each epoch still uses the previous
    epoch's temperature (the trainer calls no hook before the forward).
    """

    name = "dino"
    momentum_modules = ("backbone", "projector", "prototypes")
    OPTIONS: ClassVar[dict[str, Any]] = {
        "out_dim": 4096,
        "use_bn": False,
        "norm_last_layer": True,
        "freeze_last_layer_epochs": 1,
    }

    def build_heads(self) -> None:
        cfg = self.cfg
        opts = method_options(cfg, self.name, self.OPTIONS)
        self.freeze_last_layer_epochs = int(opts["freeze_last_layer_epochs"])
        self.projector = dino_mlp(
            self.backbone.out_dim,
            cfg.proj_hidden_dim,
            cfg.proj_output_dim,
            cfg.proj_layers,
            bool(opts["use_bn"]),
        )
        self.prototypes = PrototypeLayer(
            cfg.proj_output_dim, int(opts["out_dim"]), bool(opts["norm_last_layer"])
        )
        if "out_dim" in cfg.loss:
            raise ConfigError(
                "config key 'method.loss.out_dim': set the number of prototypes with "
                "method.options.out_dim"
            )
        loss_kwargs = {"out_dim": int(opts["out_dim"]), **cfg.loss}
        self.loss_fn = build_loss(DINOLoss, loss_kwargs, self.name)
        self.epoch = 0

    def forward(self, views: list[torch.Tensor]) -> MethodOutput:
        feats, z = self.embed(views)
        sizes = [v.shape[0] for v in views]
        student = list(self.prototypes(F.normalize(torch.cat(z), dim=-1)).split(sizes))
        n_global = 1
        while n_global < len(views) and views[n_global].shape == views[0].shape:
            n_global += 1
        with torch.no_grad():
            t_z = self.target_embed(views[:n_global])
            teacher = list(
                self.target_prototypes(F.normalize(torch.cat(t_z), dim=-1)).split(sizes[:n_global])
            )
        result = self.loss_fn.compute(teacher, student, epoch=self.epoch)
        terms = {**result.terms, "tau": torch.tensor(self.tau)}
        return MethodOutput(result.loss, embeddings=z, features=feats, terms=terms)

    def on_before_optimizer_step(self, epoch: int, step: int) -> None:
        """Record the epoch (teacher-temperature warm-up) and, during the first
        ``freeze_last_layer_epochs`` epochs, drop the prototypes' gradients (DINO's
        ``cancel_gradients_last_layer``: no update, no weight decay, no momentum)."""
        self.epoch = epoch
        if epoch < self.freeze_last_layer_epochs:
            for p in self.prototypes.parameters():
                p.grad = None
