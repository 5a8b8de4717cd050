"""Shared machinery of the simulated attacks: constructor checks, the round's input checks, the reference
rows an omniscient attack reads, per-attack random streams, and a base class holding the contract's
defaults (no data poisoning, honest rows copied through, malicious rows replaced in one assignment).
"""

from __future__ import annotations

import inspect
import zlib

import numpy as np

from deai.attacks.base import RoundContext
from deai.rng import Purpose, generator, key


def check_round(updates: np.ndarray, ctx: RoundContext) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``craft``'s inputs; return the updates as an array and the malicious mask as bool ``[P]``."""
    u = np.asarray(updates)
    if u.ndim != 2:
        raise ValueError(f"updates must be a 2-D [parties, dim] array; got shape {u.shape}")
    malicious = np.asarray(ctx.malicious)
    if malicious.shape != (u.shape[0],) or malicious.dtype != np.bool_:
        raise ValueError(
            f"ctx.malicious must be a bool mask of shape ({u.shape[0]},), one entry per row of updates; "
            f"got {malicious.dtype} {malicious.shape}"
        )
    if np.shape(ctx.party_ids) != (u.shape[0],):
        raise ValueError(
            f"ctx.party_ids must have shape ({u.shape[0]},), one id per row of updates; "
            f"got {np.shape(ctx.party_ids)}"
        )
    return u, malicious


def reference_rows(updates: np.ndarray, malicious: np.ndarray) -> np.ndarray:
    """The rows an omniscient attack estimates the honest distribution from.

    These are the honest rows of the round, as in the papers. When every row is malicious there are none,
    so the attacker falls back on its own parties' honestly trained updates (the papers' "partial
    knowledge" setting), which are what the malicious rows hold before ``craft`` replaces them.
    """
    honest = ~malicious
    return updates[honest] if honest.any() else updates[malicious]


# Columns per block when a per-coordinate statistic needs float64 precision: the block's float64 copy stays
# small (n x 65536 x 8 bytes), never the whole matrix.
COLUMN_BLOCK = 1 << 16


def column_mean_std(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate float64 mean and population standard deviation (``ddof=0``) of ``[n, dim]`` rows."""
    n, dim = rows.shape
    mean, std = np.empty(dim), np.empty(dim)
    for start in range(0, dim, COLUMN_BLOCK):
        block = rows[:, start : start + COLUMN_BLOCK].astype(np.float64)
        mean[start : start + COLUMN_BLOCK] = m = block.mean(axis=0)
        std[start : start + COLUMN_BLOCK] = np.sqrt(((block - m) ** 2).mean(axis=0))
    return mean, std


def attack_stream(seed: int, round_: int, attack_name: str) -> np.uint64:
    """The attack's random stream for one round; the name (as a CRC-32) keeps attacks' streams apart."""
    return key(seed, round_, Purpose.ATTACK, zlib.crc32(attack_name.encode()))


def attack_generator(seed: int, round_: int, attack_name: str) -> np.random.Generator:
    """A generator for the attack's choices that are not per party (e.g. which of one party's rows)."""
    return generator(seed, round_, Purpose.ATTACK, zlib.crc32(attack_name.encode()))


class AttackBase:
    """Defaults for the :class:`deai.attacks.base.Attack` contract.

    ``poison_data`` leaves the rows alone; ``craft`` validates, returns a float32 copy (the input is never
    mutated) and, when the round has malicious rows, overwrites them with :meth:`forge`'s result. Subclasses
    override one or both of ``poison_data`` and ``forge``.
    """

    name = ""

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, image_shape: tuple[int, ...] | None, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """No data poisoning: the malicious party trains on its own rows unchanged."""
        return x, y

    def craft(self, updates: np.ndarray, ctx: RoundContext) -> np.ndarray:
        """Return a float32 copy of ``updates`` with the malicious rows replaced by :meth:`forge`'s."""
        u, malicious = check_round(updates, ctx)
        out = np.array(u, dtype=np.float32, copy=True)
        if malicious.any():
            out[malicious] = self.forge(u, malicious, ctx)
        return out

    def forge(self, updates: np.ndarray, malicious: np.ndarray, ctx: RoundContext) -> np.ndarray:
        """The malicious rows, ``[M, dim]`` or one ``[dim]`` row for all; called only when ``M >= 1``."""
        return updates[malicious]

    def __repr__(self) -> str:
        params = inspect.signature(type(self)).parameters
        return f"{type(self).__name__}({', '.join(f'{p}={getattr(self, p)!r}' for p in params)})"
