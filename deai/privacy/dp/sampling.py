"""Where DP randomness comes from, and a vectorized discrete Gaussian sampler that both sources feed.

Noise that protects against someone who holds the task's config must not be derivable from it: by
default every DP draw (noise, Poisson sample) takes its bits from the operating system's CSPRNG
(:class:`SystemBits`, ``os.urandom``). Only ``privacy.simulation = true`` keys them by ``(seed, round,
party)`` (:class:`KeyedBits`), so that a simulated run is reproducible and resumes bit for bit; such a
run is private against no one who has its config, and says so.

Noise is discrete, never floating-point Box–Muller (whose tails end near 8.6 sigma and whose
low-order bits betray the input, Mironov 2012; Jin et al. 2022). :func:`discrete_gaussian` is the
rejection sampler of Canonne, Kamath and Steinke 2020 ("The Discrete Gaussian for Differential
Privacy", Algorithm 3: discrete Laplace proposals, accepted with probability
``exp(-(|y| - sigma^2/t)^2 / (2 sigma^2))``), vectorized over all entries at once. It decides with
53-bit uniforms rather than exact rationals, which moves each probability by at most ~2^-52
relatively and caps proposals at ~37 t: a statistical distance far below any delta a run uses.
OpenDP's exact sampler (``opendp.measurements.make_gaussian`` over integers) draws the same law
about a thousand times slower (8 us a sample here); the tests check the two against each other.

:func:`lattice_gaussian` releases real values through the discrete Gaussian: it snaps them to a
power-of-two lattice ``g Z`` and adds ``g`` times an integer draw, so every output is a lattice point
and nothing of the input's low bits survives. Snapping moves the sensitivity by at most ``g sqrt(d)``;
the noise is raised by that much, so the accountant's noise multiplier stays exact.
"""

from __future__ import annotations

import math
import os
from typing import Protocol

import numpy as np

from deai.rng import Purpose, key, row_uniform

# The lattice is as fine as float64 integers allow: sigma / g <= 2^40 keeps every draw (< 40 sigma)
# exactly representable, and makes the snapping's share of the sensitivity ~ sqrt(d) 2^-40 z.
_LATTICE_SIGMA_BITS = 40
_MAX_SIGMA = 2.0**47  # above this, float64 geometric draws lose integer precision
_INV_2_53 = 1.0 / (1 << 53)


class RandomBits(Protocol):
    """A source of uniforms for entries ``(row id, position)``; ``draw`` separates repeated passes."""

    secure: bool

    def uniform(self, rows: np.ndarray, positions: np.ndarray, draw: int) -> np.ndarray:
        """One float64 in [0, 1) per entry, with 53 random bits."""
        ...


class SystemBits:
    """The operating system's CSPRNG: draws nobody can regenerate, the default for every DP draw."""

    secure = True

    def uniform(self, rows: np.ndarray, positions: np.ndarray, draw: int) -> np.ndarray:
        n = len(positions)
        words = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
        return (words >> np.uint64(11)).astype(np.float64) * _INV_2_53


class KeyedBits:
    """Simulation only: uniforms keyed by ``(seed, round, NOISE, extra)``, the row id and the position.

    A row's draws depend only on its own id, so a resumed run or another backend draws the same noise,
    and so does anyone who holds the config: ``privacy.simulation = true`` claims no privacy.
    """

    secure = False

    def __init__(self, seed: int, round_: int, extra: int = 0) -> None:
        self.seed, self.round, self.extra = int(seed), int(round_), int(extra)

    def uniform(self, rows: np.ndarray, positions: np.ndarray, draw: int) -> np.ndarray:
        stream = key(self.seed, self.round, Purpose.NOISE, (self.extra << 16) + int(draw))
        return row_uniform(stream, rows, positions)


def noise_bits(simulation: bool, seed: int, round_: int, extra: int = 0) -> RandomBits:
    """The bits of a DP draw: keyed in ``simulation`` mode, the OS's CSPRNG otherwise."""
    return KeyedBits(seed, round_, extra) if simulation else SystemBits()


def bernoulli(probability: float, rows: np.ndarray, bits: RandomBits) -> np.ndarray:
    """``[len(rows)]`` bool: each row independently with ``probability`` (Poisson sampling)."""
    rows = np.asarray(rows, dtype=np.int64)
    return bits.uniform(rows, np.zeros(len(rows), dtype=np.int64), 0) < float(probability)


def discrete_gaussian(sigma: float, rows: np.ndarray, dim: int, bits: RandomBits) -> np.ndarray:
    """``[len(rows), dim]`` int64 draws of the discrete Gaussian ``N_Z(0, sigma^2)``.

    ``P(x) ∝ exp(-x^2 / (2 sigma^2))`` on the integers (Canonne, Kamath and Steinke 2020, Algorithm 3).
    Entry ``(i, j)`` depends only on ``rows[i]``, ``j`` and the bits, so keyed draws of a party do not
    depend on who else was drawn with it.
    """
    sigma = float(sigma)
    if not (math.isfinite(sigma) and 0 < sigma <= _MAX_SIGMA):
        raise ValueError(f"sigma must be a finite number in (0, 2^47], got {sigma!r}")
    rows, width = np.asarray(rows, dtype=np.int64), max(int(dim), 1)
    out = np.zeros((len(rows), int(dim)), dtype=np.int64)
    flat = out.reshape(-1)
    pending = np.arange(flat.size, dtype=np.int64)
    t = math.floor(sigma) + 1
    shift, two_var = sigma * sigma / t, 2.0 * sigma * sigma
    attempt = 0
    while pending.size:
        r, pos = rows[pending // width], pending % width
        u_mag = 1.0 - bits.uniform(r, pos, 3 * attempt)  # (0, 1]
        u_sign = bits.uniform(r, pos, 3 * attempt + 1)
        u_acc = bits.uniform(r, pos, 3 * attempt + 2)
        magnitude = np.floor(-t * np.log(u_mag))  # geometric: P(>= k) = exp(-k / t)
        negative = u_sign < 0.5
        laplace_ok = ~(negative & (magnitude == 0))  # zero once, not from both signs
        accept = laplace_ok & (u_acc < np.exp(-((magnitude - shift) ** 2) / two_var))
        done = pending[accept]
        flat[done] = np.where(negative[accept], -magnitude[accept], magnitude[accept]).astype(np.int64)
        pending = pending[~accept]
        attempt += 1
    return out


def lattice_step(sigma: float, max_abs: float = 0.0) -> float:
    """The lattice spacing ``g`` for noise of std ``sigma``: the power of two with ``sigma / g`` near 2^40,
    coarser when needed for ``max_abs / g`` to stay an exact int64 (below 2^61)."""
    fine = math.floor(math.log2(float(sigma))) - _LATTICE_SIGMA_BITS
    if max_abs > 0:
        fine = max(fine, math.ceil(math.log2(float(max_abs))) - 61)
    return 2.0**fine


def lattice_gaussian(
    values: np.ndarray, noise_multiplier: float, sensitivity: float, rows: np.ndarray, bits: RandomBits
) -> np.ndarray:
    """``values`` [P, dim] released with discrete Gaussian noise on a lattice (float64, lattice points).

    The noise std is ``z (sensitivity + 2 g sqrt(dim))``: ``z`` times a bound on the sensitivity of the
    snapped values, so recording ``z`` with the accountant stays exact.
    """
    x = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot release non-finite values; reject or clip them first")
    z, dim = float(noise_multiplier), x.shape[1]
    g = lattice_step(z * float(sensitivity), float(np.abs(x).max(initial=0.0)))
    sigma = z * (float(sensitivity) + 2.0 * g * math.sqrt(dim))  # nearest rounding: <= g per coordinate
    snapped = np.rint(x / g).astype(np.int64)
    return (snapped + discrete_gaussian(sigma / g, rows, dim, bits)).astype(np.float64) * g
