"""Homomorphic-encryption aggregation: the aggregator adds encrypted updates it cannot read.

CKKS (Cheon, Kim, Kim and Song, ASIACRYPT 2017) through TenSEAL/Microsoft SEAL. Parties encrypt
their weight-scaled updates with a public key (:func:`encrypt_update`), packed ``slots`` values per
ciphertext; the aggregator sums the ciphertexts chunk-wise (:func:`aggregate_ciphertexts`); the key
holder decrypts only the sum (:func:`decrypt_sum`). :class:`HEAggregator` runs the three behind the
aggregator contract. Key holders: :class:`KeyOwner` (the task owner) or :class:`KeyCommittee` (the
serialized secret key split n-of-n by XOR or t-of-n by Shamir). Parameters: :class:`CKKSParams`.

Threat model
------------
Covered: an honest-but-curious aggregator (follows the protocol, reads everything it receives) and
anyone on the wire. They hold the public context and ciphertexts only, which are IND-CPA secure
under Ring-LWE (128-bit by the HE Security Standard for the default parameters): they learn nothing
about any update, nor about the sum. With a committee, fewer than ``threshold`` members, even
together with the aggregator, learn nothing about the key.

Not covered:
- Collusion between the aggregator and whoever can decrypt (the owner, ``threshold`` committee
  members, or the committee's combiner, who sees the whole key while decrypting): they can decrypt
  every party's ciphertext. Key generation is a trusted dealer; TenSEAL has no threshold CKKS.
- An actively malicious aggregator: the key holder decrypts what it is sent, so an aggregator that
  sends one party's ciphertext instead of the sum learns that update. Nothing proves the sum
  contains many parties; the aggregator may also drop parties.
- Malicious parties' inputs: any well-formed ciphertext of any values is accepted (no range or
  well-formedness proofs; the context fingerprint catches mistakes, not forgers). HE gives no
  Byzantine robustness, and robust aggregators that read individual updates cannot run on top of it.
- What is released: the sum itself (differences across rounds leak; use DP), and the decryption
  noise. Li and Micciancio (EUROCRYPT 2021) show that exact CKKS decryptions of a ciphertext the
  adversary holds reveal the secret key; the float32 mean keeps most noise bits of small
  coordinates, so rounding is no defence. Only the ``dim`` real coordinates are released (never the
  padding slots). Central DP noise added by the key holder before release, far above the ~1e-8
  CKKS error, also floods that noise; provable protection otherwise needs noise-flooding decryption
  (e.g. OpenFHE), which TenSEAL lacks.
- Metadata: who took part, weights (public example counts), dimension, timing.
- The simulation: ``HEAggregator`` runs parties, aggregator and key holder in one process.

Combining with other mechanisms
-------------------------------
Sound: clipping and local DP at the party before encryption; a weighted mean with public weights;
central DP by the key holder after decryption (see above). Unsound: anything at the aggregator that
needs individual updates (median, Krum, norm filters, anomaly detection).
"""

from deai.privacy.he.aggregator import HEAggregator, HEStats
from deai.privacy.he.context import CKKSParams, PublicContext, make_secret_context, serialize_public
from deai.privacy.he.keys import (
    KeyCommittee,
    KeyHolder,
    KeyOwner,
    KeyShare,
    combine_secret,
    decrypt_sum,
    split_secret,
)
from deai.privacy.he.vectors import (
    AggregateResult,
    EncryptedVector,
    RejectedCiphertextError,
    aggregate_ciphertexts,
    decrypt_vector,
    encrypt_update,
)

__all__ = [
    "AggregateResult",
    "CKKSParams",
    "EncryptedVector",
    "HEAggregator",
    "HEStats",
    "KeyCommittee",
    "KeyHolder",
    "KeyOwner",
    "KeyShare",
    "PublicContext",
    "RejectedCiphertextError",
    "aggregate_ciphertexts",
    "combine_secret",
    "decrypt_sum",
    "decrypt_vector",
    "encrypt_update",
    "make_secret_context",
    "serialize_public",
    "split_secret",
]
