"""The columnar messages between the party and server programs."""

import hashlib

import numpy as np
import pytest

from deai.messages import UpdateBatch


def batch(ids, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    P = len(ids)
    return UpdateBatch(
        party_ids=np.asarray(ids, dtype=np.int64),
        round=np.full(P, 2, dtype=np.int64),
        base_version=np.full(P, 1, dtype=np.int64),
        deltas=rng.standard_normal((P, dim)).astype(np.float32),
        weights=np.arange(1, P + 1, dtype=np.float64),
        steps=np.full(P, 4, dtype=np.int64),
        metrics={"train_loss": rng.random(P).astype(np.float32), "raw_norm": rng.random(P)},
    )


def test_concat_keeps_every_row_in_order_with_its_columns():
    a, b = batch([0, 3]), batch([5], seed=1)
    both = UpdateBatch.concat([a, b])
    assert both.party_ids.tolist() == [0, 3, 5] and len(both) == 3
    np.testing.assert_array_equal(both.deltas, np.vstack([a.deltas, b.deltas]))
    np.testing.assert_array_equal(
        both.metrics["train_loss"], np.concatenate([a.metrics["train_loss"], b.metrics["train_loss"]])
    )
    assert both.control_deltas is None and both.arrival is None


def test_concat_keeps_only_the_metric_columns_every_batch_has():
    a, b = batch([0]), batch([1])
    b.metrics["cut_short"] = np.array([True])
    assert set(UpdateBatch.concat([a, b]).metrics) == {"train_loss", "raw_norm"}


def test_concat_of_nothing_is_refused():
    with pytest.raises(ValueError, match="at least one batch"):
        UpdateBatch.concat([])


def test_take_selects_rows_across_every_column():
    b = batch([2, 4, 6])
    t = b.take(np.array([True, False, True]))
    assert t.party_ids.tolist() == [2, 6] and t.weights.tolist() == [1.0, 3.0]
    np.testing.assert_array_equal(t.deltas, b.deltas[[0, 2]])
    np.testing.assert_array_equal(t.metrics["raw_norm"], b.metrics["raw_norm"][[0, 2]])


def test_digests_are_the_sha256_of_each_row_and_follow_new_rows():
    b = batch([0, 1])
    assert b.digests() == [hashlib.sha256(row.tobytes()).digest() for row in b.deltas]
    crafted = b.with_deltas(np.zeros_like(b.deltas))
    assert crafted.digests()[0] == hashlib.sha256(np.zeros(3, np.float32).tobytes()).digest()
    assert crafted.digests() != b.digests()
