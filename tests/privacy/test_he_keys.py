"""Key holders: the owner, and a committee holding XOR (n-of-n) or Shamir (t-of-n) shares of the key."""

import itertools

import numpy as np
import pytest
from scipy import stats

ts = pytest.importorskip("tenseal")  # optional dependency: skip, not fail, without it

from deai.privacy.he import (  # noqa: E402
    KeyCommittee,
    KeyShare,
    aggregate_ciphertexts,
    combine_secret,
    encrypt_update,
    make_secret_context,
    split_secret,
)
from deai.privacy.he.keys import serialize_secret  # noqa: E402

ATOL = 1e-5  # see test_he_vectors.py


def _byte_uniformity_pvalue(data: bytes) -> float:
    return stats.chisquare(np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)).pvalue


def _encrypted_sum(committee, parties=3, dim=500):
    updates = np.random.default_rng(0).uniform(-1, 1, (parties, dim))
    payloads = {p: encrypt_update(u, committee.public_context) for p, u in enumerate(updates)}
    result = aggregate_ciphertexts(payloads, committee.public_context, dim=dim)
    return result.sum_payload, updates.sum(axis=0)


@pytest.fixture(scope="module")
def xor_committee():
    return KeyCommittee.deal(3)


def test_all_n_members_together_decrypt_the_sum(xor_committee):
    assert xor_committee.scheme == "xor"
    payload, truth = _encrypted_sum(xor_committee)
    np.testing.assert_allclose(xor_committee.decrypt_sum(payload), truth, rtol=0, atol=ATOL)


def test_a_single_members_share_cannot_decrypt(xor_committee):
    payload, _ = _encrypted_sum(xor_committee)
    with pytest.raises(ValueError, match="cannot reconstruct"):
        xor_committee.decrypt_sum(payload, members=[1])
    for member in xor_committee.members:  # nor is a share itself a usable key
        with pytest.raises((ValueError, RuntimeError)):
            ts.context_from(xor_committee.share(member).data)


def test_any_n_minus_1_xor_shares_look_uniform_and_do_not_load_as_a_key(xor_committee):
    another_key = serialize_secret(make_secret_context())
    assert _byte_uniformity_pvalue(another_key) < 1e-12  # the test has power: a serialized key is not uniform
    n = xor_committee.size
    for subset in itertools.combinations(xor_committee.members, n - 1):
        shares = [xor_committee.share(m) for m in subset]
        combined = np.bitwise_xor.reduce([np.frombuffer(s.data, dtype=np.uint8) for s in shares]).tobytes()
        for data in [s.data for s in shares] + [combined]:
            assert _byte_uniformity_pvalue(data) > 1e-6
        with pytest.raises((ValueError, RuntimeError)):
            ts.context_from(combined)


def test_xor_shares_of_two_different_secrets_are_identically_distributed():
    # Perfect secrecy of n-1 shares: compare their byte distributions for an all-zero and an all-0xFF secret.
    zeros = b"".join(s.data for s in split_secret(bytes(20_000), 3, 3)[:2])
    ones = b"".join(s.data for s in split_secret(b"\xff" * 20_000, 3, 3)[:2])
    counts = [np.bincount(np.frombuffer(d, dtype=np.uint8), minlength=256) for d in (zeros, ones)]
    assert stats.chi2_contingency(np.stack(counts)).pvalue > 1e-6


@pytest.mark.parametrize(("size", "threshold"), [(3, 3), (5, 3), (4, 2)])
def test_split_and_combine_round_trip_for_odd_lengths(size, threshold):
    secret = np.random.default_rng(size).bytes(1001)
    shares = split_secret(secret, size, threshold)
    for subset in itertools.combinations(shares, threshold):
        assert combine_secret(list(subset), size, threshold, len(secret)) == secret


def test_shamir_committee_decrypts_with_every_t_subset_and_not_with_fewer():
    committee = KeyCommittee.deal(4, threshold=2)
    assert committee.scheme == "shamir"
    payload, truth = _encrypted_sum(committee)
    for subset in itertools.combinations(committee.members, 2):
        np.testing.assert_allclose(committee.decrypt_sum(payload, members=subset), truth, rtol=0, atol=ATOL)
    with pytest.raises(ValueError, match="cannot reconstruct"):
        committee.decrypt_sum(payload, members=[3])


def test_shamir_with_fewer_than_t_shares_yields_no_key():
    secret = np.random.default_rng(0).bytes(1000)
    shares = split_secret(secret, 5, 3)
    with pytest.raises(ValueError, match="inconsistent"):  # interpolating 2 shares of a degree-2 sharing
        combine_secret(shares[:2], 5, 2, len(secret))


def test_a_tampered_share_is_rejected_naming_the_member(xor_committee):
    payload, _ = _encrypted_sum(xor_committee)
    good = [xor_committee.share(m) for m in xor_committee.members]
    bad = KeyShare(2, bytes(len(good[1].data)))
    with pytest.raises(ValueError, match="member 2"):
        xor_committee.combine([good[0], bad, good[2]])


@pytest.mark.parametrize(("size", "threshold"), [(1, None), (3, 1), (3, 4)])
def test_invalid_committees_are_refused(size, threshold):
    with pytest.raises(ValueError, match="committee|threshold"):
        KeyCommittee.deal(size, threshold=threshold)
