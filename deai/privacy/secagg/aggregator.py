"""Secure aggregation behind deai's aggregator contract: a weighted mean the server never sees per party.

Weights are public example counts, so each party scales its own update by its public weight
p_u = w_u / sum(w) before masking; the server obtains sum_u p_u x_u under SecAgg+ (Bonawitz et
al. 2017; Bell et al. 2020) and divides by the survivors' total weight. This is FedAvg's mean
(McMahan et al. 2017) with per-coordinate clipping to ``[-clip, clip]`` applied by every party.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import numpy as np

from deai.aggregate.base import RoundContext, normalized_weights
from deai.privacy.secagg.config import SecAggConfig
from deai.privacy.secagg.messages import RELAYED_SHARES
from deai.privacy.secagg.phases import (
    BROKEN_COMMITMENT,
    MASKED_REVEAL,
    START,
    Exchange,
    PartyStages,
    run_server_stages,
    start_message,
)
from deai.privacy.secagg.protocol import SecAggResult
from deai.privacy.secagg.server import SecAggServer
from deai.rng import Purpose, key, party_uniform

# Mid-protocol dropouts draw from key(seed, round, DROPOUT, extra=1): apart from the engine's
# participation dropouts (extra=0), which happen before a party trains.
_MID_PROTOCOL_DROPOUT_EXTRA = 1


class SecureAggregator:
    """Weighted mean of updates computed with :func:`secure_sum`.

    Parameters
    ----------
    clip : per-coordinate clipping range of an update (before weighting); values outside are
        clipped, so choose it from the updates' scale (e.g. the norm bound of a ClipByNorm).
    seed : public seed of the communication graph (combined with the round number).
    threshold_fraction, neighbours, modulus_bits : see :func:`secure_sum`.
    dropout_after_masking : probability that a party drops mid-protocol: it shared its keys (its
        neighbours mask against it), but its masked input never arrives. The protocol recovers
        its pairwise masks and the mean covers the survivors only; a round where too few survive
        raises :class:`~deai.privacy.secagg.errors.SecAggError`, as the protocol refuses. Drawn per
        party from ``(seed, round, party id)``, so who drops does not depend on who else takes part.

    After each call, ``last_result`` holds the protocol's :class:`SecAggResult` and
    ``ctx.signals["secagg_survivor"]`` marks whose updates the mean contains.
    """

    name = "secagg"
    weights_parties = True  # each party's share of the aggregate is its weight
    private = True  # sums masked inputs: no one sees an individual update
    min_parties = 2  # one update alone would be its own sum: nothing left to hide it among

    def __init__(
        self,
        *,
        clip: float,
        seed: int = 0,
        threshold_fraction: float = 0.5,
        neighbours: int | None = None,
        modulus_bits: int = 32,
        dropout_after_masking: float = 0.0,
    ) -> None:
        if not (np.isfinite(clip) and clip > 0):
            raise ValueError(f"clip must be a positive finite number; got {clip}")
        if not 0.0 <= dropout_after_masking < 1.0:
            raise ValueError(f"dropout_after_masking must be in [0, 1); got {dropout_after_masking}")
        self.clip = float(clip)
        self.seed = seed
        self.threshold_fraction = threshold_fraction
        self.neighbours = neighbours
        self.modulus_bits = modulus_bits
        self.dropout_after_masking = float(dropout_after_masking)
        # > 1 when parties add distributed-DP shares to their encoded inputs: room in the ring for them
        self.noise_headroom = 1.0
        self.commit_reveal = False  # [ledger] commit_reveal: parties commit to their masked inputs first
        self.last_result: SecAggResult | None = None

    def session_params(self, n: int, dim: int, round_: int, max_scale: float) -> dict[str, object]:
        """The public parameters of round ``round_``'s session, as every party rebuilds them.

        A fresh nonce makes each session (and its neighbour graph) new, even for a rerun of the same config.
        """
        return {
            "n_parties": n,
            "dim": dim,
            "seed": self.seed,
            "round": round_,
            "nonce": os.urandom(16).hex(),
            "clip": self.clip * max_scale * self.noise_headroom,
            "threshold_fraction": self.threshold_fraction,
            "neighbours": self.neighbours,
            "modulus_bits": self.modulus_bits,
        }

    def aggregate_over(
        self, exchange: Exchange, dim: int, weights: np.ndarray, ctx: RoundContext
    ) -> np.ndarray:
        """The server's side: run a SecAgg+ session with ``ctx.party_ids`` through ``exchange`` (keyed by
        party id) and return the survivors' weighted mean. Each party clips and scales its own update by
        its public weight and masks it; nothing here ever holds an individual update."""
        t_start = time.perf_counter()
        ids = np.asarray(ctx.party_ids, dtype=np.int64)
        p = normalized_weights(weights)
        params = self.session_params(len(ids), dim, ctx.round, float(p.max()))
        server = SecAggServer(SecAggConfig.create(**params))
        index = {int(pid): u for u, pid in enumerate(ids)}
        lost: set[int] = set()
        if self.dropout_after_masking > 0:  # simulated network: these masked inputs never arrive
            stream = key(self.seed, ctx.round, Purpose.DROPOUT, extra=_MID_PROTOCOL_DROPOUT_EXTRA)
            lost = set(ids[party_uniform(stream, ids, 1)[:, 0] < self.dropout_after_masking].tolist())
        sent = np.zeros(len(ids), dtype=np.int64)
        server_bytes = 0

        def by_index(kind: str, messages: Mapping[int, bytes]) -> dict[int, bytes]:
            nonlocal server_bytes
            server_bytes += sum(len(m) for m in messages.values()) if kind != START else 0
            replies = exchange(kind, {int(ids[u]): m for u, m in messages.items()})
            out = {}
            for pid, m in replies.items():
                if pid in index and not (kind in (RELAYED_SHARES, MASKED_REVEAL) and pid in lost):
                    sent[index[pid]] += len(m)
                    out[index[pid]] = m
            return out

        start = {u: start_message(params, u, float(p[u]), self.clip) for u in range(len(ids))}
        total = run_server_stages(server, by_index, start, commit_reveal=self.commit_reveal)
        self.last_result = SecAggResult(
            sum=total,
            survivors=server.survivors,
            bytes_sent_per_party=float(sent.mean()),
            bytes_server=server_bytes,
            timings={"total": time.perf_counter() - t_start},
            config=server.config,
            rejected=dict(server.rejected),
            error_bound=server.config.encoding.sum_error_bound(len(server.survivors)),
        )
        broken = {int(ids[u]): why for u, why in server.rejected.items() if why == BROKEN_COMMITMENT}
        if broken:  # dropped for cause, not by accident: the server program records them as rejected
            ctx.extra["rejected"] = broken
        survivor = np.zeros(len(p), dtype=bool)
        survivor[server.survivors] = True
        ctx.signals["secagg_survivor"] = survivor
        return (total.astype(np.float64) / p[survivor].sum()).astype(np.float32)

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        """The whole session in one process: the parties' side holds ``updates`` (one row per party)."""
        updates = np.asarray(updates)
        if updates.ndim != 2 or not np.isfinite(updates).all():
            raise ValueError("secure aggregation needs a finite [parties, dim] matrix; reject bad rows first")
        stages = PartyStages({int(pid): updates[i] for i, pid in enumerate(ctx.party_ids)})
        return self.aggregate_over(stages.answer, updates.shape[1], weights, ctx)
