"""Ground truth only a simulation has: which parties the adversary controls, read against each record."""

from __future__ import annotations

import numpy as np

from deai.messages import RoundRecord


class GroundTruthObserver:
    """Adds to each round's metrics line how much aggregate weight reached the attackers.

    ``malicious_weight_share`` is the share of the aggregate carried by malicious parties (for rules with
    per-party weights), and the ``party_signals`` table gains the ``malicious`` column, so detection
    signals can be scored against the truth. The server never sees either.
    """

    def __init__(self, malicious: np.ndarray) -> None:
        self.malicious = np.asarray(malicious, dtype=bool)

    def __call__(self, record: RoundRecord) -> None:
        mal = self.malicious[record.accepted]
        m = record.metrics
        if record.weights is not None and record.weights.sum() > 0:
            m["malicious_weight_share"] = float(record.weights[mal].sum()) if mal.any() else 0.0
        signals = m.get("party_signals")
        if signals is not None:
            m["party_signals"] = {"party": signals["party"], "malicious": mal.tolist()} | {
                k: v for k, v in signals.items() if k != "party"
            }
