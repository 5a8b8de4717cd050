"""Aggregation rules over the ``[parties, dim]`` update matrix, by name."""

from __future__ import annotations

import inspect
from typing import Any

from deai.aggregate.base import AggregationContext, Aggregator
from deai.aggregate.fednova import FedNova
from deai.aggregate.mean import WeightedMean
from deai.aggregate.robust import RULES

AGGREGATORS: dict[str, type] = {"mean": WeightedMean, "fednova": FedNova, **RULES}
PRIVATE = ("secagg", "he_ckks")  # sum-only aggregators that never see an individual update


def make_aggregator(name: str, options: dict[str, Any] | None = None, *, num_parties: int) -> Aggregator:
    """Build the aggregator ``name`` with ``options``.

    ``num_parties`` is passed to the rules that keep per-party state (FoolsGold, reputation).

    Raises ValueError naming the allowed names or options.
    """
    options = dict(options or {})
    if name == "secagg":
        from deai.privacy.secagg import SecureAggregator

        cls: type = SecureAggregator
    elif name == "he_ckks":
        from deai.privacy.he import HEAggregator

        cls = HEAggregator
    elif name in AGGREGATORS:
        cls = AGGREGATORS[name]
    else:
        raise ValueError(f"unknown aggregator {name!r}; choose one of: {', '.join([*AGGREGATORS, *PRIVATE])}")
    params = {
        name: p
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    if "num_parties" in params and "num_parties" not in options:
        options["num_parties"] = num_parties
    allowed = list(params)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"aggregator {name!r} has no option(s) {', '.join(unknown)}; "
            f"its options are: {', '.join(allowed) or 'none'}"
        )
    return cls(**options)


__all__ = [
    "AGGREGATORS",
    "PRIVATE",
    "AggregationContext",
    "Aggregator",
    "FedNova",
    "WeightedMean",
    "make_aggregator",
]
