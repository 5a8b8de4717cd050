"""The party node: one party's own rows, the simulator's party program, and a stream to the aggregator.

It dials out (no inbound port), says hello, and answers what the aggregator asks: train a round, a phase
of a private sum, evaluate a model, stop. Its state directory keeps what it must not lose across a crash
(the rounds it trained, so its own privacy budget and its SCAFFOLD control variate survive a restart, and
the last round it answered with the model it was sent and the reply, so a restarted node never makes a
second, different contribution to a round); the state is written atomically before a reply leaves.

With ``[ledger] sign_updates`` the node signs its update with its own key for the ledger the task names
(:func:`deai.verify.update_signing.update_message`); under ``commit_reveal`` it first sends only a signed
commitment and keeps the update (and the commitment's salt) in its state until the aggregator asks it to
reveal, after the commit deadline. An
aggregator that restarts from its checkpoint and asks again for a round already answered, from the same
model, gets the same reply byte for byte (no new training, no new privacy cost); asked for it from another
model, the party refuses. A lost aggregator is redialed for ``network.reconnect_s``
(:class:`deai.net.dialer.DialingNode`, which also keeps the node's ledger replica).
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deai.config import ExperimentConfig
from deai.net.codec import WireError, decode, encode
from deai.net.dialer import DialingNode
from deai.net.envelope import Envelope
from deai.net.events import EventLog
from deai.net.payloads import (
    COMMIT,
    COUNTS,
    DECLINED,
    EVALUATE,
    PHASE,
    PHASE_REPLY,
    REVEAL,
    TRAIN,
    UPDATE,
    commit_body,
    counts_body,
    read_signed_task,
    update_body,
)
from deai.net.star import StarLink
from deai.party.private import WithheldUpdates
from deai.party.program import PartyProgram
from deai.report.artifacts import atomic_write_bytes
from deai.state import flatten_tree, unflatten_tree
from deai.train import LocalSpec
from deai.verify.commit_reveal import commit_rows
from deai.verify.identity import Identity
from deai.verify.update_signing import sign_rows, update_message

STATE_FILE = "party_state.npz"


LYING_FAULTS = ("forge-signature", "break-commitment")


def parse_fault(spec: str | None) -> tuple[str, float] | None:
    """``crash-after:KIND:ROUND`` -> (KIND, ROUND): the message kind answered (``train``, or a SecAgg+
    phase such as ``relayed_shares``, answered with the masked input) after which the node dies;
    ``slow:SECONDS`` -> ("slow", SECONDS): a straggler that takes that much longer for every round;
    ``forge-signature`` (signs each update for the round before) and ``break-commitment`` (reveals
    another update than it committed to) -> (NAME, 0): a party that lies to the ledger."""
    if spec is None:
        return None
    if spec in LYING_FAULTS:
        return spec, 0
    parts = spec.split(":")
    if len(parts) == 2 and parts[0] == "slow":
        try:
            return "slow", float(parts[1])
        except ValueError:
            pass
    if len(parts) == 3 and parts[0] == "crash-after" and parts[2].isdigit():
        return parts[1], int(parts[2])
    raise ValueError(
        f"--fault {spec!r}: give crash-after:KIND:ROUND (e.g. crash-after:train:3), slow:SECONDS, "
        "forge-signature or break-commitment"
    )


class PartyNode(DialingNode):
    role = "party"

    def __init__(
        self,
        cfg: ExperimentConfig,
        party: PartyProgram,
        spec: LocalSpec,
        connect: Any,
        state_dir: Path,
        log: EventLog,
        *,
        ring_noise: Any = None,
        fault: str | None = None,
        task_id: str = "",
        on_ledger: Callable[[dict[str, Any] | None], None] | None = None,
        identity: Identity | None = None,
    ) -> None:
        super().__init__(cfg, connect, state_dir, log, on_ledger=on_ledger)
        self.party, self.spec = party, spec
        self.index = int(party.shards.ids[0])
        self.state_path = Path(state_dir) / STATE_FILE
        self.dim = party.model.layout.dim
        self.withheld = WithheldUpdates(ring_noise)
        self.answered_round = 0
        self.answered_model = ""  # SHA-256 of the model the last answered round was trained from
        self.last_reply: tuple[str, bytes] | None = None  # (kind, body) sent for answered_round
        self.reveal_body = b""  # commit–reveal: the UPDATE the last commitment opens to, not yet asked for
        self.identity = identity  # signs updates and commitments ([ledger] sign_updates)
        self.last_model_sha256: str | None = None
        self.status["party"] = self.index
        self.fault = parse_fault(fault)
        self.task_id = task_id  # the state directory serves one task: another task's state is refused
        self._load_state()

    # -- state that survives a crash -----------------------------------------------------------
    def _load_state(self) -> None:
        if not self.state_path.is_file():
            return
        damaged = (
            f"{self.state_path}: the party's saved state cannot be read ({{}}); it is written atomically, so "
            "this file was damaged from outside. Move it away to start this party afresh (its privacy budget "
            "count then restarts from zero: only do that if it never trained)"
        )
        try:
            with np.load(self.state_path) as z:
                tree = unflatten_tree({k: z[k] for k in z.files})
            saved_task = bytes(tree.get("task", np.zeros(0, np.uint8))).decode()
        except (OSError, ValueError, KeyError, UnicodeDecodeError) as err:
            raise ValueError(damaged.format(err)) from None
        if saved_task != self.task_id:
            raise ValueError(
                f"{self.state_path} belongs to task {saved_task or '(unknown)'}, not {self.task_id}; give"
                " this task its own --state directory"
            )
        try:
            self.party.load_tree(tree["party"])
            self.answered_round = int(tree["answered_round"])
            self.answered_model = bytes(tree["answered_model"]).decode()
            kind = bytes(tree["reply_kind"]).decode()
            self.last_reply = (kind, bytes(tree["reply_body"])) if kind else None
            self.reveal_body = bytes(tree.get("reveal_body", b""))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
            raise ValueError(damaged.format(err)) from None
        self.log("restored", answered_round=self.answered_round)

    def _save_state(self) -> None:
        kind, body = self.last_reply or ("", b"")
        arrays = flatten_tree(
            {
                "party": self.party.state_tree(),
                "task": np.frombuffer(self.task_id.encode(), dtype=np.uint8),
                "answered_round": self.answered_round,
                "answered_model": np.frombuffer(self.answered_model.encode(), dtype=np.uint8),
                "reply_kind": np.frombuffer(kind.encode(), dtype=np.uint8),
                "reply_body": np.frombuffer(body, dtype=np.uint8),
                "reveal_body": np.frombuffer(self.reveal_body, dtype=np.uint8),
            }
        )
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.state_path, buf.getvalue())

    # -- the session -------------------------------------------------------------------------
    def hello_fields(self) -> dict[str, Any]:
        return {"party": self.index, "answered_round": self.answered_round}

    def hello_round(self) -> int:
        return self.answered_round

    def handle(self, link: StarLink, env: Envelope) -> bool:
        answer = {
            TRAIN: self._train,
            REVEAL: self._reveal,
            PHASE: self._phase,
            EVALUATE: self._evaluate,
        }.get(env.kind)
        if answer is None:
            return False
        answer(link, env)
        return True

    def _train(self, link: StarLink, env: Envelope) -> None:
        try:
            task, ledger_task, commit = read_signed_task(env.body, self.spec, self.index, self.dim)
        except (WireError, KeyError, TypeError, ValueError) as err:
            self.log("refused", reason="bad_task", detail=str(err))
            return
        if ledger_task is not None and self.identity is None:
            self.log("refused", reason="bad_task", detail="asked to sign its update, but holds no key")
            return
        if task.seed != self.cfg.run.seed:
            why = f"task seed {task.seed}, config {self.cfg.run.seed}"
            self.log("refused", reason="wrong_seed", detail=why)
            return
        model = hashlib.sha256(task.params.tobytes()).hexdigest()
        if task.round != env.round or task.round < self.answered_round:
            self.log("refused", reason="stale_task", round=task.round, answered=self.answered_round)
            return
        if task.round == self.answered_round and self.answered_round > 0:
            if model != self.answered_model or self.last_reply is None or task.withhold:
                # a second, different contribution to one round would be equivocation
                self.log("refused", reason="duplicate_task", round=task.round, answered=self.answered_round)
                return
            kind, body = self.last_reply
            link.send(kind, task.round, body)  # the same reply, byte for byte: no new training or noise
            self.log("re-sent", round=task.round)
            return
        self.last_model_sha256 = model
        me = np.array([self.index])
        if len(self.party.declines(me)):
            self._answer(link, task.round, model, DECLINED, encode({"reason": "privacy_budget"}))
            self.log("declined", round=task.round, reason="own privacy budget")
            return
        if self.fault is not None and self.fault[0] == "slow":
            time.sleep(self.fault[1])  # fault injection: a straggler
        from deai.net.edge_node import NoUpdate

        try:
            with np.errstate(over="ignore", invalid="ignore"):
                batch = self.party.train(task, me)
        except NoUpdate as why:  # an edge whose parties all failed: say so, as a party over budget does
            self._answer(link, task.round, model, DECLINED, encode({"reason": "no_update"}))
            self.log("declined", round=task.round, reason=str(why))
            return
        if task.withhold:
            self.withheld.clear()
            batch, unusable = self.withheld.hold(batch)
            if unusable:
                self._answer(link, task.round, model, DECLINED, encode({"reason": next(iter(unusable))}))
                return
        self.status.update(round=task.round, epsilon_spent=float(self.party.spent_epsilon()[0]))
        self.log("trained", round=task.round, steps=int(batch.steps[0]))
        if ledger_task is None:
            self._answer(link, task.round, model, UPDATE, update_body(batch, None))
            return
        me, my_id = {self.index: self.identity}, {self.index: self.identity.id}
        commits = commit_rows(batch, me, my_id, ledger_task) if commit else None
        if self.fault == ("break-commitment", 0):  # fault injection: reveal another update than committed
            batch.deltas *= np.float32(2.0)
            batch.rehash()
        sig = sign_rows(batch, me, my_id, ledger_task)[0]
        if self.fault == ("forge-signature", 0):  # fault injection: a signature for the round before
            forged = update_message(ledger_task, task.round - 1, self.identity.id, batch.digests()[0])
            sig = self.identity.sign(forged)
        if commits is None:
            self._answer(link, task.round, model, UPDATE, update_body(batch, sig))
            return
        self.reveal_body = update_body(batch, sig, commits[0].salt)  # kept, with the salt, until asked
        self._answer(link, task.round, model, COMMIT, commit_body(commits[0]))
        self.log("committed", round=task.round)

    def _reveal(self, link: StarLink, env: Envelope) -> None:
        """Phase 2 of commit–reveal: the update the last commitment opens to, for that round only."""
        if env.round != self.answered_round or not self.reveal_body or self.last_reply is None:
            self.log("refused", reason="no_commitment", round=env.round, answered=self.answered_round)
            return
        link.send(UPDATE, env.round, self.reveal_body)
        self.log("revealed", round=env.round)
        self._maybe_crash(link, REVEAL, env.round)

    def _answer(self, link: StarLink, round_: int, model: str, kind: str, body: bytes) -> None:
        """Record the round as answered (atomically, with the reply) before the reply leaves."""
        if kind != COMMIT:
            self.reveal_body = b""
        self.answered_round, self.answered_model, self.last_reply = round_, model, (kind, body)
        self._save_state()
        link.send(kind, round_, body)
        self._maybe_crash(link, TRAIN, round_)

    def _maybe_crash(self, link: StarLink, kind: str, round_: int) -> None:
        """Fault injection (``--fault crash-after:KIND:ROUND``): die like SIGKILL once the reply is out."""
        if self.fault == (kind, round_):
            link.flush()
            self.log("crash", after=kind, round=round_)
            os._exit(137)

    def _phase(self, link: StarLink, env: Envelope) -> None:
        try:
            fields, arrays = decode(env.body)
            kind, msg = str(fields["phase"]), arrays["data"].tobytes()
            reply = self.withheld.answer(kind, {self.index: msg}).get(self.index)
        except (WireError, KeyError, ValueError, TypeError) as err:
            self.log("refused", reason="bad_phase", detail=f"{type(err).__name__}: {err}")
            return
        if reply is not None:
            body = encode({"phase": kind}, {"data": np.frombuffer(reply, dtype=np.uint8)})
            link.send(PHASE_REPLY, env.round, body)
            self._maybe_crash(link, kind, env.round)

    def _evaluate(self, link: StarLink, env: Envelope) -> None:
        try:
            _, arrays = decode(env.body)
            params = arrays["params"]
            if params.dtype != np.float32 or params.shape != (self.dim,):
                raise WireError(f"params must be float32 [{self.dim}]")
        except (WireError, KeyError) as err:
            self.log("refused", reason="bad_evaluate", detail=str(err))
            return
        with np.errstate(over="ignore", invalid="ignore"):
            counts = self.party.evaluate(np.array(params))
        link.send(COUNTS, env.round, counts_body(counts))

    def snapshot(self) -> dict[str, Any]:
        return (
            self.status
            | self.traffic()
            | {
                "last_model_sha256": self.last_model_sha256,
                "answered_round": self.answered_round,
            }
        )
