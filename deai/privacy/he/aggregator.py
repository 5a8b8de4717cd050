"""Homomorphically encrypted weighted mean behind deai's aggregator contract.

Each party encrypts ``w_u * x_u`` (public example count times its update) under CKKS with a public
key, the aggregator adds the ciphertexts without being able to decrypt them, and the key holder
decrypts only the sum and divides by the included parties' total weight: FedAvg's mean (McMahan et
al. 2017), computed as in Phong et al., "Privacy-Preserving Deep Learning via Additively
Homomorphic Encryption" (IEEE TIFS 2018), with CKKS in place of Paillier/LWE.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from deai.aggregate.base import RoundContext
from deai.privacy.he.context import CKKSParams, PublicContext
from deai.privacy.he.keys import (
    FLOODING_BITS,
    KeyCommittee,
    KeyHolder,
    KeyOwner,
    check_flooding_bits,
    decrypt_sum,
)
from deai.privacy.he.vectors import aggregate_ciphertexts, encrypt_update

log = logging.getLogger(__name__)

KEY_HOLDERS = ("owner", "committee")


@dataclass
class HEStats:
    """Costs of one :class:`HEAggregator` call. Times in seconds; bytes as they would travel."""

    parties: int
    dim: int
    slots: int
    ciphertexts_per_party: int
    bytes_per_party: float  # mean size of a party's encrypted update
    plaintext_bytes_per_party: int  # dim float32 values
    expansion: float  # bytes_per_party / plaintext_bytes_per_party
    public_context_bytes: int  # sent once per key to every party and the aggregator
    keygen_s: float  # key generation (and dealing the shares, for a committee)
    encrypt_s_per_party: float  # mean over parties, packing and serialization included
    aggregate_s: float  # deserializing, checking and adding every party's ciphertexts
    decrypt_s: float  # combining the committee's shares (if any) and decrypting the sum
    rejected: dict[int, str] = field(default_factory=dict)  # party id -> reason


class HEAggregator:
    """Weighted mean of updates, aggregated under CKKS homomorphic encryption.

    Parameters
    ----------
    key_holder : ``"owner"`` (the task owner holds the secret key) or ``"committee"`` (the key is
        split among ``committee_size`` members; see :mod:`deai.privacy.he.keys` for what that does and
        does not protect).
    committee_size : members of the key committee (at least 2).
    committee_threshold : members needed to decrypt; ``None`` means all of them (XOR n-of-n),
        fewer uses Shamir t-of-n.
    params : CKKS parameters; default :class:`CKKSParams` (N = 8192, [60, 40, 40, 60], scale 2^40).
    flooding_bits : the key holder floods every decryption it releases with noise ``2^flooding_bits``
        times the decryption-error bound (Li and Micciancio 2021; :func:`deai.privacy.he.keys.decrypt_sum`).
        At the defaults and 100 parties that is std 0.14 on the *sum*, 1.4e-3 on a uniform mean.

    A fresh key is generated every call (about 30 ms), so a key seen by a committee's combiner, or
    recovered from one released aggregate, is worthless in any other round. After each call
    ``last_stats`` holds an :class:`HEStats`, and ``ctx.signals["he_included"]`` marks whose updates
    the mean contains: a party whose update cannot be encrypted (non-finite, out of range) or whose
    ciphertext is rejected is logged, listed in ``last_stats.rejected`` and left out.

    This simulation runs parties, aggregator and key holder in one process; the bytes exchanged are
    the real ones (``encrypt_update`` -> ``aggregate_ciphertexts`` -> ``decrypt_sum``).
    """

    name = "he_ckks"
    weights_parties = True  # each party's share of the aggregate is its weight
    private = True  # sums ciphertexts: no one sees an individual update

    def __init__(
        self,
        key_holder: str = "owner",
        committee_size: int = 3,
        committee_threshold: int | None = None,
        params: CKKSParams | None = None,
        flooding_bits: int = FLOODING_BITS,
    ) -> None:
        if key_holder not in KEY_HOLDERS:
            raise ValueError(f"key_holder must be one of {KEY_HOLDERS}; got {key_holder!r}")
        if key_holder == "committee":
            if committee_size < 2:
                raise ValueError(f"committee_size must be at least 2; got {committee_size}")
            if committee_threshold is not None and not 2 <= committee_threshold <= committee_size:
                raise ValueError(
                    f"committee_threshold must be in [2, committee_size={committee_size}] or None; "
                    f"got {committee_threshold}"
                )
        self.key_holder = key_holder
        self.committee_size = committee_size
        self.committee_threshold = committee_threshold
        self.params = params or CKKSParams()
        self.flooding_bits = check_flooding_bits(flooding_bits)
        self.last_stats: HEStats | None = None

    def _new_key_holder(self) -> KeyHolder:
        if self.key_holder == "owner":
            return KeyOwner(self.params)
        return KeyCommittee.deal(self.committee_size, threshold=self.committee_threshold, params=self.params)

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        updates = np.asarray(updates)
        weights = np.asarray(weights, dtype=np.float64)
        if updates.ndim != 2 or updates.shape[0] == 0 or updates.shape[1] == 0:
            raise ValueError(f"updates must be a non-empty [parties, dim] matrix; got shape {updates.shape}")
        parties, dim = updates.shape
        if weights.shape != (parties,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(
                f"weights must be {parties} finite non-negative numbers; got shape {weights.shape}"
            )
        if weights.sum() <= 0:
            raise ValueError("aggregation weights must sum to a positive number")
        if np.unique(ctx.party_ids).size != parties:
            raise ValueError(f"ctx.party_ids must hold {parties} distinct ids, one per row of updates")
        finite = np.all(np.isfinite(updates), axis=1)  # other rows fail at their party, named below
        bound = np.abs(updates[finite]).max(initial=0.0) * weights[finite].sum()
        if bound > self.params.max_abs_value:
            raise ValueError(
                f"the weighted sum may reach {bound:.3g}, above the {self.params.max_abs_value:.3g} "
                "these CKKS parameters can decrypt; use a larger first prime (params) or smaller weights"
            )

        rows = {int(pid): updates[p] for p, pid in enumerate(ctx.party_ids)}
        return self.aggregate_over(lambda kind, msgs: encrypt_replies(kind, msgs, rows), dim, weights, ctx)

    def aggregate_over(
        self, exchange: Callable[[str, Mapping[int, bytes]], dict[int, bytes]], dim: int, weights: np.ndarray,
        ctx: RoundContext,
    ) -> np.ndarray:  # fmt: skip
        """The aggregator's and key holder's side: send each party the public context and its weight
        through ``exchange``, add the ciphertexts that come back, and decrypt only their sum."""
        weights = np.asarray(weights, dtype=np.float64)
        t0 = time.perf_counter()
        holder = self._new_key_holder()
        public_context = holder.public_context
        keygen_s = time.perf_counter() - t0
        ids = ctx.party_ids.tolist()
        t0 = time.perf_counter()
        payloads = exchange(
            HE_ENCRYPT,
            {
                pid: encrypt_request(public_context.data, float(w))
                for pid, w in zip(ids, weights, strict=True)
            },
        )
        encrypt_s = time.perf_counter() - t0
        unsent = {
            pid: "not encrypted (non-finite or out of range at the party)"
            for pid in ids
            if pid not in payloads
        }
        for pid, why in unsent.items():
            log.warning("party %s could not encrypt its update: %s", pid, why)
        if not payloads:
            raise ValueError(f"no party could encrypt its update: {unsent}")
        t0 = time.perf_counter()
        result = aggregate_ciphertexts(payloads, public_context, dim=dim)
        aggregate_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        total = decrypt_sum(result.sum_payload, holder, summed=len(ids), flooding_bits=self.flooding_bits)
        decrypt_s = time.perf_counter() - t0

        included = np.isin(ctx.party_ids, np.asarray(result.included, dtype=ctx.party_ids.dtype))
        ctx.signals["he_included"] = included
        plaintext_bytes = dim * np.dtype(np.float32).itemsize
        bytes_per_party = float(np.mean([len(b) for b in payloads.values()]))
        self.last_stats = HEStats(
            parties=len(ids),
            dim=dim,
            slots=self.params.slots,
            ciphertexts_per_party=self.params.ciphertexts_for(dim),
            bytes_per_party=bytes_per_party,
            plaintext_bytes_per_party=plaintext_bytes,
            expansion=bytes_per_party / plaintext_bytes,
            public_context_bytes=len(public_context.data),
            keygen_s=keygen_s,
            encrypt_s_per_party=encrypt_s / max(1, len(payloads)),
            aggregate_s=aggregate_s,
            decrypt_s=decrypt_s,
            rejected=unsent | {pid: err.reason for pid, err in result.rejected.items()},
        )
        included_weight = weights[included].sum()
        if included_weight <= 0:
            raise ValueError(f"every party with positive weight was rejected: {self.last_stats.rejected}")
        return (total / included_weight).astype(np.float32)


HE_ENCRYPT = "he_encrypt"  # aggregator -> party: the public context and the party's public weight


def encrypt_request(public_context: bytes, weight: float) -> bytes:
    return struct.pack("<d", weight) + public_context


def encrypt_replies(
    kind: str, messages: Mapping[int, bytes], rows: Mapping[int, np.ndarray]
) -> dict[int, bytes]:
    """The parties' side: each encrypts its own ``weight * update`` under the public context it was sent.

    A party whose update cannot be encrypted (non-finite, or out of the range the parameters decrypt)
    sends nothing and logs why; the aggregator lists it as not encrypted.
    """
    if kind != HE_ENCRYPT:
        raise ValueError(f"unknown HE stage {kind!r}")
    contexts: dict[bytes, PublicContext] = {}
    out = {}
    for pid, message in messages.items():
        (weight,), data = struct.unpack("<d", message[:8]), bytes(message[8:])
        if data not in contexts:
            contexts[data] = PublicContext.from_bytes(data)
        try:
            out[pid] = encrypt_update(rows[pid], contexts[data], weight=weight)
        except ValueError as exc:
            log.warning("party %s could not encrypt its update: %s", pid, exc)
    return out
