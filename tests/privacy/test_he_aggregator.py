"""HEAggregator behind the aggregator contract: the weighted mean, its costs, and rejected parties."""

import numpy as np
import pytest

pytest.importorskip("tenseal")  # optional dependency: skip, not fail, without it

import deai.privacy.he.aggregator as he_aggregator  # noqa: E402
from deai.aggregate.base import RoundContext  # noqa: E402
from deai.privacy.he import CKKSParams, HEAggregator  # noqa: E402

ATOL = 1e-6  # a weighted mean of values in [-1, 1]; CKKS error ~1e-8 (see test_he_vectors.py)
EXACT = {"flooding_bits": 0}  # the arithmetic tests: flooding only at the size of the error bound


def _round(parties=5, dim=5000, seed=0):
    rng = np.random.default_rng(seed)
    updates = rng.uniform(-1, 1, (parties, dim)).astype(np.float32)
    weights = rng.integers(1, 200, parties).astype(np.float64)
    ctx = RoundContext(round=0, party_ids=np.arange(100, 100 + parties), steps=np.ones(parties, np.int64))
    return updates, weights, ctx


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key_holder": "owner"},
        {"key_holder": "committee"},
        {"key_holder": "committee", "committee_threshold": 2},
    ],
)
def test_mean_equals_the_plaintext_weighted_mean(kwargs):
    updates, weights, ctx = _round()
    aggregate = HEAggregator(**kwargs, **EXACT)
    out = aggregate(updates, weights, ctx)
    assert aggregate.name == "he_ckks"
    assert out.dtype == np.float32 and out.shape == (5000,)
    np.testing.assert_allclose(
        out, np.average(updates.astype(np.float64), axis=0, weights=weights), atol=ATOL
    )
    assert ctx.signals["he_included"].all()


def test_every_release_is_flooded_with_noise_of_the_documented_size():
    """Li and Micciancio 2021: an exact CKKS decryption leaks the key; the key holder floods each release."""
    from deai.privacy.he.keys import FLOODING_BITS, decryption_error_bound

    updates, weights, ctx = _round(parties=5, dim=20_000)
    exact = np.average(updates.astype(np.float64), axis=0, weights=weights)
    out = HEAggregator()(updates, weights, ctx).astype(np.float64)
    sigma = 2.0**FLOODING_BITS * decryption_error_bound(CKKSParams(), 5) / weights.sum()
    assert (out - exact).std() == pytest.approx(sigma, rel=0.05)
    again = HEAggregator()(updates, weights, ctx).astype(np.float64)
    assert np.corrcoef(out - exact, again - exact)[0, 1] < 0.05  # fresh flooding each release
    with pytest.raises(ValueError, match="flooding_bits"):
        HEAggregator(flooding_bits=-1)


def test_stats_report_packing_sizes_and_times():
    updates, weights, ctx = _round(parties=3, dim=9000)
    aggregate = HEAggregator()
    aggregate(updates, weights, ctx)
    stats = aggregate.last_stats
    assert stats.ciphertexts_per_party == 3  # ceil(9000 / 4096)
    assert stats.plaintext_bytes_per_party == 36_000
    assert stats.expansion == pytest.approx(stats.bytes_per_party / 36_000)
    assert stats.expansion > 10  # three 2-component ciphertexts over a 140-bit modulus for 9,000 floats
    assert min(stats.encrypt_s_per_party, stats.aggregate_s, stats.decrypt_s, stats.keygen_s) > 0
    assert stats.rejected == {}


def test_a_party_with_a_bad_ciphertext_is_left_out_of_the_mean(monkeypatch):
    updates, weights, ctx = _round(parties=4, dim=100)
    honest_encrypt = he_aggregator.encrypt_update

    def encrypt_with_one_broken_party(update, public_context, *, weight):
        payload = honest_encrypt(update, public_context, weight=weight)
        return payload[:-100] if weight == weights[1] else payload

    monkeypatch.setattr(he_aggregator, "encrypt_update", encrypt_with_one_broken_party)
    aggregate = HEAggregator(**EXACT)
    out = aggregate(updates, weights, ctx)
    keep = [0, 2, 3]
    expected = np.average(updates[keep].astype(np.float64), axis=0, weights=weights[keep])
    np.testing.assert_allclose(out, expected, atol=ATOL)
    assert list(aggregate.last_stats.rejected) == [101]
    np.testing.assert_array_equal(ctx.signals["he_included"], [True, False, True, True])


def test_a_party_with_a_non_finite_update_is_left_out_of_the_mean():
    updates, weights, ctx = _round(parties=3, dim=50)
    updates[2, 7] = np.nan
    aggregate = HEAggregator(**EXACT)
    out = aggregate(updates, weights, ctx)
    expected = np.average(updates[:2].astype(np.float64), axis=0, weights=weights[:2])
    np.testing.assert_allclose(out, expected, atol=ATOL)
    assert list(aggregate.last_stats.rejected) == [102]
    np.testing.assert_array_equal(ctx.signals["he_included"], [True, True, False])


def test_weights_that_would_overflow_the_modulus_are_refused():
    updates, weights, ctx = _round(parties=2, dim=10)
    with pytest.raises(ValueError, match="larger first prime"):
        HEAggregator(params=CKKSParams.additive())(updates, weights * 1e4, ctx)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key_holder": "server"}, "key_holder"),
        ({"key_holder": "committee", "committee_size": 1}, "committee_size"),
        ({"key_holder": "committee", "committee_threshold": 5}, "committee_threshold"),
    ],
)
def test_invalid_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HEAggregator(**kwargs)
