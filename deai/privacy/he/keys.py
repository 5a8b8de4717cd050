"""Who holds the CKKS secret key: the task owner alone, or a committee holding shares of it.

TenSEAL (SEAL) has no threshold or multiparty CKKS: no distributed key generation and no partial
decryptions. :class:`KeyCommittee` therefore secret-shares the *serialized secret key*, n-of-n by
XOR (every member needed) or t-of-n by Shamir (Shamir, CACM 1979; ``deai.privacy.secagg.shamir``).
Fewer shares than the threshold reveal nothing about the key. But the key exists whole twice:

- at the dealer, who generates it, splits it and must forget it (a trusted setup);
- at the combiner, who gathers the shares to decrypt the aggregate and sees the key at that moment.
  Whoever combines must not also hold the parties' individual ciphertexts (so never the aggregator),
  or it could decrypt them too. A fresh key per round limits the exposure to that round.

What the committee protects, plainly: the key at rest (a member who loses its share, or fewer than
``threshold`` colluding members, learn nothing). It does not protect the parties against the dealer,
nor against whoever combines the shares; neither may also hold the individual ciphertexts.

Releases are flooded. An exact CKKS decryption leaks its error term, from which the secret key can
be recovered (Li and Micciancio 2021, "On the Security of Homomorphic Encryption on Approximate
Numbers"), and the aggregator that receives the decrypted sum holds every party's ciphertext. So the
key holder never releases a bare decryption: :func:`decrypt_sum` adds discrete Gaussian noise of
std ``2^flooding_bits`` times a bound on the decryption error (:func:`decryption_error_bound`) from
the OS's CSPRNG, hiding the error up to a statistical distance of about ``2^-flooding_bits`` per
coordinate. The holders' own ``decrypt_sum`` methods return the bare decryption and are for the
holder only.

Real threshold CKKS (e.g. OpenFHE's multiparty CKKS: joint key generation, partial decryptions with
noise flooding) removes the dealer and the combiner: no one ever holds the key. Use it where the
combiner cannot be trusted to forget.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import tenseal as ts

from deai.checks import check_count
from deai.privacy.dp.sampling import SystemBits, lattice_gaussian
from deai.privacy.he.context import CKKSParams, PublicContext, make_secret_context
from deai.privacy.he.vectors import decrypt_vector
from deai.privacy.secagg import shamir


class KeyHolder(Protocol):
    """Anything that hands out a public context and decrypts sums encrypted under it."""

    public_context: PublicContext

    def decrypt_sum(self, sum_payload: bytes) -> np.ndarray: ...


# The bits of statistical distance by which flooding hides a decryption's error (see the module docs).
FLOODING_BITS = 20
# Measured at deai's default parameters: one fresh ciphertext's slot error has std ~ 16 sqrt(N) / scale
# (1.3e-9 at N = 8192, scale 2^40); errors of a sum of n add, so its std is ~ sqrt(n) times that.
_FRESH_ERROR_STD_PER_SQRT_N = 16.0
_ERROR_BOUND_SIGMAS = 10.0


def decryption_error_bound(params: CKKSParams, ciphertexts_summed: int) -> float:
    """A bound (10 standard deviations) on one slot's CKKS error in a sum of fresh ciphertexts."""
    n = max(int(ciphertexts_summed), 1)
    std = _FRESH_ERROR_STD_PER_SQRT_N * math.sqrt(params.poly_modulus_degree) / 2.0**params.scale_bits
    return _ERROR_BOUND_SIGMAS * std * math.sqrt(n)


def check_flooding_bits(bits: int) -> int:
    """An integer in [0, 40]: beyond 40 bits the flooding would swamp every value CKKS can hold."""
    if check_count("flooding_bits", bits) > 40:
        raise ValueError(f"flooding_bits must be an integer in [0, 40]; got {bits!r}")
    return int(bits)


def decrypt_sum(
    sum_payload: bytes, key_holder: KeyHolder, *, summed: int, flooding_bits: int = FLOODING_BITS
) -> np.ndarray:
    """The key holder's release of the encrypted sum: decrypted, then flooded (float64 ``[dim]``).

    ``summed`` is how many ciphertexts the sum may contain (the parties asked to encrypt: the key holder
    counts them itself); the flooding noise has std ``2^flooding_bits * decryption_error_bound``.
    """
    bits = check_flooding_bits(flooding_bits)
    exact = key_holder.decrypt_sum(sum_payload)
    sigma = 2.0**bits * decryption_error_bound(key_holder.public_context.params, summed)
    return lattice_gaussian(exact[None, :], 1.0, sigma, np.zeros(1, np.int64), SystemBits())[0]


def serialize_secret(secret_context: ts.Context) -> bytes:
    """Parameters and secret key only (no public or evaluation keys): the material a committee shares."""
    return secret_context.serialize(
        save_public_key=False, save_secret_key=True, save_galois_keys=False, save_relin_keys=False
    )


class KeyOwner:
    """The task owner holds the secret key; everyone else gets :attr:`public_context`.

    Trust: the owner must not receive individual parties' ciphertexts (it could decrypt them); it
    receives only the aggregator's sum. Parties and aggregator get ``public_context.data``.
    """

    def __init__(self, params: CKKSParams | None = None) -> None:
        self._secret_context = make_secret_context(params)
        self.public_context = PublicContext.of(self._secret_context)

    def decrypt_sum(self, sum_payload: bytes) -> np.ndarray:
        return decrypt_vector(sum_payload, self._secret_context, fingerprint=self.public_context.fingerprint)


@dataclass(frozen=True)
class KeyShare:
    """What committee member ``member`` (1-based) stores: a share of the serialized secret key."""

    member: int
    data: bytes


def split_secret(secret: bytes, size: int, threshold: int) -> list[KeyShare]:
    """Shares for members ``1..size``: XOR (n-of-n) when ``threshold == size``, else Shamir t-of-n.

    XOR: members ``1..n-1`` get independent uniform strings, member ``n`` the secret XOR all of them,
    so any ``n - 1`` shares are uniform and independent of the secret. Shamir: 16-bit chunks of the
    secret as GF(2^31 - 1) elements, each share 4 bytes per chunk.
    """
    _check_committee(size, threshold)
    if threshold == size:
        pads = [os.urandom(len(secret)) for _ in range(size - 1)]
        last = np.frombuffer(secret, dtype=np.uint8).copy()
        for pad in pads:
            last ^= np.frombuffer(pad, dtype=np.uint8)
        return [KeyShare(i + 1, pad) for i, pad in enumerate(pads)] + [KeyShare(size, last.tobytes())]
    padded = secret + b"\x00" * (len(secret) % 2)
    points = np.arange(1, size + 1, dtype=np.uint64)
    shares = shamir.split(shamir.bytes_to_field(padded), threshold, points)
    return [KeyShare(i + 1, row.astype("<u4").tobytes()) for i, row in enumerate(shares)]


def combine_secret(shares: Sequence[KeyShare], size: int, threshold: int, length: int) -> bytes:
    """Inverse of :func:`split_secret` given at least ``threshold`` distinct members' shares."""
    _check_committee(size, threshold)
    members = [s.member for s in shares]
    if len(set(members)) != len(members) or not all(1 <= m <= size for m in members):
        raise ValueError(f"shares must come from distinct members in 1..{size}; got {members}")
    if len(shares) < threshold:
        raise ValueError(f"{len(shares)} shares cannot reconstruct the key; the committee needs {threshold}")
    if threshold == size:
        secret = np.zeros(length, dtype=np.uint8)
        for share in shares:
            secret ^= np.frombuffer(share.data, dtype=np.uint8)
        return secret.tobytes()
    chosen = shares[:threshold]
    points = np.array([s.member for s in chosen], dtype=np.uint64)
    rows = np.stack([np.frombuffer(s.data, dtype="<u4").astype(np.uint64) for s in chosen])
    return shamir.field_to_bytes(shamir.reconstruct(points, rows))[:length]


def _check_committee(size: int, threshold: int) -> None:
    if size < 2:
        raise ValueError(f"a key committee needs at least 2 members; got committee_size={size}")
    if not 2 <= threshold <= size:
        raise ValueError(f"threshold must be in [2, {size}] (committee size); got {threshold}")


class KeyCommittee:
    """A committee of ``size`` members holding shares of the secret key; see the module docstring.

    Create with :meth:`deal`. ``threshold`` members (all of them by default: XOR n-of-n) must hand
    their shares to a combiner to decrypt. The dealer publishes a SHA-256 digest of every share, so a
    member who hands in a wrong share is named instead of silently breaking the key.

    This object simulates dealer, members and combiner in one process and so holds every share; in a
    deployment each member stores only ``committee.share(member)``.
    """

    def __init__(
        self,
        public_context: PublicContext,
        shares: Sequence[KeyShare],
        *,
        threshold: int,
        secret_length: int,
    ) -> None:
        self.public_context = public_context
        self.size = len(shares)
        self.threshold = threshold
        self.secret_length = secret_length
        self._shares = {s.member: s for s in shares}
        self.share_digests = {s.member: hashlib.sha256(s.data).digest() for s in shares}
        _check_committee(self.size, threshold)

    @classmethod
    def deal(
        cls, size: int = 3, *, threshold: int | None = None, params: CKKSParams | None = None
    ) -> KeyCommittee:
        """Generate a key, split it among ``size`` members (``threshold`` None: n-of-n XOR), forget it."""
        threshold = size if threshold is None else threshold
        _check_committee(size, threshold)
        secret_context = make_secret_context(params)
        public_context = PublicContext.of(secret_context)
        secret = serialize_secret(secret_context)
        del secret_context  # the dealer keeps only the public part (Python cannot wipe the memory)
        shares = split_secret(secret, size, threshold)
        return cls(public_context, shares, threshold=threshold, secret_length=len(secret))

    @property
    def scheme(self) -> str:
        return "xor" if self.threshold == self.size else "shamir"

    @property
    def members(self) -> list[int]:
        return sorted(self._shares)

    def share(self, member: int) -> KeyShare:
        """The share member ``member`` holds."""
        if member not in self._shares:
            raise ValueError(f"no committee member {member}; members are {self.members}")
        return self._shares[member]

    def combine(self, shares: Sequence[KeyShare]) -> ts.Context:
        """The combiner's step: check each share against its digest, rebuild the secret context.

        Raises ``ValueError`` naming a member whose share does not match its digest, or when fewer
        than ``threshold`` shares are given.
        """
        for share in shares:
            if hashlib.sha256(share.data).digest() != self.share_digests.get(share.member):
                raise ValueError(
                    f"committee member {share.member} handed in a share that does not match its digest"
                )
        secret = combine_secret(shares, self.size, self.threshold, self.secret_length)
        return ts.context_from(secret)

    def decrypt_sum(self, sum_payload: bytes, members: Sequence[int] | None = None) -> np.ndarray:
        """Decrypt with the shares of ``members`` (default: the first ``threshold``); the combined key
        is dropped afterwards."""
        members = self.members[: self.threshold] if members is None else list(members)
        secret_context = self.combine([self.share(m) for m in members])
        return decrypt_vector(sum_payload, secret_context, fingerprint=self.public_context.fingerprint)
