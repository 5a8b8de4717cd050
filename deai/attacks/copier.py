"""Copiers: parties that skip training and resend another party's update from the round before.

A lazy party can take any update that was revealed earlier (over the network every accepted update of
the last round is visible to the validators and, in a crowd setting, to anyone) and submit it, exactly
or scaled, as its own work. It degrades nothing much (the copied update was a good one) but it is paid
for work it never did. Commit–reveal (``[ledger] commit_reveal``) catches it; without it, a copy is
valued and paid like the original.
"""

from __future__ import annotations

import numpy as np

from deai.attacks._common import AttackBase
from deai.attacks.base import RoundContext
from deai.checks import check_positive


class Copier(AttackBase):
    """Each malicious row becomes ``scale`` times an honest party's update of the previous round.

    Parameters
    ----------
    scale : multiplies the copied update (default ``1.0``: an exact copy, provable from the ledger; any
        other positive scale is caught by the cosine test but not provable without the vectors).

    The copied party is the lowest-id honest party of the previous round. The first round the copier
    joins, there is nothing to copy yet, so it trains honestly.
    """

    name = "copier"

    def __init__(self, *, scale: float = 1.0) -> None:
        self.scale = check_positive("scale", scale)
        self._last: np.ndarray | None = None  # an honest row of the last round the copier saw

    def craft(self, updates: np.ndarray, ctx: RoundContext) -> np.ndarray:
        out = super().craft(updates, ctx)
        honest = ~np.asarray(ctx.malicious)
        if honest.any():
            self._last = np.array(updates[np.flatnonzero(honest)[0]], dtype=np.float32, copy=True)
        return out

    def forge(self, updates: np.ndarray, malicious: np.ndarray, ctx: RoundContext) -> np.ndarray:
        if self._last is None:
            return updates[malicious]
        return (self.scale * self._last).astype(np.float32)
