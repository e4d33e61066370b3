"""whiten() dispatch, Whitening module, random group partition, sub-batches, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specssl.spectral import (
    METHODS,
    Whitening,
    cholesky_whiten,
    iternorm,
    pca_whiten,
    power_transform,
    random_group_whiten,
    sub_batch_whiten,
    whiten,
    zca_whiten,
)

AXES = ("batch", "channel")


def direct_call(method: str, z, axis, groups=1, T=4, p=0.5, eps=0.0):
    """What ``whiten(method=...)`` must be equivalent to."""
    if method == "iternorm":
        return iternorm(z, T, axis, groups=groups)
    if method in ("zca", "power"):
        return power_transform(z, 0.5 if method == "zca" else p, axis, eps, groups=groups)
    if method == "pca":
        return pca_whiten(z, axis, eps, groups=groups)
    return cholesky_whiten(z, axis, eps, groups=groups)


# ----------------------------------------------------------------------------- dispatch


def test_methods_list():
    assert METHODS == ("iternorm", "zca", "power", "pca", "cholesky")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("axis", AXES)
def test_whiten_dispatch(method, axis, gen):
    m, d = (12, 6) if axis == "batch" else (4, 12)  # each group's covariance full rank
    z = torch.randn(m, d, generator=gen, dtype=torch.float64)
    kw = {"T": 3, "p": 0.8, "eps": 0.05}
    got = whiten(z, method, axis, groups=2, **kw)
    want = direct_call(method, z, axis, groups=2, **kw)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # the parameters really reach the op: changing each one that applies changes the output
    if method == "iternorm":
        assert not torch.allclose(got, whiten(z, method, axis, groups=2, T=4))
    if method == "power":
        assert not torch.allclose(got, whiten(z, method, axis, groups=2, p=0.5, eps=0.05))
    if method in ("zca", "pca", "cholesky"):
        assert not torch.allclose(got, whiten(z, method, axis, groups=2, eps=0.0))
    assert not torch.allclose(got, whiten(z, method, axis, groups=1, **kw))


def test_whiten_defaults_are_iternorm_T4_batch(gen):
    z = torch.randn(10, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(whiten(z), iternorm(z, 4, "batch"), rtol=0, atol=0)


def test_unknown_method(gen):
    z = torch.randn(10, 4, generator=gen)
    with pytest.raises(ValueError, match=r"unknown whitening method 'svd'; choose one of \("):
        whiten(z, "svd")
    with pytest.raises(ValueError, match="unknown whitening method 'svd'"):
        Whitening("svd")
    with pytest.raises(ValueError, match="axis must be one of"):
        Whitening("zca", axis="rows")


# ------------------------------------------------------------------------------- module


@pytest.mark.parametrize("method", METHODS)
def test_whitening_module_forward(method, gen):
    z = torch.randn(2, 12, 6, generator=gen, dtype=torch.float64)  # leading dim: 2 problems
    module = Whitening(method, "channel" if method != "cholesky" else "batch", groups=3, T=6)
    got = module(z)
    want = whiten(z, method, module.axis, groups=3, T=6)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert list(module.parameters()) == [] and list(module.buffers()) == []


def test_whitening_extra_repr():
    module = Whitening("power", "channel", groups=4, random_groups=True, T=5, p=0.25, eps=0.1)
    assert module.extra_repr() == (
        "method=power, axis=channel, groups=4, random_groups=True, T=5, p=0.25, eps=0.1"
    )
    assert repr(module) == f"Whitening({module.extra_repr()})"


def test_whitening_module_random_groups_uses_global_rng(gen):
    z = torch.randn(4, 24, generator=gen, dtype=torch.float64)
    module = Whitening("zca", "channel", groups=2, random_groups=True)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        got = module(z)
        torch.manual_seed(7)
        want = random_group_whiten(z, 2, "zca", "channel")
        other = module(z)  # the RNG moved on: a fresh partition
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.allclose(got, other)
    # random_groups is ignored with a single group (nothing to partition)
    plain = Whitening("zca", "channel", groups=1, random_groups=True)
    torch.testing.assert_close(plain(z), zca_whiten(z, "channel"), rtol=0, atol=0)


# -------------------------------------------------------------------- random group partition


@pytest.mark.parametrize("method", ["zca", "iternorm", "cholesky"])
@pytest.mark.parametrize("axis", AXES)
def test_random_group_whiten_equals_manual(method, axis, gen):
    z = torch.randn(6, 12, generator=gen, dtype=torch.float64)
    if method == "cholesky" and axis == "channel":
        z = torch.randn(3, 12, generator=gen, dtype=torch.float64)  # m <= d/g - 1
    got = random_group_whiten(z, 3, method, axis, generator=torch.Generator().manual_seed(5))
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(5))
    grouped = whiten(z[:, perm], method, axis, groups=3)
    want = torch.empty_like(grouped)
    want[:, perm] = grouped  # un-permute: channel perm[j] of the output is column j
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.equal(perm, torch.arange(12))  # the partition is not the trivial one


def test_random_group_whiten_draws_fresh_partition(gen):
    z = torch.randn(4, 24, generator=gen, dtype=torch.float64)
    with torch.random.fork_rng():
        torch.manual_seed(0)  # deterministic test; the global stream advances between calls
        a, b = random_group_whiten(z, 2), random_group_whiten(z, 2)
    assert not torch.allclose(a, b)
    # the same partition gives the same result
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(
        random_group_whiten(z, 2, generator=g1), random_group_whiten(z, 2, generator=g2)
    )


@pytest.mark.parametrize("axis", AXES)
def test_random_group_whiten_groups_are_white(axis, gen):
    m, d, g = (20, 12, 3) if axis == "batch" else (4, 24, 2)
    z = torch.randn(m, d, generator=gen, dtype=torch.float64) @ torch.randn(
        d, d, generator=gen, dtype=torch.float64
    )
    out = random_group_whiten(z, g, "zca", axis, generator=torch.Generator().manual_seed(11))
    perm = torch.randperm(d, generator=torch.Generator().manual_seed(11)).numpy()
    c = d // g
    for k in range(g):
        block = out.numpy()[:, perm[k * c : (k + 1) * c]]
        cov = np.cov(block, rowvar=(axis == "channel"))
        np.testing.assert_allclose(cov, np.eye(cov.shape[0]), rtol=0, atol=1e-10)
    full = np.cov(out.numpy(), rowvar=(axis == "channel"))
    if axis == "batch":  # not white across groups: the partition matters
        assert np.abs(full - np.eye(d)).max() > 0.05
    else:  # channel axis: the pooled m x m covariance averages the g identity blocks
        np.testing.assert_allclose(full, g * (c - 1) / (d - 1) * np.eye(m), atol=1e-10)


def test_random_group_whiten_gradcheck(gen):
    z = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)

    def fn(t):  # reseeded so gradcheck's repeated evaluations see the same permutation
        rng = torch.Generator().manual_seed(2)
        return random_group_whiten(t, 2, "zca", "batch", generator=rng)

    assert torch.autograd.gradcheck(fn, (z,))


# --------------------------------------------------------------------------- sub-batches


@pytest.mark.parametrize("w_size", [4, 6])
def test_sub_batch_whiten_equals_chunkwise(w_size, gen):
    m, d = 12, 3
    z = torch.randn(m, d, generator=gen, dtype=torch.float64)
    perm = torch.randperm(m, generator=gen)
    got = sub_batch_whiten(z, w_size, perm, cholesky_whiten)
    assert got.shape == (m, d)
    for k in range(m // w_size):
        rows = perm[k * w_size : (k + 1) * w_size]
        torch.testing.assert_close(got[rows], cholesky_whiten(z[rows]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.cov(got[rows].numpy(), rowvar=False), np.eye(d), atol=1e-10)


def test_sub_batch_whiten_identity_perm_keeps_row_order(gen):
    z = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    got = sub_batch_whiten(z, 4, torch.arange(8), zca_whiten)
    torch.testing.assert_close(got[:4], zca_whiten(z[:4]), rtol=0, atol=1e-12)
    torch.testing.assert_close(got[4:], zca_whiten(z[4:]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("w_size", [5, 1, 0, 16])
def test_sub_batch_whiten_bad_w_size(w_size, gen):
    z = torch.randn(12, 3, generator=gen)
    with pytest.raises(ValueError, match=f"w_size={w_size} must be >= 2 and divide"):
        sub_batch_whiten(z, w_size, torch.arange(12), zca_whiten)


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_raises(method, bad, gen):
    z = torch.randn(8, 3, generator=gen)
    z[2, 1] = bad
    with pytest.raises(ValueError, match="non-finite"):
        whiten(z, method)


@pytest.mark.parametrize("method", METHODS)
def test_integer_input_raises(method):
    with pytest.raises(ValueError, match=r"z must be a floating tensor, got dtype torch\.int64"):
        whiten(torch.arange(24).view(8, 3), method)


@pytest.mark.parametrize("method", METHODS)
def test_bad_axis_raises(method, gen):
    with pytest.raises(ValueError, match=r"axis must be one of \('batch', 'channel'\), got 'col'"):
        whiten(torch.randn(8, 3, generator=gen), method, "col")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("groups", [0, 4, -2])
def test_groups_must_divide_d(method, groups, gen):
    with pytest.raises(ValueError, match=f"groups={groups} must be a positive divisor of the"):
        whiten(torch.randn(8, 6, generator=gen), method, groups=groups)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(5,), (0, 3), (4, 0)])
def test_bad_shapes_raise(method, shape):
    with pytest.raises(ValueError, match=r"must have shape \(\.\.\., m, d\)|is empty: shape"):
        whiten(torch.zeros(shape), method)


@pytest.mark.parametrize("method", METHODS)
def test_one_sample_batch_axis_raises(method, gen):
    with pytest.raises(ValueError, match="at least 2 samples"):
        whiten(torch.randn(1, 6, generator=gen), method, "batch")


@pytest.mark.parametrize("method", ["iternorm", "zca", "pca", "cholesky"])
def test_one_sample_channel_axis_standardises(method, gen):
    """m = 1 on the channel axis: the sample is centred over its channels and scaled to unit
    variance (a 1x1 covariance is whitened by every method; iternorm for any T)."""
    z = torch.randn(1, 7, generator=gen, dtype=torch.float64) * 3 + 2
    out = whiten(z, method, "channel", T=2)
    zc = z - z.mean()
    want = zc / zc.pow(2).sum().div(6).sqrt()
    if method == "pca":  # the single principal direction is defined up to sign
        out = out * torch.sign((out * want).sum())
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)


def test_channel_axis_needs_two_channels_per_group(gen):
    with pytest.raises(ValueError, match="at least 2 channels per group"):
        whiten(torch.randn(5, 6, generator=gen), "zca", "channel", groups=6)


# ----------------------------------------------------------------------- precision / AMP


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_under_autocast_runs_in_float32(method, dtype, gen):
    """Output keeps the input dtype; values are the float32 computation rounded to it."""
    z32 = torch.randn(32, 8, generator=gen) @ torch.randn(8, 8, generator=gen)
    z = z32.to(dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = whiten(z, method, T=6)
    assert out.dtype == dtype
    want = whiten(z.float(), method, T=6)  # float32 reference on the upcast input
    # within one rounding of the output dtype (relative to the output's scale)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), want, rtol=eps, atol=eps * float(want.abs().max()))


def test_float32_under_autocast_stays_float32(gen):
    z = torch.randn(16, 4, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = whiten(z, "iternorm")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, whiten(z, "iternorm"), rtol=0, atol=0)
