"""Deterministic randomness keyed by ``(run seed, round, party, purpose)``.

No global generator is ever used: a party's mini-batch order, dropout or speed depends only on
its own key, so backends agree, a resumed run is bit-identical, and a party behaves the same
whoever else was sampled. Per-party streams are counter-based (SplitMix64 over uint64 arrays),
so drawing for ten thousand parties is one vectorized operation, not ten thousand generators.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


class Purpose(IntEnum):
    """Distinct streams; never reuse a value for a new purpose."""

    INIT = 1
    SELECT = 2
    PERMUTE = 3
    DROPOUT = 4
    SPEED = 5
    PARTITION = 6
    ATTACK = 7
    NOISE = 8
    DEFENCE = 9
    VALUE = 10  # the join orders sampled by Monte-Carlo Shapley valuation
    COMPRESS = 11  # stochastic rounding of compressed updates


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer (Steele et al. 2014), elementwise on uint64 arrays."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def key(seed: int, round_: int, purpose: Purpose, extra: int = 0) -> np.uint64:
    """A 64-bit stream key from the run seed, round and purpose."""
    state = np.random.SeedSequence([int(seed), int(round_), int(purpose), int(extra)]).generate_state(
        1, np.uint64
    )
    return np.uint64(state[0])


def generator(seed: int, round_: int, purpose: Purpose, extra: int = 0) -> np.random.Generator:
    """A NumPy Generator for choices that are global to a round (e.g. which parties are sampled)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(round_), int(purpose), int(extra)]))


def party_bits(stream: np.uint64, party_ids: np.ndarray, n: int) -> np.ndarray:
    """``[P, n]`` uint64 random words; row p depends only on (stream, party_ids[p])."""
    with np.errstate(over="ignore"):
        pid = np.asarray(party_ids, dtype=np.uint64)[:, None]
        base = _mix(pid * _GOLDEN + stream)
        ctr = np.arange(n, dtype=np.uint64)[None, :]
        return _mix(base + (ctr + np.uint64(1)) * _GOLDEN)


def party_uniform(stream: np.uint64, party_ids: np.ndarray, n: int = 1) -> np.ndarray:
    """``[P, n]`` float64 uniforms in [0, 1), 53 bits each."""
    return (party_bits(stream, party_ids, n) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def row_uniform(stream: np.uint64, party_ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """One float64 uniform in [0, 1) per ``(party_ids[i], positions[i])`` pair: per-row draws of many parties
    of different sizes in one vectorized call (a party's draws depend only on its id and its rows)."""
    with np.errstate(over="ignore"):
        pid = np.asarray(party_ids, dtype=np.uint64)
        ctr = np.asarray(positions, dtype=np.uint64)
        bits = _mix(_mix(pid * _GOLDEN + stream) + (ctr + np.uint64(1)) * _GOLDEN)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def party_normal(stream: np.uint64, party_ids: np.ndarray, n: int = 1) -> np.ndarray:
    """``[P, n]`` standard normals (Box–Muller on two independent uniform streams)."""
    u1 = party_uniform(stream, party_ids, n)
    u2 = party_uniform(stream ^ np.uint64(0xD1B54A32D192ED03), party_ids, n)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def party_permutations(stream: np.uint64, party_ids: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``[P, max(sizes)]`` int64: row p starts with a random permutation of ``range(sizes[p])``.

    Entries past ``sizes[p]`` are padding (their values are ``>= sizes[p]``) and must be masked.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    width = int(sizes.max(initial=0))
    keys = party_bits(stream, party_ids, width)
    keys[np.arange(width)[None, :] >= sizes[:, None]] = np.uint64(np.iinfo(np.uint64).max)
    return np.argsort(keys, axis=1, kind="stable")
