"""Per-update signatures (``[ledger] sign_updates``): each party signs what it sends; the server checks.

A party signs the SHA-256 of its update's bytes together with the task id, the round and its own key id
(:func:`update_message`), so a signature cannot be replayed into another round, task or party's name.
Signing is the party side's last step before an update leaves (:class:`SigningParties` wraps whatever
party program the transport drives, a Byzantine one included: a malicious party signs its own crafted
update, as it would). The server's ``accept`` drops a row whose signature is missing or wrong
(:class:`UpdateVerifier`), and the ledger records every accepted leaf with its signature, so anyone can
later check that each committed update was sent by the party named, and that party cannot deny it.

The simulator holds every party, so it holds every party's key: ``RUN_DIR/keys/parties.json`` (raw
Ed25519 private keys in hex, mode 0600; keys from OS entropy like every other deai key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from deai import jsonio
from deai.jsonio import canonical
from deai.messages import TrainTask, UpdateBatch
from deai.report.artifacts import atomic_write_bytes
from deai.verify.identity import Identity, KeyFileError, key_id

_UPDATE_TAG = b"deai-update-v1\x00"
BAD_SIGNATURE = "bad_signature"


def update_message(task: str, round_: int, party_key: str, digest: bytes) -> bytes:
    """The bytes a party signs for one update: task, round, its key id and the update's digest."""
    text = canonical({"digest": digest.hex(), "party": party_key, "round": round_, "task": task})
    return _UPDATE_TAG + text.encode()


class PublicPartyKeys:
    """The parties' public keys by dense index: what a server checks signatures with. On a network
    these are the roster's, and each party node holds its own private key."""

    def __init__(self, public_keys: list[bytes]) -> None:
        self.public_keys = list(public_keys)
        self.ids = [key_id(k) for k in self.public_keys]

    def __len__(self) -> int:
        return len(self.public_keys)


class PartyKeys(PublicPartyKeys):
    """One Ed25519 identity per party of the federation, by dense index (the simulator holds them all)."""

    def __init__(self, identities: list[Identity]) -> None:
        super().__init__([i.public_key for i in identities])
        self.identities = identities

    @classmethod
    def generate(cls, count: int) -> PartyKeys:
        return cls([Identity.generate("party") for _ in range(count)])

    def save(self, path: Path) -> None:
        raw = [
            i.private_key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            ).hex()
            for i in self.identities
        ]
        atomic_write_bytes(Path(path), jsonio.dumps({"role": "party", "keys": raw}).encode(), mode=0o600)

    @classmethod
    def load(cls, path: Path, count: int) -> PartyKeys:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            keys = [Ed25519PrivateKey.from_private_bytes(bytes.fromhex(k)) for k in data["keys"]]
        except FileNotFoundError:
            raise KeyFileError(f"party key file {path} does not exist") from None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise KeyFileError(f"{path} is not a deai party key file ({type(err).__name__})") from None
        if len(keys) != count:
            raise KeyFileError(f"{path} holds {len(keys)} party keys; the federation has {count} parties")
        return cls([Identity("party", k) for k in keys])


def sign_rows(batch: UpdateBatch, identities: Any, ids: Any, task_id: str) -> list[bytes]:
    """Each row's signature by its party (``identities[p]``, key id ``ids[p]``): the last party-side step."""
    return [
        identities[p].sign(update_message(task_id, int(r), ids[p], d))
        for p, r, d in zip(batch.party_ids.tolist(), batch.round.tolist(), batch.digests(), strict=True)
    ]


class SigningParties:
    """The party side with signatures: wraps the party program the transport drives and signs each row."""

    def __init__(self, party: Any, keys: PartyKeys, task_id: str, *, commit_reveal: bool = False) -> None:
        self.party, self.keys, self.task_id = party, keys, task_id
        self.commit_reveal = commit_reveal

    def train(
        self, task: TrainTask, party_ids: np.ndarray, step_budget: np.ndarray | None = None
    ) -> UpdateBatch:
        batch = self.party.train(task, party_ids, step_budget)
        if self.commit_reveal:  # phase 1: commit to each update before anyone reveals
            from deai.verify.commit_reveal import commit_rows

            batch.commits = commit_rows(batch, self.keys.identities, self.keys.ids, self.task_id)
        batch.signatures = sign_rows(batch, self.keys.identities, self.keys.ids, self.task_id)
        return batch

    def __getattr__(self, name: str) -> Any:  # evaluate, declines, close, budgets: the wrapped party's
        return getattr(self.party, name)


class UpdateVerifier:
    """The server's check of arriving rows: which carry no valid signature of the party they name."""

    def __init__(self, public_keys: list[bytes], task_id: str) -> None:
        self.task_id = task_id
        self.ids = [key_id(k) for k in public_keys]
        self._keys = [Ed25519PublicKey.from_public_bytes(k) for k in public_keys]

    def bad_rows(self, batch: UpdateBatch) -> np.ndarray:
        """Boolean mask of rows to reject: unsigned, signed by another key, or signed for another round."""
        sigs = batch.signatures
        if sigs is None or len(sigs) != len(batch):
            return np.ones(len(batch), dtype=bool)
        bad = np.zeros(len(batch), dtype=bool)
        rows = zip(batch.party_ids.tolist(), batch.round.tolist(), batch.rehash(), sigs, strict=True)
        for i, (p, r, digest, sig) in enumerate(rows):
            if not 0 <= p < len(self._keys):
                bad[i] = True
                continue
            try:
                self._keys[p].verify(sig, update_message(self.task_id, int(r), self.ids[p], digest))
            except (InvalidSignature, TypeError, ValueError):
                bad[i] = True
        return bad
