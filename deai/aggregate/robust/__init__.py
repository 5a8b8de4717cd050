"""Byzantine-robust aggregation rules, one module per paper, all behind deai's aggregator contract.

Every rule maps the round's ``[parties, dim]`` float32 update matrix and example counts to a ``[dim]``
float32 aggregate, vectorized over the matrix (no Python loop over parties or pairs of parties), and
rejects empty, mis-shaped or non-finite input with a ``ValueError`` naming the parameter. Stateful rules
(``centered_clipping``, ``foolsgold``, ``reputation``) expose ``state()`` and ``load()`` for checkpoints.

Threat model (details and assumptions in each rule's docstring):
- a Byzantine minority sending arbitrary updates: median, trimmed_mean (fewer than ``beta P`` per side),
  krum, multi_krum (``n >= 2f + 3``), bulyan (``n >= 4f + 3``), geometric_median (less than half the
  weight), centered_clipping (``f`` parties move the result at most ``f tau / n`` per iteration);
- any number of Byzantine parties, given a clean root data set on the server: fltrust; root_guided (with
  an honest median norm);
- one party's outsized influence, e.g. a scaled backdoor: norm_bound (not many small coordinated changes);
- Sybils sending similar updates: foolsgold (not a lone attacker; honest parties with near-identical data
  are down-weighted too);
- parties that misbehave persistently: reputation (a first-time attacker still gets a newcomer's weight).
None protects privacy, and none composes with secure aggregation: all of them read individual updates.
"""

from __future__ import annotations

from typing import Any

from deai.aggregate.base import Aggregator
from deai.aggregate.robust.bulyan import Bulyan
from deai.aggregate.robust.centered_clipping import CenteredClipping
from deai.aggregate.robust.dnc import DivideAndConquer
from deai.aggregate.robust.flame import FLAME
from deai.aggregate.robust.fltrust import FLTrust
from deai.aggregate.robust.foolsgold import FoolsGold
from deai.aggregate.robust.geometric_median import GeometricMedian
from deai.aggregate.robust.krum import Krum, MultiKrum
from deai.aggregate.robust.median import CoordinateMedian
from deai.aggregate.robust.norm_bound import NormBound
from deai.aggregate.robust.recommended import Recommended
from deai.aggregate.robust.reputation import ReputationWeightedMean
from deai.aggregate.robust.root_guided import RootGuided
from deai.aggregate.robust.signguard import SignGuard
from deai.aggregate.robust.trimmed_mean import TrimmedMean

RULES: dict[str, type] = {
    cls.name: cls
    for cls in (
        CoordinateMedian,
        TrimmedMean,
        Krum,
        MultiKrum,
        Bulyan,
        GeometricMedian,
        CenteredClipping,
        NormBound,
        FLTrust,
        FoolsGold,
        ReputationWeightedMean,
        DivideAndConquer,
        FLAME,
        SignGuard,
        Recommended,
        RootGuided,
    )
}


def make_robust(name: str, **kwargs: Any) -> Aggregator:
    """Construct the robust rule called ``name`` with its keyword parameters, e.g.
    ``make_robust("krum", num_byzantine=2)``."""
    if name not in RULES:
        raise ValueError(f"unknown robust aggregator {name!r}; choose one of: {', '.join(RULES)}")
    return RULES[name](**kwargs)


__all__ = [
    "RULES",
    "Bulyan",
    "CenteredClipping",
    "CoordinateMedian",
    "DivideAndConquer",
    "FLAME",
    "FLTrust",
    "FoolsGold",
    "GeometricMedian",
    "Krum",
    "MultiKrum",
    "NormBound",
    "Recommended",
    "ReputationWeightedMean",
    "RootGuided",
    "SignGuard",
    "TrimmedMean",
    "make_robust",
]
