"""The root-free rules (DnC, FLAME, SignGuard, the recommended pipeline) against straightforward
re-implementations of their papers' algorithms on small cases, and the f_max-only attacker bound."""

import math

import numpy as np
import pytest
from sklearn.cluster import HDBSCAN, MeanShift, estimate_bandwidth
from sklearn.metrics.pairwise import cosine_distances as sk_cosine_distances

from deai.aggregate import make_aggregator
from deai.aggregate.base import RoundContext
from deai.aggregate.robust import FLAME, DivideAndConquer, Krum, SignGuard, TrimmedMean
from deai.rng import Purpose, generator


def _ctx(n, round_=3):
    return RoundContext(seed=7, round=round_, party_ids=np.arange(n), steps=np.ones(n, dtype=np.int64))


def _round(n=20, dim=60, bad=0, seed=0, shift=8.0):
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(dim)
    u = (direction + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)
    u[:bad] = (-shift * direction + 0.1 * rng.standard_normal((bad, dim))).astype(np.float32)
    return u, direction


def _hdbscan_majority(x):
    """FLAME's clustering written out for 20 rows: sklearn's HDBSCAN on cosine distances, the biggest
    cluster (min_cluster_size n/2 + 1 = 11)."""
    d = sk_cosine_distances(x)
    np.fill_diagonal(d, 0.0)
    labels = HDBSCAN(
        min_cluster_size=11, min_samples=1, metric="precomputed", allow_single_cluster=True, copy=True
    ).fit_predict(d)
    return labels == np.bincount(labels[labels >= 0]).argmax()


def test_dnc_matches_the_papers_algorithm_with_an_svd_per_subset():
    u, _ = _round(n=24, dim=50, bad=5)
    rule = DivideAndConquer(num_byzantine=5, niters=3, subsample_dim=20)
    out = rule(u, np.ones(24), ctx := _ctx(24))
    # Algorithm 2 of Shejwalkar and Houmansadr 2021, one party at a time, with numpy's SVD
    rng = generator(7, 3, Purpose.DEFENCE, 1)
    good = set(range(24))
    for _ in range(3):
        cols = np.sort(rng.choice(50, size=20, replace=False))
        sub = u[:, cols].astype(np.float64)
        centered = sub - sub.mean(axis=0)
        v = np.linalg.svd(centered, full_matrices=False)[2][0]
        scores = [float(np.dot(sub[i] - sub.mean(axis=0), v) ** 2) for i in range(24)]
        good &= set(np.argsort(scores)[: 24 - 5].tolist())
    np.testing.assert_array_equal(np.flatnonzero(ctx.signals["dnc_kept"]), sorted(good))
    np.testing.assert_allclose(out, u[sorted(good)].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert not set(range(5)) & good  # the five outliers are gone


def test_dnc_takes_its_bound_from_f_max():
    u, _ = _round(n=20, bad=6)
    a = DivideAndConquer(f_max=0.3)(u, np.ones(20), _ctx(20))
    b = DivideAndConquer(num_byzantine=math.floor(0.3 * 20))(u, np.ones(20), _ctx(20))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="strategy.f_max"):
        DivideAndConquer()


def test_flame_matches_hdbscan_clip_and_mean_and_drops_a_flipped_minority():
    u, _ = _round(n=20, bad=6)
    out = FLAME(noise_lambda=0.0)(u, np.ones(20), ctx := _ctx(20))
    admitted = _hdbscan_majority(u.astype(np.float64))
    norms = np.linalg.norm(u.astype(np.float64), axis=1)
    s = np.median(norms)
    expected = sum(u[i] * min(1.0, s / norms[i]) for i in np.flatnonzero(admitted)) / admitted.sum()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert not ctx.signals["flame_admitted"][:6].any() and ctx.signals["flame_admitted"][6:].sum() > 7


def test_flame_noise_has_the_papers_scale():
    u, _ = _round(n=20, dim=20000, bad=0)
    clean = FLAME(noise_lambda=0.0)(u, np.ones(20), _ctx(20))
    noisy = FLAME(noise_lambda=0.01)(u, np.ones(20), _ctx(20))
    sigma = 0.01 * np.median(np.linalg.norm(u.astype(np.float64), axis=1))
    assert np.std(noisy - clean) == pytest.approx(sigma, rel=0.03)


def test_signguard_matches_its_two_filters_and_clipped_mean():
    u, _ = _round(n=20, dim=400, bad=0)
    u[0] *= 10.0  # fails the norm filter (ratio > 3)
    u[1] = np.abs(u[1]) + 0.1  # all positive: an odd sign profile
    out = SignGuard()(u, np.ones(20), ctx := _ctx(20))
    norms = np.linalg.norm(u.astype(np.float64), axis=1)
    med = np.median(norms)
    by_norm = (norms / med >= 0.1) & (norms / med <= 3.0)
    cols = np.sort(generator(7, 3, Purpose.DEFENCE, 3).choice(400, size=40, replace=False))
    sub = u[:, cols]
    feats = np.stack([(sub > 0).mean(1), (sub == 0).mean(1), (sub < 0).mean(1)], axis=1)
    labels = MeanShift(bandwidth=estimate_bandwidth(feats, quantile=0.5)).fit_predict(feats)
    by_sign = labels == np.bincount(labels).argmax()
    kept = by_norm & by_sign
    expected = sum(u[i] * min(1.0, med / norms[i]) for i in np.flatnonzero(kept)) / kept.sum()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert not ctx.signals["signguard_kept"][0] and not ctx.signals["signguard_kept"][1]


def test_recommended_matches_its_five_steps_written_out():
    u, _ = _round(n=20, dim=60, bad=3, shift=4.0)  # three long flipped updates: > 2 median norms
    u[3] = -0.9 * u[3]  # a short flipped one: passes the norm filter, points away from the majority
    u[4] *= 1.6  # a long honest one: kept, clipped to the median norm
    w = np.full(20, 10.0)
    w[5] = 1000.0  # claims 100 typical parties' examples: capped at 3 medians
    w[6] = 20.0
    out = make_aggregator("recommended", {}, num_parties=20, f_max=0.3)(u, w, ctx := _ctx(20))
    x = u.astype(np.float64)
    norms = np.linalg.norm(x, axis=1)
    med = np.median(norms)
    eligible = [i for i in range(20) if norms[i] <= 2.0 * med]
    in_majority = _hdbscan_majority(x)
    clipped = [x[i] * min(1.0, med / norms[i]) for i in range(20)]
    members = [i for i in range(20) if in_majority[i]]
    center = sum(clipped[i] for i in members) / len(members)
    kept = [i for i in eligible if i in members or float(x[i] @ center) > 0]
    counts = {i: min(w[i], 3.0 * np.median(w)) for i in kept}
    expected = sum(counts[i] * clipped[i] for i in kept) / sum(counts.values())
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert sorted(np.flatnonzero(ctx.signals["recommended_kept"])) == kept
    assert not set(kept) & {0, 1, 2, 3} and {4, 5, 6} <= set(kept)
    assert counts[5] == 30.0
    shares = ctx.signals["recommended_weight"]
    np.testing.assert_allclose(shares[kept], [counts[i] / sum(counts.values()) for i in kept])
    assert shares.sum() == pytest.approx(1.0) and not shares[[0, 1, 2, 3]].any()


def test_root_guided_keeps_the_majority_or_the_root_half_space():
    u, direction = _round(n=20, dim=60, bad=3, shift=4.0)  # three long flipped: over 2 median norms
    u[3] = -0.9 * u[3]  # short and flipped: outside the majority cluster and against g0
    u[4] = -0.3 * u[4] + 0.5 * direction  # outside the majority cluster but along g0: readmitted
    w = np.full(20, 10.0)
    g0 = direction.astype(np.float32)
    ctx = _ctx(20)
    ctx.signals["server_update"] = g0
    out = make_aggregator("root_guided", {}, num_parties=20, f_max=0.3)(u, w, ctx)
    x = u.astype(np.float64)
    norms = np.linalg.norm(x, axis=1)
    med = np.median(norms)
    in_majority = _hdbscan_majority(x)
    kept = [i for i in range(20) if norms[i] <= 2 * med and (in_majority[i] or float(x[i] @ g0) > 0)]
    expected = sum(x[i] * min(1.0, med / norms[i]) for i in kept) / len(kept)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert sorted(np.flatnonzero(ctx.signals["root_guided_kept"])) == kept
    assert not set(kept) & {0, 1, 2, 3} and 4 in kept and not in_majority[4]


def test_krum_and_trimmed_mean_read_f_max_and_explicit_options_win():
    u, _ = _round(n=30, bad=9)
    np.testing.assert_array_equal(
        Krum(f_max=0.3)(u, np.ones(30), _ctx(30)), Krum(num_byzantine=9)(u, np.ones(30), _ctx(30))
    )
    assert make_aggregator("trimmed_mean", {}, num_parties=30, f_max=0.25).trim_fraction == 0.25
    assert (
        make_aggregator("trimmed_mean", {"trim_fraction": 0.1}, num_parties=30, f_max=0.25).trim_fraction
        == 0.1
    )
    assert TrimmedMean().trim_fraction == 0.1
    assert make_aggregator("krum", {"num_byzantine": 2}, num_parties=30, f_max=0.3).num_byzantine == 2
    with pytest.raises(ValueError, match="strategy.f_max"):
        make_aggregator("krum", {}, num_parties=30)


def test_norm_bound_and_centered_clipping_estimate_their_scale_from_the_round():
    u, _ = _round(n=21, bad=5)
    norms = np.linalg.norm(u.astype(np.float64), axis=1)
    out = make_aggregator("norm_bound", {}, num_parties=21)(u, np.ones(21), ctx := _ctx(21))
    scale = np.minimum(1.0, np.median(norms) / norms)
    np.testing.assert_allclose(ctx.signals["norm_bound_scale"], scale)
    np.testing.assert_allclose(out, (scale[:, None] * u).mean(axis=0), rtol=1e-5, atol=1e-6)
    cc = make_aggregator("centered_clipping", {}, num_parties=21)
    cc(u, np.ones(21), ctx := _ctx(21))
    np.testing.assert_allclose(ctx.signals["centered_clipping_scale"], scale, rtol=1e-6)  # center starts at 0


@pytest.mark.parametrize("rule", ["dnc", "flame", "signguard", "recommended", "root_guided"])
def test_a_flipped_minority_barely_moves_the_root_free_rules(rule):
    u, direction = _round(n=40, dim=200, bad=12, shift=4.0)
    honest = u[12:].mean(axis=0)
    ctx = _ctx(40)
    ctx.signals["server_update"] = u[12:].mean(axis=0)  # a root update that agrees with the honest ones
    out = make_aggregator(rule, {}, num_parties=40, f_max=0.3)(u, np.ones(40), ctx)
    mean_error = np.linalg.norm(u.mean(axis=0) - honest)
    assert np.linalg.norm(out - honest) < 0.2 * mean_error
