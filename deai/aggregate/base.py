"""The aggregator contract: a function of the round's ``[parties, dim]`` update matrix.

Robust aggregators, FedNova's normalized averaging and secure aggregation all plug in here,
so the round loop never changes when a new rule is added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class AggregationContext:
    """What an aggregator may know about the round besides the updates themselves."""

    round: int
    party_ids: np.ndarray  # int64 [P]
    steps: np.ndarray  # int64 [P] local steps each party took
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # per-party diagnostics it may add


class Aggregator(Protocol):
    """An aggregation rule. It may also set ``min_parties`` (default 1): the fewest accepted updates it can
    aggregate; a round with fewer aggregates nothing (secure aggregation needs two, so no update is alone)."""

    name: str

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: AggregationContext) -> np.ndarray:
        """``updates [P, dim]``, ``weights [P]`` (example counts) -> aggregate ``[dim]``."""
        ...


def normalized_weights(weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("aggregation weights must be finite and sum to a positive number")
    return w / total
