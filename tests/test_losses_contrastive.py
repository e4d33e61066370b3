"""Contrastive losses and methods: NT-Xent / SimCLR and MoCo v2 (InfoNCE with a queue).

References below are plain float64 transcriptions written here with explicit loops over anchors
(SimCLR Eqn. 1, MoCo Eqn. 1); none calls ``specssl.losses``. The 2-process gloo test follows
``tests/test_distributed.py``.
"""

from __future__ import annotations

import math
from itertools import permutations

import pytest
import torch
import torch.distributed as dist
from helpers import make_views as shared_views
from helpers import run_gloo
from torch import nn

from specssl.losses import MoCoLoss, NTXentLoss
from specssl.methods import METHODS, MoCoV2, SimCLR, build_method
from specssl.models import build_backbone, cosine_momentum
from specssl.train.config import ConfigError, MethodConfig

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def make_views(n_views: int, m: int, d: int, seed: int, noise: float = 0.5, dtype=F64):
    return shared_views(n_views, m, d, seed, noise, dtype, anisotropic=False)


# =========================================================================== references


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum() / (a.norm() * b.norm())


def ref_ntxent(views: list[torch.Tensor], tau: float) -> torch.Tensor:
    """SimCLR Eqn. 1 with a loop over anchors a and positives p (same sample, other view):
    ℓ(a, p) = -log exp(s_ap/τ) / Σ_{k≠a} exp(s_ak/τ); the mean over all (a, p)."""
    rows = [(v, i, z[i].to(F64)) for v, z in enumerate(views) for i in range(z.shape[0])]
    terms = []
    for a, (va, ia, za) in enumerate(rows):
        denom = sum(torch.exp(cosine(za, zk) / tau) for k, (_, _, zk) in enumerate(rows) if k != a)
        for vp, ip, zp in rows:
            if ip == ia and vp != va:
                terms.append(-torch.log(torch.exp(cosine(za, zp) / tau) / denom))
    return torch.stack(terms).mean()


def ref_moco(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> torch.Tensor:
    """MoCo Eqn. 1: L_i = -log exp(q_i·k_i/τ) / (exp(q_i·k_i/τ) + Σ_j exp(q_i·n_j/τ))."""
    q, k, queue = q.to(F64), k.to(F64), queue.to(F64)
    losses = []
    for i in range(q.shape[0]):
        pos = torch.exp(cosine(q[i], k[i]) / tau)
        neg = sum(torch.exp(cosine(q[i], n) / tau) for n in queue)
        losses.append(-torch.log(pos / (pos + neg)))
    return torch.stack(losses).mean()


def fifo_reference(queue: torch.Tensor, ptr: int, keys: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Write the l2-normalised keys one at a time into a circular buffer."""
    queue = queue.clone()
    for key in keys:
        queue[ptr] = key / key.norm()
        ptr = (ptr + 1) % queue.shape[0]
    return queue, ptr


# =========================================================================== NT-Xent


@pytest.mark.parametrize(
    ("n_views", "m", "d", "tau"), [(2, 6, 5, 0.1), (2, 9, 3, 0.5), (3, 5, 4, 0.2)]
)
def test_ntxent_matches_float64_transcription(n_views, m, d, tau):
    views = make_views(n_views, m, d, seed=m + d)
    got = NTXentLoss(temperature=tau)(views)
    assert got.dtype == F64
    torch.testing.assert_close(got, ref_ntxent(views, tau), rtol=1e-12, atol=1e-12)
    # the two call styles agree
    torch.testing.assert_close(NTXentLoss(temperature=tau)(*views), got)


def test_ntxent_float32_input_matches_reference_and_is_float32():
    views = make_views(2, 8, 6, seed=3, dtype=torch.float32)
    got = NTXentLoss(temperature=0.2)(views)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref_ntxent(views, 0.2), rtol=1e-5, atol=1e-6)


def test_ntxent_orthogonal_negatives_and_global_minimum():
    """Two identical views, N samples, temperature τ. For anchor a the positive has cos 1 and
    the 2N - 2 negatives (both views of the other samples) have cos s, so
    L = log(1 + (2N - 2) exp((s - 1)/τ)).

    * Orthogonal samples (s = 0): L = log(1 + (2N - 2) e^{-1/τ}).
    * Lower bound for ANY input: each ℓ(a, p) >= log(1 + Σ_n exp((s_an - 1)/τ)) (s_ap <= 1),
      convex and increasing in the s_an; ‖Σ_all z‖² >= 0 over the 2N unit vectors gives
      Σ_{a≠b} s_ab >= -2N, hence mean negative cosine >= (-2N - 2N)/(2N (2N - 2)) = -1/(N - 1);
      by Jensen L >= log(1 + (2N - 2) exp(-(N/(N - 1))/τ)), attained by identical views on a
      regular simplex (s = -1/(N - 1)). With many negatives the orthogonal value is near it.
    """
    n, tau = 64, 0.1
    loss = NTXentLoss(temperature=tau)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(0), dtype=F64))
    ortho = q[:, :n] * 3.0  # N orthogonal rows (scale must not matter)
    orth_value = math.log1p((2 * n - 2) * math.exp(-1 / tau))
    assert loss(ortho, ortho).item() == pytest.approx(orth_value, rel=1e-10)

    simplex = torch.eye(n, dtype=F64) - 1.0 / n  # centred basis vectors: cos = -1/(N-1)
    bound = math.log1p((2 * n - 2) * math.exp(-(n / (n - 1)) / tau))
    assert loss(simplex, simplex).item() == pytest.approx(bound, rel=1e-10)
    assert 0 < orth_value - bound < 1e-3  # many negatives: orthogonal is near the minimum

    for seed in range(5):  # nothing beats the bound
        views = make_views(2, n, 16, seed=seed, noise=0.1 * seed)
        assert loss(views).item() > bound


def test_ntxent_gradcheck():
    for n_views in (2, 3):
        views = [v.requires_grad_() for v in make_views(n_views, 3, 4, seed=n_views)]
        assert torch.autograd.gradcheck(lambda *zs: NTXentLoss(0.3)(*zs), views)


def test_ntxent_matches_lightly_on_random_inputs():
    """lightly's NTXentLoss without memory bank (memory_bank_size=0) and single process
    (gather_distributed=False) is exactly SimCLR's 2N-anchor loss, like ours.

    Deliberate difference (not exercised here): under DDP lightly's gather_distributed scores
    only the local anchors against the gathered negatives on each rank (DDP then averages), while
    SimCLR in specssl gathers every view with autograd and each rank evaluates the full global
    loss; both give the single-process gradient of the global batch.
    """
    lightly_loss = pytest.importorskip("lightly.loss")
    for seed, tau in [(0, 0.5), (1, 0.2), (2, 0.07)]:
        z1, z2 = make_views(2, 32, 16, seed=seed, dtype=torch.float32)
        ref = lightly_loss.NTXentLoss(temperature=tau, memory_bank_size=0, gather_distributed=False)
        torch.testing.assert_close(NTXentLoss(tau)(z1, z2), ref(z1, z2), rtol=1e-5, atol=1e-5)


def test_ntxent_terms_and_bad_input():
    z1, z2 = make_views(2, 4, 3, seed=0)
    loss = NTXentLoss(0.5)
    result = loss.compute(z1, z2)
    assert torch.equal(result.loss, loss(z1, z2))
    cos = torch.nn.functional.cosine_similarity(z1, z2).mean()
    torch.testing.assert_close(result.terms["pos_cos"], cos)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            NTXentLoss(bad)
    with pytest.raises(ValueError, match="at least 2 views"):
        loss(z1)
    with pytest.raises(ValueError, match="share one shape"):
        loss(z1, z2[:3])
    with pytest.raises(ValueError, match="non-finite"):
        loss(z1, z2 * float("nan"))


# =========================================================================== MoCo loss


@pytest.mark.parametrize(("m", "d", "k", "tau"), [(5, 4, 7, 0.2), (3, 6, 1, 0.07)])
def test_moco_loss_matches_float64_transcription(m, d, k, tau):
    g = torch.Generator().manual_seed(m * k)
    q, key = torch.randn(m, d, generator=g, dtype=F64), torch.randn(m, d, generator=g, dtype=F64)
    queue = torch.randn(k, d, generator=g, dtype=F64)
    got = MoCoLoss(temperature=tau)(q, key, queue)
    torch.testing.assert_close(got, ref_moco(q, key, queue, tau), rtol=1e-12, atol=1e-12)


def test_moco_loss_orthogonal_queue_value_gradients_and_errors():
    """q = k and a queue orthogonal to every query: L = log(1 + K e^{-1/τ}) exactly."""
    tau, kq = 0.2, 5
    basis = torch.eye(8, dtype=F64)
    q = basis[:3] * 2.0
    loss = MoCoLoss(tau)
    assert loss(q, q, basis[3:]).item() == pytest.approx(math.log1p(kq * math.exp(-1 / tau)))
    terms = loss.compute(q, q, basis[3:]).terms
    torch.testing.assert_close(terms["pos_cos"], torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(terms["neg_cos"], torch.tensor(0.0, dtype=F64))

    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 4, generator=g, dtype=F64, requires_grad=True)
    key = torch.randn(3, 4, generator=g, dtype=F64, requires_grad=True)
    queue = torch.randn(6, 4, generator=g, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: MoCoLoss(0.3)(x, key, queue), (q,))
    MoCoLoss(0.3)(q, key, queue).backward()
    assert key.grad is None and queue.grad is None  # keys and queue are stop-gradient

    with pytest.raises(ValueError, match="keys k must match"):
        loss(q, key[:2], queue)
    with pytest.raises(ValueError, match=r"queue must have shape \(K, d\)"):
        loss(q, key, queue[:, :3])
    with pytest.raises(ValueError, match="temperature"):
        MoCoLoss(0)


# =========================================================================== methods


def tiny_cfg(name: str, **options) -> MethodConfig:
    return MethodConfig(
        name=name,
        proj_hidden_dim=16,
        proj_output_dim=8,
        proj_layers=2,
        loss={"temperature": 0.2},
        options=options,
        base_tau=0.9,
        final_tau=1.0,
    )


def test_methods_are_registered_and_validate_options():
    assert METHODS["simclr"] is SimCLR and METHODS["mocov2"] is MoCoV2
    backbone = build_backbone("resnet18", cifar_stem=True, width=4)
    with pytest.raises(ConfigError, match=r"method\.options\.queue_sise"):
        build_method(backbone, tiny_cfg("mocov2", queue_sise=10))
    with pytest.raises(ConfigError, match=r"method\.options\.queue_size"):
        build_method(backbone, tiny_cfg("simclr", queue_size=10))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match=r"method\.options\.queue_size"):
            build_method(backbone, tiny_cfg("mocov2", queue_size=bad))
    with pytest.raises(ConfigError, match=r"method\.loss"):
        build_method(backbone, MethodConfig(name="simclr", loss={"tau": 0.1}))
    # projector: Linear-ReLU-Linear by default, BN on request
    simclr = build_method(backbone, tiny_cfg("simclr"))
    assert not any(isinstance(mod, nn.BatchNorm1d) for mod in simclr.projector.modules())
    simclr_bn = build_method(backbone, tiny_cfg("simclr", proj_batch_norm=True))
    assert any(isinstance(mod, nn.BatchNorm1d) for mod in simclr_bn.projector.modules())


def test_simclr_forward_backward_equals_loss_on_embeddings():
    torch.manual_seed(0)
    method = build_method(build_backbone("resnet18", cifar_stem=True, width=4), tiny_cfg("simclr"))
    views = [torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16)]
    out = method(views)
    assert [z.shape for z in out.embeddings] == [(8, 8)] * 2
    assert [f.shape for f in out.features] == [(8, 32)] * 2
    torch.testing.assert_close(out.loss, NTXentLoss(0.2)(out.embeddings))
    assert "pos_cos" in out.terms
    out.loss.backward()
    assert all(p.grad is not None for p in method.parameters())


def test_mocov2_trains_updates_target_and_queue_of_any_size():
    """Queue size 20 with 2 views x 8 rows = 16 keys per step (not a multiple): FIFO wraps."""
    torch.manual_seed(0)
    cfg = tiny_cfg("mocov2", queue_size=20)
    method = build_method(build_backbone("resnet18", cifar_stem=True, width=4), cfg)
    assert method.queue.shape == (20, 8) and int(method.queue_ptr) == 0
    torch.testing.assert_close(method.queue.norm(dim=1), torch.ones(20))
    assert {"queue", "queue_ptr"} <= set(method.state_dict())  # checkpointed
    assert all(not p.requires_grad for p in method.target_backbone.parameters())
    optim = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    method.train()
    total = 10
    ref_queue, ref_ptr = method.queue.clone(), 0
    for step in range(1, 3):
        views = [torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16)]
        queue_before = method.queue.clone()
        out = method(views)
        keys = method.target_embed(views)  # target unchanged since forward: the enqueued keys
        pairs = [
            MoCoLoss(0.2).compute(out.embeddings[i], keys[j], queue_before)
            for i, j in permutations(range(2), 2)
        ]
        torch.testing.assert_close(out.loss, (pairs[0].loss + pairs[1].loss) / 2)
        for name in ("pos_cos", "neg_cos"):  # the mean over the two pairs, not the last one
            mean = (pairs[0].terms[name] + pairs[1].terms[name]) / 2
            torch.testing.assert_close(out.terms[name], mean)
        assert not torch.allclose(pairs[0].terms["neg_cos"], pairs[1].terms["neg_cos"])
        ref_queue, ref_ptr = fifo_reference(ref_queue, ref_ptr, torch.cat(keys))
        torch.testing.assert_close(method.queue, ref_queue)
        assert int(method.queue_ptr) == ref_ptr == (16 * step) % 20

        optim.zero_grad()
        out.loss.backward()
        assert all(p.grad is None for p in method.target_projector.parameters())
        optim.step()
        tau = method.tau
        before = [p.clone() for p in method.target_backbone.parameters()]
        method.on_train_step_end(step, total)
        for t, t0, o in zip(
            method.target_backbone.parameters(), before, method.backbone.parameters(), strict=True
        ):
            torch.testing.assert_close(t, tau * t0 + (1 - tau) * o)
        assert method.tau == pytest.approx(cosine_momentum(step, total, 0.9, 1.0))
    assert any(
        not torch.equal(t, o)
        for t, o in zip(
            method.target_backbone.parameters(), method.backbone.parameters(), strict=True
        )
    )

    method.eval()  # evaluation never touches the queue
    queue, ptr = method.queue.clone(), int(method.queue_ptr)
    method([torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)])
    assert torch.equal(method.queue, queue) and int(method.queue_ptr) == ptr


def test_mocov2_enqueue_more_keys_than_slots_keeps_the_newest():
    torch.manual_seed(1)
    method = build_method(
        build_backbone("resnet18", cifar_stem=True, width=4), tiny_cfg("mocov2", queue_size=5)
    )
    queue, ptr = method.queue.clone(), 0
    for n in (3, 12, 5, 7):
        keys = torch.randn(n, 8)
        method.enqueue(keys)
        queue, ptr = fifo_reference(queue, ptr, keys)
        torch.testing.assert_close(method.queue, queue)
        assert int(method.queue_ptr) == ptr
    with pytest.raises(ValueError, match="keys must have shape"):
        method.enqueue(torch.randn(3, 7))


# =========================================================================== 2 ranks (gloo)

M, PIX = 8, 3 * 4 * 4  # global batch, flattened 3x4x4 "image"


class TinyNet(nn.Module):
    """BN-free backbone: ranks see different rows, so per-rank BN would differ from 1 process."""

    out_dim = 6

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(PIX, 6), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def dist_method(name: str) -> nn.Module:
    torch.manual_seed(0)
    # MoCo: 2 views x 8 rows = 16 keys per step, not a multiple of the queue size 20
    options = {"queue_size": 20} if name == "mocov2" else {}
    return build_method(TinyNet(), tiny_cfg(name, **options)).double()


def dist_views() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(M, 3, 4, 4, generator=g, dtype=F64)
    return [x, x + 0.3 * torch.randn(M, 3, 4, 4, generator=g, dtype=F64)]


def one_process(name: str) -> dict:
    method = dist_method(name)
    out = method(dist_views())
    out.loss.backward()
    result = {
        "loss": out.loss.item(),
        "grads": [p.grad.clone() for p in method.parameters() if p.requires_grad],
    }
    if name == "mocov2":
        result.update(queue=method.queue.clone(), ptr=int(method.queue_ptr))
    return result


def _body(rank: int, size: int, out: dict) -> None:
    for name in ("simclr", "mocov2"):
        method = dist_method(name)
        rows = slice(rank * M // size, (rank + 1) * M // size)
        result = method([v[rows] for v in dist_views()])
        result.loss.backward()
        loss = result.loss.detach().clone()
        grads = [p.grad.clone() for p in method.parameters() if p.requires_grad]
        # What DDP does: average the loss for logging, the parameter gradients for the step.
        dist.all_reduce(loss)
        for g in grads:
            dist.all_reduce(g)
        res = {"loss": loss.item() / size, "local_loss": result.loss.item()}
        res["grads"] = [g / size for g in grads]
        if name == "mocov2":
            res.update(queue=method.queue.clone(), ptr=int(method.queue_ptr))
        out[(rank, name)] = res


@pytest.fixture(scope="module")
def two_rank_results() -> dict:
    # fork: the children inherit the imported modules (spawn re-imports torchvision per child)
    return run_gloo(_body, start_method="fork")


@pytest.mark.parametrize("name", ["simclr", "mocov2"])
def test_two_ranks_equal_one_process_on_concatenated_batch(name, two_rank_results):
    ref = one_process(name)
    for rank in range(2):
        res = two_rank_results[(rank, name)]
        assert res["loss"] == pytest.approx(ref["loss"], abs=1e-12)
        if name == "simclr":  # every rank evaluates the global loss itself
            assert res["local_loss"] == pytest.approx(ref["loss"], abs=1e-12)
        for g, g_ref in zip(res["grads"], ref["grads"], strict=True):
            torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-12)
    if name == "mocov2":
        r0, r1 = two_rank_results[(0, name)], two_rank_results[(1, name)]
        assert torch.equal(r0["queue"], r1["queue"]) and r0["ptr"] == r1["ptr"] == 16
        torch.testing.assert_close(r0["queue"], ref["queue"], rtol=1e-12, atol=1e-12)
        assert ref["ptr"] == 16
