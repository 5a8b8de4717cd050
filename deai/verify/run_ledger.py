"""Every written run keeps a ledger: ``RUN_DIR/ledger.db``, keys in ``RUN_DIR/keys/``, head in the summary.

The ledger subscribes to the round record stream (no code in the round loop). A new run records
``task_created`` (config hash, a fresh task id, the owner's key, whether updates are signed) and one
``joined`` per key: the aggregator, each validator, and each party when updates are signed. Then each
round appends, in one transaction: ``round_opened`` (the parties the task was sent to), the
``commitments`` (signed updates only: every leaf with its party's signature), the ``round_result``
signed by the aggregator (the released model's hash, the aggregate's hash, who was accepted, who was
rejected and why, the Merkle root of the accepted updates, epsilon), and each validator's ``cosigned``
or ``dissent`` (:mod:`deai.verify.validator`).

Resume: the record of a round reaches the ledger before the round's checkpoint is written, so after a
kill the ledger may hold rounds the checkpoint does not. A resumed run replays those rounds; each one's
model hash must equal the one recorded (same seed, same data: the same model), and nothing is appended
twice; validators recompute the replayed rounds too, so they hold the same model as before the kill.

Keys come from OS entropy and live in ``RUN_DIR/keys/`` (private keys never enter the ledger); a resumed
run loads them, so it signs with the same identities.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deai.config import ConfigError
from deai.incentives.rewards import RewardBook
from deai.messages import RoundRecord
from deai.params import Layout, params_hash
from deai.verify.commitments import commitments_body, updates_root
from deai.verify.identity import Identity, KeyFileError
from deai.verify.ledger import Head, Ledger, LedgerError, canonical, entry_hash, read_entries
from deai.verify.update_signing import PartyKeys, PublicPartyKeys
from deai.verify.validator import Validator

LEDGER_FILE = "ledger.db"
KEYS_DIR = "keys"
PARTY_KEYS = "parties.json"

MakeValidator = Callable[[Identity], Validator]


class RemoteReviewers(Protocol):
    """Validators that are other nodes: they hold their own keys and sign their own entries."""

    public_keys: list[bytes]

    def review(
        self, record: RoundRecord, result: dict[str, Any], digest: str, ledger: Ledger, model_before: str
    ) -> None:
        """Append (``ledger.append_signed``) each validator's signed review of the result just appended."""


def check_resumable(run_dir: Path, validators: int = 0, parties: int | None = None) -> None:
    """Refuse, before anything is written, a run directory whose ledger or keys cannot be continued."""
    if (Path(run_dir) / LEDGER_FILE).exists():
        keys = _Keys.load(Path(run_dir) / KEYS_DIR, validators, parties)
        _Existing(Path(run_dir) / LEDGER_FILE, keys)


def _party_keys(parties: int | list[bytes] | None) -> PublicPartyKeys | None:
    if parties is None:
        return None
    return PartyKeys.generate(parties) if isinstance(parties, int) else PublicPartyKeys(parties)


class _Keys:
    """The run's identities: owner, aggregator, validators, and the parties' keys when updates are signed."""

    def __init__(
        self,
        owner: Identity,
        aggregator: Identity,
        validators: list[Identity],
        parties: PublicPartyKeys | None,
    ):
        self.owner, self.aggregator, self.validators, self.parties = owner, aggregator, validators, parties

    @classmethod
    def generate(cls, keys: Path, validators: int, parties: int | list[bytes] | None) -> _Keys:
        """``parties``: how many party keys to make, or (party nodes) the roster's public keys."""
        keys.mkdir(mode=0o700, exist_ok=True)
        out = cls(
            Identity.generate("owner"),
            Identity.generate("aggregator"),
            [Identity.generate("validator") for _ in range(validators)],
            _party_keys(parties),
        )
        out.owner.save(keys / "owner.key")
        out.aggregator.save(keys / "aggregator.key")
        for i, v in enumerate(out.validators):
            v.save(keys / f"validator-{i}.key")
        if isinstance(out.parties, PartyKeys):  # a node keeps its own private key; the roster the public
            out.parties.save(keys / PARTY_KEYS)
        return out

    @classmethod
    def load(cls, keys: Path, validators: int, parties: int | list[bytes] | None) -> _Keys:
        names = ["owner.key", "aggregator.key", *(f"validator-{i}.key" for i in range(validators))]
        held = isinstance(parties, int)  # the run holds the party keys (the simulator)
        missing = [n for n in [*names, *([PARTY_KEYS] if held else [])] if not (keys / n).exists()]
        if missing:
            raise ConfigError(
                f"the run's ledger keys: {', '.join(missing)} missing from {keys}; a run's keys cannot be "
                "re-made (its ledger registered the originals): restore them, or start a new run"
            )
        try:
            return cls(
                Identity.load(keys / "owner.key"),
                Identity.load(keys / "aggregator.key"),
                [Identity.load(keys / f"validator-{i}.key") for i in range(validators)],
                PartyKeys.load(keys / PARTY_KEYS, parties) if held else _party_keys(parties),
            )
        except KeyFileError as err:
            raise ConfigError(f"the run's ledger keys: {err}") from None


class _Existing:
    """What an existing ledger recorded: its task id and, per round, the result's body and entry hash."""

    def __init__(self, path: Path, keys: _Keys, remote_keys: list[bytes] = ()) -> None:
        try:
            entries = read_entries(path)
        except LedgerError as err:
            raise ConfigError(f"the run's ledger: {err}") from None
        if not entries or entries[0].get("kind") != "task_created":
            raise ConfigError(
                f"the run's ledger: {path} has no task_created entry: it is not this run's ledger"
            )
        if entries[0]["body"].get("owner_key") != keys.owner.public_key.hex():
            raise ConfigError(
                f"the run's ledger: {path} was started by another owner key than keys/owner.key"
            )
        registered = {e["body"].get("public_key") for e in entries if e.get("kind") == "joined"}
        mine = {v.public_key.hex() for v in keys.validators} | {k.hex() for k in remote_keys}
        if keys.parties is not None:
            mine |= {k.hex() for k in keys.parties.public_keys}
        if not mine <= registered:
            raise ConfigError(
                f"the run's ledger: {path} never registered some validator or party keys in keys/; the "
                "keys, ledger.validators or ledger.sign_updates changed since the run started"
            )
        self.task = entries[0]["task"]
        self.reputation: dict[str, float] = {}  # each party's reputation after the last recorded round
        for e in entries:
            if e.get("kind") == "rewards":
                self.reputation.update(e["body"].get("reputation", {}))
        self.results = {
            int(e["round"]): (e["body"], entry_hash(canonical(e)))
            for e in entries
            if e.get("kind") == "round_result"
        }


class RunLedger:
    """The ledger of one run directory; call it with each :class:`RoundRecord`.

    ``validators`` in-process validators are made by ``make_validator`` from their identities;
    ``parties`` turns on per-update signatures: the federation's size (the run then holds a key per party)
    or, on a network, the roster's party public keys (each party node signs with its own key).
    """

    def __init__(
        self,
        run_dir: Path,
        config_text: str,
        name: str,
        layout: Layout,
        *,
        validators: int = 0,
        make_validator: MakeValidator | None = None,
        parties: int | list[bytes] | None = None,
        incentives: dict[str, float] | None = None,
        commit_reveal: bool = False,
        remote: RemoteReviewers | None = None,
    ) -> None:
        self.remote = remote
        self.model_before = ""  # the model the next round starts from (set by check_start)
        if validators and make_validator is None:
            raise ValueError("validators need make_validator")
        self.path = Path(run_dir) / LEDGER_FILE
        self.layout, self.incentives, self.commit_reveal = layout, incentives, commit_reveal
        keys_dir = Path(run_dir) / KEYS_DIR
        reputation: dict[str, float] = {}  # each party's reputation after the last recorded round
        if self.path.exists():
            self.keys = _Keys.load(keys_dir, validators, parties)
            existing = _Existing(self.path, self.keys, [] if remote is None else remote.public_keys)
            self.recorded = existing.results  # round -> (result body, its entry hash)
            self.ledger = Ledger(self.path, existing.task)
            reputation = existing.reputation
        else:
            self.keys = _Keys.generate(keys_dir, validators, parties)
            self.recorded = {}
            try:
                self.ledger = Ledger(self.path, f"{name}-{secrets.token_hex(8)}")
            except LedgerError as err:
                raise ConfigError(f"the run's ledger: {err}") from None
            self._create(config_text)
        self.book = None
        if incentives is not None:
            self.book = RewardBook(incentives["reward_per_round"], incentives["reputation_rate"], reputation)
        self.validators = [make_validator(v) for v in self.keys.validators] if validators else []

    @property
    def task(self) -> str:
        return self.ledger.task

    @property
    def party_keys(self) -> PublicPartyKeys | None:
        return self.keys.parties

    def _create(self, config_text: str) -> None:
        k = self.keys
        created = {
            "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
            "owner_key": k.owner.public_key.hex(),
            "sign_updates": k.parties is not None,
            "commit_reveal": self.commit_reveal,
        }
        party = {}
        if self.incentives is not None:
            created["incentives"] = self.incentives
            party["stake"] = self.incentives["stake"]
        with self.ledger.transaction() as tx:
            tx.append("task_created", created, k.owner)
            tx.append("joined", {"public_key": k.aggregator.public_key.hex(), "role": "aggregator"}, k.owner)
            remote = self.remote.public_keys if self.remote else []
            for v in [*(v.public_key for v in k.validators), *remote]:
                tx.append("joined", {"public_key": v.hex(), "role": "validator"}, k.owner)
            for i, key in enumerate([] if k.parties is None else k.parties.public_keys):
                tx.append("joined", {"public_key": key.hex(), "role": "party", "party": i, **party}, k.owner)

    def check_start(self, round_: int, params: np.ndarray) -> None:
        """A resumed run starts from its checkpoint: that model must be the one the ledger recorded."""
        self.model_before = params_hash(params, self.layout)  # what the next round starts from
        if round_ in self.recorded and self.recorded[round_][0]["model_sha256"] != self.model_before:
            raise ConfigError(
                f"resume: the checkpoint of round {round_} holds another model than the ledger recorded "
                "for that round; the run directory was changed"
            )

    def result_body(self, record: RoundRecord) -> dict[str, Any]:
        """The aggregator's claim for one round, as the ``round_result`` entry carries it."""
        body: dict[str, Any] = {
            "model_sha256": params_hash(record.params, self.layout),
            "aggregate_sha256": None
            if record.aggregate is None
            else params_hash(record.aggregate, self.layout),
            "released": bool(record.released),
            "participants": record.accepted.tolist(),
            "rejected": {str(k): v for k, v in sorted(record.rejected.items())},
            # under secure aggregation the server never sees single updates, so there is no root
            "updates_root": updates_root(record.batch, record.round),
        }
        if "epsilon" in record.metrics:
            body["epsilon"] = record.metrics["epsilon"]
        if "staleness_counts" in record.metrics:  # FedBuff: how many updates were how many versions old
            body["staleness_counts"] = record.metrics["staleness_counts"]
        return body

    def __call__(self, record: RoundRecord) -> None:
        r = record.round
        if r in self.recorded:  # replayed after a resume: it must be the same round
            body, digest = self.recorded[r]
            model = params_hash(record.params, self.layout)
            if body["model_sha256"] != model:
                raise ConfigError(
                    f"resume: round {r} produced model {model[:16]}…, but the ledger recorded "
                    f"{body['model_sha256'][:16]}… for it; the run directory was changed"
                )
            for v in self.validators:
                v.recompute(record)  # keep each validator's model where it was
            self.model_before = model
            return
        body = self.result_body(record)
        with self.ledger.transaction() as tx:
            if record.asked is not None:  # the simulator's round is one step: opened and closed together
                tx.append("round_opened", {"asked": record.asked.tolist()}, self.keys.aggregator, r)
            if self.keys.parties is not None and record.batch is not None:
                tx.append("commitments", commitments_body(record.batch, r), self.keys.aggregator, r)
            digest = tx.append("round_result", body, self.keys.aggregator, r)
            for v in self.validators:
                kind, review = v.review(record, body, digest)
                tx.append(kind, review, v.identity, r)
            if self.remote is not None:
                self.remote.review(record, body, digest, tx, self.model_before)
            for party, proof in sorted((record.evidence or {}).items()):  # a provably broken commit-reveal
                tx.append("slash", {"party": party, **proof}, self.keys.aggregator, r)
            if "values" in record.metrics:  # the owner values the round on its own evaluation rows
                tx.append("valuation", {"values": record.metrics["values"]}, self.keys.owner, r)
                if self.book is not None:
                    rewards = self.book.settle(record.metrics["values"], body["rejected"])
                    tx.append("rewards", rewards, self.keys.owner, r)
        self.recorded[r] = (body, digest)
        self.model_before = body["model_sha256"]

    def head(self) -> Head:
        return self.ledger.head(self.keys.owner)

    def close(self) -> None:
        self.ledger.close()
