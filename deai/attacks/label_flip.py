"""Label flipping (Tolpegin, Truex, Gursoy and Liu 2020, "Data Poisoning Attacks Against Federated Learning
Systems", ESORICS).

The malicious parties train honestly, but on relabelled rows, so their updates look like ordinary
updates (same norm, same training procedure) while pulling the model towards wrong labels. This is the
weakest attacker in the threat model: it controls only its own data, not what it sends.
"""

from __future__ import annotations

import numpy as np

from deai.attacks._common import AttackBase
from deai.checks import check_label


class LabelFlip(AttackBase):
    """Relabel the malicious parties' training rows; updates are sent as trained (``craft`` is identity).

    Parameters
    ----------
    source_label, target_label : both ``None`` (default) flips every label ``y -> num_classes - 1 - y``, the
        untargeted all-classes variant used by most robust-aggregation benchmarks; both given flips only
        rows of class ``source_label`` to ``target_label``, Tolpegin et al.'s targeted setting.
    """

    name = "label_flip"

    def __init__(self, *, source_label: int | None = None, target_label: int | None = None) -> None:
        if (source_label is None) != (target_label is None):
            raise ValueError(
                "source_label and target_label must be given together (a targeted flip) or both left None "
                f"(flip y -> num_classes - 1 - y); got source_label={source_label!r}, "
                f"target_label={target_label!r}"
            )
        self.source_label = None if source_label is None else check_label("source_label", source_label)
        self.target_label = None if target_label is None else check_label("target_label", target_label)

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, image_shape: tuple[int, ...] | None, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``x`` unchanged and a relabelled copy of ``y``."""
        y = np.asarray(y)
        if self.source_label is None or self.target_label is None:
            return x, (num_classes - 1 - y).astype(y.dtype)
        for label_name in ("source_label", "target_label"):
            if getattr(self, label_name) >= num_classes:
                raise ValueError(
                    f"{label_name}={getattr(self, label_name)} is not a class of a {num_classes}-class task"
                )
        return x, np.where(y == self.source_label, self.target_label, y).astype(y.dtype)
