import numpy as np
import pytest
from scipy import stats

from deai.aggregate import RoundContext, WeightedMean
from deai.privacy.secagg import (
    AuthenticationError,
    SecAggConfig,
    SecAggError,
    SecAggParty,
    SecAggServer,
    SecureAggregator,
    run_protocol,
    secure_sum,
)
from deai.privacy.secagg.errors import PartyAbort
from deai.privacy.secagg.messages import (
    ADVERTISE_KEYS,
    MASKED_INPUT,
    SERVER,
    SHARE_KEYS,
    UNMASK_REQUEST,
    Message,
    pack,
    unpack,
)

CLIP = 1.0


def make_updates(parties: int, dim: int, seed: int = 0) -> np.ndarray:
    # Some coordinates exceed the clip range on purpose: the truth is the sum of clipped rows.
    return np.random.default_rng(seed).uniform(-1.2, 1.2, (parties, dim)).astype(np.float32)


def assert_exact_sum(result, updates: np.ndarray) -> None:
    """The decoded sum equals the plaintext sum of the survivors' clipped rows, to fixed point."""
    truth = np.clip(updates[result.survivors].astype(np.float64), -CLIP, CLIP).sum(axis=0)
    # Fixed-point rounding (n / (2 scale)) plus the final float32 cast (half an ulp).
    tolerance = result.error_bound + np.abs(truth).max() * 2.0**-24
    assert np.abs(result.sum.astype(np.float64) - truth).max() <= tolerance


def choose(parties: int, count: int, seed: int = 1) -> np.ndarray:
    mask = np.zeros(parties, dtype=bool)
    mask[np.random.default_rng(seed).permutation(parties)[:count]] = True
    return mask


@pytest.mark.parametrize(
    "rate,neighbours,threshold_fraction",
    [(0.0, None, 0.5), (0.1, None, 0.5), (0.2, None, 0.5), (0.3, 39, 0.5)],
    ids=["none", "10%", "20%-sparse", "30%-complete"],
)
def test_sum_is_exact_with_dropouts_after_masking(rate, neighbours, threshold_fraction):
    parties = 40
    updates = make_updates(parties, 500)
    dropped = choose(parties, round(rate * parties))
    result = secure_sum(
        updates,
        seed=7,
        round=2,
        clip=CLIP,
        neighbours=neighbours,
        threshold_fraction=threshold_fraction,
        dropout_after_masking=dropped,
    )
    np.testing.assert_array_equal(result.survivors, np.flatnonzero(~dropped))
    assert_exact_sum(result, updates)


def test_parties_that_drop_before_masking_are_simply_excluded():
    updates = make_updates(30, 200)
    dropped = choose(30, 5)
    result = secure_sum(updates, seed=0, round=0, clip=CLIP, dropout_before_masking=dropped)
    np.testing.assert_array_equal(result.survivors, np.flatnonzero(~dropped))
    assert_exact_sum(result, updates)


def test_parties_that_drop_during_unmasking_stay_in_the_sum():
    updates = make_updates(30, 200)
    silent = choose(30, 4)
    result = secure_sum(updates, seed=0, round=0, clip=CLIP, dropout_during_unmasking=silent)
    np.testing.assert_array_equal(result.survivors, np.arange(30))
    assert_exact_sum(result, updates)


def test_a_masked_input_is_uniform_in_the_ring_while_its_encoding_is_not():
    dim = 20_000
    updates = (np.random.default_rng(0).normal(size=(12, dim)) * 0.05).astype(np.float32)
    seen = {}

    def capture(kind, sender, recipient, payload):
        if kind == MASKED_INPUT:
            seen[sender] = payload
        return payload

    result = secure_sum(updates, seed=0, round=0, clip=CLIP, intercept=capture)
    cfg = result.config
    masked = np.frombuffer(unpack(seen[0], kind=MASKED_INPUT, session=cfg.session).blob("data"), dtype="<u4")
    encoded = cfg.encoding.encode(updates[0])

    def high_byte_pvalue(words):
        return stats.chisquare(np.bincount((words >> 24).astype(np.int64), minlength=256)).pvalue

    assert high_byte_pvalue(masked) > 1e-3
    assert stats.kstest(masked / 2.0**32, "uniform").pvalue > 1e-3
    assert high_byte_pvalue(encoded) < 1e-12  # sanity: the same test sees through no masking
    assert stats.kstest(encoded / 2.0**32, "uniform").pvalue < 1e-12


def test_unmasking_refuses_when_fewer_than_t_neighbours_answer():
    updates = make_updates(20, 50)
    with pytest.raises(SecAggError, match="fewer than t=10 shares"):
        secure_sum(updates, seed=0, round=0, clip=CLIP, dropout_during_unmasking=choose(20, 12))


NONCE = "5e" * 16  # tests that craft messages fix the session's nonce (it is fresh in real use)


def session_of(updates: np.ndarray, **public) -> bytes:
    """The session id every party derives from the public parameters (seed, round, clip, ...)."""
    return SecAggConfig.create(*updates.shape, clip=CLIP, **public).session


def test_a_tampered_share_ciphertext_is_rejected_naming_its_sender():
    updates = make_updates(12, 20)
    session = session_of(updates, nonce=NONCE, seed=0, round=0)

    def flip_a_bit(kind, sender, recipient, payload):
        if kind == SHARE_KEYS and sender == 5:
            msg = unpack(payload, kind=kind, session=session, sender=sender)
            blob = bytearray(msg.blob("ciphertexts"))
            blob[40] ^= 0x01
            return pack(Message(msg.kind, msg.sender, msg.session, msg.fields, {"ciphertexts": bytes(blob)}))
        return payload

    with pytest.raises(AuthenticationError, match="from party 5 failed authentication") as info:
        secure_sum(updates, seed=0, round=0, clip=CLIP, intercept=flip_a_bit, nonce=NONCE)
    assert info.value.sender == 5


def test_a_share_redirected_to_another_recipient_is_rejected_naming_its_sender():
    updates = make_updates(12, 20)
    session = session_of(updates, nonce=NONCE, seed=0, round=0)

    def swap_first_two(kind, sender, recipient, payload):
        if kind == SHARE_KEYS and sender == 3:
            msg = unpack(payload, kind=kind, session=session, sender=sender)
            blob = bytes(msg.blob("ciphertexts"))
            size = len(blob) // len(msg.fields["recipients"])
            swapped = blob[size : 2 * size] + blob[:size] + blob[2 * size :]
            return pack(Message(msg.kind, msg.sender, msg.session, msg.fields, {"ciphertexts": swapped}))
        return payload

    with pytest.raises(AuthenticationError) as info:
        secure_sum(updates, seed=0, round=0, clip=CLIP, intercept=swap_first_two, nonce=NONCE)
    assert info.value.sender == 3


def _malformed(variant: str, payload: bytes, session: bytes) -> bytes:
    msg = unpack(payload, kind=MASKED_INPUT, session=session)
    data = np.frombuffer(msg.blob("data"), dtype="<u4").copy()
    fields = dict(msg.fields)
    if variant == "garbage":
        return b"\x00" * 64
    if variant == "wrong-length":
        data = data[:-1]
        fields["length"] = len(data)
    elif variant == "wrong-dtype":
        data = data.astype("<f4")
        fields["dtype"] = "<f4"
    elif variant == "out-of-range":
        data[0] = 0xFFFFFFFF  # the ring is Z_2^24 in this test
    elif variant == "spoofed-sender":
        return pack(Message(msg.kind, msg.sender + 1, msg.session, fields, {"data": data.tobytes()}))
    return pack(Message(msg.kind, msg.sender, msg.session, fields, {"data": data.tobytes()}))


@pytest.mark.parametrize(
    "variant,reason",
    [
        ("garbage", "without the header"),
        ("wrong-length", "length 299"),
        ("wrong-dtype", "dtype '<f4'"),
        ("out-of-range", "outside the ring"),
        ("spoofed-sender", "claims sender 3"),
    ],
)
def test_a_malformed_masked_input_drops_its_sender_and_the_rest_sums_exactly(variant, reason):
    updates = make_updates(16, 300)
    session = session_of(updates, nonce=NONCE, seed=4, round=1, modulus_bits=24)

    def corrupt(kind, sender, recipient, payload):
        return _malformed(variant, payload, session) if kind == MASKED_INPUT and sender == 2 else payload

    result = secure_sum(updates, seed=4, round=1, clip=CLIP, modulus_bits=24, intercept=corrupt, nonce=NONCE)
    assert reason in result.rejected[2] and 2 not in result.survivors
    np.testing.assert_array_equal(result.survivors, np.delete(np.arange(16), 2))
    assert_exact_sum(result, updates)


def _walk(obj, seen=None):
    """Every array and byte string reachable from an object's attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray | bytes | bytearray | memoryview):
        yield np.asarray(memoryview(obj).cast("B")) if not isinstance(obj, np.ndarray) else obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _walk(key, seen)
            yield from _walk(value, seen)
    elif isinstance(obj, list | tuple | set | frozenset):
        for item in obj:
            yield from _walk(item, seen)
    elif hasattr(obj, "__dict__"):
        yield from _walk(vars(obj), seen)


@pytest.mark.parametrize("with_dropout", [False, True])
def test_the_server_never_holds_an_individual_unmasked_update(with_dropout):
    parties, dim = 8, 300
    updates = make_updates(parties, dim)
    cfg = SecAggConfig.create(parties, dim, seed=0, round=0, clip=CLIP)
    members = [SecAggParty(u, cfg) for u in range(parties)]
    server = SecAggServer(cfg)

    def drop_one(kind, sender, recipient, payload):
        return None if with_dropout and kind == MASKED_INPUT and sender == 5 else payload

    run_protocol(members, server, updates, intercept=drop_one)
    individual = [cfg.encoding.encode(row).tobytes() for row in updates]
    individual += [row.tobytes() for row in updates] + [row.astype(np.float64).tobytes() for row in updates]
    stored = list(_walk(server))
    assert stored, "the walk should reach the server's state"
    for array in stored:
        raw = np.ascontiguousarray(array).tobytes()
        assert all(raw != secret and secret not in raw for secret in individual)
    # It keeps one running sum of masked inputs, never a per-party matrix.
    assert max(a.nbytes for a in stored if a.size >= dim) <= dim * cfg.encoding.dtype.itemsize


def _run_until_unmask(parties: int = 6):
    updates = make_updates(parties, 10)
    cfg = SecAggConfig.create(parties, 10, seed=0, round=0, clip=CLIP)
    members = [SecAggParty(u, cfg) for u in range(parties)]
    server = SecAggServer(cfg)
    books = server.collect_keys({p.id: p.advertise_keys() for p in members})
    relays = server.relay_shares({u: members[u].share_keys(m) for u, m in books.items()})
    server.collect_masked_inputs({u: members[u].masked_input(m, updates[u]) for u, m in relays.items()})
    return cfg, members


def _request(cfg, survivors, dropped):
    return pack(
        Message(UNMASK_REQUEST, SERVER, cfg.session, {"survivors": survivors, "dropped": dropped}, {})
    )


def test_a_party_refuses_to_reveal_both_secrets_of_one_neighbour():
    cfg, members = _run_until_unmask()
    with pytest.raises(SecAggError, match="both as survivors and as dropped"):
        members[0].unmask(_request(cfg, [1, 2, 3], [2]))
    members[1].unmask(_request(cfg, [0, 2, 4], [3]))  # an honest request is answered
    with pytest.raises(SecAggError, match="already revealed party 2"):
        members[1].unmask(_request(cfg, [0, 4, 5], [2]))  # now claims 2 dropped: its mask key would unmask it


def test_a_party_aborts_when_fewer_than_t_survivors_are_listed():
    cfg, members = _run_until_unmask()  # t = 3 of 5 neighbours
    with pytest.raises(PartyAbort, match="fewer than t=3"):
        members[0].unmask(_request(cfg, [1, 2], [3, 4, 5]))


def test_signed_keys_verify_and_a_substituted_key_is_rejected_naming_the_party():
    updates = make_updates(10, 50)
    assert_exact_sum(secure_sum(updates, seed=0, round=0, clip=CLIP, sign=True, nonce=NONCE), updates)
    session = session_of(updates, nonce=NONCE, seed=0, round=0)

    def substitute_keys(kind, sender, recipient, payload):
        if kind == ADVERTISE_KEYS and sender == 3:
            msg = unpack(payload, kind=kind, session=session, sender=3)
            blobs = {"keys": bytes(reversed(bytes(msg.blob("keys")))), "signature": msg.blob("signature")}
            return pack(Message(msg.kind, 3, msg.session, msg.fields, blobs))
        return payload

    with pytest.raises(AuthenticationError, match="party 3 carry no valid signature") as info:
        secure_sum(updates, seed=0, round=0, clip=CLIP, sign=True, intercept=substitute_keys, nonce=NONCE)
    assert info.value.sender == 3


def test_the_sum_is_deterministic_although_every_secret_is_fresh():
    updates = make_updates(25, 5000)
    a = secure_sum(updates, seed=1, round=9, clip=CLIP)
    b = secure_sum(updates, seed=1, round=9, clip=CLIP)
    np.testing.assert_array_equal(a.sum, b.sum)
    plaintext_bytes = 5000 * 4
    assert plaintext_bytes < a.bytes_sent_per_party < 1.5 * plaintext_bytes
    assert a.bytes_server > 0


def test_secure_aggregator_is_the_weighted_mean():
    rng = np.random.default_rng(3)
    updates = (rng.normal(size=(30, 200)) * 0.1).astype(np.float32)
    weights = rng.integers(10, 500, size=30).astype(np.float64)
    ctx = RoundContext(round=4, party_ids=np.arange(30), steps=np.ones(30, dtype=np.int64))
    agg = SecureAggregator(clip=1.0, seed=11)
    got = agg(updates, weights, ctx)
    want = WeightedMean()(updates, weights, ctx)
    assert agg.name == "secagg" and got.dtype == np.float32 and got.shape == (200,)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert ctx.signals["secagg_survivor"].all()


def test_invalid_inputs_fail_early_with_the_parameter_named():
    updates = make_updates(5, 10)
    updates[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"parties \[3\]"):
        secure_sum(updates, seed=0, round=0, clip=CLIP)
    with pytest.raises(ValueError, match="at least 2 parties"):
        secure_sum(make_updates(1, 10), seed=0, round=0, clip=CLIP)
    with pytest.raises(ValueError, match="threshold_fraction"):
        secure_sum(make_updates(4, 10), seed=0, round=0, clip=CLIP, threshold_fraction=1.0)
    with pytest.raises(ValueError, match="dropout_after_masking"):
        secure_sum(make_updates(4, 10), seed=0, round=0, clip=CLIP, dropout_after_masking=np.ones(3, bool))


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.49])
def test_thresholds_a_lying_server_could_exploit_are_refused(fraction):
    # The reviewer's attack: n = 10, k = 9, t = 3 let a server announce a survivor as dropped to 3 neighbours
    # and as surviving to 3 others, collect both of its secrets and unmask its input.
    with pytest.raises(ValueError, match="t > k/2"):
        secure_sum(
            make_updates(10, 20), seed=0, round=0, clip=CLIP, neighbours=9, threshold_fraction=fraction
        )


@pytest.mark.parametrize("n", [3, 5, 10, 40, 200])
@pytest.mark.parametrize("fraction", [0.5, 0.6, 0.9, 0.99])
def test_at_every_accepted_threshold_two_disjoint_sets_of_t_neighbours_do_not_exist(n, fraction):
    from deai.privacy.secagg.config import SecAggConfig

    cfg = SecAggConfig.create(n, 4, seed=0, round=0, clip=CLIP, threshold_fraction=fraction)
    assert 2 * cfg.threshold > cfg.degree  # the condition under which the split-announcement attack fails
