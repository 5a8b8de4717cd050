"""Aggregation rules over the ``[parties, dim]`` update matrix, by name."""

from deai.aggregate.base import AggregationContext, Aggregator
from deai.aggregate.fednova import FedNova
from deai.aggregate.mean import WeightedMean

AGGREGATORS = {"mean": WeightedMean, "fednova": FedNova}

__all__ = ["AGGREGATORS", "AggregationContext", "Aggregator", "FedNova", "WeightedMean"]
