"""Sybils (Fung, Yoon and Beschastnikh 2020, "The Limitations of Federated Learning in Sybil Settings", RAID,
the setting of FoolsGold).

One attacker joins under many identities and sends (almost) the same update from each, multiplying its
weight in any rule that counts parties. Their telltale similarity is what FoolsGold looks for, so the
per-identity noise lets a test ask how much disguise that detection tolerates.
"""

from __future__ import annotations

import numpy as np

from deai.attacks._common import AttackBase, attack_stream
from deai.attacks.base import RoundContext
from deai.attacks.label_flip import LabelFlip
from deai.checks import check_choice, check_non_negative
from deai.rng import party_normal

MODES = ("copy", "flip")


class Sybil(AttackBase):
    """Every malicious row becomes the first malicious row's update (or its negation), plus optional noise.

    Parameters
    ----------
    mode : ``"copy"`` (default) sends the first malicious party's own trained update from every identity;
        ``"flip"`` sends its sign-flipped version.
    noise_std : per-coordinate standard deviation of independent per-identity noise (default 0: identical
        rows), keyed by ``(seed, round, party id)``.
    flip_labels : if ``True``, the sybils also train on labels flipped ``y -> num_classes - 1 - y``, as the
        label-flipping sybils of Fung et al.; default ``False`` (only the update is shared).

    "First" is the lowest malicious row of the round's matrix.
    """

    name = "sybil"

    def __init__(self, *, mode: str = "copy", noise_std: float = 0.0, flip_labels: bool = False) -> None:
        self.mode = check_choice("mode", mode, MODES)
        self.noise_std = check_non_negative("noise_std", noise_std)
        if not isinstance(flip_labels, bool):
            raise ValueError(f"flip_labels must be True or False; got {flip_labels!r}")
        self.flip_labels = flip_labels

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, image_shape: tuple[int, ...] | None, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Labels flipped when ``flip_labels``; otherwise the rows unchanged."""
        if self.flip_labels:
            return LabelFlip().poison_data(x, y, num_classes, image_shape, seed)
        return x, y

    def forge(self, updates: np.ndarray, malicious: np.ndarray, ctx: RoundContext) -> np.ndarray:
        shared = updates[np.flatnonzero(malicious)[0]].astype(np.float32)
        if self.mode == "flip":
            shared = -shared
        rows = np.broadcast_to(shared, (int(malicious.sum()), updates.shape[1]))
        if self.noise_std == 0:
            return rows
        ids = np.asarray(ctx.party_ids)[malicious]
        noise = party_normal(attack_stream(ctx.seed, ctx.round, self.name), ids, updates.shape[1])
        return rows + self.noise_std * noise
