"""Encrypted update vectors: packing into CKKS ciphertexts, the wire format, chunk-wise summation.

A ``dim``-vector becomes ``ceil(dim / slots)`` CKKS ciphertexts (4096 slots at N = 8192, so
100,000 values take 25). What travels is one byte string per party (:class:`EncryptedVector`): a
header (magic, context fingerprint, dim, ciphertext count and sizes) followed by the TenSEAL
serializations. The aggregator checks every party's bytes against its public context before adding
anything, so a bad party is rejected by name and the sum of the others still comes out.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import tenseal as ts

from deai.privacy.he.context import FINGERPRINT_BYTES, PublicContext

log = logging.getLogger(__name__)

MAGIC = b"DHE1"
_HEADER = struct.Struct(f"<4s{FINGERPRINT_BYTES}sQI")  # magic, fingerprint, dim, ciphertext count
_LENGTH = struct.Struct("<Q")


class RejectedCiphertextError(ValueError):
    """A party's encrypted vector is unusable; ``party_id`` names the sender."""

    def __init__(self, party_id: int, reason: str) -> None:
        super().__init__(f"party {party_id}: {reason}")
        self.party_id = party_id
        self.reason = reason


@dataclass(frozen=True)
class EncryptedVector:
    """A packed, encrypted vector as it travels: ``to_bytes`` / ``from_bytes`` are exact inverses.

    ``chunks[i]`` is one serialized CKKS ciphertext holding values ``[i * slots, (i + 1) * slots)``.
    """

    fingerprint: bytes
    dim: int
    chunks: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        header = _HEADER.pack(MAGIC, self.fingerprint, self.dim, len(self.chunks))
        lengths = b"".join(_LENGTH.pack(len(c)) for c in self.chunks)
        return header + lengths + b"".join(self.chunks)

    @classmethod
    def from_bytes(cls, data: bytes) -> EncryptedVector:
        """Parse the framing (not the ciphertexts); ``ValueError`` says what is malformed."""
        data = bytes(data)
        if len(data) < _HEADER.size:
            raise ValueError(f"{len(data)} bytes is shorter than the {_HEADER.size}-byte header")
        magic, fingerprint, dim, count = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise ValueError(f"bad magic {magic!r}; expected {MAGIC!r}")
        offset = _HEADER.size
        if len(data) < offset + count * _LENGTH.size:
            raise ValueError(f"truncated: header announces {count} ciphertexts")
        lengths = [_LENGTH.unpack_from(data, offset + i * _LENGTH.size)[0] for i in range(count)]
        offset += count * _LENGTH.size
        if offset + sum(lengths) != len(data):
            raise ValueError(
                f"ciphertext sizes add up to {sum(lengths)} bytes but {len(data) - offset} follow the header"
            )
        chunks = []
        for length in lengths:
            chunks.append(data[offset : offset + length])
            offset += length
        return cls(fingerprint, dim, tuple(chunks))


def encrypt_update(update: np.ndarray, public_context: PublicContext, *, weight: float = 1.0) -> bytes:
    """Encrypt ``weight * update`` (a party's weight-scaled update) into its wire bytes.

    Parameters
    ----------
    update : ``[dim]`` finite values.
    public_context : the task's public context (no secret key needed to encrypt).
    weight : public multiplier applied before encryption, e.g. the party's example count, so that
        the decrypted sum divided by the total weight is the weighted mean.

    Raises ``ValueError`` if a scaled value exceeds ``params.max_abs_value`` (it would wrap around
    the modulus and decrypt to garbage).
    """
    values = np.asarray(update, dtype=np.float64).reshape(-1) * float(weight)
    if values.size == 0:
        raise ValueError("update is empty")
    if not np.all(np.isfinite(values)):
        raise ValueError("update (times weight) contains NaN or infinity")
    params = public_context.params
    if np.abs(values).max() > params.max_abs_value:
        raise ValueError(
            f"|weight * update| reaches {np.abs(values).max():.3g}, above the {params.max_abs_value:.3g} "
            "these CKKS parameters can decrypt; normalize the weights or use a larger first prime"
        )
    slots = params.slots
    chunks = tuple(
        ts.ckks_vector(public_context.context, values[start : start + slots]).serialize()
        for start in range(0, values.size, slots)
    )
    return EncryptedVector(public_context.fingerprint, values.size, chunks).to_bytes()


def load_encrypted(
    payload: bytes, context: ts.Context, *, fingerprint: bytes, dim: int, slots: int
) -> list[ts.CKKSVector]:
    """Deserialize and check one encrypted vector; ``ValueError`` explains the first problem found.

    Checks: framing, context fingerprint, ``dim``, ciphertext count ``ceil(dim / slots)``, that each
    ciphertext parses under ``context`` (SEAL verifies parameters and coefficient ranges), holds the
    expected number of values, is a fresh two-component ciphertext at the top level, and has the
    context's scale. A well-formed ciphertext of the wrong *values* cannot be detected here.
    """
    vector = EncryptedVector.from_bytes(payload)
    if vector.fingerprint != fingerprint:
        raise ValueError("encrypted under a different public context (fingerprint mismatch)")
    if vector.dim != dim:
        raise ValueError(f"vector has dim {vector.dim}; expected {dim}")
    expected = -(-dim // slots)
    if len(vector.chunks) != expected:
        raise ValueError(f"{len(vector.chunks)} ciphertexts; dim {dim} packs into {expected}")
    top_level = context.seal_context().data.first_parms_id()
    loaded = []
    for i, chunk in enumerate(vector.chunks):
        try:
            ciphertext = ts.ckks_vector_from(context, chunk)
        except Exception as exc:  # TenSEAL raises ValueError or RuntimeError by where parsing fails
            raise ValueError(f"ciphertext {i} of {expected} does not deserialize: {exc}") from exc
        want = min(slots, dim - i * slots)
        if ciphertext.size() != want:
            raise ValueError(f"ciphertext {i} holds {ciphertext.size()} values; expected {want}")
        (raw,) = ciphertext.ciphertext()
        if raw.size() != 2 or raw.parms_id() != top_level or raw.scale != context.global_scale:
            raise ValueError(
                f"ciphertext {i} does not match this context's level and scale "
                f"(components {raw.size()}, scale 2^{np.log2(raw.scale):.1f})"
            )
        loaded.append(ciphertext)
    return loaded


@dataclass
class AggregateResult:
    """The encrypted sum (wire bytes, for the key holder), whose updates it contains, and who was rejected."""

    sum_payload: bytes
    included: list[int]
    rejected: dict[int, RejectedCiphertextError] = field(default_factory=dict)


def aggregate_ciphertexts(
    payloads: Mapping[int, bytes], public_context: PublicContext, *, dim: int
) -> AggregateResult:
    """Sum the parties' encrypted vectors chunk-wise without decrypting anything.

    Parameters
    ----------
    payloads : party id -> that party's bytes from :func:`encrypt_update`.
    public_context : the aggregator's context; it holds no secret key.
    dim : the update dimension every party must send.

    A party whose bytes fail :func:`load_encrypted` is left out whole (never partly added), logged,
    and listed in ``rejected`` with an error naming it. Raises ``ValueError`` if nobody is left.
    """
    params = public_context.params
    total: list[ts.CKKSVector] | None = None
    included: list[int] = []
    rejected: dict[int, RejectedCiphertextError] = {}
    for party_id, payload in payloads.items():
        try:
            vectors = load_encrypted(
                payload,
                public_context.context,
                fingerprint=public_context.fingerprint,
                dim=dim,
                slots=params.slots,
            )
        except ValueError as exc:
            error = RejectedCiphertextError(party_id, str(exc))
            log.warning("rejected encrypted update: %s", error)
            rejected[party_id] = error
            continue
        if total is None:
            total = vectors
        else:
            for acc, vector in zip(total, vectors, strict=True):
                acc.add_(vector)
        included.append(party_id)
    if total is None:
        reasons = "; ".join(str(e) for e in rejected.values()) or "no payloads"
        raise ValueError(f"no valid encrypted update to aggregate ({reasons})")
    summed = EncryptedVector(public_context.fingerprint, dim, tuple(v.serialize() for v in total))
    return AggregateResult(summed.to_bytes(), included, rejected)


def decrypt_vector(payload: bytes, secret_context: ts.Context, *, fingerprint: bytes) -> np.ndarray:
    """Decrypt an encrypted vector (usually a sum) with a context holding the secret key -> float64 ``[dim]``.

    Only the ``dim`` real coordinates come back; the unused slots of the last ciphertext decrypt to
    pure noise and are dropped rather than released.
    """
    if not secret_context.has_secret_key():
        raise ValueError("this context holds no secret key and cannot decrypt")
    params_slots = secret_context.seal_context().data.key_context_data().parms().poly_modulus_degree() // 2
    vector = EncryptedVector.from_bytes(payload)
    if vector.fingerprint != fingerprint:
        raise ValueError("the vector was encrypted under a different public context than this key's")
    vectors = load_encrypted(
        payload, secret_context, fingerprint=fingerprint, dim=vector.dim, slots=params_slots
    )
    return np.concatenate([np.asarray(v.decrypt(), dtype=np.float64) for v in vectors])[: vector.dim]
