"""The contract for simulated malicious parties, used to evaluate defences.

An attack acts at one or both of two points of a round:

* ``poison_data`` — before training, once per run: rewrite the malicious parties' own training
  rows (label flipping, backdoor triggers). Honest parties' rows are never touched.
* ``craft`` — after local training, every round: replace the malicious rows of the round's
  ``[P, dim]`` update matrix. Omniscient attacks (ALIE, IPM, min-max, min-sum) may read the
  honest rows of the same round, as in their papers; they must not modify them.

Randomness comes only from ``ctx.seed``/``ctx.round`` through :mod:`deai.rng`, so attacked
runs are as reproducible as clean ones.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from deai.context import RoundContext


class Attack(Protocol):
    name: str

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, image_shape: tuple[int, ...] | None, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return poisoned copies of one malicious party's training rows (or the inputs unchanged)."""
        ...

    def craft(self, updates: np.ndarray, ctx: RoundContext) -> np.ndarray:
        """Return the update matrix with the malicious rows replaced (honest rows unchanged)."""
        ...
