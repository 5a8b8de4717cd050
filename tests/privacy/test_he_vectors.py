"""Packing, the wire format, encrypted summation and the rejection of bad ciphertexts.

Precision: scale 2^40 leaves about 1e-8 absolute error per ciphertext, so sums of a few vectors with
values in [-1, 1] (times weights up to 10) are checked to an absolute 1e-5, a thousand-fold margin.
"""

import math

import numpy as np
import pytest

ts = pytest.importorskip("tenseal")  # optional dependency: skip, not fail, without it

from deai.privacy.he import (  # noqa: E402
    CKKSParams,
    EncryptedVector,
    KeyOwner,
    aggregate_ciphertexts,
    decrypt_vector,
    encrypt_update,
)
from deai.privacy.he.vectors import load_encrypted  # noqa: E402

ATOL = 1e-5


@pytest.fixture(scope="module")
def owner():
    return KeyOwner()


def _updates(parties, dim, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (parties, dim)).astype(np.float32)


def test_decrypted_sum_equals_the_plaintext_weighted_sum(owner):
    updates, weights = _updates(4, 5000), np.array([1.0, 3.0, 0.5, 10.0])
    payloads = {
        pid: encrypt_update(u, owner.public_context, weight=w)
        for pid, u, w in zip([11, 12, 13, 14], updates, weights, strict=True)
    }
    result = aggregate_ciphertexts(payloads, owner.public_context, dim=5000)
    truth = (updates.astype(np.float64) * weights[:, None]).sum(axis=0)
    np.testing.assert_allclose(owner.decrypt_sum(result.sum_payload), truth, rtol=0, atol=ATOL)
    assert result.included == [11, 12, 13, 14] and result.rejected == {}


@pytest.mark.parametrize("dim", [1, 4095, 4096, 4097, 10_000])
def test_a_vector_packs_into_ceil_dim_over_slots_ciphertexts(owner, dim):
    public = owner.public_context
    payload = encrypt_update(np.zeros(dim), public)
    vector = EncryptedVector.from_bytes(payload)
    assert len(vector.chunks) == math.ceil(dim / public.params.slots)
    loaded = load_encrypted(payload, public.context, fingerprint=public.fingerprint, dim=dim, slots=4096)
    assert [v.size() for v in loaded] == [min(4096, dim - i * 4096) for i in range(len(loaded))]


def test_wire_format_round_trips():
    vector = EncryptedVector(b"f" * 16, 5, (b"abc", b"", b"defg"))
    assert EncryptedVector.from_bytes(vector.to_bytes()) == vector


def test_decrypting_with_the_public_context_fails(owner):
    payload = encrypt_update(np.ones(10), owner.public_context)
    with pytest.raises(ValueError, match="no secret key"):
        decrypt_vector(payload, owner.public_context.context, fingerprint=owner.public_context.fingerprint)


def _other_params_payload(owner, dim):
    # A real ciphertext under [60, 60], the fingerprint forged. SEAL's primes are deterministic, so it
    # parses as a valid ciphertext at the *lowest* level of [60, 40, 40, 60]: only the level check stops it.
    stranger = KeyOwner(CKKSParams.additive()).public_context
    vector = EncryptedVector.from_bytes(encrypt_update(np.ones(dim), stranger))
    return EncryptedVector(owner.public_context.fingerprint, dim, vector.chunks).to_bytes()


def _wrong_scale_payload(owner, dim):
    chunk = ts.ckks_vector(owner.public_context.context, [1.0] * dim, scale=2.0**30).serialize()
    return EncryptedVector(owner.public_context.fingerprint, dim, (chunk,)).to_bytes()


CORRUPTIONS = {
    "truncated": (lambda owner, good, dim: good[: len(good) // 2], "sizes add up"),
    "garbage": (lambda owner, good, dim: np.random.default_rng(1).bytes(len(good)), "magic"),
    "garbled ciphertext": (
        lambda owner, good, dim: good[:-2000] + bytes(2000),
        "does not deserialize",
    ),
    "other key": (
        lambda owner, good, dim: encrypt_update(np.ones(dim), KeyOwner().public_context),
        "different public context",
    ),
    "other parameters": (lambda owner, good, dim: _other_params_payload(owner, dim), "level"),
    "wrong scale": (lambda owner, good, dim: _wrong_scale_payload(owner, dim), "scale"),
    "wrong dim": (lambda owner, good, dim: encrypt_update(np.ones(dim + 1), owner.public_context), "dim"),
}


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_a_bad_ciphertext_is_rejected_naming_the_sender_and_the_rest_still_sums(owner, kind, caplog):
    dim = 300
    updates = _updates(3, dim, seed=2)
    payloads = {
        pid: encrypt_update(u, owner.public_context) for pid, u in zip([1, 2, 3], updates, strict=True)
    }
    corrupt, message = CORRUPTIONS[kind]
    payloads[2] = corrupt(owner, payloads[2], dim)

    result = aggregate_ciphertexts(payloads, owner.public_context, dim=dim)

    assert result.included == [1, 3]
    assert list(result.rejected) == [2]
    error = result.rejected[2]
    assert error.party_id == 2 and str(error).startswith("party 2:")
    assert message in str(error)
    assert "party 2" in caplog.text
    truth = updates[[0, 2]].astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(owner.decrypt_sum(result.sum_payload), truth, rtol=0, atol=ATOL)


def test_aggregating_with_every_party_rejected_raises_with_their_names(owner):
    with pytest.raises(ValueError, match="party 5: .*party 6: "):
        aggregate_ciphertexts({5: b"junk", 6: b"more junk"}, owner.public_context, dim=10)


def test_a_sum_from_another_key_is_not_decrypted(owner):
    stranger = KeyOwner()
    payload = encrypt_update(np.ones(10), stranger.public_context)
    with pytest.raises(ValueError, match="different public context"):
        owner.decrypt_sum(payload)
