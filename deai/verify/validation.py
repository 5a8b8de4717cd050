"""Reject bad updates before aggregation, with a logged reason, and keep the round going.

A party can send anything. An update of the wrong shape or dtype, with NaN/Inf, with a norm above
the task's bound, from a sender already heard this round, or for another round is rejected; the
round aggregates the rest, so such an update never reaches the global model.
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
DUPLICATE_SENDER = "duplicate_sender"
STALE_ROUND = "stale_round"


@dataclass
class ValidationResult:
    accepted: np.ndarray  # bool [P]
    reasons: dict[int, str] = field(default_factory=dict)  # row index -> reason

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
    finite = np.isfinite(updates).all(axis=1)
    reject(~finite, NON_FINITE)
    reject(np.asarray(rounds) != expected_round, STALE_ROUND)
    _, first = np.unique(party_ids, return_index=True)
    dup = np.ones(P, bool)
    dup[first] = False
    reject(dup, DUPLICATE_SENDER)
    if max_norm is not None:
        norms = np.full(P, np.inf)
        norms[finite] = np.linalg.norm(updates[finite], axis=1)
        reject(finite & (norms > max_norm), NORM_TOO_LARGE)
    accepted = np.ones(P, bool)
    accepted[list(reasons)] = False
    for i, reason in reasons.items():
        log.warning("round %d: rejected update from party %d: %s", expected_round, int(party_ids[i]), reason)
    return ValidationResult(accepted=accepted, reasons=reasons)
