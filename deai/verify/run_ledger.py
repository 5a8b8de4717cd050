"""Every written run keeps a ledger: ``RUN_DIR/ledger.db``, keys in ``RUN_DIR/keys/``, head in the summary.

The ledger subscribes to the round record stream (no code in the round loop): on a new run it records
``task_created`` (config hash, a fresh task id, the owner's key) and ``joined`` for the aggregator, then
one ``round_result`` per round, signed by the aggregator: the released model's hash, who was accepted,
who was rejected and why, and the Merkle root of the accepted updates' digests (one leaf per party).

Resume: the record of a round reaches the ledger before the round's checkpoint is written, so after a
kill the ledger may hold rounds the checkpoint does not. A resumed run replays those rounds; each one's
model hash must equal the one recorded (same seed, same data: the same model), and nothing is appended
twice. A different hash means the run directory was tampered with, and the run stops saying so.

Keys come from OS entropy and live in ``RUN_DIR/keys/`` (private keys never enter the ledger); a resumed
run loads them, so it signs with the same identities.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

from deai.config import ConfigError
from deai.messages import RoundRecord
from deai.params import Layout, params_hash
from deai.verify.identity import Identity, KeyFileError
from deai.verify.ledger import Head, Ledger, LedgerError, read_entries
from deai.verify.merkle import merkle_root

LEDGER_FILE = "ledger.db"
KEYS_DIR = "keys"


def update_leaf(party_id: int, round_: int, digest: bytes) -> bytes:
    """One party's commitment leaf: its id, the round, the SHA-256 of its update's bytes."""
    return f"{party_id}:{round_}:{digest.hex()}".encode()


def check_resumable(run_dir: Path) -> None:
    """Refuse, before anything is written, a run directory whose ledger or keys cannot be continued."""
    if (Path(run_dir) / LEDGER_FILE).exists():
        owner, _ = _load_keys(Path(run_dir) / KEYS_DIR)
        _existing(Path(run_dir) / LEDGER_FILE, owner)


def _load_keys(keys: Path) -> tuple[Identity, Identity]:
    try:
        return Identity.load(keys / "owner.key"), Identity.load(keys / "aggregator.key")
    except KeyFileError as err:
        raise ConfigError(f"the run's ledger keys: {err}") from None


def _existing(path: Path, owner: Identity) -> tuple[str, dict[int, str]]:
    """The task id of this run's ledger and the model hash it recorded for each round."""
    try:
        entries = read_entries(path)
    except LedgerError as err:
        raise ConfigError(f"the run's ledger: {err}") from None
    if not entries or entries[0].get("kind") != "task_created":
        raise ConfigError(f"the run's ledger: {path} has no task_created entry: it is not this run's ledger")
    if entries[0]["body"].get("owner_key") != owner.public_key.hex():
        raise ConfigError(f"the run's ledger: {path} was started by another owner key than keys/owner.key")
    results = [e for e in entries if e.get("kind") == "round_result"]
    return entries[0]["task"], {int(e["round"]): e["body"]["model_sha256"] for e in results}


class RunLedger:
    """The ledger of one run directory; call it with each :class:`RoundRecord`."""

    def __init__(self, run_dir: Path, config_text: str, name: str, layout: Layout) -> None:
        self.path = Path(run_dir) / LEDGER_FILE
        self.layout = layout
        keys = Path(run_dir) / KEYS_DIR
        if self.path.exists():
            self.owner, self.aggregator = _load_keys(keys)
            task, self.recorded = _existing(self.path, self.owner)  # round -> model hash in the ledger
            self.ledger = Ledger(self.path, task)
            return
        keys.mkdir(mode=0o700, exist_ok=True)
        self.owner, self.aggregator = Identity.generate("owner"), Identity.generate("aggregator")
        self.owner.save(keys / "owner.key")
        self.aggregator.save(keys / "aggregator.key")
        self.recorded = {}
        try:
            self.ledger = Ledger(self.path, f"{name}-{secrets.token_hex(8)}")
        except LedgerError as err:
            raise ConfigError(f"the run's ledger: {err}") from None
        config_sha256 = hashlib.sha256(config_text.encode()).hexdigest()
        created = {"config_sha256": config_sha256, "owner_key": self.owner.public_key.hex()}
        self.ledger.append("task_created", created, self.owner)
        joined = {"public_key": self.aggregator.public_key.hex(), "role": "aggregator"}
        self.ledger.append("joined", joined, self.owner)

    def __call__(self, record: RoundRecord) -> None:
        model = params_hash(record.params, self.layout)
        if record.round in self.recorded:  # replayed after a resume: it must be the same round
            if self.recorded[record.round] != model:
                raise ConfigError(
                    f"resume: round {record.round} produced model {model[:16]}…, but the ledger recorded "
                    f"{self.recorded[record.round][:16]}… for it; the run directory was changed"
                )
            return
        body: dict[str, Any] = {
            "model_sha256": model,
            "released": bool(record.released),
            "participants": record.accepted.tolist(),
            "rejected": {str(k): v for k, v in sorted(record.rejected.items())},
            "updates_root": None,
        }
        batch = record.batch
        if batch is not None:  # under secure aggregation the server never sees single updates
            pairs = zip(batch.party_ids, batch.digests(), strict=True)
            leaves = [update_leaf(int(p), record.round, d) for p, d in pairs]
            body["updates_root"] = merkle_root(leaves).hex()
        if "epsilon" in record.metrics:
            body["epsilon"] = record.metrics["epsilon"]
        self.ledger.append("round_result", body, self.aggregator, record.round)
        self.recorded[record.round] = model

    def head(self) -> Head:
        return self.ledger.head(self.owner)

    def close(self) -> None:
        self.ledger.close()
