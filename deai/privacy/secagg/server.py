"""The server of SecAgg+: routes messages, tracks who is alive, and unmasks only the sum.

Bonawitz et al. (CCS 2017) with the sparse graph of Bell et al. (CCS 2020). The server sees
public keys, ciphertexts it cannot open, masked inputs (uniform in Z_R to it) and, in the last
round, b-shares of survivors and s-key shares of dropouts: enough to remove the masks from the
*sum* and nothing more. Masked inputs are folded into a running sum as they arrive, so no
individual masked or unmasked input is ever kept.

Sets follow the paper: U1 parties whose keys were advertised, U2 parties whose shares were
relayed, U3 parties whose masked input arrived well-formed (the survivors, whose inputs the sum
contains). When parties sign their keys, the server also runs the consistency check of Bonawitz et
al. (their round 3): it announces U3, collects each survivor's signature on it and forwards them
with the unmask requests, so no party unmasks for a survivor set its neighbours did not all see.
A party that misbehaves at a step (unparseable message, wrong recipients, wrong
length, dtype or range) is dropped from the round and recorded in ``rejected``; it never crashes
the round. The round aborts with :class:`SecAggError` only when it cannot finish safely.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import TypeVar

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from deai.privacy.secagg import crypto, shamir
from deai.privacy.secagg.config import SECRET_ELEMENTS, SecAggConfig
from deai.privacy.secagg.errors import MalformedMessageError, SecAggError
from deai.privacy.secagg.messages import (
    ADVERTISE_KEYS,
    CONSISTENCY_REQUEST,
    CONSISTENCY_RESPONSE,
    KEY_BOOK,
    MASKED_INPUT,
    RELAYED_SHARES,
    SERVER,
    SHARE_KEYS,
    UNMASK_REQUEST,
    UNMASK_RESPONSE,
    Message,
    pack,
    unpack,
)
from deai.privacy.secagg.party import (
    _MASK_KEY_LABEL,
    CIPHERTEXT_BYTES,
    HALF_SHARE_BYTES,
    PUBLIC_KEYS_BYTES,
    mask_sign,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class SecAggServer:
    """Server side of one session; call the four steps in order with the messages that arrived.

    Each step takes ``{sender id: message bytes}`` (the sender id as the authenticated transport
    reports it) and, except the last, returns ``{recipient id: message bytes}`` for the parties
    still in the round. The last step returns the decoded float32 sum of the survivors' inputs.
    """

    def __init__(self, config: SecAggConfig) -> None:
        self.config = config
        self.rejected: dict[int, str] = {}
        self.survivors: np.ndarray = np.zeros(0, dtype=np.int64)
        self._neighbours = [frozenset(int(v) for v in row) for row in config.neighbours]
        self._public_keys: dict[int, bytes] = {}  # party -> c_pk || s_pk
        self._signatures: dict[int, bytes] = {}
        self._book: dict[int, list[int]] = {}  # party -> neighbours in U1, the recipients of its shares
        self._book_position: dict[int, dict[int, int]] = {}
        self._mask_peers: dict[int, list[int]] = {}  # party -> neighbours it masked with (in U2)
        self._u1: frozenset[int] = frozenset()
        self._u2: frozenset[int] = frozenset()
        self._u3: frozenset[int] = frozenset()
        self._masked_sum: np.ndarray | None = None
        self._unmask_fields: dict[int, dict[str, list[int]]] = {}
        self._step = 0

    @property
    def checks_consistency(self) -> bool:
        """Whether this session runs the consistency check (its parties signed their keys)."""
        return bool(self._signatures)

    # -- round 0: AdvertiseKeys ------------------------------------------------------------
    def collect_keys(self, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        """Record advertised keys; send each party its live neighbours' keys (its key book)."""
        self._advance(0)
        cfg = self.config
        for u, data in messages.items():
            try:
                self._check_sender(u)
                msg = unpack(data, kind=ADVERTISE_KEYS, session=cfg.session, sender=u)
                keys = bytes(msg.blob("keys"))
                if len(keys) != PUBLIC_KEYS_BYTES:
                    raise MalformedMessageError(
                        f"party {u} advertised {len(keys)} key bytes, not {PUBLIC_KEYS_BYTES}"
                    )
                if "signature" in msg.blobs:
                    signature = bytes(msg.blob("signature"))
                    if len(signature) != crypto.SIGNATURE_BYTES:
                        raise MalformedMessageError(f"party {u}'s key signature has {len(signature)} bytes")
                    self._signatures[u] = signature
            except MalformedMessageError as exc:
                self._reject(u, str(exc))
                continue
            self._public_keys[u] = keys
        # A party with fewer than t live neighbours could never have its secrets reconstructed.
        self._u1 = self._prune(
            set(self._public_keys), lambda u, alive: self._neighbours[u] & alive, "key exchange"
        )
        books = {}
        for v in sorted(self._u1):
            ids = sorted(self._neighbours[v] & self._u1)
            self._book[v] = ids
            self._book_position[v] = {u: j for j, u in enumerate(ids)}
            blobs = {"keys": b"".join(self._public_keys[u] for u in ids)}
            if any(u in self._signatures for u in ids):
                blobs["signatures"] = b"".join(
                    self._signatures.get(u, bytes(crypto.SIGNATURE_BYTES)) for u in ids
                )
            books[v] = pack(Message(KEY_BOOK, SERVER, cfg.session, {"ids": ids}, blobs))
        return books

    # -- round 1: ShareKeys ----------------------------------------------------------------
    def relay_shares(self, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        """Check each party addressed exactly its key book, then forward ciphertexts to recipients."""
        self._advance(1)
        cfg = self.config

        def parse(u: int, data: bytes) -> memoryview:
            msg = unpack(data, kind=SHARE_KEYS, session=cfg.session, sender=u)
            if msg.int_list("recipients") != self._book[u]:
                raise MalformedMessageError(
                    f"party {u} addressed shares to parties other than its neighbours"
                )
            blob = msg.blob("ciphertexts")
            if len(blob) != len(self._book[u]) * CIPHERTEXT_BYTES:
                raise MalformedMessageError(f"party {u}'s share ciphertexts have the wrong total length")
            return blob

        ciphertexts = dict(self._valid(messages, self._u1, "key exchange", parse))
        self._u2 = self._prune(
            set(ciphertexts), lambda v, alive: set(self._book[v]) & alive, "share exchange"
        )
        relays = {}
        for v in sorted(self._u2):
            senders = [u for u in self._book[v] if u in self._u2]
            self._mask_peers[v] = senders
            parts = []
            for u in senders:
                j = self._book_position[u][v]
                parts.append(ciphertexts[u][j * CIPHERTEXT_BYTES : (j + 1) * CIPHERTEXT_BYTES])
            fields = {"senders": senders}
            relays[v] = pack(
                Message(RELAYED_SHARES, SERVER, cfg.session, fields, {"ciphertexts": b"".join(parts)})
            )
        return relays

    # -- round 2: MaskedInput --------------------------------------------------------------
    def collect_masked_inputs(self, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        """Validate and add up the masked inputs; ask survivors for the shares needed to unmask."""
        self._advance(2)
        cfg, enc = self.config, self.config.encoding
        total = np.zeros(cfg.dim, dtype=enc.dtype)
        arrived = []
        for v, masked in self._valid(messages, self._u2, "share exchange", self._parse_masked_input):
            total += masked  # wraps mod 2^word; reduced mod R at the end
            arrived.append(v)
        self._masked_sum = total
        self._u3 = frozenset(arrived)
        if len(self._u3) < max(2, cfg.threshold):
            raise SecAggError(
                f"only {len(self._u3)} masked inputs arrived; unmasking fewer than max(2, t={cfg.threshold}) "
                "would expose too small an aggregate"
            )
        for v in sorted(self._u3):
            survivors = [u for u in self._mask_peers[v] if u in self._u3]
            dropped = [u for u in self._mask_peers[v] if u not in self._u3]
            self._unmask_fields[v] = {"survivors": survivors, "dropped": dropped}
        if self.checks_consistency:
            fields = {"u3": sorted(self._u3)}
            return {
                v: pack(Message(CONSISTENCY_REQUEST, SERVER, cfg.session, fields, {})) for v in fields["u3"]
            }
        return {
            v: pack(Message(UNMASK_REQUEST, SERVER, cfg.session, f, {}))
            for v, f in self._unmask_fields.items()
        }

    # -- round 3 (signed sessions): ConsistencyCheck -------------------------------------------
    def check_consistency(self, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        """Forward to each survivor its neighbours' signatures on U3, with its unmask request."""
        self._advance(3)
        cfg = self.config

        def parse(v: int, data: bytes) -> bytes:
            msg = unpack(data, kind=CONSISTENCY_RESPONSE, session=cfg.session, sender=v)
            signature = bytes(msg.blob("signature"))
            if len(signature) != crypto.SIGNATURE_BYTES:
                raise MalformedMessageError(f"party {v}'s consistency signature has {len(signature)} bytes")
            return signature

        signatures = dict(self._valid(messages, self._u3, "masked input", parse))
        requests = {}
        for v in sorted(signatures):
            signers = [u for u in self._mask_peers[v] if u in signatures]
            fields = {**self._unmask_fields[v], "u3": sorted(self._u3), "signers": signers}
            blobs = {"signatures": b"".join(signatures[u] for u in signers)}
            requests[v] = pack(Message(UNMASK_REQUEST, SERVER, cfg.session, fields, blobs))
        return requests

    # -- round 3: Unmasking ----------------------------------------------------------------
    def unmask(self, messages: Mapping[int, bytes]) -> np.ndarray:
        """Reconstruct b_u of survivors and s_u of dropouts, strip all masks, decode the sum.

        Raises ``SecAggError`` naming the party if fewer than t of its neighbours answered.
        """
        self._advance(4 if self.checks_consistency else 3)
        cfg, enc = self.config, self.config.encoding
        assert self._masked_sum is not None
        b_shares: dict[int, list[tuple[int, np.ndarray]]] = {u: [] for u in self._u3}
        s_shares: dict[int, list[tuple[int, np.ndarray]]] = {u: [] for u in self._u2 - self._u3}

        def parse(v: int, data: bytes) -> tuple[list[int], list[int], memoryview, memoryview]:
            msg = unpack(data, kind=UNMASK_RESPONSE, session=cfg.session, sender=v)
            b_ids, s_ids = msg.int_list("b_ids"), msg.int_list("s_ids")
            asked = self._unmask_fields[v]
            if b_ids != asked["survivors"] or s_ids != asked["dropped"]:
                raise MalformedMessageError(f"party {v} answered for other parties than it was asked about")
            b_blob, s_blob = msg.blob("b"), msg.blob("s")
            if len(b_blob) != len(b_ids) * HALF_SHARE_BYTES or len(s_blob) != len(s_ids) * HALF_SHARE_BYTES:
                raise MalformedMessageError(f"party {v}'s shares have the wrong length")
            return b_ids, s_ids, b_blob, s_blob

        for v, (b_ids, s_ids, b_blob, s_blob) in self._valid(messages, self._u3, "masked input", parse):
            b = np.frombuffer(b_blob, dtype="<u4").reshape(len(b_ids), SECRET_ELEMENTS)
            s = np.frombuffer(s_blob, dtype="<u4").reshape(len(s_ids), SECRET_ELEMENTS)
            for j, u in enumerate(b_ids):
                b_shares[u].append((v + 1, b[j]))
            for j, u in enumerate(s_ids):
                s_shares[u].append((v + 1, s[j]))

        # Parties whose pairwise masks sit in some survivor's input.
        dropped = sorted(u for u in self._u2 - self._u3 if any(v in self._u3 for v in self._mask_peers[u]))
        short = [
            (u, "self-mask seed", len(b_shares[u]))
            for u in sorted(self._u3)
            if len(b_shares[u]) < cfg.threshold
        ]
        short += [(u, "mask key", len(s_shares[u])) for u in dropped if len(s_shares[u]) < cfg.threshold]
        if short:
            details = "; ".join(f"party {u}'s {what}: {m} shares" for u, what, m in short[:5])
            more = "; ..." if len(short) > 5 else ""
            raise SecAggError(
                f"cannot unmask: fewer than t={cfg.threshold} shares arrived for {len(short)} parties "
                f"({details}{more}). Too many neighbours dropped out; the round must be redone."
            )

        total = self._masked_sum.copy()
        scratch = crypto.prg_scratch(cfg.dim, enc.dtype)
        for u in sorted(self._u3):
            total -= crypto.prg_words(
                self._recover(u, b_shares[u], "self-mask seed"), cfg.dim, enc.dtype, scratch
            )
        for u in dropped:
            s_key = X25519PrivateKey.from_private_bytes(self._recover(u, s_shares[u], "mask key"))
            if crypto.public_bytes(s_key) != self._public_keys[u][crypto.KEY_BYTES :]:
                raise SecAggError(
                    f"party {u}'s reconstructed mask key does not match its advertised public key"
                )
            for v in self._mask_peers[u]:
                if v not in self._u3:
                    continue
                s_pk_v = self._public_keys[v][crypto.KEY_BYTES :]
                seed = crypto.agree(s_key, s_pk_v, label=_MASK_KEY_LABEL, session=cfg.session, a=u, b=v)
                mask = crypto.prg_words(seed, cfg.dim, enc.dtype, scratch)
                if mask_sign(v, u) > 0:  # v added +PRG(s_uv); take it out
                    total -= mask
                else:
                    total += mask
        self.survivors = np.array(sorted(self._u3), dtype=np.int64)
        return enc.decode(total).astype(np.float32)

    # -- helpers ---------------------------------------------------------------------------
    def _parse_masked_input(self, v: int, data: bytes) -> np.ndarray:
        cfg, enc = self.config, self.config.encoding
        msg = unpack(data, kind=MASKED_INPUT, session=cfg.session, sender=v)
        if msg.fields.get("dtype") != enc.dtype.str:
            raise MalformedMessageError(
                f"party {v}'s masked input has dtype {msg.fields.get('dtype')!r}, not {enc.dtype.str!r}"
            )
        if msg.fields.get("length") != cfg.dim:
            raise MalformedMessageError(
                f"party {v}'s masked input has length {msg.fields.get('length')!r}, not {cfg.dim}"
            )
        blob = msg.blob("data")
        if len(blob) != cfg.dim * enc.dtype.itemsize:
            raise MalformedMessageError(
                f"party {v}'s masked input has {len(blob)} bytes, not {cfg.dim * enc.dtype.itemsize}"
            )
        masked = np.frombuffer(blob, dtype=enc.dtype)
        if enc.modulus_bits < 8 * enc.dtype.itemsize and int(masked.max()) > enc.word_mask:
            raise MalformedMessageError(
                f"party {v}'s masked input has values outside the ring Z_2^{enc.modulus_bits}"
            )
        return masked

    def _valid(
        self,
        messages: Mapping[int, bytes],
        members: frozenset[int],
        stage: str,
        parse: Callable[[int, bytes], T],
    ) -> Iterator[tuple[int, T]]:
        """``(sender, parse(sender, data))`` for each message from a member that parses; every other sender
        is dropped from the round with its reason (one at a time, so nothing individual piles up)."""
        for v, data in messages.items():
            try:
                self._expect_member(v, members, stage)
                parsed = parse(v, data)
            except MalformedMessageError as exc:
                self._reject(v, str(exc))
                continue
            yield v, parsed

    def _recover(self, u: int, shares: list[tuple[int, np.ndarray]], what: str) -> bytes:
        chosen = sorted(shares, key=lambda s: s[0])[: self.config.threshold]
        xs = np.array([x for x, _ in chosen], dtype=np.uint64)
        try:
            return shamir.field_to_bytes(shamir.reconstruct(xs, np.stack([s for _, s in chosen])))
        except ValueError as exc:
            raise SecAggError(f"cannot reconstruct party {u}'s {what}: {exc}") from None

    def _prune(
        self, alive: set[int], live_neighbours: Callable[[int, set[int]], AbstractSet[int]], stage: str
    ) -> frozenset[int]:
        """Drop, until none is left, parties with fewer than t live neighbours."""
        while True:
            short = {u for u in alive if len(live_neighbours(u, alive)) < self.config.threshold}
            if not short:
                break
            for u in sorted(short):
                self._reject(
                    u, f"fewer than t={self.config.threshold} of its neighbours completed the {stage}"
                )
            alive -= short
        if len(alive) < 2:
            raise SecAggError(f"fewer than 2 parties completed the {stage}; nothing can be aggregated")
        return frozenset(alive)

    def _check_sender(self, u: int) -> None:
        if type(u) is not int or not 0 <= u < self.config.n_parties:
            raise MalformedMessageError(f"message from unknown sender {u!r}")

    def _expect_member(self, u: int, members: frozenset[int], stage: str) -> None:
        if u not in members:
            raise MalformedMessageError(f"party {u} did not complete the {stage}; its message is ignored")

    def _advance(self, step: int) -> None:
        if self._step != step:
            raise SecAggError(f"server step {step} called out of order (expected step {self._step})")
        self._step = step + 1

    def _reject(self, party: int, reason: str) -> None:
        log.warning("secure aggregation round %d: dropping party %s: %s", self.config.round, party, reason)
        self.rejected[party] = reason
