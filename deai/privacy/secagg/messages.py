"""Wire format of protocol messages: a small JSON header plus raw binary blobs.

``MAGIC | uint32 header length | header JSON | blob bytes...``; the header carries the message
kind, the sender id (``SERVER`` = -1 for the server), the session id and JSON-able fields, and
lists each blob's name and length. No pickle: parsing a hostile message can only fail with
:class:`MalformedMessageError`, never run code. Parties and the server exchange nothing but
these byte strings.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deai.privacy.secagg.errors import MalformedMessageError

SERVER = -1
MAGIC = b"DSA1"
_LEN = struct.Struct("<I")
MAX_HEADER_BYTES = 1 << 24

# Message kinds, in protocol order.
ADVERTISE_KEYS = "advertise_keys"  # party -> server (round 0)
KEY_BOOK = "key_book"  # server -> party: its neighbours' public keys
SHARE_KEYS = "share_keys"  # party -> server (round 1): encrypted shares, one per neighbour
RELAYED_SHARES = "relayed_shares"  # server -> party: ciphertexts addressed to it
MASKED_INPUT = "masked_input"  # party -> server (round 2)
CONSISTENCY_REQUEST = "consistency_request"  # server -> party (signed sessions): the survivor set U3
CONSISTENCY_RESPONSE = "consistency_response"  # party -> server: its signature on U3
UNMASK_REQUEST = "unmask_request"  # server -> party: who survived, who dropped
UNMASK_RESPONSE = "unmask_response"  # party -> server (round 3): b-shares / s-key shares


@dataclass(frozen=True)
class Message:
    kind: str
    sender: int
    session: bytes
    fields: Mapping[str, Any] = field(default_factory=dict)
    blobs: Mapping[str, bytes | memoryview] = field(default_factory=dict)

    def blob(self, name: str) -> memoryview:
        if name not in self.blobs:
            raise MalformedMessageError(f"{self.kind} from {_who(self.sender)} lacks the {name!r} blob")
        return memoryview(self.blobs[name])

    def int_list(self, name: str) -> list[int]:
        value = self.fields.get(name)
        if not isinstance(value, list) or not all(type(v) is int for v in value):
            raise MalformedMessageError(
                f"{self.kind} from {_who(self.sender)}: {name!r} must be a list of ints"
            )
        return value


def pack(message: Message) -> bytes:
    header = json.dumps(
        {
            "kind": message.kind,
            "sender": message.sender,
            "session": message.session.hex(),
            "fields": dict(message.fields),
            "blobs": [[name, len(memoryview(b))] for name, b in message.blobs.items()],
        },
        separators=(",", ":"),
    ).encode()
    return b"".join([MAGIC, _LEN.pack(len(header)), header, *message.blobs.values()])


def unpack(data: bytes, *, kind: str, session: bytes, sender: int | None = None) -> Message:
    """Parse and check framing, kind, session and (when given) the transport-level sender."""
    view = memoryview(data)
    if len(view) < len(MAGIC) + _LEN.size or bytes(view[: len(MAGIC)]) != MAGIC:
        raise MalformedMessageError(f"expected a {kind} message; got {len(view)} bytes without the header")
    (header_len,) = _LEN.unpack_from(view, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    if header_len > min(MAX_HEADER_BYTES, len(view) - start):
        raise MalformedMessageError(f"{kind} message: header length {header_len} exceeds the message")
    try:
        header = json.loads(bytes(view[start : start + header_len]))
        msg_kind, msg_sender = header["kind"], header["sender"]
        msg_session = bytes.fromhex(header["session"])
        fields, blob_specs = header["fields"], header["blobs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedMessageError(f"{kind} message: unreadable header ({exc})") from None
    if msg_kind != kind:
        raise MalformedMessageError(f"expected a {kind} message; got {msg_kind!r}")
    if type(msg_sender) is not int or (sender is not None and msg_sender != sender):
        raise MalformedMessageError(
            f"{kind} message claims sender {msg_sender!r} but came from {_who(sender)}"
        )
    if msg_session != session:
        raise MalformedMessageError(f"{kind} from {_who(msg_sender)} belongs to another session or round")
    if not isinstance(fields, dict) or not isinstance(blob_specs, list):
        raise MalformedMessageError(f"{kind} from {_who(msg_sender)}: malformed header")
    blobs: dict[str, memoryview] = {}
    offset = start + header_len
    for spec in blob_specs:
        if not (
            isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], str) and type(spec[1]) is int
        ):
            raise MalformedMessageError(f"{kind} from {_who(msg_sender)}: malformed blob table")
        name, length = spec
        if length < 0 or offset + length > len(view) or name in blobs:
            raise MalformedMessageError(f"{kind} from {_who(msg_sender)}: blob {name!r} overruns the message")
        blobs[name] = view[offset : offset + length]
        offset += length
    if offset != len(view):
        raise MalformedMessageError(f"{kind} from {_who(msg_sender)}: {len(view) - offset} trailing bytes")
    return Message(kind=msg_kind, sender=msg_sender, session=msg_session, fields=fields, blobs=blobs)


def _who(sender: int | None) -> str:
    if sender is None:
        return "an unknown sender"
    return "the server" if sender == SERVER else f"party {sender}"
