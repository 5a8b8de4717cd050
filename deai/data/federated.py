"""A federation's data: every party's train and test rows stored flat, sorted by party, with offsets.

Flat storage with offsets (rather than a list of arrays per party) lets the engine gather any set
of parties into padded batches with a few vectorized index operations.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from deai.data.datasets import Dataset
from deai.data.partition import partition

# Keep these random streams apart from every other use of the run seed.
_SUBSAMPLE_PURPOSE = 0x73756273  # "subs"
_TEST_SPLIT_PURPOSE = 0x74657374  # "test"


@dataclass
class FederatedData:
    """Parties' train and test examples, each stored flat and sorted by party, with offsets.

    Rows of party ``p`` are ``x_train[train_offsets[p]:train_offsets[p + 1]]`` (same for test).
    ``x_eval``/``y_eval`` is the global evaluation set: the data set's official test split when it
    has one, else the union of the parties' test rows.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    train_offsets: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_offsets: np.ndarray
    num_classes: int
    image_shape: tuple[int, ...] | None
    party_names: tuple[str, ...]
    x_official_test: np.ndarray | None = None
    y_official_test: np.ndarray | None = None

    def __post_init__(self) -> None:
        for split, x, y, offsets in (
            ("train", self.x_train, self.y_train, self.train_offsets),
            ("test", self.x_test, self.y_test, self.test_offsets),
        ):
            if len(x) != len(y):
                raise ValueError(f"x_{split} has {len(x)} rows but y_{split} has {len(y)}")
            if offsets.ndim != 1 or len(offsets) != len(self.party_names) + 1:
                raise ValueError(
                    f"{split}_offsets must have len(party_names) + 1 = {len(self.party_names) + 1} entries"
                )
            if offsets[0] != 0 or offsets[-1] != len(x) or np.any(np.diff(offsets) < 0):
                raise ValueError(f"{split}_offsets must rise from 0 to {len(x)}")

    @property
    def num_parties(self) -> int:
        return len(self.train_offsets) - 1

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def train_sizes(self) -> np.ndarray:
        return np.diff(self.train_offsets)

    @property
    def test_sizes(self) -> np.ndarray:
        return np.diff(self.test_offsets)

    @property
    def x_eval(self) -> np.ndarray:
        return self.x_test if self.x_official_test is None else self.x_official_test

    @property
    def y_eval(self) -> np.ndarray:
        return self.y_test if self.y_official_test is None else self.y_official_test

    def party_train(self, party: int) -> tuple[np.ndarray, np.ndarray]:
        """Party ``party``'s train rows ``(x, y)`` (views, not copies)."""
        start, stop = self.train_offsets[party], self.train_offsets[party + 1]
        return self.x_train[start:stop], self.y_train[start:stop]

    def party_test(self, party: int) -> tuple[np.ndarray, np.ndarray]:
        """Party ``party``'s own test rows ``(x, y)`` (views, not copies)."""
        start, stop = self.test_offsets[party], self.test_offsets[party + 1]
        return self.x_test[start:stop], self.y_test[start:stop]


def build_federation(
    dataset: Dataset,
    num_parties: int,
    scheme: str,
    seed: int,
    *,
    test_fraction: float = 0.2,
    alpha: float = 0.5,
    shards_per_party: int = 2,
    quantity_sigma: float = 1.0,
    max_examples: int | None = None,
) -> FederatedData:
    """Partition ``dataset`` among parties and split each party's rows into its own train and test.

    Parameters
    ----------
    dataset : the data set; its train rows (``x``/``y``) are what gets partitioned.
    num_parties, scheme, seed, alpha, shards_per_party, quantity_sigma : as for
        ``deai.data.partition.partition``. ``natural`` uses ``dataset.groups`` and names the parties
        after ``dataset.group_names``.
    test_fraction : share of each party's rows held out as its own test rows, in [0, 0.9]; rounded
        to the nearest row, but every party keeps at least one train row (so a party with a single
        row has no test rows).
    max_examples : if given and smaller than the data set, first keep a random subset of this many
        rows (seeded) — for quick runs on large sets.

    Each party's split draws from its own seed ``(seed, party)``, so it does not depend on the
    other parties. The global evaluation set (``x_eval``) is the official test split when the data
    set has one, else the union of the parties' test rows.
    """
    if not 0.0 <= test_fraction <= 0.9:
        raise ValueError(f"test_fraction must be in [0, 0.9], got {test_fraction}")
    if scheme == "natural" and dataset.groups is None:
        raise ValueError(
            f"scheme 'natural' needs a data set with natural groups; {dataset.name!r} has none "
            "(covid_clinics has one group per clinic)"
        )
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")

    rows = np.arange(len(dataset.y))
    if max_examples is not None:
        if not _is_int(max_examples) or max_examples < 1:
            raise ValueError(f"max_examples must be None or an integer >= 1, got {max_examples!r}")
        if max_examples < len(rows):
            rng = np.random.default_rng(np.random.SeedSequence([seed, _SUBSAMPLE_PURPOSE]))
            rows = np.sort(rng.choice(len(rows), size=max_examples, replace=False))
    y = dataset.y[rows]
    groups = None if dataset.groups is None else dataset.groups[rows]

    parties = partition(
        y,
        num_parties,
        scheme,
        seed,
        alpha=alpha,
        shards_per_party=shards_per_party,
        quantity_sigma=quantity_sigma,
        groups=groups,
    )
    train_parts, test_parts = [], []
    for party, indices in enumerate(parties):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _TEST_SPLIT_PURPOSE, party]))
        shuffled = rng.permutation(indices)
        num_test = min(int(np.floor(len(indices) * test_fraction + 0.5)), len(indices) - 1)
        test_parts.append(np.sort(shuffled[:num_test]))
        train_parts.append(np.sort(shuffled[num_test:]))
    train_rows = rows[np.concatenate(train_parts)]
    test_rows = rows[np.concatenate(test_parts)]

    if scheme == "natural":
        party_groups = [int(groups[indices[0]]) for indices in parties]
        names = dataset.group_names
        party_names = tuple(names[g] if names is not None else f"group-{g}" for g in party_groups)
    else:
        width = max(3, len(str(len(parties) - 1)))
        party_names = tuple(f"party-{p:0{width}d}" for p in range(len(parties)))

    def offsets(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)

    has_official_test = dataset.x_test is not None
    return FederatedData(
        x_train=dataset.x[train_rows],
        y_train=dataset.y[train_rows],
        train_offsets=offsets(train_parts),
        x_test=dataset.x[test_rows],
        y_test=dataset.y[test_rows],
        test_offsets=offsets(test_parts),
        num_classes=dataset.num_classes,
        image_shape=dataset.image_shape,
        party_names=party_names,
        x_official_test=dataset.x_test.copy() if has_official_test else None,
        y_official_test=dataset.y_test.copy() if has_official_test else None,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
