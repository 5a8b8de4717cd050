"""A round's update commitments: one Merkle leaf per accepted update, and (with ``sign_updates``) each
leaf's party signature, so the ledger proves which party sent which update in which round.

A leaf is ``party:round:sha256(update bytes)``; the round's root is the RFC 6962 tree hash of its leaves
in the order the aggregator accepted them (:mod:`deai.verify.merkle`). The round result carries the root;
the ``commitments`` entry (signed updates only) carries every leaf with its signature, so :func:`check`
re-derives the root and checks each party's signature without the updates themselves.
"""

from __future__ import annotations

from typing import Any

from deai.messages import UpdateBatch, row_digests
from deai.verify.commit_reveal import commit_message, commitment
from deai.verify.identity import key_id, verify_signature
from deai.verify.merkle import merkle_root
from deai.verify.update_signing import update_message


def update_leaf(party_id: int, round_: int, digest: bytes) -> bytes:
    """One party's commitment leaf: its id, the round, the SHA-256 of its update's bytes."""
    return f"{party_id}:{round_}:{digest.hex()}".encode()


def updates_root(batch: UpdateBatch | None, round_: int, *, recompute: bool = False) -> str | None:
    """The Merkle root of a round's accepted updates (``recompute`` hashes the rows afresh)."""
    if batch is None:
        return None
    digests = row_digests(batch.deltas) if recompute else batch.digests()
    leaves = [update_leaf(int(p), round_, d) for p, d in zip(batch.party_ids, digests, strict=True)]
    return merkle_root(leaves).hex()


def commitments_body(batch: UpdateBatch, round_: int) -> dict[str, Any]:
    """The ``commitments`` entry of a round of signed updates: root and ``[party, digest, signature]``
    leaves, each followed under commit–reveal by ``commitment, commit signature, salt``."""
    leaves = [
        [int(p), d.hex(), s.hex()]
        for p, d, s in zip(batch.party_ids, batch.digests(), batch.signatures, strict=True)
    ]
    if batch.commits is not None:
        for leaf, c in zip(leaves, batch.commits, strict=True):
            leaf += [c.commitment.hex(), c.signature.hex(), c.salt.hex()]
    return {"root": updates_root(batch, round_), "leaves": leaves}


def check(
    body: dict[str, Any], task: str, round_: int, party_keys: dict[int, bytes], *, committed: bool = False
) -> str | None:
    """Why a ``commitments`` entry is wrong (a leaf unsigned by its party, a reveal that breaks its
    commitment, a root that is not the leaves'), or None when every signature verifies, every reveal
    matches its signed commitment (``committed``: the task uses commit–reveal) and the root is the
    Merkle root of the leaves."""
    try:
        leaves = [[int(x[0]), *(bytes.fromhex(v) for v in x[1:])] for x in body["leaves"]]
        root = str(body["root"])
    except (KeyError, TypeError, ValueError, IndexError):
        return "a commitments entry needs root and leaves of [party, digest, signature, ...] (hex)"
    for leaf in leaves:
        if len(leaf) != (6 if committed else 3):
            return f"a commitments leaf has {len(leaf)} fields, not {6 if committed else 3}"
        party, digest, sig = leaf[:3]
        key = party_keys.get(party)
        if key is None:
            return f"a commitment names party {party}, which never joined with a key"
        if not verify_signature(key, sig, update_message(task, round_, key_id(key), digest)):
            return f"party {party}'s signature on its round-{round_} update does not verify"
        if committed:
            c, c_sig, salt = leaf[3:]
            if not verify_signature(key, c_sig, commit_message(task, round_, key_id(key), c)):
                return f"party {party}'s round-{round_} commitment is not signed by it"
            if commitment(digest, salt) != c:
                return f"party {party}'s round-{round_} update was accepted but breaks its commitment"
    if merkle_root([update_leaf(x[0], round_, x[1]) for x in leaves]).hex() != root:
        return "the commitments' root is not the Merkle root of their leaves"
    return None
