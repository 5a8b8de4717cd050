"""Simulated malicious parties, one module per paper, all behind the contract of :mod:`deai.attacks.base`.

Data poisoning (``label_flip``, ``backdoor``, optionally ``sybil``) rewrites the malicious parties' own
rows before training; model poisoning rewrites their rows of each round's update matrix. Non-omniscient
attacks (``sign_flip``, ``gaussian``, ``backdoor``'s boost, ``free_rider``, ``sybil``) use only the
attacker's own updates, and ``copier`` resends an honest update of the round before; omniscient ones
(``alie``, ``ipm``, ``min_max``, ``min_sum``) also read the round's honest updates, the strongest attacker
of their papers, and fall back on the attacker's own updates when every row is malicious. Every ``craft``
is vectorized over rows, returns a new float32 matrix with the honest rows unchanged, and draws randomness
only from :mod:`deai.rng`, keyed per party.
"""

from __future__ import annotations

from deai.attacks.adaptive import Adaptive
from deai.attacks.alie import ALIE, alie_z
from deai.attacks.backdoor import Backdoor, apply_trigger, backdoor_success_rate
from deai.attacks.base import Attack, RoundContext
from deai.attacks.canary import Canary
from deai.attacks.copier import Copier
from deai.attacks.free_rider import FreeRider
from deai.attacks.gaussian import Gaussian
from deai.attacks.ipm import IPM
from deai.attacks.label_flip import LabelFlip
from deai.attacks.min_max import MinMax, MinSum, largest_gamma, perturbation_vector
from deai.attacks.selection import choose_malicious
from deai.attacks.sign_flip import SignFlip
from deai.attacks.sybil import Sybil
from deai.checks import check_options

ATTACKS: dict[str, type] = {
    cls.name: cls
    for cls in (
        LabelFlip,
        SignFlip,
        Gaussian,
        ALIE,
        IPM,
        MinMax,
        MinSum,
        Adaptive,
        Backdoor,
        FreeRider,
        Sybil,
        Canary,
        Copier,
    )
}


def make_attack(name: str, **options: object) -> Attack:
    """Construct the attack called ``name`` from keyword options, e.g. ``make_attack("ipm", epsilon=0.1)``.

    Unknown names and options are rejected with the allowed ones listed, before any constructor runs.
    """
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACKS)}")
    cls = ATTACKS[name]
    check_options(cls, options, f"attack {name!r}")
    return cls(**options)


__all__ = [
    "ALIE",
    "Adaptive",
    "ATTACKS",
    "Canary",
    "Copier",
    "IPM",
    "Attack",
    "RoundContext",
    "Backdoor",
    "FreeRider",
    "Gaussian",
    "LabelFlip",
    "MinMax",
    "MinSum",
    "SignFlip",
    "Sybil",
    "alie_z",
    "apply_trigger",
    "backdoor_success_rate",
    "choose_malicious",
    "largest_gamma",
    "make_attack",
    "perturbation_vector",
]
