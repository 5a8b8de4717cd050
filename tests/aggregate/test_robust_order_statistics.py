"""Coordinate-wise median and trimmed mean equal NumPy's and SciPy's on the same rows."""

import numpy as np
import pytest
from scipy.stats import trim_mean

from deai.aggregate.base import RoundContext
from deai.aggregate.robust import CoordinateMedian, TrimmedMean


def _round(parties, dim, seed):
    rng = np.random.default_rng(seed)
    updates = rng.standard_normal((parties, dim)).astype(np.float32)
    weights = rng.integers(1, 100, parties).astype(np.float64)
    ctx = RoundContext(round=1, party_ids=np.arange(parties), steps=np.ones(parties, np.int64))
    return updates, weights, ctx


@pytest.mark.parametrize("parties", [1, 2, 7, 10, 31])
def test_median_equals_numpy_median(parties):
    updates, weights, ctx = _round(parties, 257, seed=parties)
    got = CoordinateMedian()(updates, weights, ctx)
    assert got.dtype == np.float32 and got.shape == (257,)
    np.testing.assert_array_equal(got, np.median(updates, axis=0))


def test_median_over_many_column_blocks_equals_numpy_median():
    # 60k columns of 10 parties span several blocks, so the threaded path is exercised.
    updates, weights, ctx = _round(10, 60_000, seed=1)
    np.testing.assert_array_equal(CoordinateMedian()(updates, weights, ctx), np.median(updates, axis=0))


@pytest.mark.parametrize(("parties", "beta"), [(10, 0.0), (10, 0.1), (11, 0.2), (25, 0.3), (40, 0.45)])
def test_trimmed_mean_equals_scipy_trim_mean(parties, beta):
    updates, weights, ctx = _round(parties, 300, seed=parties)
    got = TrimmedMean(trim_fraction=beta)(updates, weights, ctx)
    want = trim_mean(updates.astype(np.float64), beta, axis=0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_trimmed_mean_over_many_column_blocks_equals_scipy():
    updates, weights, ctx = _round(12, 50_000, seed=2)
    got = TrimmedMean(trim_fraction=0.25)(updates, weights, ctx)
    np.testing.assert_allclose(got, trim_mean(updates.astype(np.float64), 0.25, axis=0), rtol=1e-5, atol=1e-6)


def test_order_statistics_ignore_claimed_example_counts():
    updates, weights, ctx = _round(9, 40, seed=3)
    inflated = weights.copy()
    inflated[0] = 1e12
    for rule in (CoordinateMedian(), TrimmedMean(trim_fraction=0.2)):
        np.testing.assert_array_equal(rule(updates, weights, ctx), rule(updates, inflated, ctx))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_value_in_a_late_block_is_rejected_with_its_row(bad):
    updates, weights, ctx = _round(10, 60_000, seed=4)
    updates[6, 59_999] = bad
    for rule in (CoordinateMedian(), TrimmedMean(trim_fraction=0.1)):
        with pytest.raises(ValueError, match=r"finite: rows \[6\]"):
            rule(updates, weights, ctx)
