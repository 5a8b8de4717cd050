import math

import numpy as np
import pytest
from scipy import stats

from deai.privacy.secagg import FixedPoint, harary_graph
from deai.privacy.secagg.crypto import prg_words
from deai.privacy.secagg.errors import MalformedMessageError
from deai.privacy.secagg.graph import default_degree, effective_degree
from deai.privacy.secagg.messages import Message, pack, unpack


@pytest.mark.parametrize("bits", [24, 32, 64])
@pytest.mark.parametrize("n", [2, 100, 1000])
def test_scale_is_the_finest_power_of_two_at_which_extreme_sums_do_not_wrap(n, bits):
    fp = FixedPoint.for_sum(n, 2.5, bits)
    assert math.log2(fp.scale).is_integer()
    for sign in (1.0, -1.0):
        ring = fp.encode(np.full(3, sign * 2.5))
        total = np.zeros(3, dtype=np.uint64)
        for _ in range(n):
            total = (total + ring.astype(np.uint64)) & np.uint64(fp.word_mask)
        assert np.allclose(fp.decode(total), sign * 2.5 * n, rtol=0, atol=fp.sum_error_bound(n))
    finer = 2 * fp.scale  # one more bit of precision would (all but) overflow the signed range
    assert n * 2.5 * finer > (1 << (bits - 1)) - 1 - n


def test_encoding_clips_and_rounds_to_half_a_step():
    fp = FixedPoint.for_sum(10, 1.0, 32)
    x = np.array([-3.0, -1.0, -0.123456789, 0.0, 0.5, 1.0, 7.0])
    decoded = fp.decode(fp.encode(x))
    np.testing.assert_allclose(decoded, np.clip(x, -1, 1), rtol=0, atol=0.5 / fp.scale)
    with pytest.raises(ValueError, match="non-finite"):
        fp.encode(np.array([np.nan]))


def test_too_many_parties_for_a_small_ring_asks_for_more_bits():
    with pytest.raises(ValueError, match="modulus_bits=64"):
        FixedPoint.for_sum(1 << 24, 1.0, 32)


@pytest.mark.parametrize("n,k", [(10, 4), (101, 28), (1000, 40)])
def test_harary_graph_is_k_regular_symmetric_and_fixed_by_the_seed(n, k):
    graph = harary_graph(n, k, seed=3, round=5)
    for u, row in enumerate(graph):
        assert len(row) == k and u not in row and len(set(row.tolist())) == k
        for v in row:
            assert u in graph[v]
    again = harary_graph(n, k, seed=3, round=5)
    other = harary_graph(n, k, seed=3, round=6)
    assert all(np.array_equal(a, b) for a, b in zip(graph, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(graph, other, strict=True))


def test_small_federations_use_the_complete_graph_and_degree_grows_like_log_n():
    graph = harary_graph(6, effective_degree(6, None), seed=0, round=0)
    assert all(len(row) == 5 for row in graph)
    assert default_degree(100) == 28 and default_degree(1000) == 40
    assert effective_degree(100, 7) == 8  # odd degrees are rounded up to keep the ring regular


def test_prg_is_deterministic_per_seed_and_uniform():
    a = prg_words(b"\x01" * 32, 100_000, np.dtype("<u4"))
    np.testing.assert_array_equal(a, prg_words(b"\x01" * 32, 100_000, np.dtype("<u4")))
    assert not np.array_equal(a, prg_words(b"\x02" * 32, 100_000, np.dtype("<u4")))
    counts = np.bincount((a >> 24).astype(np.int64), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_messages_roundtrip_and_reject_garbage_other_sessions_and_spoofed_senders():
    msg = Message("masked_input", 3, b"s" * 16, {"length": 2}, {"data": b"\x00" * 8})
    data = pack(msg)
    back = unpack(data, kind="masked_input", session=b"s" * 16, sender=3)
    assert back.fields == {"length": 2} and bytes(back.blob("data")) == b"\x00" * 8
    with pytest.raises(MalformedMessageError):
        unpack(b"garbage", kind="masked_input", session=b"s" * 16)
    with pytest.raises(MalformedMessageError, match="another session"):
        unpack(data, kind="masked_input", session=b"t" * 16)
    with pytest.raises(MalformedMessageError, match="claims sender"):
        unpack(data, kind="masked_input", session=b"s" * 16, sender=4)
    with pytest.raises(MalformedMessageError, match="trailing"):
        unpack(data + b"x", kind="masked_input", session=b"s" * 16)
