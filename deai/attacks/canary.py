"""Canary clients for privacy auditing: the auditor controls some parties and plants known updates.

User-level DP protects whole clients, so the auditor's canaries are clients (Andrew et al. 2024,
"One-shot Empirical Privacy Estimation for Federated Learning"; Steinke, Nasr and Jagielski 2023): each
canary ``i`` is *included* independently with probability 1/2, and then sends ``norm * u_i`` in every
round it is sampled, ``u_i`` a random unit direction; an excluded canary sends zeros, which under
DP-FedAvg's fixed denominator is the same as not being there. Both the inclusion bits and the directions
come from ``audit_seed``, the auditor's secret: the mechanism under audit never sees them.

After training, :func:`canary_scores` projects the model's total change onto each ``u_i``; included
canaries should score higher, and :func:`deai.privacy.audit.one_run.audit_scores` turns the ranking into
an empirical epsilon.
"""

from __future__ import annotations

import numpy as np

from deai.attacks._common import AttackBase
from deai.attacks.base import RoundContext
from deai.checks import check_count, check_positive
from deai.rng import Purpose, key, party_normal, party_uniform

_DIRECTION_EXTRA, _INCLUSION_EXTRA = 0xCA4A, 0xCA4B


def canary_directions(audit_seed: int, party_ids: np.ndarray, dim: int) -> np.ndarray:
    """``[len(party_ids), dim]`` unit vectors, one per canary, from the auditor's seed."""
    u = party_normal(key(audit_seed, 0, Purpose.ATTACK, _DIRECTION_EXTRA), np.asarray(party_ids), dim)
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def canary_included(audit_seed: int, party_ids: np.ndarray) -> np.ndarray:
    """Which canaries are in the run (each with probability 1/2, from the auditor's seed)."""
    return (
        party_uniform(key(audit_seed, 0, Purpose.ATTACK, _INCLUSION_EXTRA), np.asarray(party_ids), 1)[:, 0]
        < 0.5
    )


def canary_scores(delta_params: np.ndarray, audit_seed: int, party_ids: np.ndarray) -> np.ndarray:
    """Each canary's score: the model's total change projected on its direction."""
    d = np.asarray(delta_params, dtype=np.float64)
    return canary_directions(audit_seed, party_ids, d.shape[0]) @ d


class Canary(AttackBase):
    """The auditor's clients: included canaries send ``norm * u_i``, excluded ones send zeros.

    Parameters
    ----------
    audit_seed : the auditor's secret seed for the inclusion bits and directions.
    norm : the L2 norm of an included canary's update; set it to the task's clip norm.
    """

    name = "canary"

    def __init__(self, *, audit_seed: int = 0, norm: float = 1.0) -> None:
        self.audit_seed, self.norm = check_count("audit_seed", audit_seed), check_positive("norm", norm)

    def forge(self, updates: np.ndarray, malicious: np.ndarray, ctx: RoundContext) -> np.ndarray:
        ids = np.asarray(ctx.party_ids)[malicious]
        rows = self.norm * canary_directions(self.audit_seed, ids, updates.shape[1])
        return rows * canary_included(self.audit_seed, ids)[:, None]
