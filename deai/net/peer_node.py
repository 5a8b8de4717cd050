"""A peer of a coordinatorless federation over hivemind: it trains, gossips and mixes, with nobody in charge.

Discovery, membership and round rendezvous go through hivemind's DHT: each peer announces its libp2p peer
id under the task's key (one subkey per party index, refreshed every round, expiring when it dies).
Models travel over libp2p streams (hivemind's ``P2P``; transport security is libp2p's), each one a
signed frame of :mod:`deai.net.envelope`, so a model is accepted only from a key in the task's roster,
for this task and round, once (``DecentralizedAverager`` only hands back group means, which would rule
out per-message signatures and robust mixing).

The round is the one loop of :func:`deai.engine.driver.drive`: :class:`GossipServer` opens a round on the
peer's own model, :class:`GossipTransport` trains the peer's party on it, sends the half-step model to
the round's neighbours (:func:`deai.net.gossip.round_graph`) and collects theirs until every neighbour
answered or the (adaptive) deadline passed, and the server mixes (plain, clipped or trimmed gossip). Each
peer keeps a normal run directory (metrics, checkpoints, final model); restarted with it, a peer resumes;
a peer with no state that joins late fetches the current model from up to three live peers and starts
from their coordinate-wise median (a lone liar cannot hand it a poisoned model). DiLoCo (Douillard et
al. 2023) is the star with many local steps and ``strategy.server_momentum`` with Nesterov.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deai.config import ExperimentConfig
from deai.evaluation import EvalCounts
from deai.messages import Failure, RoundRecord, TrainTask, UpdateBatch
from deai.net.codec import WireError, decode, encode
from deai.net.envelope import Gate, Refused, Sealer
from deai.net.events import EventLog
from deai.net.gossip import metropolis_weights, mix, round_graph
from deai.net.roster import Roster
from deai.net.star_transport import AdaptiveDeadline
from deai.party.program import PartyProgram
from deai.train import LocalSpec

GOSSIP, STATE = "deai.gossip.v1", "deai.state.v1"
ANNOUNCE_TTL_S = 30.0


class Mailbox:
    """Models that arrived, by round and sender, each with the signed header it came in (the peer's
    ledger keeps those); the round loop waits on it."""

    def __init__(self) -> None:
        self.by_round: dict[int, dict[int, tuple[np.ndarray, tuple[dict[str, Any], bytes]]]] = {}
        self.cv = threading.Condition()

    def put(self, round_: int, party: int, model: np.ndarray, proof: tuple[dict[str, Any], bytes]) -> None:
        with self.cv:
            self.by_round.setdefault(round_, {}).setdefault(party, (model, proof))  # the first one counts
            self.cv.notify_all()

    def proofs_of(self, round_: int, parties: list[int]) -> dict[int, tuple[dict[str, Any], bytes]]:
        """The signed header each of ``parties``' models for ``round_`` arrived with."""
        with self.cv:
            got = self.by_round.get(round_, {})
            return {j: got[j][1] for j in parties if j in got}

    def wait(self, round_: int, want: set[int], until: float) -> dict[int, np.ndarray]:
        with self.cv:
            while not want <= set(self.by_round.get(round_, {})) and time.monotonic() < until:
                self.cv.wait(timeout=max(0.0, min(0.2, until - time.monotonic())))
            got = dict(self.by_round.get(round_, {}))
            for r in [r for r in self.by_round if r < round_ - 1]:
                del self.by_round[r]  # bounded: rounds long gone (the ledger took their proofs by now)
            return {j: m for j, (m, _) in got.items() if j in want}


class HivemindLink:
    """The peer's hivemind DHT and libp2p streams, driven from an asyncio loop in a thread of its own."""

    def __init__(
        self,
        listen: str,
        initial_peers: list[str],
        log: EventLog,
        *,
        relays: list[str] | None = None,
        relay_wait_s: float = 300.0,
    ) -> None:
        """``relays`` (a peer behind a NAT): reserve a slot on these circuit relays (:mod:`deai.net.relay`)
        and wait up to ``relay_wait_s`` until the reservation holds; the peer is then a DHT client."""
        import hivemind

        host, _, port = listen.rpartition(":")
        self.log = log
        self.relays = list(relays or [])
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        behind_nat: dict[str, Any] = {}
        if self.relays:
            behind_nat = {
                "client_mode": True,  # nobody can dial it to ask: it serves no DHT requests
                "use_auto_relay": True,
                "force_reachability": "private",
                "trusted_relays": self.relays,
            }
        self.dht = hivemind.DHT(
            initial_peers=[*initial_peers, *self.relays] or None,
            start=True,
            host_maddrs=[f"/ip4/{host}/tcp/{port}"],
            **behind_nat,
        )
        self.p2p = self.run(self.dht.replicate_p2p())
        self.peer_id = str(self.p2p.peer_id)
        self.maddrs = [str(m) for m in self.dht.get_visible_maddrs()]
        if self.relays:
            from deai.net.relay import wait_for_reservation

            self.maddrs = wait_for_reservation(self.p2p, self.relays, self.run, relay_wait_s, log)

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def serve(self, name: str, handle: Any) -> None:
        """``handle(frame) -> reply frame or b''`` for every stream opened to ``name``."""
        from hivemind.p2p import P2P

        async def on_stream(info: Any, reader: Any, writer: Any) -> None:
            try:
                frame = await P2P.receive_raw_data(reader)
                reply = await self.loop.run_in_executor(None, handle, frame)
                await P2P.send_raw_data(reply, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self.run(self.p2p.add_binary_stream_handler(name, on_stream))

    def call(
        self, peer_id: str, name: str, frame: bytes, timeout: float, relays: list[str] | None = None
    ) -> bytes | None:
        """Send ``frame`` to ``name`` on ``peer_id`` and return its reply; when that fails and the peer
        announced relays (it is behind a NAT), dial it through them and try once more."""
        from hivemind.p2p import P2P, PeerID

        target = PeerID.from_base58(peer_id)

        async def go() -> bytes:
            _, reader, writer = await self.p2p.call_binary_stream_handler(target, name)
            try:
                await P2P.send_raw_data(frame, writer)
                return await P2P.receive_raw_data(reader)
            finally:
                writer.close()

        async def through_relays() -> bytes:
            from hivemind.utils.multiaddr import Multiaddr

            from deai.net.relay import circuit_bytes

            # hivemind's P2P has no public connect; its daemon client's is the libp2p daemon's own call
            await self.p2p._client.connect(target, [Multiaddr(circuit_bytes(r)) for r in relays or []])
            return await go()

        try:
            return self.run(asyncio.wait_for(go(), timeout), timeout + 5)
        except Exception as err:  # noqa: BLE001 - an unreachable peer is an expected event, logged
            if not relays:
                self.log("send_failed", peer=peer_id[-8:], detail=type(err).__name__)
                return None
        try:
            reply = self.run(asyncio.wait_for(through_relays(), timeout), timeout + 5)
            self.log("dialed_through_relay", peer=peer_id[-8:])
            return reply
        except Exception as err:  # noqa: BLE001
            self.log("send_failed", peer=peer_id[-8:], detail=f"through its relays: {type(err).__name__}")
            return None

    def announce(self, key: str, index: int, value: dict[str, Any]) -> None:
        from hivemind.utils.timed_storage import get_dht_time

        self.dht.store(key, value, get_dht_time() + ANNOUNCE_TTL_S, subkey=index)

    def members(self, key: str) -> dict[int, dict[str, Any]]:
        found = self.dht.get(key, latest=True)
        if found is None or not isinstance(found.value, dict):
            return {}
        out = {}
        for sub, item in found.value.items():
            if isinstance(sub, int) and isinstance(getattr(item, "value", None), dict):
                out[sub] = item.value
        return out

    def close(self) -> None:
        try:
            self.run(self.p2p.shutdown(), 10)
        except Exception:  # noqa: BLE001 - shutting down a daemon that may already be gone
            pass
        self.dht.shutdown()
        self.loop.call_soon_threadsafe(self.loop.stop)


class GossipServer:
    """Each peer's "server program": its own model, mixed each round with what its neighbours sent."""

    def __init__(
        self, cfg: ExperimentConfig, index: int, params: np.ndarray, spec: LocalSpec, evaluator: Any
    ) -> None:
        self.cfg, self.index, self.spec, self.evaluator = cfg, index, spec, evaluator
        self.state = _PeerState(0, params)
        self.stopped: str | None = None
        self.diverged = False
        self._task: TrainTask | None = None
        self._own: np.ndarray | None = None
        self._received: dict[int, np.ndarray] = {}
        self._weights: dict[int, float] = {}
        self._missing: list[int] = []
        self._t0 = 0.0

    def open_round(self) -> TrainTask:
        self._t0 = time.perf_counter()
        r = self.state.round + 1
        self._task = TrainTask(
            r, r - 1, self.state.params, self.spec, self.cfg.run.seed, np.array([self.index])
        )
        self._own, self._received, self._missing = None, {}, []
        return self._task

    def accept(self, item: UpdateBatch | Failure) -> None:
        if isinstance(item, Failure):
            self._missing += item.party_ids.tolist()
            return
        for p, delta in zip(item.party_ids.tolist(), item.deltas, strict=True):
            if p == self.index:
                self._own = self.state.params + delta
            elif p not in self._received:  # the transport hands over neighbours' models exactly as sent
                self._received[p] = self.state.params + delta

    def ready(self) -> bool:
        return False

    def release(self) -> RoundRecord:
        r, x = self._task.round, self.state.params
        own = self._own if self._own is not None else x
        rule, f = self.cfg.network.gossip_rule, self.cfg.strategy.f_max
        new = mix(own, self._received, self._weights, rule, f)
        dist = [float(np.linalg.norm(m - own)) for m in self._received.values()]
        metrics: dict[str, Any] = {
            "round": r,
            "neighbours": len(self._weights),
            "received": len(self._received),
            "missing": sorted(self._missing),
            "neighbour_distance_mean": float(np.mean(dist)) if dist else 0.0,
        }
        if r % self.cfg.run.eval_every == 0 or r == self.cfg.run.rounds:
            metrics.update(self.evaluator(new))
        self.state.round, self.state.params = r, new
        self.state.wall_time_s += time.perf_counter() - self._t0
        metrics["wall_time_s"] = round(self.state.wall_time_s, 6)
        return RoundRecord(r, r, new, np.array(sorted(self._received)), {}, None, metrics, True)


class _PeerState:
    def __init__(self, round_: int, params: np.ndarray) -> None:
        self.round, self.params, self.wall_time_s = round_, params, 0.0


class GossipTransport:
    """Train the peer's own party, send its half-step model to the round's neighbours, collect theirs."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        server: GossipServer,
        party: PartyProgram,
        link: HivemindLink,
        gate: Gate,
        sealer: Sealer,
        roster: Roster,
        tid: str,
        log: EventLog,
        *,
        attack: tuple[str, float] | None = None,
        equivocate: bool = False,
    ) -> None:
        self.cfg, self.server, self.party, self.link, self.gate = cfg, server, party, link, gate
        self.sealer, self.roster, self.tid, self.log = sealer, roster, tid, log
        self.attack, self.equivocate = attack, equivocate  # fault injection: Byzantine peers
        self.sent: dict[int, str] = {}  # round -> SHA-256 of the model body this peer sent
        self.index, self.n = server.index, len(roster.parties)
        self.mailbox = Mailbox()
        # peers start together, so a first round needs no more than a start-up's worth of patience
        self.deadline = AdaptiveDeadline(cfg.network.round_timeout_s, first_s=30.0)
        self.suspect: set[int] = set()  # neighbours that missed a round: waited for briefly until heard from
        self.key = f"deai/{tid}/peers"
        self.peer_ids: dict[int, str] = {}
        self.relays_of: dict[int, list[str]] = {}  # peers behind NATs: the relays they announced
        self._last_delta = np.zeros(0, np.float32)
        self.examples: dict[int, int] = {}
        self.joined_at = 1  # the first round this peer takes part in (a late joiner's is later)
        self.joined_at_of: dict[int, int] = {}  # the example counts peers announce (public, as in a star)
        self._items: list[UpdateBatch | Failure] = []
        link.serve(GOSSIP, self._on_gossip)
        link.serve(STATE, self._on_state)

    # -- what arrives ---------------------------------------------------------------------------
    def _open(self, frame: bytes, kind: str) -> tuple[int, dict[str, Any], dict[str, np.ndarray], Any] | None:
        try:
            env = self.gate.open(frame)
            if env.kind != kind:
                raise Refused("wrong_kind", f"{env.kind} on the {kind} handler", env.sender)
            sender = self.roster.party_index().get(env.sender)
            fields, arrays = decode(env.body)
            if sender is None or fields.get("party") != sender:
                raise Refused("impersonation", "the frame's party is not its signer's", env.sender)
            return sender, fields | {"round": env.round}, arrays, env
        except Refused as why:
            self.log("refused", reason=why.reason, detail=why.detail, sender=why.sender)
        except WireError as err:
            self.log("refused", reason="bad_body", detail=str(err))
        return None

    def _on_gossip(self, frame: bytes) -> bytes:
        got = self._open(frame, "gossip")
        if got is not None:
            sender, fields, arrays, env = got
            model = arrays.get("model")
            dim = len(self.server.state.params)
            if (
                model is None
                or model.dtype != np.float32
                or model.shape != (dim,)
                or not np.isfinite(model).all()
            ):
                self.log("refused", reason="bad_model", party=sender)
            else:
                self.mailbox.put(int(fields["round"]), sender, np.array(model), (env.header, env.signature))
                self.suspect.discard(sender)
        return b"ok"

    def _on_state(self, frame: bytes) -> bytes:
        got = self._open(frame, "state_request")
        if got is None:
            return b""
        sender = got[0]
        st = self.server.state
        body = encode({"party": self.index}, {"model": st.params})
        return self.sealer.seal("state", st.round, self.roster.party_ids[sender], body)

    # -- the driver's transport ----------------------------------------------------------------
    def dispatch(self, task: TrainTask) -> None:
        r = task.round
        self._refresh_members(r - 1)  # announces the last round this peer finished
        nbrs = round_graph(self.cfg.run.seed, r, self.n, self.cfg.network.gossip_graph)
        self.server._weights = metropolis_weights(self.index, nbrs)
        me = np.array([self.index])
        if r > self.cfg.run.rounds:  # a consensus round: mix only, train nothing
            dim = len(task.params)
            batch = UpdateBatch(me, np.array([r]), np.array([r - 1]), np.zeros((1, dim), np.float32),
                                np.ones(1), np.zeros(1, np.int64))  # fmt: skip
        else:
            batch = self.party.train(task, me)
            # D-PSGD averages peers uniformly; scaling each local step by the peer's share of the examples
            # (n_i / mean n, from the counts peers announce) makes the consensus FedAvg's weighted mean
            batch.deltas = (batch.deltas.astype(np.float64) * self._example_scale()).astype(np.float32)
        model = task.params + batch.deltas[0]
        sent = model
        if self.attack is not None:  # a Byzantine peer (fault injection): it sends a crafted model
            if r <= self.cfg.run.rounds:
                self._last_delta = batch.deltas[0]
            sent = (task.params - self.attack[1] * self._last_delta).astype(np.float32)
        body = encode({"party": self.index}, {"model": sent})
        self.sent[r] = hashlib.sha256(body).hexdigest()  # what this peer's ledger says it sent
        self._items = [batch]
        targets = [j for j in self.server._weights if j in self.peer_ids]
        bodies = {j: body for j in targets}
        if self.equivocate:  # fault injection: a slightly different model to each neighbour
            for j in targets:
                other = (sent * np.float32(1.0 + 1e-3 * (j + 1))).astype(np.float32)
                bodies[j] = encode({"party": self.index}, {"model": other})
        threads = [threading.Thread(target=self._send, args=(j, r, bodies[j])) for j in targets]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.deadline.cap_s)

    def _send(self, j: int, r: int, body: bytes) -> None:
        frame = self.sealer.seal("gossip", r, self.roster.party_ids[j], body)
        timeout = min(30.0, self.deadline.cap_s)
        self.link.call(self.peer_ids[j], GOSSIP, frame, timeout=timeout, relays=self.relays_of.get(j))

    def collect(self) -> Iterator[UpdateBatch | Failure]:
        task = self.server._task
        r = task.round
        # the round's neighbours that are members and had joined by this round (a late joiner is not
        # waited for in rounds before it arrived)
        want = {j for j in self.server._weights if j in self.peer_ids and self.joined_at_of.get(j, 1) <= r}
        t0 = time.monotonic()
        patient = want - self.suspect
        got = self.mailbox.wait(r, patient, t0 + self.deadline.seconds())
        if self.suspect & want:  # a neighbour that missed a round gets one more short chance
            got |= self.mailbox.wait(r, want, time.monotonic() + 0.5)
        if patient <= set(got):
            self.deadline.observe(time.monotonic() - t0)
        missing = sorted(want - set(got))
        self.suspect |= set(missing)
        yield from self._items
        self.server._received = dict(got)  # the models as they arrived (params + delta would round)
        if got:
            ids = sorted(got)
            deltas = np.stack([got[j] - task.params for j in ids]).astype(np.float32)
            k = len(ids)
            yield UpdateBatch(
                np.array(ids, dtype=np.int64),
                np.full(k, r),
                np.full(k, r - 1),
                deltas,
                np.ones(k),
                np.ones(k, np.int64),
            )
        if missing:
            yield Failure(np.array(missing, dtype=np.int64), "deadline")

    def exchange(self, kind: str, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        """Gossip has no private-sum phases (a private rule is refused for p2p before a node starts), so
        no peer ever answers one: the empty reply set, logged."""
        self.log("no_reply", kind=kind, parties=sorted(int(p) for p in messages))
        return {}

    def evaluate(self, params: np.ndarray) -> EvalCounts:
        return self.party.evaluate(params)

    def close(self) -> None:
        pass

    # -- membership ------------------------------------------------------------------------------
    def _refresh_members(self, r: int, *, announce: bool = True) -> dict[int, dict[str, Any]]:
        """Announce this peer (its last finished round, the round it joined at, its example count) and
        read everyone's announcements; returns them."""
        mine = int(self.party.shards.train_sizes[0])
        if announce:
            value = {"peer_id": self.link.peer_id, "round": r, "examples": mine, "joined_at": self.joined_at}
            if self.link.relays:  # behind a NAT: the others reach it through these
                value["relays"] = self.link.relays
            self.link.announce(self.key, self.index, value)
        self.examples[self.index] = mine
        members = self.link.members(self.key)
        for j, v in members.items():
            if 0 <= j < self.n and j != self.index and isinstance(v.get("peer_id"), str):
                self.peer_ids[j] = v["peer_id"]
                self.joined_at_of[j] = int(v.get("joined_at", 1))
                relays = v.get("relays")
                if isinstance(relays, list) and all(isinstance(a, str) for a in relays):
                    self.relays_of[j] = relays[:8]
                if isinstance(v.get("examples"), int) and v["examples"] > 0:
                    self.examples[j] = v["examples"]
        return members

    def progress(self) -> int:
        """The furthest round any live peer has finished (without announcing this one)."""
        members = self._refresh_members(0, announce=False)
        rounds = [int(v.get("round", 0)) for j, v in members.items() if j != self.index]
        return max(rounds, default=0)

    def _example_scale(self) -> float:
        """This peer's example count over the members' mean (1 under uniform weighting)."""
        if self.cfg.network.gossip_weighting == "uniform" or not self.examples:
            return 1.0
        return self.examples[self.index] / float(np.mean(list(self.examples.values())))

    def wait_for_members(self, want: int, timeout: float) -> int:
        """Announce this peer and wait until ``want`` peers (itself included) are known."""
        end = time.monotonic() + timeout
        while True:
            self._refresh_members(self.server.state.round)
            if len(self.peer_ids) + 1 >= want or time.monotonic() > end:
                return len(self.peer_ids) + 1
            time.sleep(0.5)

    def fetch_state(self, limit: int = 3) -> tuple[int, np.ndarray] | None:
        """The current round and model from up to ``limit`` live peers: max round, coordinate median."""
        rounds, models = [], []
        for j, pid in list(self.peer_ids.items())[:limit]:
            frame = self.sealer.seal(
                "state_request", 0, self.roster.party_ids[j], encode({"party": self.index})
            )
            reply = self.link.call(pid, STATE, frame, timeout=10.0, relays=self.relays_of.get(j))
            if not reply:
                continue
            got = self._open(reply, "state")
            if got is None or got[0] != j or "model" not in got[2]:
                continue
            rounds.append(int(got[1]["round"]))
            models.append(np.array(got[2]["model"], dtype=np.float32))
        if not models:
            return None
        return max(rounds), np.median(np.stack(models), axis=0).astype(np.float32)


def peer_ready_file(state: Path) -> Path:
    return Path(state) / "address"
