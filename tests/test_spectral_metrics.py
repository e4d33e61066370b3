"""Spectrum metrics: spectrum, rank bounds, condition indicator (rank-aware and raw), stable
rank, effective rank, summary."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from specssl.spectral import (
    condition_indicator,
    effective_rank,
    iternorm,
    rank_bound,
    spectral_summary,
    spectrum,
    spectrum_metrics,
    stable_rank,
    zca_whiten,
)

# ------------------------------------------------------------------------------- spectrum


@pytest.mark.parametrize(("axis", "rowvar", "k"), [("batch", False, 5), ("channel", True, 9)])
def test_spectrum_matches_numpy(axis, rowvar, k, gen):
    z = torch.randn(9, 5, generator=gen, dtype=torch.float64) * torch.arange(1.0, 6.0) + 3
    got = spectrum(z, axis)
    assert got.shape == (k,) and got.dtype == torch.float64
    want = np.linalg.eigvalsh(np.cov(z.numpy(), rowvar=rowvar))[::-1].clip(0)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    assert bool((got[:-1] >= got[1:]).all())  # descending


def test_spectrum_of_prescribed_embedding(make_embedding):
    lam = [5.0, 2.0, 0.5, 1e-4, 0.0, 0.0]  # rank 4 from 12 samples; zeros stay zeros
    got = spectrum(make_embedding(12, lam))
    np.testing.assert_allclose(got.numpy(), lam, rtol=1e-10, atol=1e-12)
    assert bool((got >= 0).all())  # rounding noise is clamped, never negative


def test_spectrum_float32_input_is_resolved_in_float64(gen):
    z = torch.randn(20, 4, generator=gen)
    got = spectrum(z)
    assert got.dtype == torch.float64
    want = np.linalg.eigvalsh(np.cov(z.double().numpy(), rowvar=False))[::-1]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    assert spectrum(z, dtype=torch.float32).dtype == torch.float32


def test_spectrum_leading_dims_and_half_input(gen):
    z = torch.randn(3, 10, 4, generator=gen, dtype=torch.float64)
    got = spectrum(z)
    assert got.shape == (3, 4)
    for i in range(3):
        torch.testing.assert_close(got[i], spectrum(z[i]), rtol=0, atol=1e-14)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = spectrum(z[0].to(torch.bfloat16))
    torch.testing.assert_close(half, spectrum(z[0].to(torch.bfloat16).double()), rtol=0, atol=0)


def test_spectrum_errors(gen):
    with pytest.raises(ValueError, match="spectrum on the batch axis needs at least 2 obs"):
        spectrum(torch.randn(1, 4, generator=gen))
    with pytest.raises(ValueError, match="non-finite"):
        spectrum(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="axis must be one of"):
        spectrum(torch.randn(4, 4, generator=gen), "rows")


@pytest.mark.parametrize("axis", ["batch", "channel"])
def test_spectrum_gradcheck(axis, gen):
    z = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    if axis == "channel":  # 6x6 covariance of rank 3: use the top-3 (distinct) eigenvalues
        assert torch.autograd.gradcheck(lambda t: spectrum(t, axis)[:3], (z,))
    else:
        assert torch.autograd.gradcheck(lambda t: spectrum(t, axis), (z,))


# ------------------------------------------------------------------------------- scalars


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_metrics_on_hand_made_spectrum(dtype):
    evals = torch.tensor([4.0, 2.0, 1.0, 1.0], dtype=dtype)
    assert float(condition_indicator(evals)) == pytest.approx(0.25, rel=1e-7)
    assert float(stable_rank(evals)) == pytest.approx(2.0, rel=1e-7)  # 8 / 4
    assert float(stable_rank(evals, normalize_by=4)) == pytest.approx(0.5, rel=1e-7)
    # p = (1/2, 1/4, 1/8, 1/8): H = (1/2 + 1/2 + 3/4) ln 2, exp(H) = 2^(7/4)
    assert float(effective_rank(evals)) == pytest.approx(2**1.75, rel=1e-6)


def test_metrics_reference_values_and_batching():
    evals = torch.tensor([[3.0, 3.0, 3.0], [9.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(condition_indicator(evals), torch.tensor([1.0, 0.0]).double())
    torch.testing.assert_close(stable_rank(evals), torch.tensor([3.0, 10 / 9]).double())
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    torch.testing.assert_close(effective_rank(evals), torch.tensor([3.0, math.exp(h)]).double())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fn", [condition_indicator, stable_rank, effective_rank])
def test_all_zero_spectrum_is_zero_without_nan(fn, dtype):
    evals = torch.zeros(5, dtype=dtype, requires_grad=True)
    value = fn(evals)
    assert float(value.detach()) == 0.0
    (grad,) = torch.autograd.grad(value, evals)
    assert bool(torch.isfinite(grad).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_effective_rank_with_zero_eigenvalues(dtype):
    """A collapsed direction (λ = 0) contributes 0 log 0 = 0, in float32 too."""
    evals = torch.tensor([2.0, 2.0, 0.0, 0.0], dtype=dtype, requires_grad=True)
    value = effective_rank(evals)
    assert float(value.detach()) == pytest.approx(2.0, rel=1e-6)
    (grad,) = torch.autograd.grad(value, evals)
    assert bool(torch.isfinite(grad).all())
    assert float(effective_rank(torch.tensor([7.0, 0.0, 0.0], dtype=dtype))) == 1.0


def test_metric_gradients_match_finite_differences():
    evals = torch.tensor([4.0, 2.5, 1.0, 0.3], dtype=torch.float64, requires_grad=True)
    for fn in (condition_indicator, stable_rank, effective_rank):
        assert torch.autograd.gradcheck(fn, (evals,))


@pytest.mark.parametrize(
    ("m", "d", "axis", "groups", "sub_batches", "want"),
    [
        (512, 128, "batch", 1, 1, 128),  # full rank possible
        (128, 2048, "batch", 1, 1, 127),  # Barlow Twins' Z at batch 128: m - 1
        (256, 64, "batch", 1, 4, 64),  # W-MSE sub-batches: min(d, m - 4)
        (16, 64, "batch", 1, 4, 12),
        (128, 128, "channel", 1, 1, 127),  # the default run's Ẑ: d - 1 of m = 128
        (64, 16, "channel", 1, 1, 15),
        (32, 128, "channel", 4, 1, 32),  # groups: min(m, d - g)
        (128, 64, "channel", 4, 1, 60),
        (128, 64, "channel", 1, 8, 63),  # sub-batches do not constrain the channel axis
        (1, 4, "batch", 1, 1, 1),  # never below 1
    ],
)
def test_rank_bound(m, d, axis, groups, sub_batches, want):
    assert rank_bound(m, d, axis, groups=groups, sub_batches=sub_batches) == want


def test_rank_bound_errors():
    with pytest.raises(ValueError, match="axis must be one of"):
        rank_bound(4, 4, "rows")
    with pytest.raises(ValueError, match="rank_bound needs positive sizes"):
        rank_bound(4, 4, "channel", groups=0)


@pytest.mark.parametrize(
    ("m", "d", "axis", "groups"),
    [(9, 24, "batch", 1), (40, 12, "channel", 1), (40, 12, "channel", 3), (64, 16, "channel", 4)],
)
def test_rank_bound_is_attained_and_never_exceeded(m, d, axis, groups, gen):
    """On random input the spectrum of the measured matrix (IterNorm's output with ``groups``,
    each group centred over its own channels on the channel axis) has exactly ``rank_bound``
    non-zero eigenvalues: the bound is tight and the rest are zero by shape."""
    z = torch.randn(m, d, generator=gen, dtype=torch.float64)
    zhat = iternorm(z, T=5, axis=axis, groups=groups)
    evals = spectrum(zhat, axis)
    r = rank_bound(m, d, axis, groups=groups if axis == "channel" else 1)
    assert float(evals[r - 1]) > 1e-6 * float(evals[0])
    assert r < evals.numel()  # every case has structurally zero eigenvalues
    assert float(evals[r:].abs().max()) < 1e-10 * float(evals[0])


def test_condition_indicator_inside_the_rank_bound():
    evals = torch.tensor([[8.0, 4.0, 2.0, 0.0], [5.0, 5.0, 1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(condition_indicator(evals, 3), torch.tensor([0.25, 0.2]).double())
    torch.testing.assert_close(condition_indicator(evals), torch.tensor([0.0, 0.2]).double())
    # a bound above the number of eigenvalues means the full spectrum
    torch.testing.assert_close(condition_indicator(evals, 99), condition_indicator(evals))
    assert float(condition_indicator(torch.zeros(4), 2)) == 0.0


def test_spectrum_metrics_of_a_hand_made_spectrum():
    evals = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    m = spectrum_metrics(evals, rank=4)
    assert m["condition_indicator"] == pytest.approx(1 / 8)
    assert m["condition_indicator_raw"] == 0.0
    assert m["stable_rank"] == pytest.approx(15 / 8 / 4)
    assert m["nesum"] == pytest.approx(15 / 8)
    assert m["lambda_min_in_rank"] == 1.0 and m["lambda_min"] == 0.0
    assert m["rank_bound"] == 4.0 and "alpha_req" not in m
    with pytest.raises(ValueError, match=r"spectrum_metrics expects eigenvalues of shape \(k,\)"):
        spectrum_metrics(evals[None])


# ------------------------------------------------------------------------------- summary


def test_spectral_summary_values(make_embedding):
    lam = [4.0, 2.0, 1.0, 1.0]
    summary = spectral_summary(make_embedding(10, lam).float())
    assert set(summary) == {
        "condition_indicator",
        "condition_indicator_raw",
        "stable_rank",
        "effective_rank",
        "nesum",
        "lambda_max",
        "lambda_min",
        "lambda_min_in_rank",
        "trace",
        "rank_bound",
    }  # no alpha_req: its fit range starts at rank 6
    assert all(isinstance(v, float) for v in summary.values())
    want = {
        "condition_indicator": 0.25,  # rank bound min(4, 10 - 1) = 4: the full spectrum
        "condition_indicator_raw": 0.25,
        "stable_rank": 2.0 / 4,  # normalized by the rank bound 4
        "effective_rank": 2**1.75,
        "nesum": 2.0,
        "lambda_max": 4.0,
        "lambda_min": 1.0,
        "lambda_min_in_rank": 1.0,
        "trace": 8.0,
        "rank_bound": 4.0,
    }
    assert summary == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize(("m", "d", "axis"), [(32, 8, "batch"), (6, 40, "channel")])
def test_spectral_summary_of_whitened_input(m, d, axis, gen):
    z = torch.randn(m, d, generator=gen, dtype=torch.float64) @ torch.randn(
        d, d, generator=gen, dtype=torch.float64
    )
    raw = spectral_summary(z, axis)
    white = spectral_summary(zca_whiten(z, axis), axis)
    k = d if axis == "batch" else m
    assert white["stable_rank"] == pytest.approx(1.0, abs=1e-9)
    assert white["condition_indicator"] == pytest.approx(1.0, abs=1e-9)
    assert white["effective_rank"] == pytest.approx(k, abs=1e-8)
    assert white["nesum"] == pytest.approx(k, abs=1e-8)
    assert white["trace"] == pytest.approx(k, abs=1e-8)
    assert raw["condition_indicator"] < 0.5 and raw["stable_rank"] < 0.9


@pytest.mark.parametrize(("m", "d", "axis"), [(5, 12, "batch"), (12, 5, "channel")])
def test_spectral_summary_rank_deficient_is_taken_inside_the_rank_bound(m, d, axis, gen):
    """d > m on the batch axis (rank m - 1 of d) or d < m on the channel axis (rank d - 1 of
    m): a whitened output scores 1 inside the bound; the full-spectrum ratio is 0 by shape."""
    z = torch.randn(m, d, generator=gen, dtype=torch.float64)
    s = spectral_summary(zca_whiten(z, axis), axis)
    r = min(m, d) - 1
    assert s["rank_bound"] == r
    assert s["stable_rank"] == pytest.approx(1.0, abs=1e-9)
    assert s["condition_indicator"] == pytest.approx(1.0, abs=1e-9)
    assert s["condition_indicator_raw"] == pytest.approx(0.0, abs=1e-12)
    assert s["lambda_min_in_rank"] == pytest.approx(s["lambda_max"], rel=1e-9)
    assert s["effective_rank"] == pytest.approx(r, abs=1e-8)


def test_spectral_summary_collapsed_and_bad_shape():
    s = spectral_summary(torch.ones(8, 4))
    assert s["stable_rank"] == 0.0 and s["condition_indicator"] == 0.0
    assert s["condition_indicator_raw"] == 0.0 and s["nesum"] == 0.0
    assert not any(math.isnan(v) for v in s.values())
    with pytest.raises(ValueError, match=r"spectral_summary expects z of shape \(m, d\)"):
        spectral_summary(torch.ones(2, 8, 4))


def _failing_eigvalsh(*args, **kwargs):
    raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge (simulated)")


@pytest.mark.parametrize(
    ("axis", "m", "d"), [("batch", 40, 12), ("batch", 8, 12), ("channel", 40, 12)]
)
def test_spectrum_falls_back_to_svd_when_eigvalsh_does_not_converge(axis, m, d, gen, monkeypatch):
    z = torch.randn(m, d, generator=gen, dtype=torch.float64) * torch.logspace(0, -6, d)
    expected = spectrum(z, axis)
    monkeypatch.setattr(torch.linalg, "eigvalsh", _failing_eigvalsh)
    fallback = spectrum(z, axis)
    assert fallback.shape == expected.shape
    torch.testing.assert_close(fallback, expected, rtol=1e-8, atol=1e-14)


def test_spectrum_reports_when_no_solver_converges(gen, monkeypatch):
    monkeypatch.setattr(torch.linalg, "eigvalsh", _failing_eigvalsh)
    monkeypatch.setattr(torch.linalg, "svdvals", _failing_eigvalsh)
    with pytest.raises(ValueError, match="neither eigvalsh nor svdvals converged on a 16 x 4"):
        spectrum(torch.randn(16, 4, generator=gen, dtype=torch.float64))
