"""Public parameters of one secure-aggregation session, identical at every party and the server."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from deai.privacy.secagg.encoding import FixedPoint
from deai.privacy.secagg.graph import effective_degree, harary_graph

SECRET_ELEMENTS = 16  # a 32-byte secret as 16-bit Shamir field elements
# t = floor(fraction * k) + 1 > k / 2 exactly when fraction >= 1/2: then no two disjoint sets of t of a
# party's k neighbours exist, so a lying server cannot obtain its mask key from some and its self-mask
# seed from others (each honest neighbour reveals at most one of the two; Bell et al. 2020, sec. 3).
MIN_THRESHOLD_FRACTION = 0.5


@dataclass(frozen=True)
class SecAggConfig:
    """Everything public about a session: parties, graph, threshold, encoding and session id.

    Party ids are ``0 .. n_parties - 1``; party ``u`` holds Shamir point ``x = u + 1``.
    ``session`` (16 bytes) hashes all of the above and a fresh random ``nonce`` and is bound into every
    key derivation, associated data and signature, so no message can be replayed into another round
    or run. The neighbour graph is drawn from the nonce too: nobody can predict it from the config.
    """

    n_parties: int
    dim: int
    round: int
    graph_seed: int
    nonce: str
    degree: int
    threshold: int
    encoding: FixedPoint
    session: bytes = field(repr=False)
    neighbours: tuple[np.ndarray, ...] = field(repr=False, compare=False)

    @classmethod
    def create(
        cls,
        n_parties: int,
        dim: int,
        *,
        seed: int,
        round: int,
        clip: float,
        threshold_fraction: float = 0.5,
        neighbours: int | None = None,
        modulus_bits: int = 32,
        nonce: str | None = None,
    ) -> SecAggConfig:
        """Validate the parameters and derive degree k, threshold t, encoding and session id.

        ``t = floor(threshold_fraction * k) + 1`` (capped at k): a party's secrets open only when
        strictly more than ``threshold_fraction`` of its k neighbours hand in shares. ``nonce`` (hex, 16
        bytes) is fresh from the OS unless given, as every party rebuilding the server's session must.
        """
        if n_parties < 2:
            raise ValueError(f"secure aggregation needs at least 2 parties; got n_parties={n_parties}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1; got {dim}")
        if not MIN_THRESHOLD_FRACTION <= threshold_fraction < 1.0:
            raise ValueError(
                f"threshold_fraction must be in [{MIN_THRESHOLD_FRACTION}, 1) so that t > k/2: with "
                "t <= k/2 a server that tells half of a party's neighbours it survived and the other half it "
                f"dropped collects both its secrets and unmasks its input; got {threshold_fraction}"
            )
        degree = effective_degree(n_parties, neighbours)
        threshold = min(degree, math.floor(threshold_fraction * degree) + 1)
        encoding = FixedPoint.for_sum(n_parties, clip, modulus_bits)
        nonce = os.urandom(16).hex() if nonce is None else nonce
        try:
            nonce_words = [int(nonce[i : i + 8], 16) for i in range(0, 32, 8)]
            if len(nonce) != 32:
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"nonce must be 32 hex digits (16 bytes); got {nonce!r}") from None
        public = [n_parties, dim, round, seed, degree, threshold, clip, encoding.scale, modulus_bits, nonce]
        digest = hashlib.sha256(b"deai-secagg/session/v2" + json.dumps(public).encode())
        graph = harary_graph(n_parties, degree, seed=[seed, *nonce_words], round=round)
        return cls(
            n_parties=n_parties,
            dim=dim,
            round=round,
            graph_seed=seed,
            nonce=nonce,
            degree=degree,
            threshold=threshold,
            encoding=encoding,
            session=digest.digest()[:16],
            neighbours=tuple(graph),
        )
