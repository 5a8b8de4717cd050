"""Gaussian noise updates (the "Gaussian Byzantine" workers of Blanchard, El Mhamdi, Guerraoui and Stainer
2017, "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS).

A malicious party sends pure noise instead of its update. It needs no knowledge of anything, so it is the
crudest Byzantine behaviour: a plain mean absorbs the noise, robust rules should reject it.
"""

from __future__ import annotations

import numpy as np

from deai.attacks._common import AttackBase, attack_stream
from deai.attacks.base import RoundContext
from deai.checks import check_positive
from deai.rng import party_normal


class Gaussian(AttackBase):
    """Malicious rows become draws from ``N(0, s^2 I)``, independent per party and round.

    Parameters
    ----------
    sigma : the per-coordinate standard deviation ``s`` (default ``1.0``). In absolute mode the noise norm is
        about ``sigma * sqrt(dim)``, which for a model of thousands of parameters dwarfs the norm of a
        round's local update (a few local steps at a small learning rate): the loud, easily-detected attack
        of the papers (Blanchard et al. even use ``sigma = 200``).
    relative : if ``True``, each malicious party scales its noise to its own honest update instead,
        ``s = sigma * |own update| / sqrt(dim)``, so the noise has about ``sigma`` times the norm the party
        would have sent: a quieter variant that norm-based defences cannot reject on size alone.

    Noise is keyed by ``(seed, round, party id)`` through :mod:`deai.rng`, so a party's noise does not depend
    on which other parties were sampled.
    """

    name = "gaussian"

    def __init__(self, *, sigma: float = 1.0, relative: bool = False) -> None:
        self.sigma = check_positive("sigma", sigma)
        if not isinstance(relative, bool):
            raise ValueError(f"relative must be True or False; got {relative!r}")
        self.relative = relative

    def forge(self, updates: np.ndarray, malicious: np.ndarray, ctx: RoundContext) -> np.ndarray:
        dim = updates.shape[1]
        ids = np.asarray(ctx.party_ids)[malicious]
        noise = party_normal(attack_stream(ctx.seed, ctx.round, self.name), ids, dim)
        if not self.relative:
            return self.sigma * noise
        own = updates[malicious]
        norms = np.sqrt(np.einsum("ij,ij->i", own, own, dtype=np.float64))
        return noise * (self.sigma * norms / np.sqrt(max(dim, 1)))[:, None]
