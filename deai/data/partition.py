"""Split a data set's examples among parties, IID or with the standard non-IID skews.

Schemes follow the papers that introduced them: label skew by per-class Dirichlet proportions
over parties (Yurochkin et al. 2019, "Bayesian nonparametric federated learning of neural
networks"; the label-skew benchmark popularised by Hsu, Qi & Brown 2019), the pathological
sort-and-shard split (McMahan et al. 2017, "Communication-efficient learning of deep
networks from decentralized data"), quantity skew with lognormal party sizes, and natural groups
(e.g. one party per clinic).
"""

from __future__ import annotations

import numbers

import numpy as np

PARTITIONS: tuple[str, ...] = ("iid", "dirichlet", "shards", "quantity_skew", "natural")

# Keeps the partition's random stream apart from every other use of the run seed.
_PARTITION_PURPOSE = 0x70617274  # "part"
_DIRICHLET_MAX_TRIES = 1000


def partition(
    y: np.ndarray,
    num_parties: int,
    scheme: str,
    seed: int,
    *,
    alpha: float = 0.5,
    shards_per_party: int = 2,
    quantity_sigma: float = 1.0,
    groups: np.ndarray | None = None,
    min_size: int = 2,
) -> list[np.ndarray]:
    """Assign examples to parties.

    Parameters
    ----------
    y : labels ``[N]`` (any values; only equality matters). Its length defines the examples.
    num_parties : number of parties, at least 1 and at most N.
    scheme : one of ``PARTITIONS``:

        - ``iid``: a random permutation cut into near-equal parts.
        - ``dirichlet``: for each class, proportions over parties drawn from Dirichlet(alpha);
          smaller ``alpha`` means more label skew. Redrawn until every party holds at least
          ``min_size`` examples (at most 1,000 draws, then a ValueError). With small ``alpha``
          and many parties most draws leave some party nearly empty (e.g. alpha 0.1 fails at
          1,000 parties on Fashion-MNIST's 60,000 rows); Flower's DirichletPartitioner has the same limit.
        - ``shards``: examples sorted by label (ties in random order) and cut into
          ``num_parties * shards_per_party`` near-equal shards; each party gets
          ``shards_per_party`` random shards. A party sees at most ``shards_per_party`` labels when
          every class size is a multiple of the shard size; otherwise a shard can straddle two labels.
        - ``quantity_skew``: IID labels; party sizes proportional to lognormal(0, quantity_sigma)
          draws, each party at least ``min_size``.
        - ``natural``: one party per distinct value of ``groups``. ``num_parties`` may be smaller
          than the number of groups: then only the ``num_parties`` largest groups are kept (ties
          go to the smaller group id) and the other groups' rows are left out. Deterministic;
          ``seed`` is unused.
    seed : non-negative run seed; the result depends only on the inputs and this seed.
    alpha : Dirichlet concentration, > 0 (``dirichlet`` only).
    shards_per_party : shards per party, >= 1 (``shards`` only).
    quantity_sigma : lognormal sigma, >= 0 (``quantity_skew`` only); 0 gives near-equal sizes.
    groups : group id per example ``[N]`` (required for ``natural``).
    min_size : smallest party size, >= 0 (``dirichlet`` and ``quantity_skew``).

    Returns
    -------
    For each party, its example indices as a sorted int64 array. The parties' indices are disjoint
    and, except for ``natural`` with fewer parties than groups, together cover ``range(N)``.
    ``natural`` parties are ordered by group id.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {y.shape}")
    if scheme not in PARTITIONS:
        raise ValueError(f"unknown scheme {scheme!r}; scheme must be one of {', '.join(PARTITIONS)}")
    num_parties = _check_int("num_parties", num_parties, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    shards_per_party = _check_int("shards_per_party", shards_per_party, minimum=1)
    min_size = _check_int("min_size", min_size, minimum=0)
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if not quantity_sigma >= 0:
        raise ValueError(f"quantity_sigma must be >= 0, got {quantity_sigma}")
    num_examples = len(y)

    if scheme == "natural":
        return _natural(groups, num_examples, num_parties)
    if num_parties > num_examples:
        raise ValueError(f"num_parties ({num_parties}) exceeds the number of examples ({num_examples})")

    rng = np.random.default_rng(np.random.SeedSequence([seed, _PARTITION_PURPOSE, PARTITIONS.index(scheme)]))
    if scheme == "iid":
        sizes = np.full(num_parties, num_examples // num_parties, dtype=np.int64)
        sizes[: num_examples % num_parties] += 1
        return _split_by_sizes(rng.permutation(num_examples), sizes)
    if scheme == "quantity_skew":
        return _quantity_skew(num_examples, num_parties, quantity_sigma, min_size, rng)
    if scheme == "dirichlet":
        return _dirichlet(y, num_parties, alpha, min_size, rng)
    return _shards(y, num_parties, shards_per_party, rng)


def _check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _split_by_sizes(order: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """Cut ``order`` into consecutive runs of ``sizes`` and sort each run."""
    return [np.sort(part).astype(np.int64) for part in np.split(order, np.cumsum(sizes)[:-1])]


def _parties_from_owner(owner: np.ndarray, num_parties: int) -> list[np.ndarray]:
    """Turn an owner-per-example array into each party's sorted indices."""
    # A stable sort by owner keeps each party's indices in increasing order.
    order = np.argsort(owner, kind="stable")
    sizes = np.bincount(owner, minlength=num_parties)
    return _split_by_sizes(order, sizes)


def _natural(groups: np.ndarray | None, num_examples: int, num_parties: int) -> list[np.ndarray]:
    if groups is None:
        raise ValueError("scheme 'natural' needs groups (one group id per example); got groups=None")
    groups = np.asarray(groups)
    if groups.shape != (num_examples,):
        raise ValueError(f"groups must have shape ({num_examples},) like y, got {groups.shape}")
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if num_parties > len(counts):
        raise ValueError(
            f"num_parties ({num_parties}) exceeds the number of groups ({len(counts)}) for scheme 'natural'"
        )
    kept = np.sort(np.argsort(-counts, kind="stable")[:num_parties])
    # Map each kept group to its party number; rows of dropped groups get owner num_parties.
    party_of_group = np.full(len(counts), num_parties, dtype=np.int64)
    party_of_group[kept] = np.arange(num_parties)
    return _parties_from_owner(party_of_group[inverse], num_parties + 1)[:num_parties]


def _check_min_size(num_examples: int, num_parties: int, min_size: int) -> None:
    if num_parties * min_size > num_examples:
        raise ValueError(
            f"num_parties ({num_parties}) * min_size ({min_size}) exceeds the number of examples "
            f"({num_examples}); lower min_size or num_parties"
        )


def _quantity_skew(
    num_examples: int, num_parties: int, sigma: float, min_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    _check_min_size(num_examples, num_parties, min_size)
    shares = rng.lognormal(0.0, sigma, size=num_parties)
    shares /= shares.sum()
    spare = num_examples - num_parties * min_size
    # Largest-remainder rounding: sizes sum exactly to N and follow the shares to within one example.
    exact = shares * spare
    extra = np.floor(exact).astype(np.int64)
    leftover = spare - int(extra.sum())
    extra[np.argsort(-(exact - extra), kind="stable")[:leftover]] += 1
    return _split_by_sizes(rng.permutation(num_examples), min_size + extra)


def _dirichlet(
    y: np.ndarray, num_parties: int, alpha: float, min_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    num_examples = len(y)
    _check_min_size(num_examples, num_parties, min_size)
    _, labels = np.unique(y, return_inverse=True)
    labels = labels.reshape(-1)
    class_sizes = np.bincount(labels)
    # Examples grouped by class, in random order within each class.
    by_class = np.lexsort((rng.random(num_examples), labels))

    for _ in range(_DIRICHLET_MAX_TRIES):
        proportions = rng.dirichlet(np.full(num_parties, alpha), size=len(class_sizes))
        cuts = np.floor(np.cumsum(proportions, axis=1) * class_sizes[:, None]).astype(np.int64)
        cuts[:, -1] = class_sizes  # guards against the cumulative sum ending just below 1
        cuts = np.maximum.accumulate(np.minimum(cuts, class_sizes[:, None]), axis=1)
        counts = np.diff(cuts, axis=1, prepend=0)  # [classes, parties]
        if counts.sum(axis=0).min() >= min_size:
            break
    else:
        raise ValueError(
            f"dirichlet partition: no draw in {_DIRICHLET_MAX_TRIES} gave every one of {num_parties} parties "
            f"at least min_size={min_size} examples (alpha={alpha}, {num_examples} examples); "
            "raise alpha, lower num_parties or lower min_size"
        )
    # Within each class, the k-th example in by_class order goes to the party whose cut range holds k.
    owner = np.repeat(np.tile(np.arange(num_parties), len(class_sizes)), counts.reshape(-1))
    owner_of_example = np.empty(num_examples, dtype=np.int64)
    owner_of_example[by_class] = owner
    return _parties_from_owner(owner_of_example, num_parties)


def _shards(
    y: np.ndarray, num_parties: int, shards_per_party: int, rng: np.random.Generator
) -> list[np.ndarray]:
    num_examples = len(y)
    num_shards = num_parties * shards_per_party
    if num_shards > num_examples:
        raise ValueError(
            f"num_parties ({num_parties}) * shards_per_party ({shards_per_party}) exceeds the number of "
            f"examples ({num_examples})"
        )
    _, labels = np.unique(y, return_inverse=True)
    by_label = np.lexsort((rng.random(num_examples), labels.reshape(-1)))
    shard_sizes = np.full(num_shards, num_examples // num_shards, dtype=np.int64)
    shard_sizes[: num_examples % num_shards] += 1
    party_of_shard = np.empty(num_shards, dtype=np.int64)
    party_of_shard[rng.permutation(num_shards)] = np.repeat(np.arange(num_parties), shards_per_party)
    owner = np.empty(num_examples, dtype=np.int64)
    owner[by_label] = np.repeat(party_of_shard, shard_sizes)
    return _parties_from_owner(owner, num_parties)
