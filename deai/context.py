"""One context for every stage of a round: what a transform, an aggregator or an attack may know.

All of them are keyed by the run seed, the round and the round's parties; the optional fields are the
facts only some stages have (local steps for FedNova, signals a rule reports back, and what the
simulated omniscient attacker reads). One class, so a stage never has to translate between contexts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RoundContext:
    seed: int = 0
    round: int = 0
    party_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # int64 [P]
    steps: np.ndarray | None = None  # int64 [P] local steps each party took (aggregators)
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # per-party diagnostics a rule may add
    # what the simulated attacker reads (deai.attacks); None elsewhere
    malicious: np.ndarray | None = None  # bool [P] rows controlled by the attacker
    global_params: np.ndarray | None = None  # float32 [dim] the model the round started from
    weights: np.ndarray | None = None  # float64 [P] example counts (the aggregator's weights)
    num_classes: int = 0
    image_shape: tuple[int, ...] | None = None
    extra: dict[str, object] = field(default_factory=dict)
