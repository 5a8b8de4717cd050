"""Inner-product manipulation (Xie, Koyejo and Gupta 2020, "Fall of Empires: Breaking Byzantine-tolerant SGD
by Inner Product Manipulation", UAI).

Robust rules only guarantee that the aggregate stays *close* to the honest mean; IPM exploits that closeness
is not enough: updates ``-epsilon * mean`` make the aggregate's inner product with the true descent
direction negative, so the model stops descending while every malicious update stays small.
"""

from __future__ import annotations

import numpy as np

from deai.attacks._common import AttackBase, reference_rows
from deai.attacks.base import RoundContext
from deai.checks import check_positive


class IPM(AttackBase):
    """Every malicious row becomes ``-epsilon * mean(honest updates)`` (omniscient).

    Parameters
    ----------
    epsilon : the scale. The paper uses a small value (0.1) against the median and Krum, whose outputs a
        small negative vector can drag across zero without being filtered, and a large one (100) against the
        plain mean, which needs ``epsilon > (n - f) / f`` to flip sign. ``0.5`` (default) sits between:
        small enough to pass distance-based filters, and it flips a plain mean once ``f`` exceeds two
        thirds of the parties.

    The honest mean is unweighted, as in the paper. When every row is malicious the parties' own updates
    stand in for the honest ones.
    """

    name = "ipm"

    def __init__(self, *, epsilon: float = 0.5) -> None:
        self.epsilon = check_positive("epsilon", epsilon)

    def forge(self, updates: np.ndarray, malicious: np.ndarray, ctx: RoundContext) -> np.ndarray:
        return -self.epsilon * reference_rows(updates, malicious).mean(axis=0, dtype=np.float64)
