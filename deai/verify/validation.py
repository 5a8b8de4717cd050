"""Reject bad updates before aggregation, with a logged reason, and keep the round going.

A party can send anything. An update of the wrong shape or dtype, with NaN/Inf, with a norm too large
for float32 arithmetic or above the task's bound, from a sender already heard this round, or for
another round is rejected; the round aggregates the rest, so such an update never reaches the global
model and no aggregator ever sees what it cannot digest.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("deai.verify")

WRONG_SHAPE = "wrong_shape"
WRONG_DTYPE = "wrong_dtype"
NON_FINITE = "non_finite"
NORM_TOO_LARGE = "norm_too_large"
NORM_OVERFLOW = "norm_overflow"
DUPLICATE_SENDER = "duplicate_sender"
STALE_ROUND = "stale_round"

#: Largest update norm any rule may be handed. Every aggregator squares and multiplies coordinates in
#: float32 (norms, Gram matrices, pairwise distances); with ``|u| <= 1e18`` every such sum of squares or
#: product is at most ``4e36``, below float32's ``3.4e38``. A finite update beyond it ("finite but huge",
#: e.g. IPM with epsilon 1e20 or a diverged party) is rejected as ``norm_overflow``.
DIGESTIBLE_NORM = 1e18

# Columns per block of the float64 norm pass: bounds the upcast copy to ~128 KiB per row.
_NORM_BLOCK = 16384


@dataclass
class ValidationResult:
    accepted: np.ndarray  # bool [P]
    reasons: dict[int, str] = field(default_factory=dict)  # row index -> reason
    norms: np.ndarray | None = None  # float64 [P] L2 norm of every row (NaN/inf where non-finite)

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.reasons.values()))


def check_vector(vector: object, dim: int) -> str | None:
    """Why a single received vector is unusable (shape, dtype, finiteness), or None if it is fine."""
    if not isinstance(vector, np.ndarray):
        return WRONG_DTYPE
    if vector.dtype != np.float32:
        return WRONG_DTYPE
    if vector.shape != (dim,):
        return WRONG_SHAPE
    if not np.isfinite(vector).all():
        return NON_FINITE
    return None


def row_norms(updates: np.ndarray) -> np.ndarray:
    """Each row's L2 norm in float64, over column blocks (no float64 copy of the whole matrix).

    float32 values cannot overflow a float64 sum of squares, so a non-finite result means the row
    itself holds NaN or inf: one pass gives both the finiteness check and the norm.
    """
    updates = np.asarray(updates)
    sq = np.zeros(updates.shape[0])
    for s in range(0, updates.shape[1], _NORM_BLOCK):
        block = updates[:, s : s + _NORM_BLOCK].astype(np.float64)
        sq += np.einsum("ij,ij->i", block, block)
    return np.sqrt(sq)


def validate_updates(
    updates: np.ndarray,
    party_ids: np.ndarray,
    rounds: np.ndarray,
    expected_round: int,
    *,
    max_norm: float | None = None,
) -> ValidationResult:
    """Row-wise checks on a round's ``[P, dim]`` matrix; the first reason found for a row is kept.

    Duplicates: the first update from a sender is kept, later ones are rejected.
    """
    P = updates.shape[0]
    reasons: dict[int, str] = {}

    def reject(mask: np.ndarray, reason: str) -> None:
        for i in np.flatnonzero(mask):
            reasons.setdefault(int(i), reason)

    if updates.dtype != np.float32:
        reject(np.ones(P, bool), WRONG_DTYPE)
    norms = row_norms(updates) if np.issubdtype(updates.dtype, np.floating) else np.full(P, np.nan)
    finite = np.isfinite(norms)
    reject(~finite, NON_FINITE)
    reject(finite & (norms > DIGESTIBLE_NORM), NORM_OVERFLOW)
    reject(np.asarray(rounds) != expected_round, STALE_ROUND)
    _, first = np.unique(party_ids, return_index=True)
    dup = np.ones(P, bool)
    dup[first] = False
    reject(dup, DUPLICATE_SENDER)
    if max_norm is not None:
        reject(finite & (norms > max_norm), NORM_TOO_LARGE)
    accepted = np.ones(P, bool)
    accepted[list(reasons)] = False
    by_reason: dict[str, list[int]] = {}
    for i, reason in reasons.items():
        by_reason.setdefault(reason, []).append(int(party_ids[i]))
    for reason, parties in by_reason.items():  # one line per reason, not one per party
        shown = ", ".join(map(str, parties[:10])) + (
            f" and {len(parties) - 10} more" if len(parties) > 10 else ""
        )
        log.warning(
            "round %d: rejected %d update(s) as %s (parties %s)", expected_round, len(parties), reason, shown
        )
    return ValidationResult(accepted=accepted, reasons=reasons, norms=norms)
