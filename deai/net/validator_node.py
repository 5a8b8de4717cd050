"""The validator node: recomputes every round from its senders' own signed updates, then co-signs or dissents.

For each round the aggregator sends it the ``round_result`` entry it just appended, the model the round
started from, the ledger slot of the validator's entry, and the accepted updates as the frames their
senders signed (:mod:`deai.net.remote_validators`). The validator checks each frame against the roster
key of its sender (the aggregator can withhold an update but cannot forge or alter one), that the frames
are exactly the result's participants, and then recomputes the root, the aggregate and the model with
its own copy of the rule and the server optimizer (:class:`deai.verify.validator.Validator`, the one the
simulator runs in-process). It signs a ``cosigned`` or ``dissent`` entry for the slot, in its own key.

Its model lives in ``STATE/validator.npz``, written atomically before its answer leaves, so a restarted
validator goes on from the round it last reviewed. One that missed rounds (down, or joined late) holds
an older model than the round starts from: it takes up the starting model the aggregator shows it only
when that model's hash is the one the last ``round_result`` in its own verified replica carries (a result
more than 2/3 of the validators co-signed), and otherwise declines: it cannot judge the round, and
saying so is not a dissent.
``--fault lie`` makes it co-sign a model hash it did not compute (tests: the aggregator must refuse it).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deai.config import ExperimentConfig
from deai.messages import RoundRecord, UpdateBatch
from deai.models.base import Model
from deai.net.codec import WireError, decode, encode
from deai.net.dialer import DialingNode
from deai.net.envelope import Envelope, check_forwarded
from deai.net.events import EventLog
from deai.net.payloads import REVIEW, REVIEWED, UPDATE, read_update
from deai.net.roster import Roster
from deai.net.star import StarLink
from deai.params import params_hash
from deai.report.artifacts import atomic_write_bytes
from deai.state import flatten_tree, unflatten_tree
from deai.verify.identity import Identity
from deai.verify.ledger import entry_hash, signed_entry
from deai.verify.validator import Validator

STATE_FILE = "validator.npz"


class ValidatorNode(DialingNode):
    role = "validator"

    def __init__(
        self,
        cfg: ExperimentConfig,
        identity: Identity,
        roster: Roster,
        model: Model,
        strategy: Any,
        connect: Callable[[], StarLink],
        state_dir: Path,
        log: EventLog,
        *,
        task_id: str,
        fault: str | None = None,
    ) -> None:
        super().__init__(cfg, connect, state_dir, log)
        if fault not in (None, "lie"):
            raise ValueError(f"--fault {fault!r}: a validator takes lie (co-sign a hash it never computed)")
        self.identity, self.roster, self.task_id, self.lie = identity, roster, task_id, fault == "lie"
        self.layout, self.dim = model.layout, model.layout.dim
        self.senders = roster.children_of_top()  # whose updates the top aggregates: parties, or edges
        keys = roster.keys()
        self.sender_keys = {k: keys[k] for k in self.senders}
        params = model.init_params(cfg.run.seed)
        opt = strategy.server_opt.init(len(params))
        self.state_path = Path(state_dir) / STATE_FILE
        self.reviewed_round = 0
        if self.state_path.is_file():
            params, opt = self._load()
        self.validator = Validator(
            identity, strategy.aggregator, strategy.server_opt, cfg.run.seed, self.layout, params, opt
        )
        self.status["round"] = self.reviewed_round

    def _load(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        try:
            with np.load(self.state_path) as z:
                tree = unflatten_tree({k: z[k] for k in z.files})
            saved_task = bytes(tree["task"]).decode()
            params = np.asarray(tree["params"], dtype=np.float32)
            opt = {k: np.asarray(v) for k, v in dict(tree.get("opt", {})).items()}
            self.reviewed_round = int(tree["round"])
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"{self.state_path}: the validator's saved model cannot be read ({err}); it is written "
                "atomically, so it was damaged from outside: move it away to start this validator afresh"
            ) from None
        if saved_task != self.task_id or params.shape != (self.dim,):
            raise ValueError(f"{self.state_path} belongs to another task; give this task its own --state")
        self.log("restored", reviewed_round=self.reviewed_round)
        return params, opt

    def _save(self) -> None:
        tree = {
            "task": np.frombuffer(self.task_id.encode(), dtype=np.uint8),
            "round": self.reviewed_round,
            "params": self.validator.params,
            "opt": self.validator.opt_state,
        }
        buf = io.BytesIO()
        np.savez(buf, **flatten_tree(tree))
        atomic_write_bytes(self.state_path, buf.getvalue())

    def hello_fields(self) -> dict[str, Any]:
        return {"reviewed_round": self.reviewed_round}

    def handle(self, link: StarLink, env: Envelope) -> bool:
        if env.kind != REVIEW:
            return False
        reply = self._review(env)
        if reply is not None:
            link.send(REVIEWED, env.round, encode(reply))
        return True

    def _review(self, env: Envelope) -> dict[str, Any] | None:
        r = env.round
        try:
            fields, arrays = decode(env.body)
            text = str(fields["result_entry"])
            result = json.loads(text)
            seq, prev, before = int(fields["seq"]), str(fields["prev"]), str(fields["model_before"])
            frames = list(fields["frames"])
            if result.get("kind") != "round_result" or result.get("round") != r:
                raise ValueError(f"not round {r}'s result")
        except (WireError, KeyError, TypeError, ValueError, AttributeError) as err:
            self.log("refused", reason="bad_review", round=r, detail=f"{type(err).__name__}: {err}")
            return None
        if r <= self.reviewed_round:
            self.log("declined", round=r, reason="reviewed already")
            return {"declined": "reviewed already"}
        if params_hash(self.validator.params, self.layout) != before and not self._catch_up(arrays, before):
            self.log("declined", round=r, reason="its model is not the round's start")
            return {"declined": "its model is not the round's start"}
        digest, claim = entry_hash(text), result["body"]
        batch, problem = self._updates(frames, arrays, r)
        shown = [] if batch is None else sorted(int(p) for p in batch.party_ids)
        if problem is None and shown != claim.get("participants"):
            problem = "the forwarded updates are not the result's participants"
        if problem is not None:  # the aggregator showed forged or other updates than it claims
            kind, review = "dissent", {"result": digest, "reason": problem, "recomputed": {}}
        else:
            ids = np.array(shown, dtype=np.int64)
            record = RoundRecord(r, 0, self.validator.params, ids, {}, None, {}, True, batch=batch)
            kind, review = self.validator.review(record, claim, digest)
        if self.lie:  # fault injection: attest a model it never computed
            kind = "cosigned"
            review = {k: claim.get(k) for k in ("updates_root", "aggregate_sha256")}
            review |= {"result": digest, "model_sha256": "0" * 64}
        self.reviewed_round = r
        self._save()  # before the answer leaves: a restarted validator never reviews a round twice
        entry, _, signature = signed_entry(result["task"], seq, prev, kind, r, self.identity, review)
        self.status.update(round=r, last_model_sha256=params_hash(self.validator.params, self.layout))
        self.log(kind, round=r, reason=review.get("reason"))
        return {"entry": entry, "signature": signature}

    def _catch_up(self, arrays: dict[str, np.ndarray], before: str) -> bool:
        """Take up the round's starting model if the ledger (this node's replica) vouches for it."""
        params = arrays.get("start.params")
        if params is None or params.dtype != np.float32 or params.shape != (self.dim,):
            return False
        settled = None if self.replica is None else self.replica.settled_result()
        if params_hash(params, self.layout) != before or (settled or {}).get("model_sha256") != before:
            return False
        opt = {
            k.removeprefix("start.opt."): np.array(v) for k, v in arrays.items() if k.startswith("start.opt.")
        }
        self.validator.params, self.validator.opt_state = np.array(params), opt
        self.log("caught_up", model=before[:16])
        return True

    def _updates(self, frames: list, arrays: dict, r: int) -> tuple[UpdateBatch | None, str | None]:
        """The round's updates from the forwarded frames, in sender order; or why they cannot be trusted."""
        rows = {}
        for i, frame in enumerate(frames):
            try:
                header, signature = dict(frame["header"]), bytes.fromhex(frame["signature"])
                body = arrays[f"u{i}"].tobytes()
            except (KeyError, TypeError, ValueError) as err:
                return None, f"forwarded update {i} is unreadable ({type(err).__name__})"
            sender = header.get("sender")
            if sender not in self.sender_keys:
                return None, f"forwarded update {i} is from {sender!r}, not a member of this task"
            bad = check_forwarded(header, signature, body, self.sender_keys[sender])
            if bad is None and (
                header.get("task") != self.task_id
                or header.get("kind") != UPDATE
                or header.get("round") != r
                or header.get("to") != self.roster.aggregator_id
            ):
                bad = "not an update of this task's round, sent to its aggregator"
            if bad is not None:
                return None, f"forwarded update {i} ({sender}) is not what its sender signed: {bad}"
            try:
                batch = read_update(body, self.dim)
            except WireError as err:
                return None, f"forwarded update {i} does not decode ({err})"
            if int(batch.party_ids[0]) != self.senders[sender]:
                return None, f"forwarded update {i} claims another party than its signer"
            rows[self.senders[sender]] = batch
        if not rows:  # a round that released nothing: the model must stay where it was
            return None, None
        return UpdateBatch.concat([rows[p] for p in sorted(rows)]), None

    def snapshot(self) -> dict[str, Any]:
        return self.status | self.traffic() | {"reviewed_round": self.reviewed_round}
