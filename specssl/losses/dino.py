"""DINO's self-distillation loss with a centred, sharpened teacher (Caron et al. 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from specssl.core.distributed import all_reduce_
from specssl.losses.base import LossResult, SSLLoss
from specssl.spectral.common import check_embedding, full_precision


def _check_outputs(outs: Sequence[torch.Tensor], who: str, out_dim: int) -> list[torch.Tensor]:
    if isinstance(outs, torch.Tensor) or not isinstance(outs, Sequence) or len(outs) == 0:
        raise ValueError(f"DINOLoss {who} outputs must be a non-empty list of (m, out_dim) tensors")
    for i, t in enumerate(outs):
        check_embedding(t, name=f"DINOLoss {who} view {i}")
        if t.dim() != 2 or t.shape[1] != out_dim:
            raise ValueError(
                f"DINOLoss {who} view {i} must have shape (m, out_dim={out_dim}), "
                f"got {tuple(t.shape)}"
            )
    return list(outs)


class DINOLoss(SSLLoss):
    """Cross-entropy from a centred, sharpened teacher to the student (DINO, Algorithm 1).

    For teacher outputs ``t_i: (m, K)`` (global views ``i < n_t``) and student outputs
    ``s_j: (m, K)`` (all views ``j < n_s``, the first ``n_t`` being the same global views):

        P_t,i = softmax((t_i - C) / τ_t),   log P_s,j = log_softmax(s_j / τ_s)
        L = mean over pairs (i, j), i != j, of  mean_b  -Σ_k P_t,i[b, k] log P_s,j[b, k]

    which for two views is Algorithm 1's ``H(t1, s2)/2 + H(t2, s1)/2``. The teacher side is
    detached (Algorithm 1's ``t.detach()``). After computing the loss, in training mode, the
    center is updated ``C <- μ C + (1 - μ) mean(t)`` (Algorithm 1) with the mean over all teacher
    rows of all views; under ``torch.distributed`` the row sum and row count are all-reduced, so
    the center is the one of the global batch and identical on every rank.

    The teacher temperature is warmed up linearly per epoch (DINO Section 3 / code):
    ``τ_t(e) = linspace(warmup_teacher_temp, teacher_temp, W)[e]`` for ``e < W =
    warmup_teacher_temp_epochs``, then ``teacher_temp``.

    Args:
        out_dim: ``K``, the number of prototypes (output dimension of the heads).
        teacher_temp: ``τ_t`` after the warm-up (DINO default 0.04).
        student_temp: ``τ_s`` (0.1).
        center_momentum: ``μ`` (0.9).
        warmup_teacher_temp: ``τ_t`` at epoch 0.
        warmup_teacher_temp_epochs: ``W``; 0 disables the warm-up.

    Call as ``loss(teacher_out, student_out, epoch=None)`` with lists of ``(m, K)`` tensors
    (``epoch=None`` uses ``teacher_temp``). Returns a float32 (float64 for float64 input)
    scalar; :meth:`compute` adds the teacher temperature and the detached mean entropy of the
    teacher distribution (``log K`` = uniform collapse, 0 = one-hot collapse).
    """

    center: torch.Tensor

    def __init__(
        self,
        out_dim: int,
        teacher_temp: float = 0.04,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
            raise ValueError(f"out_dim must be a positive int, got {out_dim!r}")
        for key, value in (
            ("teacher_temp", teacher_temp),
            ("student_temp", student_temp),
            ("warmup_teacher_temp", warmup_teacher_temp),
        ):
            if not value > 0:
                raise ValueError(f"{key} must be > 0, got {value}")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1], got {center_momentum}")
        if (
            isinstance(warmup_teacher_temp_epochs, bool)
            or not isinstance(warmup_teacher_temp_epochs, int)
            or warmup_teacher_temp_epochs < 0
        ):
            raise ValueError(
                "warmup_teacher_temp_epochs must be an int >= 0, got "
                f"{warmup_teacher_temp_epochs!r}"
            )
        self.out_dim = out_dim
        self.teacher_temp, self.student_temp = teacher_temp, student_temp
        self.center_momentum = center_momentum
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.register_buffer("center", torch.zeros(out_dim))

    def teacher_temperature(self, epoch: int | None) -> float:
        """``τ_t`` at ``epoch`` (``None``: after the warm-up)."""
        w = self.warmup_teacher_temp_epochs
        if epoch is None or epoch >= w:
            return float(self.teacher_temp)
        if w == 1:
            return float(self.warmup_teacher_temp)
        frac = max(epoch, 0) / (w - 1)
        return float(
            self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * frac
        )

    def compute(
        self,
        teacher_out: Sequence[torch.Tensor],
        student_out: Sequence[torch.Tensor],
        epoch: int | None = None,
    ) -> LossResult:
        teacher = _check_outputs(teacher_out, "teacher", self.out_dim)
        student = _check_outputs(student_out, "student", self.out_dim)
        if len(teacher) > len(student):
            raise ValueError(
                f"DINOLoss got {len(teacher)} teacher views but only {len(student)} student "
                "views; the student sees every view, the teacher the first (global) ones"
            )
        if len(student) < 2:
            raise ValueError("DINOLoss needs at least 2 student views (pairs i != j)")
        m = teacher[0].shape[0]
        for who, outs in (("teacher", teacher), ("student", student)):
            for i, t in enumerate(outs):
                if t.shape[0] != m:
                    raise ValueError(
                        f"DINOLoss {who} view {i} has {t.shape[0]} rows, teacher view 0 has {m}"
                    )
        dtype = torch.float64 if student[0].dtype == torch.float64 else torch.float32
        temp = self.teacher_temperature(epoch)
        with full_precision(student[0]):
            t = torch.stack(teacher).detach().to(dtype)  # (n_t, m, K)
            s = torch.stack(student).to(dtype)  # (n_s, m, K)
            p_t = F.softmax((t - self.center.to(dtype)) / temp, dim=-1)
            log_p_s = F.log_softmax(s / self.student_temp, dim=-1)
            cross = -torch.einsum("imk,jmk->ij", p_t, log_p_s) / m  # (n_t, n_s)
            off_diag = ~torch.eye(len(teacher), len(student), dtype=torch.bool, device=s.device)
            loss = cross[off_diag].mean()
            entropy = -(p_t * torch.log(p_t.clamp_min(1e-30))).sum(-1).mean()
        terms = {"teacher_temp": torch.tensor(temp), "teacher_entropy": entropy.detach()}
        if self.training:
            self.update_center(teacher)
        return LossResult(loss, terms)

    @torch.no_grad()
    def update_center(self, teacher_out: Sequence[torch.Tensor]) -> None:
        """``C <- μ C + (1 - μ) mean(t)`` over every row of every teacher view, globally
        (row sums and counts all-reduced across ranks)."""
        t = torch.cat([v.detach() for v in teacher_out]).to(self.center.dtype)
        stats = torch.cat([t.sum(0), t.new_tensor([t.shape[0]])])  # (K + 1,): sum, count
        all_reduce_(stats)
        batch_center = stats[:-1] / stats[-1]
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)

    def extra_repr(self) -> str:
        return (
            f"out_dim={self.out_dim}, teacher_temp={self.teacher_temp}, "
            f"student_temp={self.student_temp}, center_momentum={self.center_momentum}, "
            f"warmup_teacher_temp={self.warmup_teacher_temp}, "
            f"warmup_teacher_temp_epochs={self.warmup_teacher_temp_epochs}"
        )
