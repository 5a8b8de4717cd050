"""Trust- and history-based rules: FLTrust, FoolsGold, reputation, plus the clipping rules' closed forms."""

import logging

import numpy as np
import pytest

from deai.aggregate.base import RoundContext
from deai.aggregate.robust import CenteredClipping, FLTrust, FoolsGold, NormBound, ReputationWeightedMean


def _ctx(party_ids, rnd=1):
    party_ids = np.asarray(party_ids)
    return RoundContext(round=rnd, party_ids=party_ids, steps=np.ones(len(party_ids), np.int64))


def _fltrust_reference(updates, g0):
    """Cao et al. 2021, Eq. (1)-(3), in float64 with a loop over parties."""
    g0 = g0.astype(np.float64)
    total, trust_sum = np.zeros_like(g0), 0.0
    for g in updates.astype(np.float64):
        trust = max(0.0, g @ g0 / (np.linalg.norm(g) * np.linalg.norm(g0)))
        total += trust * g * np.linalg.norm(g0) / np.linalg.norm(g)
        trust_sum += trust
    return total / trust_sum


def test_fltrust_gives_zero_weight_to_an_update_anti_aligned_with_the_server():
    rng = np.random.default_rng(0)
    g0 = rng.standard_normal(40).astype(np.float32)
    honest = g0 + 0.8 * rng.standard_normal((6, 40))
    updates = np.vstack([-50.0 * g0, honest]).astype(np.float32)
    ctx = _ctx(np.arange(7))
    ctx.signals["server_update"] = g0
    got = FLTrust()(updates, np.full(7, 10.0), ctx)
    assert ctx.signals["fltrust_trust"][0] == 0.0 and ctx.signals["fltrust_weight"][0] == 0.0
    assert (ctx.signals["fltrust_weight"][1:] > 0).all()
    np.testing.assert_allclose(got, _fltrust_reference(updates, g0), rtol=1e-5, atol=1e-6)


def test_fltrust_rescales_every_update_to_the_server_norm():
    g0 = np.array([3.0, 4.0], dtype=np.float32)  # norm 5
    updates = np.array([[300.0, 400.0]], dtype=np.float32)  # same direction, norm 500
    rule = FLTrust(server_update=lambda ctx: g0)  # the callable path
    np.testing.assert_allclose(rule(updates, np.ones(1), _ctx([0])), g0, rtol=1e-6)


def test_fltrust_with_no_trusted_update_returns_zeros_and_records_it(caplog):
    g0 = np.ones(5, dtype=np.float32)
    updates = -np.abs(np.random.default_rng(1).standard_normal((4, 5))).astype(np.float32)
    ctx = _ctx(np.arange(4))
    ctx.signals["server_update"] = g0
    with caplog.at_level(logging.WARNING):
        got = FLTrust()(updates, np.ones(4), ctx)
    np.testing.assert_array_equal(got, np.zeros(5, np.float32))
    np.testing.assert_array_equal(ctx.signals["fltrust_weight"], np.zeros(4))
    assert "every trust score is 0" in caplog.text


def test_fltrust_without_a_server_update_says_how_to_pass_one():
    with pytest.raises(ValueError, match=r"ctx.signals\['server_update'\]"):
        FLTrust()(np.ones((2, 3), np.float32), np.ones(2), _ctx([0, 1]))


def test_foolsgold_keeps_ten_identical_sybils_under_a_fifth_of_the_weight():
    rng = np.random.default_rng(0)
    dim, honest, sybils = 60, 10, 10
    rule = FoolsGold(num_parties=honest + sybils)
    target = rng.standard_normal(dim)
    for rnd in range(1, 4):
        diverse = rng.standard_normal((honest, dim))
        updates = np.vstack([diverse, np.tile(target, (sybils, 1))]).astype(np.float32)
        ctx = _ctx(np.arange(honest + sybils), rnd)
        rule(updates, np.full(honest + sybils, 20.0), ctx)
        share = ctx.signals["foolsgold_weight"]
        assert share[honest:].sum() < 0.2
        assert share.sum() == pytest.approx(1.0)


def test_foolsgold_keys_history_by_party_id_across_partial_rounds():
    # Sybils 7 and 3 sit at different rows each round, beside different honest parties.
    rng = np.random.default_rng(1)
    rule = FoolsGold(num_parties=10)
    target = rng.standard_normal(30)
    for rnd, ids in enumerate([[7, 0, 3, 5], [2, 3, 9, 7], [7, 4, 3, 1]], start=1):
        updates = rng.standard_normal((4, 30)).astype(np.float32)
        updates[[ids.index(7), ids.index(3)]] = target
        ctx = _ctx(ids, rnd)
        rule(updates, np.ones(4), ctx)
    share = dict(zip(ids, ctx.signals["foolsgold_weight"], strict=True))
    assert share[7] + share[3] < 0.2
    never_sampled = rule.state()["history"][[6, 8]]
    assert not never_sampled.any()


def test_reputation_decays_for_a_party_that_keeps_sign_flipping():
    rng = np.random.default_rng(0)
    parties, dim = 10, 50
    rule = ReputationWeightedMean(num_parties=parties, decay=0.8)
    direction = rng.standard_normal(dim)
    history = []
    for rnd in range(1, 7):
        updates = direction + 0.5 * rng.standard_normal((parties, dim))
        updates[0] = -updates[0]  # party 0 flips its update's sign every round
        ctx = _ctx(np.arange(parties), rnd)
        rule(updates.astype(np.float32), np.full(parties, 30.0), ctx)
        history.append(ctx.signals["reputation"].copy())
    flipper = [r[0] for r in history]
    assert all(b < a for a, b in zip(flipper, flipper[1:], strict=False))
    assert flipper[-1] < 0.5 * 0.8**6 + 1e-12  # its score is 0 every round
    assert (history[-1][1:] > 0.5).all()
    assert ctx.signals["reputation_weight"][0] < 0.25 / parties  # a quarter of a fair share


def test_norm_bound_is_the_weighted_mean_of_clipped_updates():
    rng = np.random.default_rng(2)
    updates = (rng.standard_normal((8, 30)) * rng.uniform(0.1, 5, (8, 1))).astype(np.float32)
    weights = rng.integers(1, 50, 8).astype(np.float64)
    x = updates.astype(np.float64)
    clipped = x * np.minimum(1.0, 4.0 / np.linalg.norm(x, axis=1, keepdims=True))
    got = NormBound(max_norm=4.0)(updates, weights, _ctx(np.arange(8)))
    np.testing.assert_allclose(got, weights @ clipped / weights.sum(), rtol=1e-5, atol=1e-6)


def test_centered_clipping_one_iteration_matches_its_formula_and_keeps_the_center():
    rng = np.random.default_rng(3)
    rule = CenteredClipping(clip_radius=1.5)
    center = np.zeros(12)
    for rnd in range(1, 4):
        updates = (rng.standard_normal((6, 12)) + 2.0).astype(np.float32)
        diff = updates.astype(np.float64) - center
        center = center + (diff * np.minimum(1.0, 1.5 / np.linalg.norm(diff, axis=1, keepdims=True))).mean(0)
        got = rule(updates, np.ones(6), _ctx(np.arange(6), rnd))
        np.testing.assert_allclose(got, center, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rule.state()["center"], center, rtol=1e-5, atol=1e-5)
