"""Run SecAgg+ among simulated parties in one process: ``secure_sum`` and the message driver.

Every party and the server are separate objects (:mod:`~deai.privacy.secagg.party`,
:mod:`~deai.privacy.secagg.server`) that exchange only serialized messages through
:func:`run_protocol`, which plays the network: it counts bytes, times each step and lets an
``intercept`` hook drop or alter any message (dropouts, tampering and malformed
inputs are all modelled that way).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deai.privacy.secagg.config import SecAggConfig
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
)
from deai.privacy.secagg.party import SecAggParty
from deai.privacy.secagg.phases import START, PartyStages, run_server_stages
from deai.privacy.secagg.server import SecAggServer

Interceptor = Callable[[str, int, int, bytes], bytes | None]
"""``(kind, sender, recipient, payload) -> payload to deliver, or None to lose it``; SERVER is -1."""


@dataclass
class Transcript:
    """What the simulated network saw."""

    bytes_sent: np.ndarray  # int64 [P]: bytes each party sent
    bytes_server: int  # bytes the server sent
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step, parties' and server's


@dataclass
class SecAggResult:
    """Outcome of :func:`secure_sum`.

    ``sum`` is the float32 sum of the survivors' clipped inputs, exact up to ``error_bound``
    (fixed-point rounding, ``len(survivors) / (2 * scale)``) plus the float32 cast.
    """

    sum: np.ndarray
    survivors: np.ndarray
    bytes_sent_per_party: float
    bytes_server: int
    timings: dict[str, float]
    config: SecAggConfig
    rejected: dict[int, str]
    error_bound: float


def secure_sum(
    updates: np.ndarray,
    *,
    seed: int,
    round: int,
    clip: float,
    threshold_fraction: float = 0.5,
    neighbours: int | None = None,
    modulus_bits: int = 32,
    dropout_before_masking: np.ndarray | None = None,
    dropout_after_masking: np.ndarray | None = None,
    dropout_during_unmasking: np.ndarray | None = None,
    sign: bool = False,
    intercept: Interceptor | None = None,
    nonce: str | None = None,
) -> SecAggResult:
    """Sum the rows of ``updates`` with SecAgg+ among ``P`` simulated parties.

    Parameters
    ----------
    updates : ``[P, dim]`` floats; row u is party u's input, clipped to ``[-clip, clip]``.
    seed, round : public; with a fresh ``nonce`` they fix the communication graph and the session id.
        All secrets come from the OS CSPRNG, yet the decoded sum is deterministic (masks cancel exactly).
    nonce : 32 hex digits bound into the session; fresh from the OS unless given (a test that crafts
        messages for a known session passes one).
    clip : per-coordinate clipping range; with ``P`` and ``modulus_bits`` it fixes the scale.
    threshold_fraction : t = floor(threshold_fraction * k) + 1 shares open a party's secrets.
    neighbours : degree k of the graph (default ``2 * ceil(2 * log2 P)``; complete if >= P - 1).
    modulus_bits : the ring is Z_2^modulus_bits (16..64); 32 sends 4 bytes per coordinate.
    dropout_before_masking : bool ``[P]``; the party leaves after AdvertiseKeys, before sharing
        its keys, so nobody masks against it. It is simply excluded.
    dropout_after_masking : bool ``[P]``; the party completed ShareKeys (its neighbours masked
        against it) but its masked input never arrives. It is excluded from the sum and its
        pairwise masks are recovered from its neighbours' s-key shares.
    dropout_during_unmasking : bool ``[P]``; the party's masked input arrived (it is in the
        sum) but it does not answer the Unmasking request.
    sign : give every party an Ed25519 identity and have neighbours verify the advertised keys.
    intercept : optional network hook applied after the dropout masks; see :data:`Interceptor`.

    Raises
    ------
    SecAggError : too few parties survive for some party's secrets to be reconstructed.
    AuthenticationError : a share ciphertext or key signature failed authentication
        (``.sender`` names the party it claims to be from).
    """
    updates = np.asarray(updates)
    if updates.ndim != 2 or not np.issubdtype(updates.dtype, np.floating):
        raise ValueError(f"updates must be a float [parties, dim] array; got {updates.dtype} {updates.shape}")
    bad_rows = np.flatnonzero(~np.isfinite(updates).all(axis=1))
    if bad_rows.size:
        raise ValueError(f"updates of parties {bad_rows[:10].tolist()} contain NaN or inf; reject them first")
    n, dim = updates.shape
    start = time.perf_counter()
    cfg = SecAggConfig.create(
        n,
        dim,
        seed=seed,
        round=round,
        clip=clip,
        threshold_fraction=threshold_fraction,
        neighbours=neighbours,
        modulus_bits=modulus_bits,
        nonce=nonce,
    )
    dropouts = {
        SHARE_KEYS: _party_mask("dropout_before_masking", dropout_before_masking, n),
        MASKED_INPUT: _party_mask("dropout_after_masking", dropout_after_masking, n),
        UNMASK_RESPONSE: _party_mask("dropout_during_unmasking", dropout_during_unmasking, n),
    }

    def network(kind: str, sender: int, recipient: int, payload: bytes) -> bytes | None:
        if kind in dropouts and dropouts[kind][sender]:
            return None
        return intercept(kind, sender, recipient, payload) if intercept is not None else payload

    signing = [Ed25519PrivateKey.generate() for _ in range(n)] if sign else None
    verify = {u: k.public_key() for u, k in enumerate(signing)} if signing else None
    parties = [
        SecAggParty(u, cfg, signing_key=signing[u] if signing else None, verify_keys=verify) for u in range(n)
    ]
    server = SecAggServer(cfg)
    setup = time.perf_counter() - start
    total, transcript = run_protocol(parties, server, updates, intercept=network)
    timings = {"setup": setup, **transcript.timings, "total": time.perf_counter() - start}
    return SecAggResult(
        sum=total,
        survivors=server.survivors,
        bytes_sent_per_party=float(transcript.bytes_sent.mean()),
        bytes_server=transcript.bytes_server,
        timings=timings,
        config=cfg,
        rejected=dict(server.rejected),
        error_bound=cfg.encoding.sum_error_bound(len(server.survivors)),
    )


def run_protocol(
    parties: Sequence[SecAggParty],
    server: SecAggServer,
    updates: np.ndarray,
    *,
    intercept: Interceptor | None = None,
) -> tuple[np.ndarray, Transcript]:
    """Drive the four rounds, passing only bytes between ``parties`` and ``server``.

    The server side is :func:`~deai.privacy.secagg.phases.run_server_stages`, the parties'
    :class:`~deai.privacy.secagg.phases.PartyStages`: the same code the engine runs through its transport.
    Parties run one after another (their crypto holds the GIL, so threads would not help).
    Returns the server's decoded sum and the transcript. A party that receives no message from
    the server at some step (it dropped, or the server excluded it) takes no further part.
    """
    stages = PartyStages({p.id: updates[p.id] for p in parties})
    for p in parties:
        stages.open(p.id, p)
    n = server.config.n_parties
    bytes_sent = np.zeros(n, dtype=np.int64)
    server_bytes = 0
    timings: dict[str, float] = {}
    replies = {START: ADVERTISE_KEYS, KEY_BOOK: SHARE_KEYS, RELAYED_SHARES: MASKED_INPUT}
    replies[UNMASK_REQUEST] = UNMASK_RESPONSE
    replies[CONSISTENCY_REQUEST] = CONSISTENCY_RESPONSE

    def exchange(kind: str, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        nonlocal server_bytes
        inbox = {}
        for v, payload in messages.items():
            if kind != START:  # the opening is the in-process parties' own (they were built above)
                server_bytes += len(payload)
                payload = intercept(kind, SERVER, v, payload) if intercept is not None else payload
            if payload is not None and v in stages.parties:
                inbox[v] = payload
        reply = replies[kind]
        t0 = time.perf_counter()
        sent = stages.answer(kind, inbox)
        timings[f"parties/{reply}"] = time.perf_counter() - t0
        arrived = {}
        for u, payload in sent.items():
            bytes_sent[u] += len(payload)
            delivered = intercept(reply, u, SERVER, payload) if intercept is not None else payload
            if delivered is not None:
                arrived[u] = delivered
        return arrived

    total = run_server_stages(server, exchange, {p.id: b"" for p in parties}, timings)
    return total, Transcript(bytes_sent=bytes_sent, bytes_server=server_bytes, timings=timings)


def _party_mask(name: str, mask: np.ndarray | None, n: int) -> np.ndarray:
    if mask is None:
        return np.zeros(n, dtype=bool)
    mask = np.asarray(mask)
    if mask.shape != (n,) or mask.dtype != bool:
        raise ValueError(f"{name} must be a bool array of shape ({n},); got {mask.dtype} {mask.shape}")
    return mask
