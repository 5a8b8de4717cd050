"""The star topology over gRPC: the aggregator listens, every party dials out.

A party behind a firewall needs no inbound port: it opens one bidirectional ``deai.Star/Session`` stream
to the aggregator and both sides send signed frames (:mod:`deai.net.envelope`) down it. Frames are cut
into chunks of ``CHUNK_BYTES`` (gRPC's 4 MiB message limit never applies to an update) and reassembled
into one buffer of the size the first chunk declares; a frame declaring more than the receiver's limit is
refused at its first chunk, and its other chunks are skipped without being stored. The frame's signed
SHA-256 is checked once the last chunk is in.

:class:`StarHub` is the aggregator's end (sessions by party index, one inbox); :class:`StarLink` a
party's. Neither knows what the frames mean: that is the node programs' part.
"""

from __future__ import annotations

import queue
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc

from deai.net.envelope import OVERSIZED, Envelope, Gate, Refused, Sealer
from deai.net.events import EventLog
from deai.net.payloads import HELLO, WELCOME

SERVICE, METHOD = "deai.Star", "Session"
PATH = f"/{SERVICE}/{METHOD}"
CHUNK_BYTES = 1 << 20
_CHUNK = struct.Struct(">QQI")  # frame id, frame length, chunk index
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", CHUNK_BYTES + 4096),
    ("grpc.max_send_message_length", CHUNK_BYTES + 4096),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.bdp_probe", 0),
]
_END = object()


def chunks(frame_id: int, frame: bytes) -> Iterator[bytes]:
    """``frame`` as gRPC messages of at most ``CHUNK_BYTES`` payload each."""
    view = memoryview(frame)
    n = max(1, -(-len(frame) // CHUNK_BYTES))
    for i in range(n):
        yield _CHUNK.pack(frame_id, len(frame), i) + view[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES]


class Reassembler:
    """Chunks of one stream back into frames, refusing any frame larger than ``max_bytes`` up front."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._id: int | None = None
        self._buf: bytearray | None = None
        self._have = 0
        self._skip: int | None = None

    def add(self, chunk: bytes) -> bytearray | None:
        """The completed frame, once its last chunk is in; ``Refused`` for an oversized or broken one."""
        if len(chunk) < _CHUNK.size:
            raise Refused("malformed", f"a chunk of {len(chunk)} bytes has no chunk header")
        frame_id, total, index = _CHUNK.unpack_from(chunk, 0)
        payload = memoryview(chunk)[_CHUNK.size :]
        if frame_id == self._skip:
            return None
        if index == 0:
            if total > self.max_bytes:
                self._skip, self._buf = frame_id, None
                limit = f"this node takes at most {self.max_bytes}"
                raise Refused(OVERSIZED, f"a frame of {total} bytes; {limit}")
            self._id, self._buf, self._have = frame_id, bytearray(total), 0
        elif frame_id != self._id or self._buf is None or index * CHUNK_BYTES != self._have:
            self._buf = None
            raise Refused("malformed", f"chunk {index} of frame {frame_id} arrived out of order")
        end = self._have + len(payload)
        if end > len(self._buf):
            self._buf = None
            raise Refused("malformed", f"frame {frame_id} has more bytes than its declared {total}")
        self._buf[self._have : end] = payload
        self._have = end
        if end < len(self._buf):
            return None
        frame, self._buf = self._buf, None
        return frame  # the buffer itself: the update's rows are read from it without a copy


def gated_frames(
    chunks_in: Iterator[bytes], assembler: Reassembler, gate: Gate, traffic: Traffic, log: EventLog
) -> Iterator[Envelope]:
    """The envelopes that pass ``gate``, from a stream of chunks; refusals are counted and logged."""
    for chunk in chunks_in:
        try:
            frame = assembler.add(chunk)
            if frame is None:
                continue
            traffic.received += len(frame)
            env = gate.open(frame)
        except Refused as why:
            traffic.refused += 1
            log("refused", reason=why.reason, detail=why.detail, sender=why.sender)
            continue
        yield env
        frame = env = None  # the consumer holds the only reference: a big frame is freed once used


class _Outbox:
    """Frames waiting to go down one stream, as chunks; ``close`` ends the stream."""

    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue()
        self._next = 0
        self.bytes_sent = 0

    def put(self, frame: bytes) -> None:
        self.q.put(frame)

    def close(self) -> None:
        self.q.put(_END)

    def stream(self) -> Iterator[bytes]:
        while True:
            frame = self.q.get()
            if frame is _END:
                return
            self._next += 1
            self.bytes_sent += len(frame)
            yield from chunks(self._next, frame)


@dataclass
class Traffic:
    sent: int = 0
    received: int = 0
    refused: int = 0


class StarHub:
    """The aggregator's end: one session per party (a party that reconnects replaces its old session).

    ``inbox`` receives ``(party, Envelope)`` for every accepted frame but hellos, and ``(party, None)``
    when a party's stream ends. Validators hold negative indices: they are sessions (``members``) but not
    parties (``connected``, ``wait_for``). ``on_join(index, hello)`` runs once each session is welcomed.
    """

    def __init__(
        self,
        listen: str,
        gate: Gate,
        sealer: Sealer,
        party_index: dict[str, int],
        log: EventLog,
        *,
        credentials: grpc.ServerCredentials | None = None,
        status: dict[str, Any] | None = None,
    ) -> None:
        self.gate, self.sealer, self.party_index, self.log = gate, sealer, party_index, log
        self.inbox: queue.Queue[tuple[int, Envelope | None]] = queue.Queue()
        self.sessions: dict[int, _Outbox] = {}
        self.keys: dict[int, str] = {p: k for k, p in party_index.items()}
        self.traffic = Traffic()
        self.status = status if status is not None else {}
        self._lock = threading.Lock()
        self.joined = threading.Condition(self._lock)
        self.on_join: Callable[[int, Envelope], None] | None = None
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=len(party_index) + 8, thread_name_prefix="star"),
            options=GRPC_OPTIONS,
            maximum_concurrent_rpcs=len(party_index) + 4,
        )
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {METHOD: grpc.stream_stream_rpc_method_handler(self._session)}
        )
        self._server.add_generic_rpc_handlers((handler,))
        # several comma-separated HOST:PORT (a dual-homed aggregator); they share the first one's port
        self.port = 0
        for address in listen.split(","):
            host, _, port = address.strip().rpartition(":")
            where = f"{host}:{self.port or port}"
            bound = (
                self._server.add_insecure_port(where)
                if credentials is None
                else self._server.add_secure_port(where, credentials)
            )
            if bound == 0:
                raise OSError(f"cannot listen on {where}")
            self.port = self.port or bound
        self._server.start()

    # -- sending ---------------------------------------------------------------------------
    def send(self, party: int, kind: str, round_: int, body: bytes) -> bool:
        """Queue a frame for ``party``; False when it has no open session."""
        with self._lock:
            box = self.sessions.get(party)
        if box is None:
            return False
        frame = self.sealer.seal(kind, round_, self.keys[party], body)
        self.traffic.sent += len(frame)
        box.put(frame)
        return True

    def connected(self) -> list[int]:
        """The parties (or edges) with an open session."""
        with self._lock:
            return sorted(p for p in self.sessions if p >= 0)

    def members(self) -> list[int]:
        """Every open session: parties and validators."""
        with self._lock:
            return sorted(self.sessions)

    def wait_for(self, parties: int, timeout: float, *, validators: bool = False) -> int:
        """Block until ``parties`` party sessions (or, with ``validators``, validator sessions) are open
        or ``timeout`` passes; the number open."""

        def count() -> int:
            return sum(1 for p in self.sessions if (p < 0) == validators)

        with self.joined:
            self.joined.wait_for(lambda: count() >= parties, timeout=timeout)
            return count()

    def close(self, grace: float = 2.0) -> None:
        with self._lock:
            boxes = list(self.sessions.values())
            self.sessions.clear()
        for box in boxes:
            box.close()
        self._server.stop(grace).wait(grace + 1)

    # -- one party's stream ------------------------------------------------------------------
    def _session(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        box = _Outbox()
        context.add_callback(box.close)
        reader = threading.Thread(target=self._read, args=(requests, box, context), daemon=True)
        reader.start()
        yield from box.stream()

    def _read(self, requests: Iterator[bytes], box: _Outbox, context: grpc.ServicerContext) -> None:
        assembler = Reassembler(self.gate.max_bytes)
        party: int | None = None
        try:
            for env in gated_frames(requests, assembler, self.gate, self.traffic, self.log):
                sender = self.party_index.get(env.sender)
                if sender is None:  # the aggregator's own key: nobody else may use it
                    self.log("refused", reason="unknown_sender", detail="not a party key", sender=env.sender)
                    continue
                if party is None:
                    if env.kind != HELLO:
                        why = f"{env.kind} before hello"
                        self.log("refused", reason="no_hello", detail=why, party=sender)
                        continue
                    party = sender
                    self._register(party, box, env)
                    continue
                if sender != party:
                    self.log("refused", reason="impersonation", detail="a second key on one session",
                             party=party, sender=env.sender)  # fmt: skip
                    continue
                self.inbox.put((party, env))
                env = None  # the inbox holds the only reference: freed once consumed
        except grpc.RpcError:
            pass
        finally:
            if party is not None:
                with self._lock:
                    if self.sessions.get(party) is box:
                        del self.sessions[party]
                        gone = True
                    else:
                        gone = False  # replaced by a newer session of the same party
                if gone:
                    self.log("left", party=party)
                    self.inbox.put((party, None))
            box.close()

    def _register(self, party: int, box: _Outbox, hello: Envelope) -> None:
        with self._lock:
            old = self.sessions.get(party)
            self.sessions[party] = box
            self.joined.notify_all()
        if old is not None:
            old.close()
        self.log("joined", party=party, rejoin=old is not None)
        body = self.status.get("welcome", b"")
        frame = self.sealer.seal(WELCOME, int(self.status.get("round", 0)), self.keys[party], body)
        box.put(frame)
        if self.on_join is not None:
            self.on_join(party, hello)


class Disconnected(Exception):
    """The party's stream to the aggregator ended."""


class StarLink:
    """A party's end: one stream to the aggregator, frames in through its gate."""

    def __init__(
        self,
        address: str,
        gate: Gate,
        sealer: Sealer,
        aggregator_id: str,
        log: EventLog,
        *,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.gate, self.sealer, self.aggregator_id, self.log = gate, sealer, aggregator_id, log
        self.traffic = Traffic()
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
        else:
            from deai.net.tls import TASK_HOST  # every node certificate names it: any address will do

            options = [*GRPC_OPTIONS, ("grpc.ssl_target_name_override", TASK_HOST)]
            self._channel = grpc.secure_channel(address, credentials, options=options)
        self._box = _Outbox()
        self._inbox: queue.Queue[Envelope | None] = queue.Queue()
        self._call = self._channel.stream_stream(PATH)(self._box.stream())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def send(self, kind: str, round_: int, body: bytes) -> None:
        frame = self.sealer.seal(kind, round_, self.aggregator_id, body)
        self.traffic.sent += len(frame)
        self._box.put(frame)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued frame has been handed to gRPC (and a moment for it to leave)."""
        end = time.monotonic() + timeout
        while not self._box.q.empty() and time.monotonic() < end:
            time.sleep(0.02)
        time.sleep(0.3)

    def send_raw(self, frame: bytes) -> None:
        """A frame as is (tests: replays, forgeries, oversized frames)."""
        self._box.put(frame)

    def receive(self, timeout: float | None = None) -> Envelope | None:
        """The next accepted frame; None on timeout; ``Disconnected`` once the stream has ended."""
        try:
            env = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if env is None:
            self._inbox.put(None)  # stays ended for later calls
            raise Disconnected("the aggregator closed the stream or is unreachable")
        return env

    def close(self) -> None:
        self._box.close()
        self._call.cancel()
        self._channel.close()

    def _read(self) -> None:
        assembler = Reassembler(self.gate.max_bytes)
        try:
            for env in gated_frames(self._call, assembler, self.gate, self.traffic, self.log):
                if env.sender != self.aggregator_id:
                    self.log("refused", reason="not_aggregator", detail="a frame from a party key",
                             sender=env.sender)  # fmt: skip
                    continue
                self._inbox.put(env)
                env = None  # the inbox holds the only reference
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None
            if code != grpc.StatusCode.CANCELLED:
                self.log("disconnected", detail=str(code))
        finally:
            self._inbox.put(None)
