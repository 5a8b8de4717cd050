"""A Little Is Enough (Baruch, Baruch and Goldberg 2019, "A Little Is Enough: Circumventing Defenses For
Distributed Learning", NeurIPS).

Honest updates vary per coordinate; a malicious update that moves every coordinate by ``z`` standard
deviations, with ``z`` small enough that enough honest parties lie further out, is never an outlier to a
median, trimmed mean or Krum, yet all malicious parties moving together in the same direction shift the
aggregate consistently, round after round.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from deai.attacks._common import AttackBase, column_mean_std, reference_rows
from deai.attacks.base import RoundContext
from deai.checks import check_non_negative


def alie_z(num_parties: int, num_malicious: int) -> float:
    """The paper's ``z_max = Phi^-1((n - s) / n)`` with ``s = floor(n / 2 + 1) - f``.

    ``s`` is how many honest parties the attackers need on their side for a majority; ``z_max`` is the
    largest shift such that, for normally distributed honest coordinates, that many honest values still lie
    further from the mean than the malicious one. When the attackers already hold a majority (``s <= 0``)
    the paper's formula is undefined (``Phi^-1(1) = inf``); ``s`` is then kept at 1, the most the formula
    allows with a finite ``z``. A probability below one half (only ``n = 1``) gives ``z = 0``.
    """
    n, f = int(num_parties), int(num_malicious)
    s = max(n // 2 + 1 - f, 1)
    return NormalDist().inv_cdf(max((n - s) / n, 0.5))


class ALIE(AttackBase):
    """Every malicious row becomes ``mean - z * std`` of the honest updates, per coordinate (omniscient).

    Parameters
    ----------
    z : the shift in standard deviations; ``None`` (default) computes the paper's ``z_max`` from the round's
        ``n`` parties and ``f`` malicious ones (:func:`alie_z`).

    ``std`` is the population standard deviation (``ddof=0``), defined even for one honest row. When every
    row is malicious the parties' own updates stand in for the honest ones.
    """

    name = "alie"

    def __init__(self, *, z: float | None = None) -> None:
        self.z = None if z is None else check_non_negative("z", z)

    def forge(self, updates: np.ndarray, malicious: np.ndarray, ctx: RoundContext) -> np.ndarray:
        reference = reference_rows(updates, malicious)
        z = alie_z(len(malicious), int(malicious.sum())) if self.z is None else self.z
        mean, std = column_mean_std(reference)
        return mean - z * std
