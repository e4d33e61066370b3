"""Predictor / self-distillation: negative cosine (SimSiam, BYOL), DINO loss, BYOL/SimSiam/DINO."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F

# Only light imports at module level: the 2-process test re-imports this module in each child.
from helpers import run_gloo
from torch import nn

from specssl.losses import DINOLoss, NegativeCosineLoss
from specssl.train.config import ConfigError, MethodConfig

# ----------------------------------------------------------------------------- helpers


class TinyBackbone(nn.Sequential):
    """Conv - BN - ReLU - global pool - Linear: any input size, ``out_dim`` features."""

    def __init__(self, out_dim: int = 6) -> None:
        super().__init__(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, out_dim),
        )
        self.out_dim = out_dim


def tiny(name: str, seed: int = 0, **kwargs):
    from specssl.methods import build_method

    torch.manual_seed(seed)
    cfg = MethodConfig(name=name, proj_hidden_dim=16, proj_output_dim=8, pred_hidden_dim=12)
    for key, value in kwargs.items():
        setattr(cfg, key, value)
    return build_method(TinyBackbone(), cfg)


def images(*shapes: tuple[int, int], m: int = 8, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(m, 3, h, w, generator=gen) for h, w in shapes]


def grads(module: nn.Module) -> dict[str, torch.Tensor | None]:
    return {
        n: (None if p.grad is None else p.grad.clone())
        for n, p in module.named_parameters()
        if p.requires_grad
    }


# ------------------------------------------------------------------ negative cosine (SimSiam)


def neg_cos_reference(p: torch.Tensor, z: torch.Tensor) -> float:
    """SimSiam Eqn. 1 row by row in float64: -(1/m) Σ_i <p_i, z_i> / (‖p_i‖ ‖z_i‖)."""
    total = 0.0
    for pi, zi in zip(p.double().tolist(), z.double().tolist(), strict=True):
        dot = sum(a * b for a, b in zip(pi, zi, strict=True))
        norm_p = math.sqrt(sum(a * a for a in pi))
        norm_z = math.sqrt(sum(b * b for b in zi))
        total += dot / (norm_p * norm_z)
    return -total / len(p)


@pytest.mark.parametrize(("m", "d"), [(1, 3), (7, 5), (32, 64)])
def test_negative_cosine_matches_float64_transcription(m, d):
    gen = torch.Generator().manual_seed(m * d)
    p, z = torch.randn(m, d, generator=gen), torch.randn(m, d, generator=gen)
    loss = NegativeCosineLoss()(p, z)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(neg_cos_reference(p, z), abs=1e-6)
    loss64 = NegativeCosineLoss()(p.double(), z.double())
    assert loss64.dtype == torch.float64
    assert loss64.item() == pytest.approx(neg_cos_reference(p, z), abs=1e-12)


def test_negative_cosine_invariants_and_byol_relation():
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(10, 6, generator=gen, dtype=torch.float64)
    loss = NegativeCosineLoss()
    assert loss(p, p).item() == pytest.approx(-1.0, abs=1e-12)
    assert loss(p, -p).item() == pytest.approx(1.0, abs=1e-12)
    # orthogonal rows: e_1 vs e_2 and a random row vs its Gram-Schmidt complement
    e = torch.eye(6, dtype=torch.float64)
    q = torch.randn(10, 6, generator=gen, dtype=torch.float64)
    q_orth = q - (q * p).sum(1, keepdim=True) / (p * p).sum(1, keepdim=True) * p
    assert loss(e[:1], e[1:2]).item() == pytest.approx(0.0, abs=1e-12)
    assert loss(p, q_orth).item() == pytest.approx(0.0, abs=1e-12)
    # invariant to a positive per-row scale of either argument
    scale = torch.rand(10, 1, generator=gen, dtype=torch.float64) * 5 + 0.1
    assert loss(p * scale, q).item() == pytest.approx(loss(p, q).item(), abs=1e-12)
    # BYOL Eqn. 2: ‖p/‖p‖ - z/‖z‖‖² = 2 - 2 cos = 2 + 2 D(p, z) (mean over rows)
    byol = ((p / p.norm(dim=1, keepdim=True) - q / q.norm(dim=1, keepdim=True)) ** 2).sum(1).mean()
    assert (2 + 2 * loss(p, q)).item() == pytest.approx(byol.item(), abs=1e-12)


def test_negative_cosine_does_not_detach_either_argument():
    p = torch.randn(5, 4, requires_grad=True)
    z = torch.randn(5, 4, requires_grad=True)
    NegativeCosineLoss()(p, z).backward()
    assert p.grad is not None and z.grad is not None
    assert p.grad.abs().sum() > 0 and z.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("p", "z", "match"),
    [
        (torch.randn(4, 3), torch.randn(4, 2), "share one shape"),
        (torch.randn(4), torch.randn(4), "shape"),
        (torch.randn(2, 4, 3), torch.randn(2, 4, 3), r"must have shape \(m, d\)"),
        (torch.randn(4, 3), torch.full((4, 3), float("nan")), "non-finite"),
        (torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3), "floating"),
    ],
)
def test_negative_cosine_bad_input_is_a_value_error(p, z, match):
    with pytest.raises(ValueError, match=match):
        NegativeCosineLoss()(p, z)


def test_negative_cosine_matches_lightly():
    from lightly.loss import NegativeCosineSimilarity

    gen = torch.Generator().manual_seed(3)
    for m, d in [(8, 16), (64, 128)]:
        p, z = torch.randn(m, d, generator=gen), torch.randn(m, d, generator=gen)
        ours = NegativeCosineLoss()(p, z)
        ref = NegativeCosineSimilarity()(p, z)  # same convention: mean of -cos over rows
        assert ours.item() == pytest.approx(ref.item(), abs=1e-5)


# ------------------------------------------------------------------------------ DINO loss


def dino_reference(teacher, student, center, t_temp, s_temp, momentum):
    """DINO Algorithm 1 in float64, with the multi-crop loop of the DINO code: teacher view i
    vs student view j for every i != j, each term the batch mean of -Σ_k P_t log P_s, averaged
    over the terms; then C <- μ C + (1 - μ) mean over all teacher rows."""
    teacher = [t.double() for t in teacher]
    student = [s.double() for s in student]
    center = center.double()
    total, terms = 0.0, 0
    for i, t in enumerate(teacher):
        logits_t = (t - center) / t_temp
        exp_t = torch.exp(logits_t - logits_t.max(1, keepdim=True).values)
        probs_t = exp_t / exp_t.sum(1, keepdim=True)
        for j, s in enumerate(student):
            if i == j:
                continue
            logits_s = s / s_temp
            shifted = logits_s - logits_s.max(1, keepdim=True).values
            log_probs_s = shifted - torch.log(torch.exp(shifted).sum(1, keepdim=True))
            total += float((-(probs_t * log_probs_s).sum(1)).mean())
            terms += 1
    new_center = momentum * center + (1 - momentum) * torch.cat(teacher).mean(0)
    return total / terms, new_center


def random_outputs(n_views: int, m: int, k: int, seed: int, scale: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(m, k, generator=gen) for _ in range(n_views)]


@pytest.mark.parametrize(("n_teacher", "n_student"), [(2, 2), (2, 5), (1, 3)])
def test_dino_loss_matches_algorithm_1_including_center_update(n_teacher, n_student):
    k, m = 11, 6
    loss_fn = DINOLoss(k, teacher_temp=0.07, student_temp=0.1, center_momentum=0.8).double()
    center = torch.zeros(k, dtype=torch.float64)
    for step in range(3):  # successive calls use the updated center
        teacher = random_outputs(n_teacher, m, k, seed=10 + step, scale=0.3)
        student = random_outputs(n_student, m, k, seed=20 + step, scale=0.3)
        ref_loss, center = dino_reference(teacher, student, center, 0.07, 0.1, 0.8)
        loss = loss_fn([t.double() for t in teacher], [s.double() for s in student])
        assert loss.item() == pytest.approx(ref_loss, abs=1e-10)
        torch.testing.assert_close(loss_fn.center, center, atol=1e-12, rtol=0)
    assert center.abs().sum() > 0  # the center really moved


def test_dino_loss_detaches_teacher_and_updates_center_only_in_training():
    k = 7
    teacher = [t.requires_grad_() for t in random_outputs(2, 4, k, seed=0)]
    student = [s.requires_grad_() for s in random_outputs(2, 4, k, seed=1)]
    loss_fn = DINOLoss(k)
    loss_fn(teacher, student).backward()
    assert all(t.grad is None for t in teacher)
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)
    center = loss_fn.center.clone()
    assert center.abs().sum() > 0
    loss_fn.eval()
    loss_fn([t.detach() for t in teacher], [s.detach() for s in student])
    torch.testing.assert_close(loss_fn.center, center, atol=0, rtol=0)


def test_dino_teacher_temperature_warmup_is_linear_per_epoch():
    loss_fn = DINOLoss(4, teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_teacher_temp_epochs=4)
    temps = [loss_fn.teacher_temperature(e) for e in range(6)]
    assert temps == pytest.approx([0.04, 0.05, 0.06, 0.07, 0.07, 0.07], abs=1e-12)
    assert loss_fn.teacher_temperature(None) == pytest.approx(0.07)
    assert DINOLoss(4, warmup_teacher_temp_epochs=0).teacher_temperature(0) == pytest.approx(0.04)
    # the temperature used by forward is the one of the epoch passed
    t, s = random_outputs(2, 5, 4, seed=2), random_outputs(2, 5, 4, seed=3)
    frozen = DINOLoss(4, teacher_temp=0.05).eval()
    ref, _ = dino_reference(t, s, torch.zeros(4), 0.05, 0.1, 0.9)
    warm = DINOLoss(4, teacher_temp=0.07, warmup_teacher_temp=0.03, warmup_teacher_temp_epochs=3)
    assert warm.eval()(t, s, epoch=1).item() == pytest.approx(ref, abs=1e-6)
    assert frozen(t, s).item() == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize(
    ("teacher", "student", "match"),
    [
        (random_outputs(2, 4, 5, 0), random_outputs(2, 4, 6, 1), "out_dim=5"),
        (random_outputs(3, 4, 5, 0), random_outputs(2, 4, 5, 1), "3 teacher views"),
        (random_outputs(1, 4, 5, 0), random_outputs(1, 4, 5, 1), "at least 2 student"),
        (random_outputs(2, 4, 5, 0), random_outputs(2, 3, 5, 1), "rows"),
        (random_outputs(2, 4, 5, 0)[0], random_outputs(2, 4, 5, 1), "list"),
    ],
)
def test_dino_loss_bad_input_is_a_value_error(teacher, student, match):
    with pytest.raises(ValueError, match=match):
        DINOLoss(5)(teacher, student)


def test_dino_loss_bad_arguments_are_value_errors():
    for kwargs, match in [
        ({"out_dim": 0}, "out_dim"),
        ({"out_dim": 4, "teacher_temp": 0.0}, "teacher_temp"),
        ({"out_dim": 4, "center_momentum": 1.5}, "center_momentum"),
        ({"out_dim": 4, "warmup_teacher_temp_epochs": -1}, "warmup_teacher_temp_epochs"),
    ]:
        with pytest.raises(ValueError, match=match):
            DINOLoss(**kwargs)


def test_dino_loss_matches_lightly():
    # lightly.loss.DINOLoss(output_dim, warmup_teacher_temp, teacher_temp,
    # warmup_teacher_temp_epochs, student_temp, center_momentum) takes (teacher_out,
    # student_out, epoch) like ours and uses the same linspace warm-up, the same i != j pairs
    # and the same EMA center (shape (1, 1, K) there, (K,) here). Deliberate differences, none
    # visible here: ours detaches the teacher (Algorithm 1), updates the center only in
    # training mode, and under DDP all-reduces row sums and counts (exact for unequal per-rank
    # batches) where lightly averages the per-rank means.
    from lightly.loss import DINOLoss as LightlyDINOLoss

    k, m = 32, 8
    kwargs = {"teacher_temp": 0.07, "student_temp": 0.1, "center_momentum": 0.9}
    warm = {"warmup_teacher_temp": 0.04, "warmup_teacher_temp_epochs": 3}
    ours = DINOLoss(k, **kwargs, **warm)
    ref = LightlyDINOLoss(output_dim=k, **kwargs, **warm)
    for epoch in range(5):
        teacher = random_outputs(2, m, k, seed=100 + epoch)
        student = random_outputs(4, m, k, seed=200 + epoch)  # 2 global + 2 local views
        a = ours(teacher, student, epoch=epoch)
        b = ref(teacher, student, epoch=epoch)
        assert a.item() == pytest.approx(b.item(), abs=1e-5)
        torch.testing.assert_close(ours.center, ref.center.reshape(-1), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- DINO center under 2 ranks

K_DIST = 6
# rows of the two teacher views held by each rank; the second case splits unequally
SPLITS = {"equal": (5, 5), "unequal": (3, 7)}


def dist_teacher() -> list[torch.Tensor]:
    return random_outputs(2, 10, K_DIST, seed=42)


def dist_loss() -> DINOLoss:
    loss_fn = DINOLoss(K_DIST, center_momentum=0.7)
    loss_fn.center.copy_(torch.linspace(-1, 1, K_DIST))  # a non-trivial previous center
    return loss_fn


def _dist_body(rank: int, size: int, out: dict) -> None:
    for case, (rows0, _) in SPLITS.items():
        rows = slice(0, rows0) if rank == 0 else slice(rows0, None)
        teacher = [t[rows] for t in dist_teacher()]
        student = [torch.randn_like(t) for t in teacher]
        loss_fn = dist_loss()
        loss_fn(teacher, student)
        out[(rank, case)] = loss_fn.center.clone()


def test_dino_center_under_two_ranks_equals_single_process_center():
    results = run_gloo(_dist_body)
    teacher = dist_teacher()
    single = dist_loss()
    single(teacher, random_outputs(2, 10, K_DIST, seed=0))
    for case in SPLITS:
        torch.testing.assert_close(results[(0, case)], results[(1, case)], atol=0, rtol=0)
        torch.testing.assert_close(results[(0, case)], single.center, atol=1e-6, rtol=0)
    # a rank-local update would differ: the center really depends on the other rank's rows
    local = dist_loss()
    local([t[:3] for t in teacher], random_outputs(2, 3, K_DIST, seed=0))
    assert not torch.allclose(local.center, single.center, atol=1e-3)


# -------------------------------------------------------------------- EMA schedule, BYOL


def test_cosine_momentum_schedule_start_mid_end():
    from specssl.models import cosine_momentum

    base, total = 0.99, 100
    assert cosine_momentum(0, total, base) == pytest.approx(base, abs=1e-12)
    assert cosine_momentum(total // 2, total, base) == pytest.approx((base + 1) / 2, abs=1e-12)
    assert cosine_momentum(total, total, base) == pytest.approx(1.0, abs=1e-12)
    assert cosine_momentum(2 * total, total, base) == pytest.approx(1.0, abs=1e-12)  # clamped
    taus = [cosine_momentum(k, total, base) for k in range(total + 1)]
    assert all(a <= b for a, b in pairwise(taus))


def test_byol_target_after_k_steps_equals_hand_rolled_ema():
    base, total, k_steps = 0.9, 6, 4
    method = tiny("byol", base_tau=base, final_tau=1.0)
    online = [*method.backbone.parameters(), *method.projector.parameters()]
    target = [*method.target_backbone.parameters(), *method.target_projector.parameters()]
    assert all(not p.requires_grad for p in target)
    ref = [p.detach().double().clone() for p in online]  # θ'_0 = θ_0
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    for step in range(k_steps):
        out = method(images((12, 12), (12, 12), seed=step))
        opt.zero_grad()
        out.loss.backward()
        assert all(p.grad is None for p in target)
        opt.step()
        method.on_train_step_end(step + 1, total)  # the trainer passes the finished-step count
        # τ used after optimiser step s (0-based): 1 - (1 - base)(cos(π s / K) + 1) / 2
        tau = 1 - (1 - base) * (math.cos(math.pi * step / total) + 1) / 2
        ref = [tau * r + (1 - tau) * p.detach().double() for r, p in zip(ref, online, strict=True)]
        for t, r in zip(target, ref, strict=True):
            torch.testing.assert_close(t.double(), r, atol=1e-6, rtol=1e-6)
    assert method.tau == pytest.approx(1 - (1 - base) * (math.cos(math.pi * 4 / 6) + 1) / 2)
    # the target lags: it is not the online network
    assert any(not torch.allclose(t, p) for t, p in zip(target, online, strict=True))
    # BN statistics of the target are copied from the online network
    for tb, ob in zip(method.target_backbone.buffers(), method.backbone.buffers(), strict=True):
        torch.testing.assert_close(tb, ob, atol=0, rtol=0)


def test_byol_loss_is_symmetrised_normalized_mse_on_target_projections():
    method = tiny("byol")
    views = images((12, 12), (12, 12))
    out = method(views)
    assert method.forward_mode == "per_view"  # solo-learn: each view its own BN batch
    with torch.no_grad():
        p = [method.predictor(method.projector(method.backbone(v))) for v in views]
        # fresh method: the target is still an exact copy of the online network
        zt = [method.target_projector(method.target_backbone(v)) for v in views]

    def nmse(a, b):
        return ((F.normalize(a, dim=1) - F.normalize(b, dim=1)) ** 2).sum(1).mean()

    expected = nmse(p[0], zt[1]) + nmse(p[1], zt[0])  # BYOL's L + L~
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-5)


# ------------------------------------------------------------------------- SimSiam stop-grad


def test_simsiam_stops_the_gradient_of_the_target_branch():
    views = images((12, 12), (12, 12))
    method = tiny("simsiam")
    method(views).loss.backward()
    got = grads(method)

    def manual(stop: bool) -> dict[str, torch.Tensor | None]:
        method.zero_grad(set_to_none=True)
        z = [method.projector(method.backbone(v)) for v in views]  # per view (solo-learn)
        p = [method.predictor(v) for v in z]
        tgt = [v.detach() for v in z] if stop else list(z)
        loss = -0.5 * (
            F.cosine_similarity(p[0], tgt[1]).mean() + F.cosine_similarity(p[1], tgt[0]).mean()
        )
        loss.backward()
        return grads(method)

    with_stop, without_stop = manual(True), manual(False)
    for name, g in got.items():
        torch.testing.assert_close(g, with_stop[name], atol=1e-6, rtol=1e-5)
    backbone_names = [n for n in got if n.startswith("backbone.")]
    assert any(
        not torch.allclose(got[n], without_stop[n], atol=1e-6, rtol=1e-4) for n in backbone_names
    )


def test_simsiam_projector_has_output_bn_and_methods_have_no_target_when_not_momentum():
    method = tiny("simsiam", proj_layers=2)
    assert isinstance(method.projector[-1], nn.BatchNorm1d)
    assert not method.projector[-1].affine and method.projector[-2].bias is None
    assert not hasattr(method, "target_backbone")
    out = method(images((12, 12), (12, 12)))
    assert -1 <= out.loss.item() <= 1 and set(out.terms) == {"neg_cos", "z_std"}


# ------------------------------------------------------------------------------- DINO method


def test_dino_last_layer_gradient_is_dropped_in_epoch_0_only():
    method = tiny("dino", options={"out_dim": 10, "freeze_last_layer_epochs": 1})
    views = images((12, 12), (12, 12))
    opt = torch.optim.SGD(
        [p for p in method.parameters() if p.requires_grad], lr=0.1, weight_decay=0.1
    )
    before = method.prototypes.weight.detach().clone()
    method(views).loss.backward()
    method.on_before_optimizer_step(epoch=0, step=0)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in method.prototypes.parameters())
    assert all(p.grad is not None for p in method.backbone.parameters())
    opt.step()
    torch.testing.assert_close(method.prototypes.weight, before, atol=0, rtol=0)  # not updated
    opt.zero_grad()
    method(views).loss.backward()
    method.on_before_optimizer_step(epoch=1, step=7)
    assert method.prototypes.weight.grad is not None
    assert method.prototypes.weight.grad.abs().sum() > 0
    assert method.epoch == 1


def test_dino_teacher_sees_global_views_and_embeddings_are_bottleneck():
    method = tiny("dino", options={"out_dim": 10})
    seen = {}

    compute = method.loss_fn.compute

    def spy(teacher, student, **kwargs):
        seen["teacher"], seen["student"] = len(teacher), len(student)
        seen["epoch"] = kwargs.get("epoch")
        return compute(teacher, student, **kwargs)

    method.loss_fn.compute = spy  # the method calls compute (value and terms)
    views = images((12, 12), (12, 12), (6, 6), (6, 6), (6, 6))  # 2 global + 3 local crops
    out = method(views)
    assert seen == {"teacher": 2, "student": 5, "epoch": 0}
    assert torch.isfinite(out.loss)
    assert [z.shape for z in out.embeddings] == [(8, 8)] * 5  # proj_output_dim, pre-prototype
    torch.testing.assert_close(
        out.embeddings[0], method.projector(method.backbone(views[0])), atol=1e-5, rtol=1e-5
    )
    assert {"teacher_temp", "teacher_entropy", "tau"} <= set(out.terms)
    # the prototypes are unit rows (weight norm with g = 1) and are part of the EMA
    w = F.normalize(method.prototypes.weight, dim=1)
    x = torch.randn(3, 8)
    torch.testing.assert_close(method.prototypes(x), x @ w.t())
    assert any(t is method.target_prototypes for t, _ in method.momentum_pairs())


def test_dino_use_bn_puts_batchnorm_after_every_hidden_linear_of_student_and_teacher():
    plain = tiny("dino", proj_layers=3, options={"out_dim": 10})
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())
    method = tiny("dino", proj_layers=3, options={"out_dim": 10, "use_bn": True})
    expected = ["Linear", "BatchNorm1d", "GELU"] * 2 + ["Linear"]  # no BN on the bottleneck
    for head in (method.projector, method.target_projector):
        assert [type(m).__name__ for m in head] == expected
    # the teacher's BatchNorm is its own EMA copy of the student's, not a shared layer
    bn, target_bn = method.projector[1], method.target_projector[1]
    assert bn is not target_bn
    torch.testing.assert_close(bn.weight, target_bn.weight)
    assert torch.isfinite(method(images((12, 12), (12, 12))).loss)


def test_dino_loss_kwargs_reach_the_loss_and_options_are_validated():
    method = tiny("dino", options={"out_dim": 10}, loss={"warmup_teacher_temp_epochs": 5})
    assert method.loss_fn.warmup_teacher_temp_epochs == 5 and method.loss_fn.out_dim == 10
    with pytest.raises(ConfigError, match=r"method\.options\.bottleneck"):
        tiny("dino", options={"bottleneck": 3})
    with pytest.raises(ConfigError, match=r"method\.options\.out_dim"):
        tiny("dino", loss={"out_dim": 3})
    with pytest.raises(ConfigError, match=r"method\.options\.foo"):
        tiny("byol", options={"foo": 1})
    with pytest.raises(ConfigError, match=r"method\.loss"):
        tiny("simsiam", loss={"temperature": 0.2})
