"""The transport of a star over the network: the driver's contract (:mod:`deai.transport.base`) on a hub.

``dispatch`` sends the round's task to every asked party that has a session; ``collect`` waits for their
answers until each has answered, left, or missed the round's deadline, then yields the failures and one
batch of every update in party order, exactly the batch the simulator's transport hands the server (so
a fault-free run reaches the simulator's model bit for bit). ``exchange`` runs one phase of a private
sum as a message round, and ``evaluate`` sums the parties' own evaluation counts.

With ``[ledger] sign_updates`` the task names the ledger each party signs its update for; with
``commit_reveal`` a round has two message rounds: every asked party answers with a signed commitment
until the round's deadline (the commit deadline), and only then is each committed party asked to
reveal; the salts of the reveals and the commitments travel with the batch to the server's check.

Deadlines adapt to the round times seen (a fixed timeout is either too short for a slow federation or
wastes minutes on each dropout): after a few rounds the deadline is ``slack`` times the slowest recent
answer, never more than ``round_timeout_s``.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from deai.evaluation import EvalCounts
from deai.messages import Failure, TrainTask, UpdateBatch
from deai.net.codec import WireError, decode, encode
from deai.net.events import EventLog
from deai.net.payloads import (
    COMMIT,
    COUNTS,
    DECLINED,
    EVALUATE,
    PHASE,
    PHASE_REPLY,
    REVEAL,
    STOP,
    TRAIN,
    UPDATE,
    read_commit,
    read_counts,
    read_update,
    task_body,
)
from deai.net.star import StarHub
from deai.party.budget import REFUSED


class AdaptiveDeadline:
    """Seconds to wait for a round's answers: learned from the answers seen, capped by the task."""

    def __init__(
        self,
        cap_s: float,
        *,
        floor_s: float = 5.0,
        slack: float = 3.0,
        window: int = 5,
        first_s: float | None = None,
    ) -> None:
        self.cap_s, self.floor_s, self.slack, self.window = cap_s, floor_s, slack, window
        self.first_s = cap_s if first_s is None else min(cap_s, first_s)  # before any round was seen
        self.seen: list[float] = []  # slowest answer of each recent complete round

    def seconds(self) -> float:
        if len(self.seen) < 2:
            return self.first_s
        return min(self.cap_s, max(self.floor_s, self.slack * max(self.seen[-self.window :])))

    def observe(self, slowest_s: float) -> None:
        self.seen.append(slowest_s)


class StarTransport:
    def __init__(
        self,
        hub: StarHub,
        dim: int,
        num_classes: int,
        log: EventLog,
        *,
        round_timeout_s: float,
        phase_timeout_s: float | None = None,
        min_round_s: float = 0.0,
        asynchronous: bool = False,
        keep_frames: bool = False,
    ) -> None:
        self.hub, self.dim, self.num_classes, self.log = hub, dim, num_classes, log
        self.deadline = AdaptiveDeadline(round_timeout_s)
        self.phase_timeout_s = phase_timeout_s or round_timeout_s
        self.min_round_s = min_round_s
        self.asynchronous = asynchronous
        self.keep_frames = keep_frames  # validators: each round's update frames, as their senders signed them
        self.frames: dict[int, Any] = {}
        self._in_flight: dict[int, int] = {}  # FedBuff: party -> the round it was asked in, not yet back
        self.ledger_task: str | None = None  # [ledger] sign_updates: the ledger parties sign updates for
        self.commit_reveal = False  # [ledger] commit_reveal: a commit round, then a reveal round
        self._task: TrainTask | None = None
        self._waiting: set[int] = set()
        self._failures: list[Failure] = []
        self._t0 = 0.0
        self.now = 0.0  # the driver's simulated clock; unused on a network

    def dispatch(self, task: TrainTask) -> None:
        self._task, self._t0 = task, time.monotonic()
        self.frames = {}
        self.hub.status["round"] = task.round
        body = task_body(task, self.ledger_task, self.commit_reveal)
        unreachable = []
        self._waiting = set()
        for p in task.party_ids.tolist():
            (self._waiting.add if self.hub.send(p, TRAIN, task.round, body) else unreachable.append)(p)
        if self.asynchronous:  # work stays in flight across releases
            self._in_flight.update({p: task.round for p in self._waiting})
            self._waiting = set()
        self._failures = [Failure(np.array(unreachable, dtype=np.int64), "dropout")] if unreachable else []
        if unreachable:
            self.log("unreachable", round=task.round, parties=unreachable)

    def collect(self) -> Iterator[UpdateBatch | Failure]:
        if self.asynchronous:
            yield from self._collect_async()
            return
        task = self._task
        yield from self._failures
        rows: dict[int, UpdateBatch] = {}
        commits: dict[int, tuple[bytes, bytes]] = {}
        dropped: list[int] = []
        declined: dict[str, list[int]] = {}
        limit = self.deadline.seconds()
        end = self._t0 + limit
        slowest = 0.0
        answer = COMMIT if self.commit_reveal else UPDATE
        while self._waiting:
            left = end - time.monotonic()
            if left <= 0:
                break
            item = self._next(left)
            if item is None:
                continue
            party, env = item
            if env is None:
                if party in self._waiting:
                    self._waiting.discard(party)
                    dropped.append(party)
                continue
            if party not in self._waiting or env.round != task.round or env.kind not in (answer, DECLINED):
                self.log("stray", party=party, kind=env.kind, round=env.round, open_round=task.round)
                continue
            self._waiting.discard(party)
            slowest = max(slowest, time.monotonic() - self._t0)
            if env.kind == DECLINED:  # its own privacy budget, or an update it cannot encode
                try:
                    why = str(decode(env.body)[0].get("reason"))
                except WireError:
                    why = "declined"
                declined.setdefault(REFUSED if why == "privacy_budget" else why, []).append(party)
            elif env.kind == COMMIT:
                try:
                    commits[party] = read_commit(env.body)
                except WireError as err:
                    self.log("refused", reason="bad_commit", party=party, detail=str(err))
                    dropped.append(party)
            else:
                self._take(party, env, task.round, rows, dropped)
        late = sorted(self._waiting)
        self._waiting = set()
        if late:
            self.log("deadline", round=task.round, parties=late, seconds=round(limit, 3))
        else:
            self.deadline.observe(slowest)
        if commits:  # the commit deadline has passed: nothing committed later counts; now reveal
            dropped += self._reveal(task.round, commits, rows)
        for why, ids in (("dropout", dropped), ("deadline", late), *declined.items()):
            if ids:
                yield Failure(np.array(sorted(ids), dtype=np.int64), why)
        pause = self._t0 + self.min_round_s - time.monotonic()
        if pause > 0:  # pace steering (network.min_round_s)
            time.sleep(pause)
        if rows:  # signatures and (commit–reveal) commitments travel with the rows
            yield UpdateBatch.concat([rows[p] for p in sorted(rows)])

    def _read_row(
        self, party: int, env: Any, round_: int, committed: tuple[bytes, bytes] | None = None
    ) -> UpdateBatch | None:
        """``party``'s update for ``round_`` from its UPDATE frame; None (refusal logged) when the frame
        cannot be read, names another party or round, or (``committed``) reveals no salt."""
        try:
            batch = read_update(env.body, self.dim, committed)
        except WireError as err:
            self.log("refused", reason="bad_update", party=party, detail=str(err))
            return None
        if int(batch.party_ids[0]) != party or int(batch.round[0]) != round_:
            claim = f"claims party {int(batch.party_ids[0])}, round {int(batch.round[0])}"
            self.log("refused", reason="mislabelled_update", party=party, detail=claim)
            return None
        return batch

    def _take(
        self,
        party: int,
        env: Any,
        round_: int,
        rows: dict[int, UpdateBatch],
        dropped: list[int],
        committed: tuple[bytes, bytes] | None = None,
    ) -> None:
        """Read one party's UPDATE frame into ``rows`` (or, refused, into ``dropped``)."""
        batch = self._read_row(party, env, round_, committed)
        if batch is None:
            dropped.append(party)
            return
        rows[party] = batch
        if self.keep_frames:
            self.frames[party] = env

    def _reveal(
        self, round_: int, commits: dict[int, tuple[bytes, bytes]], rows: dict[int, UpdateBatch]
    ) -> list[int]:
        """Phase 2 of commit–reveal: ask each committed party for its update; the parties that did not
        reveal in time, or revealed no salt (their commitment cannot be opened), drop out."""
        asked = {p for p in commits if self.hub.send(p, REVEAL, round_, b"")}
        dropped = sorted(set(commits) - asked)
        for party, env in self.replies(asked, UPDATE, round_):
            asked.discard(party)
            self._take(party, env, round_, rows, dropped, commits[party])
        if asked:
            self.log("unrevealed", round=round_, parties=sorted(asked))
        return dropped + sorted(asked)

    def _collect_async(self) -> Iterator[UpdateBatch | Failure]:
        """FedBuff over the wire: each update as it arrives, whatever round it answers; the server stops
        reading once it has its K. Ends early only when nothing is in flight or the round times out."""
        yield from self._failures
        end = time.monotonic() + self.deadline.cap_s
        while self._in_flight and time.monotonic() < end:
            item = self._next(end - time.monotonic())
            if item is None:
                continue
            party, env = item
            asked = self._in_flight.get(party)
            if env is None:
                if asked is not None:
                    del self._in_flight[party]
                    yield Failure(np.array([party], dtype=np.int64), "dropout")
                continue
            if asked is None or env.round != asked or env.kind not in (UPDATE, DECLINED):
                self.log("stray", party=party, kind=env.kind, round=env.round)
                continue
            del self._in_flight[party]
            if env.kind == DECLINED:
                yield Failure(np.array([party], dtype=np.int64), REFUSED)
                continue
            batch = self._read_row(party, env, asked)
            yield Failure(np.array([party], dtype=np.int64), "dropout") if batch is None else batch

    def exchange(self, kind: str, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        """One phase of a private sum as a message round; parties that do not answer in time drop out."""
        r = self._task.round if self._task is not None else 0
        asked = set()
        for p, msg in messages.items():
            body = encode({"phase": kind}, {"data": np.frombuffer(msg, dtype=np.uint8)})
            if self.hub.send(int(p), PHASE, r, body):
                asked.add(int(p))
        replies: dict[int, bytes] = {}
        for party, env in self.replies(asked, PHASE_REPLY, r):
            try:
                fields, arrays = decode(env.body)
                if fields.get("phase") != kind:
                    raise WireError(f"reply to phase {fields.get('phase')!r}, not {kind!r}")
                replies[party] = arrays["data"].tobytes()
            except (WireError, KeyError) as err:
                self.log("refused", reason="bad_phase_reply", party=party, detail=str(err))
        return replies

    def replies(self, asked: set[int], kind: str, round_: int) -> Iterator[tuple[int, Any]]:
        """Each asked party's reply of ``kind`` for ``round_`` as it arrives, until all answered, left, or
        ``phase_timeout_s`` passed (then the silent ones are logged)."""
        asked = set(asked)
        end = time.monotonic() + self.phase_timeout_s
        while asked and time.monotonic() < end:
            item = self._next(end - time.monotonic())
            if item is None:
                continue
            party, env = item
            if env is None:
                asked.discard(party)
            elif env.kind != kind or party not in asked or env.round != round_:
                self.log("stray", party=party, kind=env.kind, round=env.round, waiting_for=kind)
            else:
                asked.discard(party)
                yield party, env
        if asked:
            self.log("no_reply", kind=kind, parties=sorted(asked))

    def evaluate(self, params: np.ndarray) -> EvalCounts | None:
        """The parties' summed counts, in party order; a party that does not answer is left out (logged);
        None when no party answered."""
        r = self._task.round if self._task is not None else 0
        body = encode({}, {"params": params})
        asked = {p for p in self.hub.connected() if self.hub.send(p, EVALUATE, r, body)}
        got: dict[int, EvalCounts] = {}
        for party, env in self.replies(asked, COUNTS, r):
            try:
                got[party] = read_counts(env.body, self.num_classes)
            except WireError as err:
                self.log("refused", reason="bad_counts", party=party, detail=str(err))
        if not got:
            return None
        total = None
        for p in sorted(got):
            total = got[p] if total is None else total + got[p]
        return total

    def close(self) -> None:
        for p in self.hub.members():  # parties and validators
            self.hub.send(p, STOP, self._task.round if self._task is not None else 0, b"")
        self.hub.close()

    def _next(self, timeout: float) -> tuple[int, object] | None:
        try:
            return self.hub.inbox.get(timeout=max(0.0, min(timeout, 0.5)))
        except queue.Empty:
            return None
