"""Commit–reveal (``[ledger] commit_reveal``): a party commits to its update before it sees anyone's,
then reveals it; a reveal that breaks its commitment, or that copies an update already revealed, is
rejected, and where the ledger alone can prove it, recorded as slashing evidence.

The commitment is ``SHA-256(tag ‖ digest ‖ salt)`` over the update's digest and 16 random bytes, signed
by the party with the task, round and its key id (:func:`commit_message`). In the simulator a round's
two phases happen in one call, so the ordering (commit before anyone reveals) is enforced by the code
path, not by a deadline; over the network it is the round's commit deadline. What is checked:

* ``reveal_mismatch``: the committed hash is not that of the revealed update and salt. The party signed
  both the commitment and the revealed update, so the two signatures and the salt prove it: slashable.
* ``copied_update``: the revealed update equals (up to a positive scale: cosine >= 0.9999) an update
  another party had accepted in the last released round. An exact copy is provable from the ledger (the same
  digest in an earlier signed leaf of another party): slashable. A scaled copy needs the two vectors to
  show, so it is rejected and costs reputation, but no stake.

Under secure aggregation the commitment is to the masked input, inside the SecAgg+ session
(:func:`deai.privacy.secagg.phases.masked_commitment`), so nothing individual is exposed; see the
compatibility table in the README.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from deai.jsonio import canonical
from deai.messages import UpdateBatch
from deai.verify.identity import key_id, verify_signature
from deai.verify.update_signing import update_message

_COMMIT_TAG = b"deai-commit-v1\x00"
REVEAL_MISMATCH = "reveal_mismatch"
COPIED_UPDATE = "copied_update"
COPY_COSINE = 0.9999


def commitment(digest: bytes, salt: bytes) -> bytes:
    return hashlib.sha256(_COMMIT_TAG + digest + salt).digest()


def commit_message(task: str, round_: int, party_key: str, committed: bytes) -> bytes:
    text = canonical({"commitment": committed.hex(), "party": party_key, "round": round_, "task": task})
    return b"deai-commit-message-v1\x00" + text.encode()


@dataclass(frozen=True)
class Commit:
    """One party's commitment, its signature of it, and (revealed with the update) the salt."""

    commitment: bytes
    signature: bytes
    salt: bytes


def commit_rows(batch: UpdateBatch, identities: list[Any], ids: list[str], task: str) -> list[Commit]:
    """Phase 1 on the party side: commit to each row's digest with fresh salt (OS entropy)."""
    out = []
    for p, r, d in zip(batch.party_ids.tolist(), batch.round.tolist(), batch.digests(), strict=True):
        salt = secrets.token_bytes(16)
        c = commitment(d, salt)
        out.append(Commit(c, identities[p].sign(commit_message(task, int(r), ids[p], c)), salt))
    return out


def mismatch_evidence(task: str, round_: int, party_key: bytes, evidence: dict[str, str]) -> str | None:
    """Why ``evidence`` of a broken commitment does not prove it, or None when it does."""
    try:
        digest, salt = bytes.fromhex(evidence["digest"]), bytes.fromhex(evidence["salt"])
        committed = bytes.fromhex(evidence["commitment"])
        commit_sig, update_sig = (
            bytes.fromhex(evidence["commit_signature"]),
            bytes.fromhex(evidence["signature"]),
        )
    except (KeyError, TypeError, ValueError):
        return "reveal_mismatch evidence needs digest, salt, commitment and both signatures (hex)"
    kid = key_id(party_key)
    if not verify_signature(party_key, commit_sig, commit_message(task, round_, kid, committed)):
        return "the party never signed that commitment"
    if not verify_signature(party_key, update_sig, update_message(task, round_, kid, digest)):
        return "the party never signed that update"
    if commitment(digest, salt) == committed:
        return "the revealed update matches its commitment: nothing was broken"
    return None


class RevealCheck:
    """The server's phase-2 check of rows whose signatures already verified (see ``UpdateVerifier``)."""

    def __init__(self, public_keys: list[bytes], task: str) -> None:
        self.task, self.ids = task, [key_id(k) for k in public_keys]
        self.keys = public_keys
        self._previous: dict[bytes, int] = {}  # the last released round's accepted updates: digest -> party
        self._parties = np.zeros(0, dtype=np.int64)
        self._units: np.ndarray | None = None

    def remember(self, accepted: UpdateBatch) -> None:
        """The round's accepted updates, once released: what the next round's reveals must not copy."""
        self._units = _unit_rows(accepted.deltas)[1]
        self._parties = accepted.party_ids.copy()
        self._previous = {d: int(p) for p, d in zip(accepted.party_ids, accepted.digests(), strict=True)}

    def check(self, batch: UpdateBatch) -> tuple[np.ndarray, dict[int, str], dict[int, dict[str, Any]]]:
        """Rows to reject, why, and the slashing evidence of those the ledger can prove."""
        bad = np.zeros(len(batch), dtype=bool)
        reasons: dict[int, str] = {}
        evidence: dict[int, dict[str, Any]] = {}
        commits = batch.commits
        scaled_copy = np.zeros(len(batch), dtype=bool)
        if self._units is not None and len(self._parties):  # every row against every remembered one at once
            norms, units = _unit_rows(batch.deltas)
            cos = units @ self._units.T
            cos[batch.party_ids[:, None] == self._parties[None, :]] = -np.inf  # its own last update is fine
            scaled_copy = (norms > 0) & (cos.max(axis=1) >= COPY_COSINE)
        rows = zip(batch.party_ids.tolist(), batch.round.tolist(), batch.digests(), strict=True)
        for i, (p, r, digest) in enumerate(rows):
            c = None if commits is None else commits[i]
            if c is None or not verify_signature(
                self.keys[p], c.signature, commit_message(self.task, r, self.ids[p], c.commitment)
            ):
                bad[i], reasons[p] = True, REVEAL_MISMATCH  # no signed commitment: nothing was committed
                continue
            if commitment(digest, c.salt) != c.commitment:
                bad[i], reasons[p] = True, REVEAL_MISMATCH
                evidence[p] = {
                    "reason": REVEAL_MISMATCH,
                    "digest": digest.hex(),
                    "salt": c.salt.hex(),
                    "commitment": c.commitment.hex(),
                    "commit_signature": c.signature.hex(),
                    "signature": batch.signatures[i].hex(),
                }
                continue
            original = self._previous.get(digest)
            if original is not None and original != p:
                bad[i], reasons[p] = True, COPIED_UPDATE
                evidence[p] = {
                    "reason": COPIED_UPDATE,
                    "digest": digest.hex(),
                    "signature": batch.signatures[i].hex(),
                    "original": original,
                }
                continue
            if scaled_copy[i]:
                bad[i], reasons[p] = True, COPIED_UPDATE  # a scaled copy: rejected, not provable here
        return bad, reasons, evidence


def _unit_rows(deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's norm and the row scaled to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(deltas, axis=1)
    return norms, deltas / np.maximum(norms, 1e-30)[:, None]
