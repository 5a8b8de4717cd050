"""The rows a party program holds: one party's own directory on a node, every party's in the simulator.

Rows are flat with offsets (party ``ids[j]`` owns rows ``offsets[j]:offsets[j+1]``), so training many
parties is one batched call and one party is the same call with one offset pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from deai.data.federated import FederatedData


@dataclass
class PartyShards:
    ids: np.ndarray  # int64 [n] global party ids, sorted
    x_train: np.ndarray
    y_train: np.ndarray
    train_offsets: np.ndarray  # int64 [n + 1]
    x_test: np.ndarray
    y_test: np.ndarray
    test_offsets: np.ndarray  # int64 [n + 1]
    num_classes: int
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int64)
        self._train_sizes = np.diff(self.train_offsets)
        self._dense = bool(len(self.ids) == 0 or (self.ids[0] == 0 and self.ids[-1] == len(self.ids) - 1))

    @classmethod
    def from_federation(cls, fed: FederatedData) -> PartyShards:
        """Every party of an in-memory federation (the simulator's flat layout, no copy)."""
        return cls(
            np.arange(fed.num_parties, dtype=np.int64),
            fed.x_train,
            fed.y_train,
            fed.train_offsets,
            fed.x_test,
            fed.y_test,
            fed.test_offsets,
            fed.num_classes,
            fed.image_shape,
        )

    @classmethod
    def from_party_dir(cls, path: str | Path) -> PartyShards:
        """One party from the directory ``deai data split`` wrote for it (validated on load)."""
        from deai.data.party_dirs import load_party_dir

        d = load_party_dir(Path(path))
        return cls(
            np.array([d.index], dtype=np.int64),
            d.x_train,
            d.y_train,
            np.array([0, len(d.y_train)], dtype=np.int64),
            d.x_test,
            d.y_test,
            np.array([0, len(d.y_test)], dtype=np.int64),
            d.num_classes,
            None if d.image_shape is None else tuple(d.image_shape),
        )

    @property
    def train_sizes(self) -> np.ndarray:
        return self._train_sizes

    @property
    def test_sizes(self) -> np.ndarray:
        return np.diff(self.test_offsets)

    def local(self, party_ids: np.ndarray) -> np.ndarray:
        """Row-block indices of the global ``party_ids``; a party this program does not hold is an error."""
        party_ids = np.asarray(party_ids, dtype=np.int64)
        if self._dense:
            n = len(self.ids)
            if len(party_ids) and not (0 <= party_ids.min() and party_ids.max() < n):
                raise KeyError(
                    f"parties {party_ids[(party_ids < 0) | (party_ids >= len(self.ids))]} are not held"
                )
            return party_ids
        j = np.searchsorted(self.ids, party_ids)
        held = (j < len(self.ids)) & (self.ids[np.minimum(j, len(self.ids) - 1)] == party_ids)
        if not held.all():
            raise KeyError(f"parties {party_ids[~held].tolist()} are not held by this party program")
        return j
