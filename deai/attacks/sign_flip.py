"""Sign flipping (Damaskinos, El Mhamdi, Guerraoui, Patra and Taziki 2018, "Asynchronous Byzantine Machine
Learning (the case of SGD)", ICML; the "bit-flipping" baseline of Karimireddy, He and Jaggi 2022,
"Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing", ICLR).

Each malicious party trains honestly and sends its update negated: it pushes the model uphill along its
own descent direction. It needs no knowledge of other parties, so it is the baseline non-omniscient
model-poisoning attack.
"""

from __future__ import annotations

import numpy as np

from deai.attacks._common import AttackBase
from deai.attacks.base import RoundContext
from deai.checks import check_real


class SignFlip(AttackBase):
    """Malicious rows become ``-scale * own update``.

    Parameters
    ----------
    scale : the factor applied to the negated update; ``1.0`` (default) is the plain sign flip of the
        benchmarks, larger values also inflate the norm (easier to detect, more damage to a plain mean).
    """

    name = "sign_flip"

    def __init__(self, *, scale: float = 1.0) -> None:
        self.scale = check_real("scale", scale)

    def forge(self, updates: np.ndarray, malicious: np.ndarray, ctx: RoundContext) -> np.ndarray:
        return -self.scale * updates[malicious].astype(np.float32)
