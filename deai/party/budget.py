"""A data owner's own privacy budget: each party refuses a round that would take it past its epsilon.

The server's accountant counts on Poisson sampling that the party cannot check, so the party keeps
its own, conservative ledger: every round it trains in is one Gaussian mechanism with the task's
noise multiplier ``z`` and no amplification by sampling (``q = 1``), composed with the same accountant
as the server's. Before training, a party whose next round would exceed ``budget_epsilon`` at
``delta`` declines, whatever the server asked; its spent epsilon is in its own state (checkpointed
with the run). The network issue makes this a node's behaviour; the logic lives here.
"""

from __future__ import annotations

import math

import numpy as np

from deai.checks import check_positive
from deai.privacy.dp.accountant import AccountantKind, compute_epsilon

REFUSED = "party privacy budget"  # the reason a party's refusal carries to the server


class PartyBudget:
    """The per-party limit on rounds, from ``budget_epsilon``, ``noise_multiplier`` and ``delta``."""

    def __init__(
        self, budget_epsilon: float, noise_multiplier: float, delta: float, accountant: AccountantKind = "rdp"
    ) -> None:
        self.budget_epsilon = check_positive("privacy.party_budget_epsilon", budget_epsilon)
        self.noise_multiplier = float(noise_multiplier)
        self.delta, self.accountant = float(delta), accountant
        self.max_rounds = self._max_rounds()

    def spent(self, rounds: int) -> float:
        """Epsilon after ``rounds`` rounds of training, as the party counts it."""
        if rounds <= 0:
            return 0.0
        if self.noise_multiplier == 0:
            return math.inf
        return compute_epsilon(self.noise_multiplier, 1.0, int(rounds), self.delta, self.accountant)

    def _max_rounds(self) -> int:
        """The most rounds whose epsilon stays within the budget (epsilon grows with rounds: bisect)."""
        if self.spent(1) > self.budget_epsilon:
            return 0
        lo, hi = 1, 2
        while self.spent(hi) <= self.budget_epsilon and hi < 1 << 20:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.spent(mid) <= self.budget_epsilon else (lo, mid)
        return lo

    def refuses(self, trained_rounds: np.ndarray) -> np.ndarray:
        """Bool mask: which parties (by rounds already trained) would pass their budget with one more."""
        return np.asarray(trained_rounds) + 1 > self.max_rounds
