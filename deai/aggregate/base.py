"""The aggregator contract: a function of the round's ``[parties, dim]`` update matrix.

Robust aggregators, FedNova's normalized averaging and secure aggregation all plug in here,
so the round loop never changes when a new rule is added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from deai.context import RoundContext


class Aggregator(Protocol):
    """An aggregation rule. It may also declare, as class attributes (see :func:`traits`):

    * ``min_parties`` (default 1): the fewest accepted updates it can aggregate; a round with fewer
      aggregates nothing (secure aggregation needs two, so no update is alone);
    * ``weights_parties`` (default False): each party's share of the aggregate is its normalized weight;
    * ``private`` (default False): it never sees an individual update (secure aggregation, HE);
    * ``streaming`` (default False): its aggregate is ``sum_i w_i x_i / sum_i w_i``, so a round can be
      folded batch by batch without holding the update matrix;
    * ``state()``/``load(arrays)``: state kept across rounds, saved in checkpoints.
    """

    name: str

    def __call__(self, updates: np.ndarray, weights: np.ndarray, ctx: RoundContext) -> np.ndarray:
        """``updates [P, dim]``, ``weights [P]`` (example counts) -> aggregate ``[dim]``."""
        ...


def normalized_weights(weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("aggregation weights must be finite and sum to a positive number")
    return w / total


@dataclass(frozen=True)
class Traits:
    """What a rule declares about itself, read once instead of probing attributes in the round loop."""

    name: str
    min_parties: int
    weights_parties: bool
    private: bool
    streaming: bool
    stateful: bool
    needs_root: bool  # reads the server's root-data update (ctx.signals['server_update'])


def traits(rule: object) -> Traits:
    return Traits(
        name=getattr(rule, "name", type(rule).__name__),
        min_parties=int(getattr(rule, "min_parties", 1)),
        weights_parties=bool(getattr(rule, "weights_parties", False)),
        private=bool(getattr(rule, "private", False)),
        streaming=bool(getattr(rule, "streaming", False)),
        stateful=callable(getattr(rule, "state", None)) and callable(getattr(rule, "load", None)),
        needs_root=bool(getattr(rule, "needs_root", False)),
    )
