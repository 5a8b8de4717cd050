"""Free riders (Lin, Du and Liu 2019, "Free-riders in Federated Learning: Attacks and Defenses", arXiv
1911.12560).

A free rider wants the global model without spending data or compute: it skips training and sends either
nothing useful (a zero update, i.e. the global model back) or a small random update disguised as training
noise. It harms accuracy only by diluting the mean; the threat is to fairness and to incentive schemes that
pay per contribution.
"""

from __future__ import annotations

import numpy as np

from deai.attacks._common import AttackBase, attack_stream
from deai.attacks.base import RoundContext
from deai.checks import check_choice, check_non_negative
from deai.rng import party_normal

MODES = ("zero", "noise")


class FreeRider(AttackBase):
    """Malicious rows become zero (``mode="zero"``) or ``N(0, noise_std^2 I)`` (``mode="noise"``).

    Parameters
    ----------
    mode : ``"zero"`` (default) returns the global model unchanged, the plain free rider; ``"noise"`` is the
        disguised free rider whose random "update" is meant to pass checks for exact zeros or repeats.
    noise_std : per-coordinate standard deviation of the disguise (default ``1e-3``), small so the update
        barely moves the model; used only by ``mode="noise"``.

    Noise is keyed by ``(seed, round, party id)``, so it does not depend on which other parties were sampled.
    """

    name = "free_rider"

    def __init__(self, *, mode: str = "zero", noise_std: float = 1e-3) -> None:
        self.mode = check_choice("mode", mode, MODES)
        self.noise_std = check_non_negative("noise_std", noise_std)

    def forge(self, updates: np.ndarray, malicious: np.ndarray, ctx: RoundContext) -> np.ndarray:
        if self.mode == "zero":
            return np.zeros((int(malicious.sum()), updates.shape[1]), dtype=np.float32)
        ids = np.asarray(ctx.party_ids)[malicious]
        noise = party_normal(attack_stream(ctx.seed, ctx.round, self.name), ids, updates.shape[1])
        return self.noise_std * noise
