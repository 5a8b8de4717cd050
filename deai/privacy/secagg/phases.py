"""SecAgg+'s four stages as exchanges of byte messages, so one server driver runs over any transport.

The server sends one message kind to the parties and gets their replies back: ``exchange(kind,
{party: bytes}) -> {party: bytes}``. In one process (:func:`deai.privacy.secagg.protocol.run_protocol`)
the exchange calls :class:`PartyStages` directly; in the engine it goes through the transport to the
party side, which holds its own update and masks it there; over the network it will be gRPC. The
server only ever sees masked inputs and the shares needed to remove the masks of the survivors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from deai.privacy.secagg.config import SecAggConfig
from deai.privacy.secagg.messages import KEY_BOOK, RELAYED_SHARES, UNMASK_REQUEST
from deai.privacy.secagg.party import SecAggParty
from deai.privacy.secagg.server import SecAggServer

START = "secagg_start"  # server -> party: the session's public parameters, its index and its scale

Exchange = Callable[[str, Mapping[int, bytes]], dict[int, bytes]]
"""Send messages of one kind (keyed by recipient); return the replies that arrived (keyed by sender)."""


def run_server_stages(
    server: SecAggServer,
    exchange: Exchange,
    start: Mapping[int, bytes],
    timings: dict[str, float] | None = None,
) -> np.ndarray:
    """Drive a session from the server's side; ``start`` is each party's opening message. Returns the sum.

    With ``timings``, each server step's seconds are recorded as ``server/<step>``.
    """

    def step(method: Callable[[Mapping[int, bytes]], object], replies: Mapping[int, bytes]) -> Any:
        t0 = time.perf_counter()
        out = method(replies)
        if timings is not None:
            timings[f"server/{method.__name__}"] = time.perf_counter() - t0
        return out

    books = step(server.collect_keys, exchange(START, start))
    relays = step(server.relay_shares, exchange(KEY_BOOK, books))
    requests = step(server.collect_masked_inputs, exchange(RELAYED_SHARES, relays))
    return step(server.unmask, exchange(UNMASK_REQUEST, requests))


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
    scales it by its public weight before masking. A session opened with :data:`START` builds its
    :class:`SecAggConfig` from the public parameters (cached, so a simulator holding many parties
    derives the graph once).
    """

    def __init__(self, inputs: Mapping[int, np.ndarray]) -> None:
        self.inputs = inputs
        self.parties: dict[int, SecAggParty] = {}
        self.scales: dict[int, float] = {}
        self.clips: dict[int, float | None] = {}
        self._configs: dict[str, SecAggConfig] = {}

    def open(self, key: int, party: SecAggParty, scale: float = 1.0, clip: float | None = None) -> None:
        """Hold an already built party (the in-process protocol builds its own)."""
        self.parties[key], self.scales[key], self.clips[key] = party, scale, clip

    def answer(self, kind: str, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        out = {}
        for key, payload in messages.items():
            if kind == START:
                if payload:  # an empty opening: the party was built by the caller (see open)
                    opening = json.loads(payload)
                    params = opening["params"]
                    tag = json.dumps(params, sort_keys=True)
                    if tag not in self._configs:
                        self._configs[tag] = SecAggConfig.create(**params)
                    party = SecAggParty(int(opening["index"]), self._configs[tag])
                    self.open(key, party, float(opening["scale"]), opening.get("party_clip"))
                out[key] = self.parties[key].advertise_keys()
            elif key not in self.parties:
                continue  # not a party of this session (it dropped, or was never in it)
            elif kind == KEY_BOOK:
                out[key] = self.parties[key].share_keys(payload)
            elif kind == RELAYED_SHARES:
                row, clip = np.asarray(self.inputs[key], dtype=np.float64), self.clips[key]
                if clip is not None:
                    row = np.clip(row, -clip, clip)
                out[key] = self.parties[key].masked_input(payload, row * self.scales[key])
            elif kind == UNMASK_REQUEST:
                out[key] = self.parties[key].unmask(payload)
            else:
                raise ValueError(f"unknown secure-aggregation stage {kind!r}")
        return out
