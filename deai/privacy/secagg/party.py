"""One party (client) of SecAgg+: four steps, each taking bytes from the server and returning bytes.

Follows the round structure of Bonawitz et al., "Practical Secure Aggregation for
Privacy-Preserving Machine Learning" (CCS 2017), restricted to the sparse neighbourhood of
Bell et al. (CCS 2020):

0. ``advertise_keys``: fresh X25519 pairs (c: share encryption, s: pairwise masks), optionally
   signed with the party's long-term Ed25519 key.
1. ``share_keys``: draw the self-mask seed b_u, Shamir-share ``b_u`` and the s secret key t-of-k
   among the neighbours, encrypt each share for its holder (AES-GCM under HKDF(c-agreement),
   associated data = session, sender, recipient).
2. ``masked_input``: y_u = encode(x_u) + PRG(b_u) + sum_v +-PRG(s_uv) mod R over the neighbours
   whose shares arrived (+ when u < v, - when u > v, so each pair cancels in the sum).
3. ``sign_survivors`` (sessions with signing keys only): the consistency check of Bonawitz et al.
   2017 (round 3): the party signs the survivor set U3 the server announces, and later unmasks only
   if at least t of its neighbours signed that same set, so the server cannot show different
   parties different survivors.
4. ``unmask``: b-shares of surviving neighbours, s-key shares of dropped ones; never both kinds
   for the same neighbour, across any number of requests.

Secrets live only in this object; nothing leaves it except the returned byte strings.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from deai.privacy.secagg import crypto, shamir
from deai.privacy.secagg.config import SECRET_ELEMENTS, SecAggConfig
from deai.privacy.secagg.errors import AuthenticationError, MalformedMessageError, PartyAbort, SecAggError
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

PUBLIC_KEYS_BYTES = 2 * crypto.KEY_BYTES  # c_pk || s_pk
SHARE_BYTES = 2 * SECRET_ELEMENTS * 4  # b-share || s-share, uint32 field elements
HALF_SHARE_BYTES = SHARE_BYTES // 2
CIPHERTEXT_BYTES = crypto.NONCE_BYTES + SHARE_BYTES + crypto.TAG_BYTES

_SHARE_KEY_LABEL = b"deai-secagg/share-key"
_MASK_KEY_LABEL = b"deai-secagg/mask-key"


def share_aad(session: bytes, sender: int, recipient: int) -> bytes:
    return b"deai-secagg/share" + session + struct.pack("<II", sender, recipient)


def key_statement(session: bytes, party: int, public_keys: bytes) -> bytes:
    """The bytes a party signs when it advertises its keys."""
    return b"deai-secagg/advertise" + session + struct.pack("<I", party) + public_keys


def survivors_statement(session: bytes, survivors: list[int]) -> bytes:
    """The bytes a party signs in the consistency check: the session's survivor set U3."""
    return b"deai-secagg/consistency" + session + struct.pack(f"<{len(survivors)}I", *survivors)


def mask_sign(u: int, v: int) -> int:
    """+1 if party u adds PRG(s_uv) to its input, -1 if it subtracts it."""
    return 1 if u < v else -1


class SecAggParty:
    """Client side of one session. Call the four steps in order, feeding each the server's message.

    One object per session (round): its key pairs and seeds are fresh and must never be reused.

    Parameters
    ----------
    party_id : this party's id in ``0 .. config.n_parties - 1``.
    config : the session's public parameters.
    signing_key : optional long-term Ed25519 key; the advertised public keys are then signed.
    verify_keys : optional Ed25519 public keys of the other parties; when given, every neighbour's
        advertised keys must carry a valid signature or the step raises ``AuthenticationError``.
    """

    def __init__(
        self,
        party_id: int,
        config: SecAggConfig,
        *,
        signing_key: Ed25519PrivateKey | None = None,
        verify_keys: Mapping[int, Ed25519PublicKey] | None = None,
    ) -> None:
        if not 0 <= party_id < config.n_parties:
            raise ValueError(f"party_id must be in [0, {config.n_parties}); got {party_id}")
        self.id = party_id
        self.config = config
        self._signing_key = signing_key
        self._verify_keys = verify_keys
        self._neighbours = frozenset(int(v) for v in config.neighbours[party_id])
        self._c_key = crypto.new_key_pair()
        self._s_key = crypto.new_key_pair()
        self._peer_keys: dict[int, tuple[bytes, bytes]] = {}
        self._share_keys: dict[int, bytes] = {}  # neighbour -> AEAD key from the c-key agreement
        self._held_shares: dict[int, np.ndarray] = {}  # neighbour -> its uint32 share for us
        self._self_seed = b""
        self._revealed: dict[int, str] = {}  # neighbour -> "b" or "s": what we already gave out
        self._mask_peers: list[int] = []  # the neighbours whose shares were relayed: whom we masked with
        self._signed_survivors: list[int] | None = None  # U3 as this party signed it
        self._step = 0

    # -- round 0 ---------------------------------------------------------------------------
    def advertise_keys(self) -> bytes:
        self._advance(0)
        keys = crypto.public_bytes(self._c_key) + crypto.public_bytes(self._s_key)
        blobs = {"keys": keys}
        if self._signing_key is not None:
            blobs["signature"] = crypto.sign(
                self._signing_key, key_statement(self.config.session, self.id, keys)
            )
        return pack(Message(ADVERTISE_KEYS, self.id, self.config.session, {}, blobs))

    # -- round 1 ---------------------------------------------------------------------------
    def share_keys(self, key_book: bytes) -> bytes:
        self._advance(1)
        cfg = self.config
        book = unpack(key_book, kind=KEY_BOOK, session=cfg.session, sender=SERVER)
        ids = book.int_list("ids")
        keys = book.blob("keys")
        if len(set(ids)) != len(ids) or not set(ids) <= self._neighbours:
            raise SecAggError(f"party {self.id}: the key book lists parties that are not its neighbours")
        if len(keys) != len(ids) * PUBLIC_KEYS_BYTES:
            raise MalformedMessageError(
                f"party {self.id}: key book has {len(keys)} key bytes for {len(ids)} ids"
            )
        if len(ids) < cfg.threshold:
            raise SecAggError(
                f"party {self.id} has {len(ids)} live neighbours, fewer than the threshold t={cfg.threshold}"
            )
        signatures = book.blobs.get("signatures")
        seen = {crypto.public_bytes(self._c_key), crypto.public_bytes(self._s_key)}
        for j, v in enumerate(ids):
            entry = bytes(keys[j * PUBLIC_KEYS_BYTES : (j + 1) * PUBLIC_KEYS_BYTES])
            c_pk, s_pk = entry[: crypto.KEY_BYTES], entry[crypto.KEY_BYTES :]
            if c_pk in seen or s_pk in seen or c_pk == s_pk:
                raise SecAggError(f"party {self.id}: party {v} advertised a public key that is not unique")
            seen.update((c_pk, s_pk))
            if self._verify_keys is not None:
                self._check_signature(v, entry, signatures, j)
            self._peer_keys[v] = (c_pk, s_pk)

        self._self_seed = os.urandom(crypto.KEY_BYTES)
        secret = np.concatenate(
            [shamir.bytes_to_field(self._self_seed), shamir.bytes_to_field(crypto.private_bytes(self._s_key))]
        )
        shares = shamir.split(secret, cfg.threshold, np.asarray(ids) + 1).astype("<u4")
        ciphertexts = []
        for j, v in enumerate(ids):
            key = self._share_key(v)
            ciphertexts.append(crypto.seal(key, shares[j].tobytes(), share_aad(cfg.session, self.id, v)))
        return pack(
            Message(
                SHARE_KEYS, self.id, cfg.session, {"recipients": ids}, {"ciphertexts": b"".join(ciphertexts)}
            )
        )

    # -- round 2 ---------------------------------------------------------------------------
    def masked_input(
        self, relayed_shares: bytes, update: np.ndarray, noise: np.ndarray | None = None
    ) -> bytes:
        """Decrypt the neighbours' shares, then mask and send the fixed-point encoded ``update``.

        ``noise`` (int64, ring units) is the party's distributed-DP share, added after encoding. A party
        refuses to go on when fewer than t of its neighbours' shares were relayed: its mask would then
        rest on too few parties for the threshold to mean anything.
        """
        self._advance(2)
        cfg = self.config
        update = np.asarray(update)
        if update.shape != (cfg.dim,):
            raise ValueError(f"party {self.id}: update must have shape ({cfg.dim},); got {update.shape}")
        relay = unpack(relayed_shares, kind=RELAYED_SHARES, session=cfg.session, sender=SERVER)
        senders = relay.int_list("senders")
        blob = relay.blob("ciphertexts")
        if len(set(senders)) != len(senders) or not set(senders) <= self._peer_keys.keys():
            raise SecAggError(f"party {self.id}: relayed shares come from parties outside its key book")
        if len(blob) != len(senders) * CIPHERTEXT_BYTES:
            raise MalformedMessageError(f"party {self.id}: relayed ciphertexts have the wrong total length")
        if len(senders) < cfg.threshold:
            raise PartyAbort(
                f"party {self.id} aborts: the server relayed shares from {len(senders)} neighbours, fewer "
                f"than t={cfg.threshold}"
            )
        for j, u in enumerate(senders):
            ciphertext = blob[j * CIPHERTEXT_BYTES : (j + 1) * CIPHERTEXT_BYTES]
            try:
                plaintext = crypto.open_sealed(
                    self._share_key(u), ciphertext, share_aad(cfg.session, u, self.id)
                )
            except crypto.InvalidTag:
                raise AuthenticationError(
                    f"party {self.id}: the share ciphertext from party {u} failed authentication "
                    "(tampered in transit, or not encrypted for this party and session)",
                    sender=u,
                    recipient=self.id,
                ) from None
            share = np.frombuffer(plaintext, dtype="<u4")
            if np.any(share >= shamir.PRIME):
                raise SecAggError(f"party {self.id}: party {u} sent a share outside the Shamir field")
            self._held_shares[u] = share
        self._mask_peers = list(senders)

        enc = cfg.encoding
        masked = enc.encode(update, noise)
        scratch = crypto.prg_scratch(cfg.dim, enc.dtype)
        masked += crypto.prg_words(self._self_seed, cfg.dim, enc.dtype, scratch)
        for v in senders:
            mask = crypto.prg_words(self._mask_seed(v), cfg.dim, enc.dtype, scratch)
            if mask_sign(self.id, v) > 0:
                masked += mask
            else:
                masked -= mask
        masked &= enc.dtype.type(enc.word_mask)
        fields = {"dtype": enc.dtype.str, "length": cfg.dim}
        return pack(Message(MASKED_INPUT, self.id, cfg.session, fields, {"data": masked.tobytes()}))

    # -- round 3 (signed sessions) -----------------------------------------------------------
    def sign_survivors(self, request: bytes) -> bytes:
        """Sign the survivor set U3 the server announces (once per session; it must include this party)."""
        if self._step != 3 or self._signed_survivors is not None:
            raise SecAggError(f"party {self.id}: consistency check out of order")
        if self._signing_key is None:
            raise SecAggError(f"party {self.id} has no signing key for the consistency check")
        cfg = self.config
        req = unpack(request, kind=CONSISTENCY_REQUEST, session=cfg.session, sender=SERVER)
        u3 = req.int_list("u3")
        if u3 != sorted(set(u3)) or self.id not in u3 or len(u3) < cfg.threshold:
            raise PartyAbort(f"party {self.id} aborts: the announced survivor set is malformed or too small")
        self._signed_survivors = u3
        signature = crypto.sign(self._signing_key, survivors_statement(cfg.session, u3))
        return pack(Message(CONSISTENCY_RESPONSE, self.id, cfg.session, {}, {"signature": signature}))

    def _check_consistency(self, req: Message, survivors: list[int], dropped: list[int]) -> None:
        """Unmask only for the U3 this party signed, if t neighbours signed the same, and as it implies."""
        cfg = self.config
        u3 = req.int_list("u3")
        if self._signed_survivors is None or u3 != self._signed_survivors:
            raise PartyAbort(f"party {self.id} aborts: the unmask request names another survivor set")
        signers = req.int_list("signers")
        blob = req.blob("signatures")
        size = crypto.SIGNATURE_BYTES
        if len(blob) != len(signers) * size or len(set(signers)) != len(signers):
            raise PartyAbort(f"party {self.id} aborts: malformed consistency signatures")
        statement = survivors_statement(cfg.session, u3)
        valid = 0
        for j, v in enumerate(signers):
            key = (self._verify_keys or {}).get(v)
            ok = key is not None and v in self._mask_peers and v in u3
            valid += bool(ok and crypto.verify(key, bytes(blob[j * size : (j + 1) * size]), statement))
        if valid < cfg.threshold:
            raise PartyAbort(
                f"party {self.id} aborts: {valid} of its neighbours signed the survivor set, fewer than "
                f"t={cfg.threshold}"
            )
        members = set(u3)
        if survivors != [u for u in self._mask_peers if u in members] or dropped != [
            u for u in self._mask_peers if u not in members
        ]:
            raise PartyAbort(f"party {self.id} aborts: the unmask request contradicts the signed survivors")

    # -- round 4 ---------------------------------------------------------------------------
    def unmask(self, request: bytes) -> bytes:
        """Reveal b-shares of the announced survivors and s-key shares of the announced dropouts.

        Refuses (``SecAggError``) if the request names a party as both, names a party whose other
        secret this party already revealed, or names parties whose shares it does not hold:
        revealing both b_u and s_u of one party would unmask that party's individual input.
        """
        if self._step < 3:
            raise SecAggError(f"party {self.id}: unmask requested before its masked input was sent")
        self._step = 3
        cfg = self.config
        req = unpack(request, kind=UNMASK_REQUEST, session=cfg.session, sender=SERVER)
        survivors, dropped = req.int_list("survivors"), req.int_list("dropped")
        if self._verify_keys is not None:
            self._check_consistency(req, survivors, dropped)
        if len(set(survivors)) < cfg.threshold:
            raise PartyAbort(
                f"party {self.id} refuses to unmask: only {len(set(survivors))} of its neighbours are listed "
                f"as survivors, fewer than t={cfg.threshold}"
            )
        if set(survivors) & set(dropped):
            raise SecAggError(
                f"party {self.id} refuses to unmask: parties {sorted(set(survivors) & set(dropped))} are "
                "announced both as survivors and as dropped"
            )
        unknown = (set(survivors) | set(dropped)) - self._held_shares.keys()
        if unknown or len(set(survivors)) != len(survivors) or len(set(dropped)) != len(dropped):
            raise SecAggError(
                f"party {self.id} refuses to unmask: it holds no shares of parties {sorted(unknown)}"
            )
        for u, kind in [(u, "b") for u in survivors] + [(u, "s") for u in dropped]:
            if self._revealed.get(u, kind) != kind:
                raise SecAggError(
                    f"party {self.id} refuses to unmask: it already revealed party {u}'s "
                    f"{'self-mask seed' if kind == 's' else 'mask key'} share"
                )
        for u in survivors:
            self._revealed[u] = "b"
        for u in dropped:
            self._revealed[u] = "s"
        half = SECRET_ELEMENTS
        b_blob = b"".join(self._held_shares[u][:half].tobytes() for u in survivors)
        s_blob = b"".join(self._held_shares[u][half:].tobytes() for u in dropped)
        fields = {"b_ids": survivors, "s_ids": dropped}
        return pack(Message(UNMASK_RESPONSE, self.id, cfg.session, fields, {"b": b_blob, "s": s_blob}))

    # -- helpers ---------------------------------------------------------------------------
    def _advance(self, step: int) -> None:
        if self._step != step:
            raise SecAggError(
                f"party {self.id}: step {step} called out of order (expected step {self._step})"
            )
        self._step = step + 1

    def _share_key(self, v: int) -> bytes:
        if v not in self._share_keys:
            self._share_keys[v] = self._agree(self._c_key, self._peer_keys[v][0], _SHARE_KEY_LABEL, v)
        return self._share_keys[v]

    def _mask_seed(self, v: int) -> bytes:
        return self._agree(self._s_key, self._peer_keys[v][1], _MASK_KEY_LABEL, v)

    def _agree(self, key: X25519PrivateKey, peer_public: bytes, label: bytes, v: int) -> bytes:
        try:
            return crypto.agree(key, peer_public, label=label, session=self.config.session, a=self.id, b=v)
        except ValueError:
            raise AuthenticationError(
                f"party {self.id}: party {v}'s advertised public key is invalid", sender=v, recipient=self.id
            ) from None

    def _check_signature(self, v: int, entry: bytes, signatures: bytes | memoryview | None, j: int) -> None:
        key = self._verify_keys.get(v) if self._verify_keys is not None else None
        size = crypto.SIGNATURE_BYTES
        signature = bytes(signatures[j * size : (j + 1) * size]) if signatures is not None else b""
        if key is None or not crypto.verify(key, signature, key_statement(self.config.session, v, entry)):
            raise AuthenticationError(
                f"party {self.id}: the advertised keys of party {v} carry no valid signature",
                sender=v,
                recipient=self.id,
            )
