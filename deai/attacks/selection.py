"""Which parties an attacker controls: a seeded, exact-size draw for attacked experiments."""

from __future__ import annotations

import math
import zlib

import numpy as np

from deai.rng import Purpose, key, party_bits

_SELECTION_STREAM = zlib.crc32(b"choose_malicious")


def choose_malicious(num_parties: int, fraction: float, seed: int) -> np.ndarray:
    """A bool ``[num_parties]`` mask with exactly ``round(fraction * num_parties)`` parties set.

    Each party gets a random key from ``(seed, party id)`` through :mod:`deai.rng`, and the parties with the
    smallest keys are malicious. So the draw is reproducible, and for one seed a larger fraction only adds
    parties to a smaller fraction's set, which keeps sweeps over the fraction comparable.
    """
    if isinstance(num_parties, bool) or not isinstance(num_parties, int | np.integer) or num_parties < 0:
        raise ValueError(f"num_parties must be an integer >= 0; got {num_parties!r}")
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, int | float | np.number)
        or not (math.isfinite(fraction) and 0 <= fraction <= 1)
    ):
        raise ValueError(f"fraction must be a number in [0, 1]; got {fraction!r}")
    count = int(round(fraction * num_parties))
    keys = party_bits(key(seed, 0, Purpose.ATTACK, _SELECTION_STREAM), np.arange(num_parties), 1)[:, 0]
    mask = np.zeros(int(num_parties), dtype=bool)
    mask[np.argsort(keys, kind="stable")[:count]] = True
    return mask
