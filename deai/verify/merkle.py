"""A round's update commitments as one Merkle root (RFC 6962's tree hash, SHA-256).

Leaves and inner nodes are hashed with different prefixes (``0x00`` and ``0x01``), so no inner node can be
passed off as a leaf; an unbalanced tree splits at the largest power of two below its size, so the root
of ``n`` leaves is defined for every ``n`` and an inclusion proof has ``ceil(log2 n)`` hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The tree hash of ``leaves`` (raw leaf bytes, hashed here); ``EMPTY_ROOT`` for none."""
    level = [leaf_hash(leaf) for leaf in leaves]
    if not level:
        return EMPTY_ROOT
    return _root_of_hashes(level)


def _root_of_hashes(hashes: list[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return _node(_root_of_hashes(hashes[:k]), _root_of_hashes(hashes[k:]))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The sibling hashes from leaf ``index`` up to the root (RFC 6962 ``PATH``)."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"index must be in [0, {len(leaves)}); got {index}")
    return _path(index, [leaf_hash(leaf) for leaf in leaves])


def _path(m: int, hashes: list[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if m < k:
        return [*_path(m, hashes[:k]), _root_of_hashes(hashes[k:])]
    return [*_path(m - k, hashes[k:]), _root_of_hashes(hashes[:k])]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True when ``proof`` shows ``leaf`` at ``index`` of a ``size``-leaf tree with ``root``."""
    if not 0 <= index < size:
        return False
    return _climb(leaf_hash(leaf), index, size, list(proof)) == root


def _climb(h: bytes, m: int, n: int, proof: list[bytes]) -> bytes | None:
    if n == 1:
        return h if not proof else None
    if not proof:
        return None
    k = _split(n)
    sibling = proof.pop()  # the top-level sibling is the last element of the path
    if m < k:
        below = _climb(h, m, k, proof)
        return None if below is None else _node(below, sibling)
    below = _climb(h, m - k, n - k, proof)
    return None if below is None else _node(sibling, below)
