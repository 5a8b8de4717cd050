"""Offline data sets, partitioners and the flat per-party layout the engine trains on.

Uses nothing else of deai, so every other package can depend on it.
"""

from deai.data.datasets import DATASETS, Dataset, load_dataset, load_fashion_mnist, read_idx
from deai.data.federated import FederatedData, build_federation
from deai.data.partition import PARTITIONS, partition

__all__ = [
    "DATASETS",
    "PARTITIONS",
    "Dataset",
    "FederatedData",
    "build_federation",
    "load_dataset",
    "load_fashion_mnist",
    "partition",
    "read_idx",
]
