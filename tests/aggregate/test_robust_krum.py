"""Krum, Multi-Krum and Bulyan agree with brute-force loops written straight from the papers."""

import numpy as np
import pytest

from deai.aggregate.base import RoundContext
from deai.aggregate.robust import Bulyan, Krum, MultiKrum


def _round(parties, dim, seed):
    rng = np.random.default_rng(seed)
    updates = (rng.standard_normal((parties, dim)) * rng.uniform(0.5, 3, (parties, 1))).astype(np.float32)
    weights = rng.integers(1, 100, parties).astype(np.float64)
    ctx = RoundContext(round=1, party_ids=np.arange(parties), steps=np.ones(parties, np.int64))
    return updates, weights, ctx


def _brute_krum_scores(x, f):
    """Blanchard et al.: sum of squared distances to the n - f - 2 closest other vectors, pair by pair."""
    x = x.astype(np.float64)
    n = len(x)
    scores = []
    for i in range(n):
        d = [float(np.sum((x[i] - x[j]) ** 2)) for j in range(n) if j != i]
        scores.append(sum(sorted(d)[: n - f - 2]))
    return np.array(scores)


@pytest.mark.parametrize(("n", "f", "seed"), [(5, 1, 0), (9, 2, 1), (12, 4, 2), (20, 3, 3)])
def test_krum_chooses_the_brute_force_argmin(n, f, seed):
    updates, weights, ctx = _round(n, 7, seed)
    scores = _brute_krum_scores(updates, f)
    got = Krum(num_byzantine=f)(updates, weights, ctx)
    best = int(np.argmin(scores))
    np.testing.assert_array_equal(got, updates[best])
    np.testing.assert_allclose(ctx.signals["krum_score"], scores, rtol=1e-5)
    assert np.flatnonzero(ctx.signals["krum_weight"]).tolist() == [best]


@pytest.mark.parametrize(("n", "f", "m"), [(9, 2, None), (9, 2, 3), (15, 3, 1), (15, 3, 15)])
def test_multi_krum_averages_the_brute_force_best_m(n, f, m):
    updates, weights, ctx = _round(n, 6, seed=n + f)
    scores = _brute_krum_scores(updates, f)
    keep = n - f if m is None else m
    chosen = sorted(np.argsort(scores, kind="stable")[:keep].tolist())
    got = MultiKrum(num_byzantine=f, num_selected=m)(updates, weights, ctx)
    assert np.flatnonzero(ctx.signals["krum_weight"]).tolist() == chosen
    np.testing.assert_allclose(got, updates[chosen].astype(np.float64).mean(axis=0), rtol=1e-5, atol=1e-6)


def _reference_bulyan(x, f):
    """El Mhamdi et al. 2018 with loops: recursive Krum selection, then a median-centred trimmed mean."""
    x = x.astype(np.float64)
    n = len(x)
    theta, beta = n - 2 * f, n - 4 * f
    remaining, selected = list(range(n)), []
    while len(selected) < theta:
        scores = {}
        for i in remaining:
            d = sorted(float(np.sum((x[i] - x[j]) ** 2)) for j in remaining if j != i)
            scores[i] = sum(d[: max(len(remaining) - f - 2, 0)])
        best = min(remaining, key=lambda i: (scores[i], i))
        selected.append(best)
        remaining.remove(best)
    s = x[selected]
    out = np.empty(x.shape[1])
    for k in range(x.shape[1]):
        column = s[:, k]
        closest = np.argsort(np.abs(column - np.median(column)), kind="stable")[:beta]
        out[k] = column[closest].mean()
    return out, sorted(selected)


@pytest.mark.parametrize(("n", "f", "seed"), [(3, 0, 0), (7, 1, 1), (15, 3, 2), (20, 4, 3), (24, 4, 4)])
def test_bulyan_equals_loop_reference(n, f, seed):
    updates, weights, ctx = _round(n, 9, seed)
    want, selected = _reference_bulyan(updates, f)
    got = Bulyan(num_byzantine=f)(updates, weights, ctx)
    assert np.flatnonzero(ctx.signals["bulyan_selected"]).tolist() == selected
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_bulyan_rejects_fewer_than_4f_plus_3_updates():
    updates, weights, ctx = _round(14, 4, seed=0)
    with pytest.raises(ValueError, match=r"n >= 4 \* num_byzantine \+ 3.*n=14.*num_byzantine=3"):
        Bulyan(num_byzantine=3)(updates, weights, ctx)


@pytest.mark.parametrize("rule", [Krum, MultiKrum])
def test_krum_rejects_num_byzantine_too_large_for_n(rule):
    updates, weights, ctx = _round(6, 4, seed=0)
    with pytest.raises(ValueError, match=r"num_byzantine.*at most 1"):
        rule(num_byzantine=2)(updates, weights, ctx)


def test_multi_krum_rejects_num_selected_above_n():
    updates, weights, ctx = _round(6, 4, seed=0)
    with pytest.raises(ValueError, match="num_selected=7"):
        MultiKrum(num_byzantine=1, num_selected=7)(updates, weights, ctx)


def test_krum_scores_stay_accurate_when_updates_share_a_large_common_direction():
    # Updates agreeing to ~1% of their norm over 500k coordinates: a single float32 Gram product loses
    # ~0.5% of each score to cancellation; blocked float64 accumulation keeps it below 0.1%.
    rng = np.random.default_rng(0)
    n, dim = 12, 500_000
    common = rng.standard_normal(dim)
    updates = (common + 0.01 * rng.standard_normal((n, dim)) * rng.uniform(0.5, 2, (n, 1))).astype(np.float32)
    centred = updates.astype(np.float64) - updates[0]  # exact in float64; distances are translation-free
    sq = np.einsum("ij,ij->i", centred, centred)
    exact = np.maximum(sq[:, None] + sq[None, :] - 2 * centred @ centred.T, 0)
    want = np.sort(exact + np.diag(np.full(n, np.inf)), axis=1)[:, : n - 2 - 2].sum(axis=1)
    ctx = RoundContext(round=1, party_ids=np.arange(n), steps=np.ones(n, np.int64))
    Krum(num_byzantine=2)(updates, np.ones(n), ctx)
    np.testing.assert_allclose(ctx.signals["krum_score"], want, rtol=1e-3)
