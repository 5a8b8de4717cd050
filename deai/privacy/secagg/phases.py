"""SecAgg+'s four stages as exchanges of byte messages, so one server driver runs over any transport.

The server sends one message kind to the parties and gets their replies back: ``exchange(kind,
{party: bytes}) -> {party: bytes}``. In one process (:func:`deai.privacy.secagg.protocol.run_protocol`)
the exchange calls :class:`PartyStages` directly; in the engine it goes through the transport to the
party side, which holds its own update and masks it there; over the network it will be gRPC. The
server only ever sees masked inputs and the shares needed to remove the masks of the survivors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from deai.privacy.dp.mechanisms import RingNoise
from deai.privacy.secagg.config import SecAggConfig
from deai.privacy.secagg.errors import PartyAbort
from deai.privacy.secagg.messages import CONSISTENCY_REQUEST, KEY_BOOK, RELAYED_SHARES, UNMASK_REQUEST
from deai.privacy.secagg.party import SecAggParty
from deai.privacy.secagg.server import SecAggServer

log = logging.getLogger(__name__)

START = "secagg_start"  # server -> party: the session's public parameters, its index and its scale
# commit-reveal over masked inputs ([ledger] commit_reveal): the relayed shares go out as MASKED_COMMIT and
# each party answers with a commitment to its masked input; MASKED_REVEAL then asks for the input and salt
MASKED_COMMIT = "secagg_masked_commit"
MASKED_REVEAL = "secagg_masked_reveal"
BROKEN_COMMITMENT = "reveal_mismatch"
SALT_BYTES = 16


def masked_commitment(masked: bytes, salt: bytes) -> bytes:
    """A party's commitment to its masked input: deai's commitment over the masked bytes' SHA-256, so it
    binds the party before it sees anyone's input, and exposes nothing the masked input would not."""
    from deai.verify.commit_reveal import commitment

    return commitment(hashlib.sha256(masked).digest(), salt)


Exchange = Callable[[str, Mapping[int, bytes]], dict[int, bytes]]
"""Send messages of one kind (keyed by recipient); return the replies that arrived (keyed by sender)."""


def run_server_stages(
    server: SecAggServer,
    exchange: Exchange,
    start: Mapping[int, bytes],
    timings: dict[str, float] | None = None,
    *,
    commit_reveal: bool = False,
) -> np.ndarray:
    """Drive a session from the server's side; ``start`` is each party's opening message. Returns the sum.

    With ``timings``, each server step's seconds are recorded as ``server/<step>``. With
    ``commit_reveal``, every party commits to its masked input before any is revealed; a reveal that
    breaks its commitment is dropped (``server.rejected``) and handled as a dropout after masking.
    """

    def step(method: Callable[[Mapping[int, bytes]], object], replies: Mapping[int, bytes]) -> Any:
        t0 = time.perf_counter()
        out = method(replies)
        if timings is not None:
            timings[f"server/{method.__name__}"] = time.perf_counter() - t0
        return out

    books = step(server.collect_keys, exchange(START, start))
    relays = step(server.relay_shares, exchange(KEY_BOOK, books))
    if commit_reveal:
        masked = _revealed(server, exchange(MASKED_COMMIT, relays), exchange)
    else:
        masked = exchange(RELAYED_SHARES, relays)
    requests = step(server.collect_masked_inputs, masked)
    if server.checks_consistency:
        requests = step(server.check_consistency, exchange(CONSISTENCY_REQUEST, requests))
    return step(server.unmask, exchange(UNMASK_REQUEST, requests))


def _revealed(server: SecAggServer, commits: Mapping[int, bytes], exchange: Exchange) -> dict[int, bytes]:
    """The masked inputs whose reveal matches the commitment its party made before any reveal."""
    kept = {}
    for u, data in exchange(MASKED_REVEAL, dict.fromkeys(commits, b"")).items():
        body, salt = data[:-SALT_BYTES], data[-SALT_BYTES:]
        if u in commits and len(data) > SALT_BYTES and masked_commitment(body, salt) == commits[u]:
            kept[u] = body
        else:
            server.rejected[u] = BROKEN_COMMITMENT
            log.warning("secure aggregation: party %s's masked input breaks its commitment", u)
    return kept


def start_message(
    params: Mapping[str, object], index: int, scale: float, party_clip: float | None = None
) -> bytes:
    """Party ``index``'s opening message: the public session parameters, its public weight, and the
    per-coordinate clip every party applies to its update before scaling and masking."""
    opening = {"params": dict(params), "index": index, "scale": scale}
    if party_clip is not None:
        opening["party_clip"] = party_clip
    return json.dumps(opening, allow_nan=False).encode()


class PartyStages:
    """The parties' side of sessions: one :class:`SecAggParty` per held party, answering each stage.

    ``inputs`` are the parties' own (already transformed) updates, keyed as the messages are. Each party
    clips its update to ``[-party_clip, party_clip]`` per coordinate (when its opening names one) and
    scales it by its public weight before masking. With ``ring_noise`` (distributed DP), each party adds
    its own discrete Gaussian share to its encoded input, sized from its own DP settings and the
    session's public encoding (never from a figure the server sends). A session opened with
    :data:`START` builds its :class:`SecAggConfig` from the public parameters (cached, so a simulator
    holding many parties derives the graph once). A party that aborts (:class:`PartyAbort`) leaves the
    session: it answers nothing more, as if it had dropped out.
    """

    def __init__(self, inputs: Mapping[int, np.ndarray], ring_noise: RingNoise | None = None) -> None:
        self.inputs = inputs
        self.ring_noise = ring_noise
        self.parties: dict[int, SecAggParty] = {}
        self.scales: dict[int, float] = {}
        self.clips: dict[int, float | None] = {}
        self._configs: dict[str, SecAggConfig] = {}
        self.committed: dict[int, bytes] = {}  # masked input and salt, revealed after every party committed

    def open(self, key: int, party: SecAggParty, scale: float = 1.0, clip: float | None = None) -> None:
        """Hold an already built party (the in-process protocol builds its own)."""
        self.parties[key], self.scales[key], self.clips[key] = party, scale, clip

    def answer(self, kind: str, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        out = {}
        for key, payload in messages.items():
            if kind != START and key not in self.parties:
                continue  # not a party of this session (it dropped, aborted, or was never in it)
            try:
                out[key] = self._answer_one(kind, key, payload)
            except PartyAbort as exc:
                log.warning("secure aggregation: %s", exc)
                del self.parties[key]
        return out

    def _answer_one(self, kind: str, key: int, payload: bytes) -> bytes:
        if kind == START:
            if payload:  # an empty opening: the party was built by the caller (see open)
                opening = json.loads(payload)
                params = opening["params"]
                tag = json.dumps(params, sort_keys=True)
                if tag not in self._configs:
                    self._configs[tag] = SecAggConfig.create(**params)
                party = SecAggParty(int(opening["index"]), self._configs[tag])
                self.open(key, party, float(opening["scale"]), opening.get("party_clip"))
            return self.parties[key].advertise_keys()
        party = self.parties[key]
        if kind == KEY_BOOK:
            return party.share_keys(payload)
        if kind in (RELAYED_SHARES, MASKED_COMMIT):
            row, clip = np.asarray(self.inputs[key], dtype=np.float64), self.clips[key]
            if clip is not None:
                row = np.clip(row, -clip, clip)
            noise = None
            if self.ring_noise is not None:
                cfg = party.config
                noise = self.ring_noise.draw(key, cfg.round, self.scales[key], cfg.encoding.scale, cfg.dim)
            masked = party.masked_input(payload, row * self.scales[key], noise)
            if kind == RELAYED_SHARES:
                return masked
            salt = secrets.token_bytes(SALT_BYTES)
            self.committed[key] = masked + salt
            return masked_commitment(masked, salt)
        if kind == MASKED_REVEAL:
            return self.committed.pop(key)
        if kind == CONSISTENCY_REQUEST:
            return party.sign_survivors(payload)
        if kind == UNMASK_REQUEST:
            return party.unmask(payload)
        raise ValueError(f"unknown secure-aggregation stage {kind!r}")
