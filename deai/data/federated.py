"""A federation's data: every party's train and test rows stored flat, sorted by party, with offsets.

Flat storage with offsets (rather than a list of arrays per party) lets the engine gather any set
of parties into padded batches with a few vectorized index operations.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from dataclasses import dataclass

import numpy as np

from deai.data.datasets import Dataset
from deai.data.partition import partition
from deai.notice import DeaiWarning
from deai.rng import Purpose, key, row_uniform

# Keep these random streams apart from every other use of the run seed.
_SUBSAMPLE_PURPOSE = 0x73756273  # "subs"
_TEST_SPLIT_PURPOSE = 0x74657374  # "test"
_HOLDOUT_PURPOSE = 0x686F6C64  # "hold"


class HeldOutSitesWarning(DeaiWarning):
    """Some natural sites lost every row to the held-out evaluation set and take no part in training."""


@dataclass
class FederatedData:
    """Parties' train and test examples, each stored flat and sorted by party, with offsets.

    Rows of party ``p`` are ``x_train[train_offsets[p]:train_offsets[p + 1]]`` (same for test).
    ``x_eval``/``y_eval`` is the global evaluation set, owned by the task rather than any party: the
    data set's official test split when it has one, else rows held out before partitioning
    (``holdout_fraction``), else the union of the parties' test rows.
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
    x_heldout: np.ndarray | None = None  # the task's own evaluation rows, if it holds any
    y_heldout: np.ndarray | None = None

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

    def subset(self, parties: np.ndarray) -> FederatedData:
        """The federation of ``parties`` only (in the order given), with the same evaluation rows."""
        ids = np.asarray(parties, dtype=np.int64)

        def rows(x: np.ndarray, y: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, ...]:
            idx = [np.arange(offsets[p], offsets[p + 1]) for p in ids]
            flat = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)
            new_offsets = np.concatenate([[0], np.cumsum([len(i) for i in idx])]).astype(offsets.dtype)
            return x[flat], y[flat], new_offsets

        x_tr, y_tr, o_tr = rows(self.x_train, self.y_train, self.train_offsets)
        x_te, y_te, o_te = rows(self.x_test, self.y_test, self.test_offsets)
        return dataclasses.replace(
            self,
            x_train=x_tr,
            y_train=y_tr,
            train_offsets=o_tr,
            x_test=x_te,
            y_test=y_te,
            test_offsets=o_te,
            party_names=tuple(self.party_names[p] for p in ids),
        )

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
        return self.x_test if self.x_heldout is None else self.x_heldout

    @property
    def y_eval(self) -> np.ndarray:
        return self.y_test if self.y_heldout is None else self.y_heldout

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
    holdout_fraction: float = 0.0,
    replicate: int = 1,
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
    holdout_fraction : share of the rows (after ``max_examples``) that the task holds out before
        partitioning, stratified by label, as its evaluation set; ignored when the data set has an
        official test split, which is then the evaluation set. Held-out rows belong to no party.
    replicate : tile the remaining rows this many times before partitioning (scale benchmarks);
        the held-out rows are taken first, so no copy of an evaluation row is ever trained on.

    Each party's split draws from its own seed ``(seed, party)``, so it does not depend on the
    other parties. The global evaluation set (``x_eval``) is the official test split when the data
    set has one, else the held-out rows, else the union of the parties' test rows.
    """
    if not 0.0 <= test_fraction <= 0.9:
        raise ValueError(f"test_fraction must be in [0, 0.9], got {test_fraction}")
    if not 0.0 <= holdout_fraction <= 0.5:
        raise ValueError(f"holdout_fraction must be in [0, 0.5], got {holdout_fraction}")
    if not _is_int(replicate) or replicate < 1:
        raise ValueError(f"replicate must be an integer >= 1, got {replicate!r}")
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
    has_official_test = dataset.x_test is not None
    heldout = None
    if holdout_fraction > 0 and not has_official_test:
        subjects = None if dataset.subjects is None else dataset.subjects[rows]
        heldout = _stratified_holdout(dataset.y[rows], holdout_fraction, seed, subjects)
        keep = np.ones(len(rows), bool)
        keep[heldout] = False
        heldout, rows = rows[heldout], rows[keep]
    if replicate > 1:
        rows = np.tile(rows, replicate)
    y = dataset.y[rows]
    groups = None if dataset.groups is None else dataset.groups[rows]
    if scheme == "natural" and heldout is not None:
        remaining = len(np.unique(groups))
        if num_parties > remaining:
            # sites whose every row went to the task's held-out set have nothing left to train on
            warnings.warn(
                f"{len(np.unique(dataset.groups)) - remaining} site(s) have all their rows in the "
                f"held-out evaluation set, so {remaining} of the requested {num_parties} sites train",
                HeldOutSitesWarning,
                stacklevel=3,
            )
            num_parties = remaining

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
    train_idx, train_sizes, test_idx, test_sizes = _split_parties(parties, test_fraction, seed)
    train_rows = rows[train_idx]
    test_rows = rows[test_idx]

    if scheme == "natural":
        party_groups = [int(groups[indices[0]]) for indices in parties]
        names = dataset.group_names
        party_names = tuple(names[g] if names is not None else f"group-{g}" for g in party_groups)
    else:
        width = max(3, len(str(len(parties) - 1)))
        party_names = tuple(f"party-{p:0{width}d}" for p in range(len(parties)))

    if has_official_test:
        x_eval, y_eval = dataset.x_test.copy(), dataset.y_test.copy()
    elif heldout is not None:
        x_eval, y_eval = dataset.x[heldout], dataset.y[heldout]
    else:
        x_eval = y_eval = None
    return FederatedData(
        x_train=dataset.x[train_rows],
        y_train=dataset.y[train_rows],
        train_offsets=_offsets(train_sizes),
        x_test=dataset.x[test_rows],
        y_test=dataset.y[test_rows],
        test_offsets=_offsets(test_sizes),
        num_classes=dataset.num_classes,
        image_shape=dataset.image_shape,
        party_names=party_names,
        x_heldout=x_eval,
        y_heldout=y_eval,
    )


def _split_parties(
    parties: list[np.ndarray], test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each party's own train/test split, for all parties at once: ``(train, train sizes, test, test sizes)``.

    Party ``p`` tests on the ``round(test_fraction * n_p)`` of its rows (at most ``n_p - 1``) with the
    smallest keyed uniforms ``u(seed, p, position)``, a uniformly random subset that depends only on
    the party's own rows; rows stay in ascending order within each party. One vectorized pass, so a
    million parties split in seconds rather than minutes.
    """
    sizes = np.fromiter((len(p) for p in parties), dtype=np.int64, count=len(parties))
    flat = np.concatenate(parties).astype(np.int64) if parties else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(parties), dtype=np.int64), sizes)
    starts = np.repeat(_offsets(sizes)[:-1], sizes)
    position = np.arange(len(flat), dtype=np.int64) - starts
    u = row_uniform(key(seed, 0, Purpose.PARTITION, _TEST_SPLIT_PURPOSE), owner, position)
    order = np.lexsort((u, owner))  # grouped by party, ascending u within a party
    rank = np.empty(len(flat), dtype=np.int64)
    rank[order] = position  # order visits each party's rows contiguously, so its k-th entry has rank k
    num_test = np.minimum(np.floor(sizes * test_fraction + 0.5).astype(np.int64), np.maximum(sizes - 1, 0))
    is_test = rank < num_test[owner]
    test_sizes = np.bincount(owner[is_test], minlength=len(parties)).astype(np.int64)
    return flat[~is_test], sizes - test_sizes, flat[is_test], test_sizes


def _offsets(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _stratified_holdout(
    y: np.ndarray, fraction: float, seed: int, subjects: np.ndarray | None = None
) -> np.ndarray:
    """Sorted positions of the task's held-out rows: about ``fraction`` of the rows of every class.

    Stratifying keeps rare classes in the evaluation set in their true proportion, which balanced
    accuracy needs: a random 20% of 865 positives could hold noticeably fewer or more. With
    ``subjects`` (e.g. patients tested several times) whole subjects are held out, so no patient is
    both trained on and evaluated on: each subject joins the stratum of the rarest class among its
    rows, and in each stratum a random order of subjects is taken until ``fraction`` of the stratum's
    rows of that class is reached. Without subjects every row is its own subject, and the count is exact.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, _HOLDOUT_PURPOSE]))
    if subjects is None:
        subjects = np.arange(len(y))
    ids, subject_of_row = np.unique(subjects, return_inverse=True)
    rarity = np.argsort(np.argsort(np.bincount(y)))  # 0 = the most frequent class
    stratum = np.zeros(len(ids), dtype=np.int64)
    np.maximum.at(stratum, subject_of_row, rarity[y])
    held_subject = np.zeros(len(ids), dtype=bool)
    for s in np.unique(stratum):
        # count the stratum's own class: a patient with one positive among negatives is one positive
        own = np.bincount(subject_of_row[rarity[y] == s], minlength=len(ids))
        members = rng.permutation(np.flatnonzero(stratum == s))
        cumulative = np.cumsum(own[members])
        target = fraction * cumulative[-1]
        take = int(np.searchsorted(cumulative, target - 0.5, side="left")) + 1  # first prefix reaching it
        held_subject[members[: min(take, len(members))] if target >= 0.5 else members[:0]] = True
    return np.flatnonzero(held_subject[subject_of_row]).astype(np.int64)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
