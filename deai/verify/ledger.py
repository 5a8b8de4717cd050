"""The run's ledger: an append-only, hash-chained, signed event log in SQLite (``RUN_DIR/ledger.db``).

Entry ``seq`` is the canonical JSON of ``{v, task, seq, prev, kind, round, signer, body}``; its hash is
SHA-256 of a domain tag and that text, and its signature is the signer's Ed25519 signature of the hash. So
a signature binds the task, the position, the round and the signer: an entry replayed into another run,
moved to another place or claimed by another key fails. Entry 0 is ``task_created``, signed by the task
owner, and carries the owner's public key; ``joined`` entries, signed by the owner, register every other
key with its role; an entry signed by a key the chain has not registered fails. Truncating the tail is
caught against a published head: ``{task, entries, hash}`` signed by the owner, written with the run's
results. Each append is one SQLite transaction (WAL, synchronous FULL), so a kill leaves the chain as it
was before or after the append, never between.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deai.jsonio import canonical
from deai.verify.identity import Identity, key_id, verify_signature
from deai.verify.quorum import RoundChecks

VERSION = 1
GENESIS = "0" * 64  # the ``prev`` of entry 0
_ENTRY_TAG = b"deai-ledger-entry-v1\x00"
_HEAD_TAG = b"deai-ledger-head-v1\x00"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, "
    "entry TEXT NOT NULL, signature TEXT NOT NULL)"
)


class LedgerError(ValueError):
    """A ledger file that cannot be opened as a deai ledger (missing, not SQLite, another schema)."""


def entry_hash(text: str) -> str:
    return hashlib.sha256(_ENTRY_TAG + text.encode()).hexdigest()


def head_message(task: str, entries: int, head_hash: str) -> bytes:
    return _HEAD_TAG + canonical({"task": task, "entries": entries, "hash": head_hash}).encode()


def _connect(path: Path, *, create: bool) -> sqlite3.Connection:
    path = Path(path)
    if not create and not path.is_file():
        raise LedgerError(f"ledger {path} does not exist")
    if create:
        uri = f"file:{path}?mode=rwc"
    elif Path(f"{path}-wal").exists():  # committed appends not yet checkpointed (a killed writer): read them
        uri = f"file:{path}?mode=ro"
    else:  # nothing but the file: read it without creating -wal/-shm files beside it
        uri = f"file:{path}?mode=ro&immutable=1"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
        if create:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(_SCHEMA)
        columns = [row[1] for row in db.execute("PRAGMA table_info(entries)")]
    except sqlite3.DatabaseError as err:
        raise LedgerError(f"{path} is not a deai ledger (SQLite says: {err})") from None
    if columns != ["seq", "hash", "entry", "signature"]:
        db.close()
        raise LedgerError(f"{path} is not a deai ledger: it has no entries table of the ledger's schema")
    return db


@dataclass(frozen=True)
class Head:
    """What a run publishes so that a shortened ledger is caught: count, last hash, owner's signature."""

    task: str
    entries: int
    hash: str
    signature: str

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "entries": self.entries, "hash": self.hash, "signature": self.signature}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Head:
        try:
            return cls(str(data["task"]), int(data["entries"]), str(data["hash"]), str(data["signature"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError("a ledger head needs task, entries, hash and signature") from None


class Ledger:
    """Append signed entries to ``path``; the writer of a run. Reading and checking is :func:`verify`."""

    def __init__(self, path: Path, task: str) -> None:
        self.path, self.task = Path(path), task
        self._db = _connect(self.path, create=True)
        last = self._db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        self._next, self._prev = (0, GENESIS) if last is None else (last[0] + 1, last[1])
        self._staged: list[tuple[int, str, str, str]] | None = None  # rows of an open transaction
        self._last_text: str | None = None

    def __len__(self) -> int:
        return self._next

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[Ledger]:
        """Appends made inside are written in one SQLite transaction, all or none (a round's result and
        its validators' co-signatures land together, so a kill never leaves a result without them)."""
        start, self._staged = (self._next, self._prev), []
        try:
            yield self
            rows, self._staged = self._staged, None
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", rows)
        except BaseException:
            self._staged = None
            self._next, self._prev = start
            raise

    def slot(self) -> tuple[int, str]:
        """``(seq, prev)`` of the next entry: what a remote signer must bind its entry to."""
        return self._next, self._prev

    @property
    def last_text(self) -> str | None:
        """The canonical text of the last entry appended through this writer (staged or written)."""
        return self._last_text

    def append(self, kind: str, body: dict[str, Any], signer: Identity, round_: int | None = None) -> str:
        """Append one entry (in its own transaction, or the open :meth:`transaction`'s); return its hash."""
        text, digest, signature = signed_entry(self.task, *self.slot(), kind, round_, signer, body)
        return self._put(text, digest, signature)

    def append_signed(self, text: str, signature: str, public_key: bytes) -> str:
        """Append an entry another node signed (a remote validator's review); it must be this chain's next
        entry, signed by ``public_key``. ``ValueError`` says what is wrong with it (nothing is appended)."""
        try:
            entry = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            raise ValueError("the entry is not JSON") from None
        if not isinstance(entry, dict) or canonical(entry) != text:
            raise ValueError("the entry is not in canonical form")
        want = {"v": VERSION, "task": self.task, "seq": self._next, "prev": self._prev}
        wrong = [k for k, v in want.items() if entry.get(k) != v]
        if wrong:
            raise ValueError(f"the entry is not this chain's next one ({', '.join(wrong)} differ)")
        if entry.get("signer") != key_id(public_key) or not isinstance(entry.get("body"), dict):
            raise ValueError("the entry names another signer, or has no body")
        digest = entry_hash(text)
        try:
            good = verify_signature(public_key, bytes.fromhex(signature), bytes.fromhex(digest))
        except (ValueError, TypeError):
            good = False
        if not good:
            raise ValueError("the signature does not verify with the signer's key")
        return self._put(text, digest, signature)

    def _put(self, text: str, digest: str, signature: str) -> str:
        row = (self._next, digest, text, signature)
        self._last_text = text
        if self._staged is not None:
            self._staged.append(row)
        else:
            with self._db:  # one transaction: the row is all there or not there
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT INTO entries VALUES (?, ?, ?, ?)", row)
        self._next, self._prev = self._next + 1, digest
        return digest

    def head(self, owner: Identity) -> Head:
        signature = owner.sign(head_message(self.task, self._next, self._prev)).hex()
        return Head(self.task, self._next, self._prev, signature)


def signed_entry(
    task: str, seq: int, prev: str, kind: str, round_: int | None, signer: Identity, body: dict[str, Any]
) -> tuple[str, str, str]:
    """``(text, hash, signature)`` of entry ``seq`` after ``prev``, signed by ``signer``."""
    entry = {
        "v": VERSION,
        "task": task,
        "seq": seq,
        "prev": prev,
        "kind": kind,
        "round": round_,
        "signer": signer.id,
        "body": body,
    }
    text = canonical(entry)
    digest = entry_hash(text)
    return text, digest, signer.sign(bytes.fromhex(digest)).hex()


def read_rows(path: Path, start: int = 0) -> list[list[Any]]:
    """Entries ``start``.. of the ledger at ``path`` as stored ``[seq, hash, text, signature]`` (what a
    replica is sent), read-only and unchecked."""
    db = _connect(path, create=False)
    try:
        rows = db.execute(
            "SELECT seq, hash, entry, signature FROM entries WHERE seq >= ? ORDER BY seq", (start,)
        )
        return [list(r) for r in _rows(rows, path)]
    finally:
        db.close()


def read_entries(path: Path) -> list[dict[str, Any]]:
    """Every entry of the ledger at ``path`` as stored (unchecked: :func:`verify` checks), read-only."""
    db = _connect(path, create=False)
    db.text_factory = bytes
    try:
        out = []
        for (text,) in _rows(db.execute("SELECT entry FROM entries ORDER BY seq"), path):
            try:
                out.append(json.loads(text))
            except (json.JSONDecodeError, UnicodeDecodeError):
                out.append({"kind": "unreadable"})
        return out
    finally:
        db.close()


@dataclass
class Verdict:
    """The outcome of :func:`verify`: strict-JSON ready with :meth:`as_dict`."""

    valid: bool
    entries: int
    head: str | None
    first_bad: dict[str, Any] | None = None
    rounds: int = 0  # round results in the chain
    validators: int = 0  # registered validators (0: no quorum asked)
    disputes: list[dict[str, Any]] = field(default_factory=list)  # results that counted over a dissent

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "entries": self.entries,
            "head": self.head,
            "first_bad": self.first_bad,
            "rounds": self.rounds,
            "validators": self.validators,
            "disputes": self.disputes,
        }


def _check_entry(
    seq: int, stored_hash: str, text: str, signature: str, prev: str, task: str | None, keys: dict
) -> tuple[dict[str, Any] | None, str | None]:
    """The parsed entry, or ``(None, reason)`` for the first thing wrong with it."""
    try:
        entry = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, "the entry is not JSON"
    if not isinstance(entry, dict) or canonical(entry) != text:
        return None, "the entry is not in canonical form"
    if entry_hash(text) != stored_hash:
        return None, "the entry's hash does not match its content"
    if entry.get("v") != VERSION:
        return None, f"unknown entry version {entry.get('v')!r}"
    if entry.get("seq") != seq:
        return None, f"entry at position {seq} says it is entry {entry.get('seq')!r} (reordered or moved)"
    if entry.get("prev") != prev:
        return None, "the entry does not link to the one before it (an entry was removed or reordered)"
    if task is not None and entry.get("task") != task:
        return None, f"the entry belongs to task {entry.get('task')!r}, not {task!r} (replayed)"
    if not isinstance(entry.get("body"), dict):
        return None, "the entry has no body"
    signer = entry.get("signer")
    if seq == 0:
        if entry.get("kind") != "task_created":
            return None, "the first entry is not task_created"
        try:
            owner_key = bytes.fromhex(entry["body"]["owner_key"])
        except (KeyError, TypeError, ValueError):
            return None, "task_created carries no owner_key"
        if key_id(owner_key) != signer:
            return None, "task_created is not signed by the owner key it carries"
        keys[signer] = (owner_key, "owner")
    if signer not in keys:
        return None, f"signed by {signer!r}, a key the ledger never registered"
    public_key, _ = keys[signer]
    try:
        sig = bytes.fromhex(signature)
    except ValueError:
        return None, "the signature is not hex"
    if not verify_signature(public_key, sig, bytes.fromhex(stored_hash)):
        return None, "the signature does not verify with the signer's key"
    return entry, None


def _register(entry: dict[str, Any], keys: dict) -> str | None:
    """Apply a ``joined`` entry to the key registry; the reason it is invalid, if it is."""
    if entry["kind"] != "joined":
        return None
    if keys.get(entry["signer"], (None, None))[1] != "owner":
        return "a joined entry must be signed by the task owner"
    body = entry["body"]
    try:
        public_key = bytes.fromhex(body["public_key"])
        role = str(body["role"])
    except (KeyError, TypeError, ValueError):
        return "a joined entry needs public_key (hex) and role"
    keys[key_id(public_key)] = (public_key, role)
    return None


def _rows(cursor: sqlite3.Cursor, path: Path) -> Iterator[tuple]:
    """The cursor's rows; a file damaged below the table (torn pages) is a :class:`LedgerError`."""
    try:
        yield from cursor
    except sqlite3.DatabaseError as err:
        raise LedgerError(f"{path} is damaged (SQLite says: {err}); it cannot be checked") from None


class ChainChecker:
    """Every check of :func:`verify`, fed one stored entry at a time in order: a replica runs it on each
    entry it is sent, so it stores nothing the full check would refuse."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[bytes, str]] = {}  # key id -> (public key, role)
        self.checks = RoundChecks(self.keys)
        self.last: str | None = None
        self.task: str | None = None
        self.count = 0

    def feed(
        self, seq: int, stored_hash: str | bytes, text: str | bytes, signature: str | bytes
    ) -> tuple[int, str] | None:
        """``(position, reason)`` of the first fault entry ``seq`` shows, or None (then it is counted)."""
        try:
            stored_hash, text, signature = (
                c.decode() if isinstance(c, bytes) else str(c) for c in (stored_hash, text, signature)
            )
        except UnicodeDecodeError:
            return self.count, "the entry holds bytes that are not UTF-8 text"
        count = self.count
        entry, reason = _check_entry(
            count, stored_hash, text, signature, self.last or GENESIS, self.task, self.keys
        )
        if entry is None and seq != count:
            reason = f"entry {count} is missing (the next stored entry is {seq})"
        if entry is not None:
            reason = _register(entry, self.keys)
        if reason is not None:
            return count, reason
        fault = self.checks.apply(count, entry, stored_hash)
        if fault is not None:
            return fault
        self.task, self.last, self.count = entry["task"], stored_hash, count + 1
        return None


def verify(path: Path, head: Head | None = None, head_hash: str | None = None) -> Verdict:
    """Re-check every entry's hash, link, position, task and signature, and the chain against ``head``
    (a signed head) or ``head_hash`` (a published last hash, from a channel the reader trusts).

    Raises :class:`LedgerError` only when ``path`` is not a ledger at all; a ledger that is one but is
    wrong gives ``valid=False`` with the first bad entry and the reason.
    """
    db = _connect(path, create=False)
    db.text_factory = bytes  # a flipped byte may leave a column that is not UTF-8: that is a bad entry
    chain = ChainChecker()

    def verdict(valid: bool, bad: dict[str, Any] | None = None) -> Verdict:
        checks = chain.checks
        return Verdict(valid, chain.count, chain.last, bad, checks.rounds, checks.validators, checks.disputes)

    def invalid(seq: int, reason: str) -> Verdict:
        return verdict(False, {"seq": seq, "reason": reason})

    try:
        rows = db.execute("SELECT seq, hash, entry, signature FROM entries ORDER BY seq")
        for seq, *cols in _rows(rows, path):
            fault = chain.feed(seq, *cols)
            if fault is not None:
                return invalid(*fault)
    finally:
        db.close()
    count, last, task, keys = chain.count, chain.last, chain.task, chain.keys
    if count == 0:
        return invalid(0, "the ledger has no entries")
    fault = chain.checks.close()
    if fault is not None:
        return invalid(*fault)
    if head_hash is not None and head_hash != last:
        return invalid(count, f"the ledger ends at {last}, not at the given head (truncated or extended)")
    if head is not None:
        owner_key = next(k for k, role in keys.values() if role == "owner")
        if head.task != task:
            return invalid(count, "the head is for another task")
        try:
            head_sig = bytes.fromhex(head.signature)
        except ValueError:
            head_sig = b""
        if not verify_signature(owner_key, head_sig, head_message(head.task, head.entries, head.hash)):
            return invalid(count, "the head is not signed by the owner")
        if head.entries != count or head.hash != last:
            return invalid(
                min(count, head.entries),
                f"the ledger has {count} entries ending {last[:12]}…, the published head "
                f"{head.entries} ending {head.hash[:12]}… (truncated or extended)",
            )
    return verdict(True)
