"""Label-free quality metrics (RankMe, LiDAR, α-ReQ, NESum) and the one spectrum-metrics path.

Every metric is compared with the independent float64 reference of
:mod:`specssl.reference.quality` (numpy/scipy loops, a generalized eigensolver for LiDAR), with
tolerances that a wrong constant would break (checked explicitly below), plus exact values on
constructed inputs. The end-to-end test trains two tiny digits networks and checks that the
training monitor and ``specssl spectrum`` give the same numbers for the same checkpoint (a
``d > m`` case: 64-d embeddings of 48 images, Ẑ on 16-row chunks). Seconds on 2 CPU cores.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_RUN

from specssl.reference.quality import (
    reference_alpha_req,
    reference_covariance_eigenvalues,
    reference_lidar,
    reference_nesum,
    reference_rankme,
)
from specssl.spectral import (
    alpha_req,
    embedding_spectra,
    lidar,
    lidar_matrix,
    nesum,
    rank_bound,
    rankme,
    spectral_summary,
    spectrum,
    zca_whiten,
)
from specssl.spectral.quality import ALPHA_REQ_FIT_RANGE, LIDAR_DELTA, LIDAR_EPS, RANKME_EPS

F64 = torch.float64
REPO = Path(__file__).resolve().parents[1]


def anisotropic(n: int, d: int, gen: torch.Generator, decay: float = 0.7) -> torch.Tensor:
    """``(n, d)`` float64 Gaussian data with column scales ``k^{-decay}`` and an offset."""
    scales = torch.arange(1, d + 1, dtype=F64) ** -decay
    return torch.randn(n, d, generator=gen, dtype=F64) * scales + torch.randn(d, generator=gen)


def surrogate_views(n: int, q: int, d: int, gen: torch.Generator, spread: float = 0.5):
    """``(n, q, d)``: ``n`` image embeddings (anisotropic) plus ``q`` augmentation noises."""
    centres = anisotropic(n, d, gen)[:, None]
    return centres + spread * torch.randn(n, q, d, generator=gen, dtype=F64)


# ---------------------------------------------------------------------------------- RankMe
@pytest.mark.parametrize(("n", "d"), [(64, 16), (10, 40), (33, 33)])
def test_rankme_matches_the_reference(n, d, gen):
    z = anisotropic(n, d, gen)
    assert float(rankme(z)) == pytest.approx(reference_rankme(z.numpy()), rel=1e-12)
    low = z[:, :3] @ torch.randn(3, d, generator=gen, dtype=F64)  # rank 3
    assert float(rankme(low)) == pytest.approx(reference_rankme(low.numpy()), rel=1e-9)
    z32 = z.float()  # float32 input is computed in float64
    assert float(rankme(z32)) == pytest.approx(reference_rankme(z32.double().numpy()), rel=1e-12)


def test_rankme_exact_values_and_batching(gen):
    k = 8
    q, _ = torch.linalg.qr(torch.randn(20, k, generator=gen, dtype=F64))  # σ = 1 (k times)
    p = 1 / k + RANKME_EPS
    assert float(rankme(q)) == pytest.approx(math.exp(-k * p * math.log(p)), rel=1e-13)
    assert float(rankme(q)) == pytest.approx(k, rel=1e-5)
    one = torch.outer(torch.randn(20, generator=gen, dtype=F64), torch.randn(k, dtype=F64))
    assert float(rankme(one)) == pytest.approx(1.0, abs=1e-4)  # rank one (plus ε terms)
    batch = torch.stack([q, 3 * q, one])
    got = rankme(batch)
    assert got.shape == (3,) and got.dtype == F64
    torch.testing.assert_close(got, torch.stack([rankme(b) for b in batch]), rtol=1e-13, atol=0)
    assert bool(torch.isfinite(rankme(torch.zeros(6, 4))))  # all-zero: p = ε, no NaN


def test_rankme_comparison_would_catch_a_wrong_epsilon_or_centring(gen):
    """The tolerance of the reference test is far below the effect of the planted bugs the
    metric could carry: stable-pretraining's ε = 1e-5, or centring the matrix first."""
    z = anisotropic(64, 16, gen)
    good = float(rankme(z))
    assert abs(reference_rankme(z.numpy(), eps=1e-5) - good) > 1e6 * 1e-12 * good
    centred = (z - z.mean(0)).numpy()
    assert abs(reference_rankme(centred) - good) > 1e-3 * good


# ----------------------------------------------------------------------------------- LiDAR
@pytest.mark.parametrize(("n", "q", "d"), [(30, 5, 8), (40, 2, 6), (10, 6, 40)])
def test_lidar_matches_the_generalized_eigenvalue_reference(n, q, d, gen):
    views = surrogate_views(n, q, d, gen)
    want = reference_lidar(views.numpy())
    assert float(lidar(views)) == pytest.approx(want, rel=1e-9)
    # at most min(d, n - 1) (Σ_b has rank n - 1), up to the ε terms
    assert float(lidar(views)) <= min(d, n - 1) * (1 + 1e-5)


def test_lidar_matrix_has_the_lda_eigenvalues(gen):
    views = surrogate_views(25, 4, 6, gen)
    e = views.numpy()
    means = e.mean(1)
    sigma_b = np.cov(means, rowvar=False)  # divisor n - 1
    resid = (e - means[:, None]).reshape(-1, 6)
    sigma_w = resid.T @ resid / (25 * 3) + LIDAR_DELTA * np.eye(6)
    import scipy.linalg

    want = scipy.linalg.eigh(sigma_b, sigma_w, eigvals_only=True)
    got = torch.linalg.eigvalsh(lidar_matrix(views)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_lidar_is_invariant_to_an_invertible_linear_map(gen):
    """LDA does not see the basis: without δ, LiDAR of ``views @ A`` equals LiDAR of views."""
    views = surrogate_views(30, 5, 6, gen)
    a = torch.randn(6, 6, generator=gen, dtype=F64) + 3 * torch.eye(6, dtype=F64)
    base = float(lidar(views, delta=0.0))
    assert float(lidar(views @ a, delta=0.0)) == pytest.approx(base, rel=1e-8)
    # no label information is involved: permuting the images changes nothing
    perm = torch.randperm(30, generator=gen)
    assert float(lidar(views[perm])) == pytest.approx(float(lidar(views)), rel=1e-10)


def test_lidar_comparison_would_catch_wrong_constants(gen):
    views = surrogate_views(30, 5, 8, gen, spread=0.02)  # small Σ_w: δ matters
    good = float(lidar(views))
    assert abs(reference_lidar(views.numpy(), delta=1e-6) - good) > 1e-3 * good
    assert abs(reference_lidar(views.numpy(), eps=1e-7) - good) > 1e3 * 1e-9 * good
    assert (LIDAR_DELTA, LIDAR_EPS) == (1e-4, 1e-8)


def test_lidar_rejects_bad_shapes(gen):
    with pytest.raises(ValueError, match=r"views must have shape \(n, q, d\)"):
        lidar(torch.randn(10, 4, generator=gen))
    with pytest.raises(ValueError, match="LiDAR needs n >= 2 images and q >= 2 views"):
        lidar(torch.randn(10, 1, 4, generator=gen))


# ----------------------------------------------------------------------------------- α-ReQ
@pytest.mark.parametrize("weighted", [False, True])
def test_alpha_req_recovers_an_exact_power_law(weighted):
    k = torch.arange(1, 201, dtype=F64)
    evals = 3.0 * k**-1.3
    assert float(alpha_req(evals, weighted=weighted)) == pytest.approx(1.3, rel=1e-12)
    assert ALPHA_REQ_FIT_RANGE == (6, 100)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("n", "d", "rank"), [(400, 150, None), (300, 64, None), (40, 64, 39)])
def test_alpha_req_matches_the_reference(n, d, rank, weighted, gen):
    evals = spectrum(anisotropic(n, d, gen, decay=0.9))
    got = float(alpha_req(evals, rank=rank, weighted=weighted))
    want = reference_alpha_req(evals.numpy(), rank=rank, weighted=weighted)
    assert got == pytest.approx(want, rel=1e-10)


def test_alpha_req_fit_range_is_clipped_to_the_rank_bound(gen):
    """Eigenvalues past the rank bound are zero by shape and never enter the fit; a range
    with fewer than 2 ranks left gives NaN."""
    evals = spectrum(anisotropic(30, 64, gen))  # rank 29 of 64
    inside = float(alpha_req(evals, rank=29))
    assert inside == pytest.approx(reference_alpha_req(evals.numpy(), rank=29), rel=1e-10)
    assert float(alpha_req(evals, fit_range=(6, 29))) == pytest.approx(inside, rel=1e-12)
    assert math.isnan(float(alpha_req(evals[:6])))
    batch = alpha_req(torch.stack([evals, evals * 2]), rank=29)
    assert batch.shape == (2,) and float(batch[1]) == pytest.approx(inside, rel=1e-12)
    with pytest.raises(ValueError, match="fit_range must be 1 <= k_lo <= k_hi"):
        alpha_req(evals, fit_range=(0, 10))


def test_alpha_req_comparison_would_catch_an_off_by_one_rank(gen):
    evals = spectrum(anisotropic(400, 150, gen, decay=0.9))
    good = float(alpha_req(evals))
    assert abs(reference_alpha_req(evals.numpy(), fit_range=(5, 99)) - good) > 1e-4 * good


# ----------------------------------------------------------------------------------- NESum
@pytest.mark.parametrize(("n", "d"), [(50, 12), (8, 30)])
def test_nesum_matches_the_reference(n, d, gen):
    z = anisotropic(n, d, gen)
    assert float(nesum(spectrum(z))) == pytest.approx(reference_nesum(z.numpy()), rel=1e-12)
    white = spectrum(zca_whiten(z))
    assert float(nesum(white)) == pytest.approx(min(d, n - 1), rel=1e-9)
    assert float(nesum(torch.tensor([5.0, 0.0, 0.0]))) == 1.0
    assert float(nesum(torch.zeros(3))) == 0.0


# -------------------------------------------------------------- the one summary function
def test_embedding_spectra_keys_and_consistency(gen):
    z = anisotropic(40, 24, gen).float()  # d < n: full rank possible
    features = anisotropic(40, 10, gen).float()
    views = {"z": surrogate_views(12, 3, 24, gen), "features": surrogate_views(12, 3, 10, gen)}
    out = embedding_spectra(z, features=features, views=views)
    m = out.metrics
    summary = spectral_summary(z)
    assert {k: m[f"z/{k}"] for k in summary} == pytest.approx(summary, rel=1e-12)
    assert m["z/rankme"] == pytest.approx(reference_rankme(z.double().numpy()), rel=1e-10)
    assert m["features/rankme"] == pytest.approx(reference_rankme(features.double().numpy()))
    assert m["features/rank_bound"] == 10.0
    assert m["z/lidar"] == pytest.approx(reference_lidar(views["z"].numpy()), rel=1e-9)
    assert m["features/lidar"] == pytest.approx(reference_lidar(views["features"].numpy()))
    assert m["z/alpha_req"] == pytest.approx(
        reference_alpha_req(reference_covariance_eigenvalues(z.double().numpy())), rel=1e-6
    )
    assert out.zhat is None and not any(k.startswith("zhat/") for k in m)


@pytest.mark.parametrize(("axis", "groups", "want"), [("batch", 1, 15), ("channel", 4, 16)])
def test_embedding_spectra_zhat_is_taken_inside_the_chunk_rank_bound(axis, groups, want, gen):
    """Ẑ of 16-row chunks of a 64-d embedding: the batch axis has rank 15 (d > m, the Barlow
    Twins case whose stable rank the monitor used to divide by d); the channel axis with 4
    groups centred separately min(16, 64 - 4) = 16."""
    from specssl.spectral import iternorm

    z = anisotropic(48, 64, gen)
    out = embedding_spectra(
        z, lambda p: iternorm(p, T=5, axis=axis, groups=groups), axis, 16, groups=groups
    )
    m = out.metrics
    assert (out.zhat_chunk, out.zhat_chunks) == (16, 3)
    assert m["zhat/rank_bound"] == want == rank_bound(16, 64, axis, groups=groups)
    evals = out.zhat
    assert m["zhat/condition_indicator"] == pytest.approx(float(evals[want - 1] / evals[0]))
    assert m["zhat/stable_rank"] == pytest.approx(float(evals.sum() / evals[0]) / want)
    assert m["z/rank_bound"] == 47.0  # Z: 48 samples of 64 dims


def test_lidar_views_leave_the_global_rng_untouched(gen):
    from specssl.data.augment import AugmentConfig, BatchedAugment
    from specssl.train.callbacks import embed_spectrum_sample

    view = BatchedAugment(AugmentConfig(crop_size=32, blur_p=0.5, jitter_p=0.8))
    images = torch.randint(0, 256, (10, 3, 32, 32), generator=gen, dtype=torch.uint8)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(6))
    net(torch.zeros(1, 3, 32, 32))

    def to_float(x: torch.Tensor) -> torch.Tensor:
        return x.float() / 255

    state = torch.get_rng_state()
    runs = [
        embed_spectrum_sample(
            net, torch.nn.Identity(), images, chunk=4, normalize=to_float, augment=view, seed=3
        )
        for _ in range(2)
    ]
    assert torch.equal(torch.get_rng_state(), state)
    assert runs[0].views["z"].shape == (10, 4, 6)  # lidar_images 256 > 10: all images
    torch.testing.assert_close(runs[0].views["z"], runs[1].views["z"], rtol=0, atol=0)


# ------------------------------------------- the same numbers in the monitor and the CLI
@pytest.fixture(scope="module")
def monitored_runs(tmp_path_factory, one_thread) -> dict[str, Path]:
    """2-step digits runs whose spectrum monitor embeds 48 images with 64-d embeddings (d > m)
    in chunks of the batch size 16: INTL (channel axis) and Barlow Twins (batch axis)."""
    from specssl.train.config import load_config
    from specssl.train.run import pretrain

    out = tmp_path_factory.mktemp("monitored")
    overrides = [
        *TINY_RUN,
        "data.batch_size=16",
        "data.subset=null",  # the spectrum sample of the whole training split, as the CLI
        "method.proj_output_dim=64",
        "trainer.max_steps=2",
        "trainer.max_epochs=1",
        "monitor.knn_every=0",
        "monitor.knn_on_init=false",
        "monitor.spectrum_every=1",
        "monitor.spectrum_samples=48",
        f"output_dir={out}",
    ]
    runs = {}
    for method in ("intl", "barlow_twins"):
        cfg = load_config(None, [*overrides, f"method.name={method}", f"run_name={method}"])
        runs[method] = pretrain(cfg, logger=False).run_dir
    return runs


@pytest.mark.parametrize("method", ["intl", "barlow_twins"])
def test_monitor_and_specssl_spectrum_give_the_same_numbers(monitored_runs, method, tmp_path):
    from specssl.cli import main

    run = monitored_runs[method]
    monitored = json.loads((run / "results.json").read_text())["spectrum"]
    out = tmp_path / "spectrum"
    argv = ["spectrum", str(run), "--samples", "48", "--out", str(out), "--no-plot"]
    assert main([*argv, "--device", "cpu"]) == 0
    offline = json.loads((out / "spectrum.json").read_text())["checkpoints"][0]
    metrics = offline["views"]["eval"]["metrics"]
    assert set(metrics) == set(monitored)
    for key in ("zhat/stable_rank", "z/lidar", "features/rankme", "zhat/condition_indicator"):
        assert key in metrics
    assert metrics == pytest.approx(monitored, rel=1e-9, abs=1e-15)
    # the rank bounds of the d > m case: Z 47 of 64; Ẑ per 16-row chunk
    assert metrics["z/rank_bound"] == 47.0
    assert metrics["zhat/rank_bound"] == (16.0 if method == "intl" else 15.0)


def test_lidar_sample_of_the_cli_is_the_monitors():
    from specssl.eval import spectrum_command
    from specssl.train import callbacks

    want = (callbacks.LIDAR_IMAGES, callbacks.LIDAR_VIEWS)
    assert want == (spectrum_command.LIDAR_IMAGES, spectrum_command.LIDAR_VIEWS)


def test_pretrain_summary_shows_rank_aware_indicators_and_rankme(monitored_runs):
    from specssl.train.run import PretrainResult, format_summary

    result = json.loads((monitored_runs["intl"] / "results.json").read_text())
    text = format_summary(
        PretrainResult(
            run_dir=monitored_runs["intl"],
            knn_initial=None,
            knn_final=None,
            probe={},
            spectrum=result["spectrum"],
            wall_time_s=1.0,
            steps=2,
            extra={"spectrum_initial": result["spectrum_initial"]},
        )
    )
    assert "spectrum Z (embedding): condition indicator" in text
    assert "inside its rank bound 47" in text and "inside its rank bound 16" in text
    before = result["spectrum_initial"]["features/rankme"]
    after = result["spectrum"]["features/rankme"]
    assert f"RankMe of the backbone features: {before:.1f} at random init -> {after:.1f}" in text
    assert "RankMe of the embedding Z:" in text
    assert "spectrum plot: " in text and "epoch_001.png" in text


# -------------------------------------------------- zoo and experiments read the same keys
def test_experiment_records_keep_the_meaning_of_their_columns():
    from specssl.experiments.sweep import LABEL_FREE, METRICS, _metrics

    old = {"spectrum": {"z/condition_indicator": 1e-9, "zhat/stable_rank": 0.5}}
    rec = _metrics(old)  # a result of before the rank-aware monitor
    assert rec["z_condition"] == 1e-9 and rec["zhat_stable_rank"] == 0.5
    assert all(rec[k] is None for k in LABEL_FREE)
    new = {
        "spectrum": {
            "z/condition_indicator": 0.02,
            "z/condition_indicator_raw": 1e-9,
            "zhat/condition_indicator": 0.3,
            "zhat/condition_indicator_raw": 0.0,
            "zhat/stable_rank": 0.7,
            "z/rankme": 12.5,
        }
    }
    rec = _metrics(new)
    assert rec["z_condition"] == 1e-9 and rec["zhat_condition"] == 0.0  # still λmin/λmax
    assert rec["z_condition_rank_aware"] == 0.02 and rec["zhat_condition_rank_aware"] == 0.3
    assert rec["zhat_stable_rank"] is None  # its normalisation changed: a new name
    assert rec["zhat_stable_rank_rank_aware"] == 0.7 and rec["z_rankme"] == 12.5
    assert set(LABEL_FREE) <= set(METRICS)


def test_zoo_embedding_spectrum_uses_the_one_function(gen):
    spec = importlib.util.spec_from_file_location("_bench_zoo_lf", REPO / "bench" / "zoo.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)

    class Module(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.method = torch.nn.Module()
            self.method.projector = torch.nn.Linear(10, 24).double()

    module = Module()
    features = anisotropic(60, 10, gen)
    row = zoo.embedding_spectrum(module, features)
    z = module.method.projector(features).detach()
    m = embedding_spectra(z, features=features).metrics
    assert row["z_condition"] == m["z/condition_indicator_raw"]
    assert row["z_stable_rank"] == m["z/stable_rank"]
    assert row["z_rankme"] == m["z/rankme"] and row["features_rankme"] == m["features/rankme"]
