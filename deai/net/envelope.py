"""Signed envelopes, and the checks every node runs on each message before anything reads its body.

A frame is ``u32 header length | header JSON | Ed25519 signature (64 bytes) | body``. The header names
the protocol version, the task, the message kind and round, sender and recipient key ids, the sender's
sequence number and the body's SHA-256 and length; the sender signs the header, so the signature covers
the body through its digest. A :class:`Gate` refuses, with a named reason, a frame that is oversized,
malformed, of another protocol version or task, addressed to someone else, from an unknown key, badly
signed, whose body does not match its digest, or whose sequence number it has already accepted from that
sender or that lies more than ``REPLAY_WINDOW_NS`` below the newest one accepted (a replay). Sequence
numbers are the sender's clock in nanoseconds, made strictly increasing, so a sender restarted from the
same key still counts upward; the window (rather than "strictly above the last") lets frames a sender
sealed concurrently arrive out of order over separate streams.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from deai.jsonio import canonical
from deai.verify.identity import Identity, verify_signature

PROTOCOL_VERSION = 1
REPLAY_WINDOW_NS = 60 * 10**9
_TAG = b"deai-envelope-v1\x00"
_LEN = struct.Struct(">I")
SIGNATURE_BYTES = 64

# Why a frame is refused: each is logged with the sender (where known) and the detail.
OVERSIZED = "oversized"
MALFORMED = "malformed"
VERSION_MISMATCH = "protocol_version"
WRONG_TASK = "wrong_task"
MISADDRESSED = "misaddressed"
UNKNOWN_SENDER = "unknown_sender"
BAD_SIGNATURE = "bad_signature"
BAD_DIGEST = "bad_digest"
REPLAY = "replay"


class Refused(Exception):
    """A frame a gate will not accept: ``reason`` is one of the names above, ``detail`` says more."""

    def __init__(self, reason: str, detail: str, sender: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.sender = reason, detail, sender


@dataclass(frozen=True)
class Envelope:
    """A frame that passed its gate."""

    kind: str
    round: int
    sender: str
    seq: int
    body: bytes | memoryview
    header: dict[str, Any]
    signature: bytes = b""  # the sender's, over the header: a forwarded frame stays checkable


def header_signed_by(header: dict[str, Any], signature: bytes, public_key: bytes) -> bool:
    """Whether ``public_key`` signed this frame header (and so the body whose SHA-256 it names)."""
    return verify_signature(public_key, signature, _TAG + canonical(header).encode())


def check_forwarded(header: dict[str, Any], signature: bytes, body: bytes, public_key: bytes) -> str | None:
    """Why a frame relayed by a third node (a party's update, shown to a validator by the aggregator)
    is not what its sender signed, or None: the relay can drop such frames but cannot forge or alter one."""
    if not header_signed_by(header, signature, public_key):
        return BAD_SIGNATURE
    if header.get("body_bytes") != len(body) or hashlib.sha256(body).hexdigest() != header.get("body_sha256"):
        return BAD_DIGEST
    return None


class Sealer:
    """Signs outgoing frames for one sender; thread-safe (nodes send from several threads)."""

    def __init__(self, identity: Identity, task_id: str) -> None:
        self.identity, self.task_id = identity, task_id
        self._seq, self._lock = 0, threading.Lock()

    def _next_seq(self) -> int:
        with self._lock:
            self._seq = max(self._seq + 1, time.time_ns())
            return self._seq

    def seal(self, kind: str, round_: int, to: str, body: bytes, **extra: Any) -> bytes:
        header = {
            "v": PROTOCOL_VERSION,
            "task": self.task_id,
            "kind": kind,
            "round": int(round_),
            "sender": self.identity.id,
            "to": to,
            "seq": self._next_seq(),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_bytes": len(body),
            **extra,
        }
        raw = canonical(header).encode()
        signature = self.identity.sign(_TAG + raw)
        return b"".join([_LEN.pack(len(raw)), raw, signature, body])


class Gate:
    """The checks on every incoming frame, in order, for one receiving node."""

    def __init__(self, task_id: str, me: str, peers: dict[str, bytes], max_bytes: int) -> None:
        self.task_id, self.me, self.max_bytes = task_id, me, max_bytes
        self.peers = dict(peers)  # key id -> raw Ed25519 public key
        self._newest: dict[str, int] = {}
        self._seen: dict[str, set[int]] = {}  # each sender's accepted sequence numbers in the window
        self._lock = threading.Lock()

    def open(self, frame: bytes | bytearray) -> Envelope:
        if len(frame) > self.max_bytes:
            raise Refused(OVERSIZED, f"{len(frame)} bytes; this node takes at most {self.max_bytes}")
        try:
            (n,) = _LEN.unpack_from(frame, 0)
            view = memoryview(frame)
            raw = bytes(view[_LEN.size : _LEN.size + n])
            header = json.loads(raw)
            signature = bytes(view[_LEN.size + n : _LEN.size + n + SIGNATURE_BYTES])
            body = view[_LEN.size + n + SIGNATURE_BYTES :]  # no copy: a 100 MB update is held once
            version, sender = header["v"], str(header["sender"])
            kind, round_, seq = str(header["kind"]), int(header["round"]), int(header["seq"])
        except (struct.error, ValueError, KeyError, TypeError) as err:
            raise Refused(MALFORMED, f"cannot read the envelope header ({type(err).__name__})") from None
        if version != PROTOCOL_VERSION:
            raise Refused(
                VERSION_MISMATCH,
                f"the sender speaks deai wire protocol {version!r}; this node speaks {PROTOCOL_VERSION}",
                sender,
            )
        if header.get("task") != self.task_id:
            raise Refused(
                WRONG_TASK,
                f"message for task {header.get('task')!r}; this node serves {self.task_id}",
                sender,
            )
        if header.get("to") != self.me:
            raise Refused(MISADDRESSED, f"addressed to {header.get('to')!r}, not to this node", sender)
        key = self.peers.get(sender)
        if key is None:
            raise Refused(UNKNOWN_SENDER, f"key {sender} is not in this task's roster", sender)
        if not verify_signature(key, signature, _TAG + raw):
            raise Refused(BAD_SIGNATURE, f"the signature is not {sender}'s", sender)
        if header.get("body_bytes") != len(body) or hashlib.sha256(body).hexdigest() != header.get(
            "body_sha256"
        ):
            raise Refused(BAD_DIGEST, "the body does not match the digest its sender signed", sender)
        with self._lock:
            newest, seen = self._newest.get(sender, 0), self._seen.setdefault(sender, set())
            if seq in seen or seq <= newest - REPLAY_WINDOW_NS:
                raise Refused(
                    REPLAY, f"sequence {seq} was accepted before or is older than the window", sender
                )
            seen.add(seq)
            if seq > newest:
                self._newest[sender] = newest = seq
                floor = newest - REPLAY_WINDOW_NS
                if len(seen) > 64:
                    self._seen[sender] = {s for s in seen if s > floor}
        return Envelope(kind, round_, sender, seq, body, header, signature)
