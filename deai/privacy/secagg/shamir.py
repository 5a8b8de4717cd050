"""Shamir t-of-n secret sharing over the prime field GF(2^31 - 1), vectorized with NumPy.

Shamir, "How to Share a Secret" (CACM 1979). A secret is a vector of field elements; every
element gets its own random polynomial of degree ``t - 1`` whose constant term is the element,
and holder ``x`` (a nonzero field element) receives the polynomials' values at ``x``. Any ``t``
shares give the secret by Lagrange interpolation at 0; any ``t - 1`` shares are uniformly
distributed whatever the secret is (perfect secrecy).

The Mersenne prime 2^31 - 1 keeps every product of two elements below 2^62, so all arithmetic
runs on uint64 arrays without overflow. Byte strings are carried as 16-bit chunks, one per
element (a 32-byte key becomes 16 elements).
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

PRIME = (1 << 31) - 1
_P = np.uint64(PRIME)


def random_field_elements(shape: tuple[int, ...]) -> np.ndarray:
    """Uniform elements of GF(p) from the OS CSPRNG (64 random bits reduced mod p: bias < 2^-32)."""
    count = int(np.prod(shape, dtype=np.int64))
    words = np.frombuffer(os.urandom(8 * count), dtype="<u8").reshape(shape)
    return words % _P


def split(secret: np.ndarray, threshold: int, xs: np.ndarray) -> np.ndarray:
    """Shares of ``secret`` (``[m]`` elements) for holders at ``xs``: ``[len(xs), m]`` uint64.

    Parameters
    ----------
    secret : field elements, each in ``[0, PRIME)``.
    threshold : ``t``, the number of shares that reconstruct; ``1 <= t <= len(xs)``.
    xs : distinct nonzero evaluation points, one per holder.
    """
    secret = np.asarray(secret, dtype=np.uint64).reshape(-1)
    xs = np.asarray(xs, dtype=np.uint64).reshape(-1)
    if np.any(secret >= _P):
        raise ValueError(f"secret elements must lie in [0, {PRIME})")
    _check_points(xs)
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold must be in [1, {len(xs)}] (number of holders); got {threshold}")
    coefficients = random_field_elements((threshold - 1, secret.size))
    x = xs[:, None]
    # Horner's rule from the highest coefficient down to the constant term (the secret).
    acc = np.zeros((xs.size, secret.size), dtype=np.uint64)
    for c in coefficients[::-1]:
        acc = (acc * x + c) % _P
    return (acc * x + secret) % _P


def reconstruct(xs: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """The secret ``[m]`` from shares ``[t, m]`` held at points ``xs [t]`` (Lagrange at 0).

    Exactly the given shares are used: with fewer than the sharing threshold the result is a
    uniformly random-looking vector, not the secret.
    """
    xs = np.asarray(xs, dtype=np.uint64).reshape(-1)
    shares = np.asarray(shares, dtype=np.uint64)
    if shares.ndim != 2 or shares.shape[0] != xs.size:
        raise ValueError(f"shares must have shape [len(xs)={xs.size}, m]; got {shares.shape}")
    if np.any(shares >= _P):
        raise ValueError(f"share elements must lie in [0, {PRIME})")
    _check_points(xs)
    lam = lagrange_at_zero(tuple(int(x) for x in xs))
    # Each product is < 2^62; reducing before the sum keeps t terms far below 2^64.
    return ((shares * lam[:, None]) % _P).sum(axis=0) % _P


@lru_cache(maxsize=4096)
def lagrange_at_zero(xs: tuple[int, ...]) -> np.ndarray:
    """Coefficients ``l_j = prod_{i != j} x_i / (x_i - x_j) mod p`` (cached per holder set)."""
    out = []
    for j, xj in enumerate(xs):
        num, den = 1, 1
        for i, xi in enumerate(xs):
            if i != j:
                num = num * xi % PRIME
                den = den * (xi - xj) % PRIME
        out.append(num * pow(den, -1, PRIME) % PRIME)
    return np.array(out, dtype=np.uint64)


def bytes_to_field(data: bytes) -> np.ndarray:
    """Even-length bytes -> uint64 elements, one per little-endian 16-bit chunk."""
    if len(data) % 2:
        raise ValueError("byte strings are shared in 16-bit chunks; length must be even")
    return np.frombuffer(data, dtype="<u2").astype(np.uint64)


def field_to_bytes(elements: np.ndarray) -> bytes:
    """Inverse of :func:`bytes_to_field`; a value >= 2^16 means the shares were inconsistent."""
    elements = np.asarray(elements, dtype=np.uint64)
    if np.any(elements >> np.uint64(16)):
        raise ValueError("reconstructed elements exceed 16 bits: the shares are inconsistent")
    return elements.astype("<u2").tobytes()


def _check_points(xs: np.ndarray) -> None:
    if np.any(xs == 0) or np.any(xs >= _P):
        raise ValueError(f"evaluation points must lie in [1, {PRIME}); 0 would reveal the secret")
    if np.unique(xs).size != xs.size:
        raise ValueError("evaluation points must be distinct")
