"""Aggregation rules over the ``[parties, dim]`` update matrix, by name."""

from __future__ import annotations

from typing import Any

from deai.aggregate.base import Aggregator, RoundContext
from deai.aggregate.fednova import FedNova
from deai.aggregate.mean import WeightedMean
from deai.aggregate.robust import RULES
from deai.checks import check_options

AGGREGATORS: dict[str, type] = {"mean": WeightedMean, "fednova": FedNova, **RULES}
PRIVATE = ("secagg", "he_ckks")  # sum-only aggregators that never see an individual update


def aggregator_class(name: str) -> type:
    """The class of the aggregator ``name`` (its traits, such as ``private``, are class attributes).

    Raises ValueError naming the allowed names."""
    if name == "secagg":
        from deai.privacy.secagg import SecureAggregator

        return SecureAggregator
    if name == "he_ckks":
        from deai.privacy.he import HEAggregator

        return HEAggregator
    if name in AGGREGATORS:
        return AGGREGATORS[name]
    raise ValueError(f"unknown aggregator {name!r}; choose one of: {', '.join([*AGGREGATORS, *PRIVATE])}")


def make_aggregator(
    name: str, options: dict[str, Any] | None = None, *, num_parties: int, f_max: float | None = None
) -> Aggregator:
    """Build the aggregator ``name`` with ``options``.

    ``num_parties`` is passed to the rules that keep per-party state (FoolsGold, reputation); ``f_max``, the
    task's declared share of Byzantine parties (all a real aggregator may assume about its attackers), to
    the rules that take an attacker bound, unless ``options`` sets one (``num_byzantine``, ``trim_fraction``).

    Raises ValueError naming the allowed names or options.
    """
    options = dict(options or {})
    cls = aggregator_class(name)
    allowed = check_options(cls.__init__, options, f"aggregator {name!r}")
    if "num_parties" in allowed and "num_parties" not in options:
        options["num_parties"] = num_parties
    explicit = {"num_byzantine", "trim_fraction", "f_max"} & set(options)
    if f_max and "f_max" in allowed and not explicit:
        options["f_max"] = f_max
    return cls(**options)


__all__ = [
    "AGGREGATORS",
    "PRIVATE",
    "RoundContext",
    "Aggregator",
    "FedNova",
    "WeightedMean",
    "aggregator_class",
    "make_aggregator",
]
