"""The sparse communication graph of SecAgg+ (Bell et al., CCS 2020).

Each party exchanges keys, shares and pairwise masks only with its k neighbours instead of all
n - 1 other parties, so per-party work and traffic are O(k + dim) rather than O(n + dim). The
graph is a Harary graph H(k, n), a ring where each node links to its k/2 nearest nodes on either
side, with parties placed on the ring by a random permutation drawn from the session's public seed and
fresh nonce: a random k-regular graph that everyone (server included) recomputes identically, and
that nobody can predict before the session opens. Bell et al. analyse
random graphs of degree O(log n). For n <= k + 1 it is the complete graph, i.e. the original
protocol of Bonawitz et al. (CCS 2017).

The constant in k = O(log n) depends on the fraction of corrupt parties and of dropouts to
tolerate; Bell et al. give the bounds. The default is k = 2 * ceil(2 * log2 n): 28 at n = 100,
40 at n = 1,000, 54 at n = 10,000. With the default threshold t = k/2 + 1 and independent
dropouts at rate d, a union bound over parties puts the chance that some party keeps fewer than
t live neighbours at n * P[Binomial(k, 1 - d) < t]: for d = 10%, 4e-4 at n = 20, 1e-5 at
n = 100 and less beyond; for d = 20%, 0.04 (n = 100) to 0.02 (n = 1,000); for d = 30%, above 1.
For heavy dropout raise k (or use the complete graph) or lower the threshold fraction, which
weakens the collusion bound.
"""

from __future__ import annotations

import math

import numpy as np

# SeedSequence words that keep this stream apart from every deai.rng.Purpose stream.
_GRAPH_STREAM = 0x53414747  # "SAGG"


def default_degree(n_parties: int) -> int:
    """k = 2 * ceil(2 * log2 n), capped at n - 1 (the complete graph)."""
    if n_parties < 2:
        return 0
    return min(n_parties - 1, 2 * math.ceil(2 * math.log2(n_parties)))


def effective_degree(n_parties: int, neighbours: int | None) -> int:
    """The degree actually used: even (a k-regular ring needs k even) and at most n - 1."""
    k = default_degree(n_parties) if neighbours is None else int(neighbours)
    if k < 1:
        raise ValueError(f"neighbours must be >= 1; got {neighbours}")
    if k >= n_parties - 1:
        return n_parties - 1
    return min(n_parties - 1, k + (k % 2))


def harary_graph(n_parties: int, degree: int, *, seed: int | list[int], round: int) -> list[np.ndarray]:
    """Sorted int64 neighbour arrays, one per party, of the randomly labelled Harary graph."""
    if degree >= n_parties - 1:
        everyone = np.arange(n_parties, dtype=np.int64)
        return [np.delete(everyone, u) for u in range(n_parties)]
    if degree % 2:
        raise ValueError(f"a sparse Harary graph needs an even degree; got {degree}")
    words = [int(w) for w in seed] if isinstance(seed, list) else [int(seed)]
    rng = np.random.default_rng(np.random.SeedSequence([*words, int(round), _GRAPH_STREAM]))
    ring = rng.permutation(n_parties)  # ring[i] is the party at ring position i
    position = np.empty(n_parties, dtype=np.int64)
    position[ring] = np.arange(n_parties)
    offsets = np.concatenate([np.arange(1, degree // 2 + 1), -np.arange(1, degree // 2 + 1)])
    neighbours = ring[(position[:, None] + offsets[None, :]) % n_parties]
    return [np.sort(row) for row in neighbours]
