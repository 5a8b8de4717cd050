"""Partitions and federations: checked by brute force against what each scheme promises."""

from collections import Counter

import numpy as np
import pytest

from deai.data import PARTITIONS, Dataset, build_federation, load_dataset, partition

LABEL_SCHEMES = ["iid", "dirichlet", "shards", "quantity_skew"]


def digits_labels() -> np.ndarray:
    return np.asarray(load_dataset("digits").y)


def mean_label_entropy(y: np.ndarray, parts: list[np.ndarray]) -> float:
    entropies = []
    for part in parts:
        p = np.bincount(y[part], minlength=y.max() + 1) / len(part)
        p = p[p > 0]
        entropies.append(-(p * np.log(p)).sum())
    return float(np.mean(entropies))


def assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    seen = [i for part in parts for i in part.tolist()]
    assert len(seen) == len(set(seen)), "an example was given to two parties"
    assert set(seen) == set(range(n)), "some example was given to no party"


# --- every scheme -------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", LABEL_SCHEMES)
@pytest.mark.parametrize("num_parties", [1, 7, 50])
def test_parties_are_disjoint_and_cover_every_example(scheme, num_parties):
    y = digits_labels()
    parts = partition(y, num_parties, scheme, seed=3)
    assert len(parts) == num_parties
    for part in parts:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0), "indices must be sorted"
    assert_exact_cover(parts, len(y))


@pytest.mark.parametrize("scheme", LABEL_SCHEMES)
def test_same_seed_same_partition_different_seed_different(scheme):
    y = digits_labels()
    first = partition(y, 10, scheme, seed=1)
    again = partition(y, 10, scheme, seed=1)
    other = partition(y, 10, scheme, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_labels_may_be_any_values():
    y = np.array(["cat", "dog"] * 20)
    parts = partition(y, 4, "dirichlet", seed=0, alpha=1.0)
    assert_exact_cover(parts, len(y))


# --- iid ----------------------------------------------------------------------------------------


def test_iid_sizes_differ_by_at_most_one():
    sizes = [len(p) for p in partition(digits_labels(), 13, "iid", seed=0)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 1797


# --- dirichlet ----------------------------------------------------------------------------------


def test_small_alpha_dirichlet_skews_labels_much_more_than_iid():
    y = digits_labels()
    iid = mean_label_entropy(y, partition(y, 20, "iid", seed=0))
    skewed = mean_label_entropy(y, partition(y, 20, "dirichlet", seed=0, alpha=0.1))
    mild = mean_label_entropy(y, partition(y, 20, "dirichlet", seed=0, alpha=100.0))
    assert iid > 0.95 * np.log(10)
    assert skewed < iid - 1.0
    assert mild > 0.95 * np.log(10), "large alpha should be close to IID"


def test_dirichlet_redraws_until_every_party_has_min_size():
    y = digits_labels()
    unconstrained = partition(y, 10, "dirichlet", seed=5, alpha=0.2, min_size=0)
    assert min(len(p) for p in unconstrained) < 40  # so the constraint below has work to do
    constrained = partition(y, 10, "dirichlet", seed=5, alpha=0.2, min_size=40)
    assert min(len(p) for p in constrained) >= 40
    assert_exact_cover(constrained, len(y))


def test_dirichlet_fails_clearly_when_min_size_cannot_be_met():
    y = np.repeat([0, 1], 10)  # with alpha this small each class lands on about one party
    with pytest.raises(ValueError, match="raise alpha, lower num_parties or lower min_size"):
        partition(y, 10, "dirichlet", seed=0, alpha=1e-3, min_size=2)


# --- shards -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("num_parties", "shards_per_party"), [(5, 2), (10, 3), (30, 1)])
def test_aligned_shards_give_each_party_at_most_shards_per_party_labels(num_parties, shards_per_party):
    rng = np.random.default_rng(0)
    y = rng.permutation(np.repeat(np.arange(10), 30))  # class size 30 is a multiple of every shard size
    parts = partition(y, num_parties, "shards", seed=1, shards_per_party=shards_per_party)
    assert_exact_cover(parts, len(y))
    for part in parts:
        assert len(part) == len(y) // num_parties
        assert len(np.unique(y[part])) <= shards_per_party


# --- quantity skew ------------------------------------------------------------------------------


def test_quantity_skew_sizes_vary_and_respect_min_size():
    parts = partition(digits_labels(), 30, "quantity_skew", seed=0, quantity_sigma=2.0)
    sizes = np.array([len(p) for p in parts])
    assert sizes.sum() == 1797 and sizes.min() >= 2
    assert sizes.max() > 10 * np.median(sizes) or sizes.max() > 20 * sizes.min()


def test_quantity_skew_with_zero_sigma_is_balanced():
    sizes = [len(p) for p in partition(digits_labels(), 30, "quantity_skew", seed=0, quantity_sigma=0.0)]
    assert max(sizes) - min(sizes) <= 1


# --- natural ------------------------------------------------------------------------------------


def test_natural_gives_one_party_per_group():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 6, 200) * 10  # ids need not be contiguous
    parts = partition(np.zeros(200), 6, "natural", seed=0, groups=groups)
    assert_exact_cover(parts, 200)
    for part, group in zip(parts, sorted(set(groups.tolist())), strict=True):
        assert set(groups[part].tolist()) == {group}


def test_natural_with_fewer_parties_keeps_the_largest_groups():
    groups = np.repeat([0, 1, 2, 3, 4], [5, 50, 1, 20, 30])
    parts = partition(np.zeros(len(groups)), 3, "natural", seed=0, groups=groups)
    largest = {g for g, _ in Counter(groups.tolist()).most_common(3)}
    assert [set(groups[p].tolist()) for p in parts] == [{g} for g in sorted(largest)]
    kept_rows = np.flatnonzero(np.isin(groups, list(largest)))
    assert {i for p in parts for i in p.tolist()} == set(kept_rows.tolist())


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheme": "pathological"}, "unknown scheme 'pathological'; scheme must be one of iid, dirichlet"),
        ({"num_parties": 0}, "num_parties must be >= 1"),
        ({"num_parties": 2.5}, "num_parties must be an integer"),
        ({"scheme": "dirichlet", "alpha": 0.0}, "alpha must be > 0"),
        ({"scheme": "dirichlet", "alpha": -1.0}, "alpha must be > 0"),
        ({"num_parties": 41}, r"num_parties \(41\) exceeds the number of examples \(40\)"),
        ({"scheme": "natural"}, "scheme 'natural' needs groups"),
        (
            {"scheme": "natural", "groups": np.repeat([0, 1], 20), "num_parties": 3},
            r"num_parties \(3\) exceeds the number of groups \(2\)",
        ),
        ({"scheme": "shards", "num_parties": 30, "shards_per_party": 2}, "shards_per_party"),
        ({"scheme": "quantity_skew", "num_parties": 30, "min_size": 2}, "min_size"),
        ({"scheme": "quantity_skew", "quantity_sigma": -1.0}, "quantity_sigma must be >= 0"),
        ({"seed": -1}, "seed must be >= 0"),
    ],
)
def test_bad_arguments_are_rejected_with_a_message_naming_them(kwargs, message):
    arguments = {"y": np.arange(40) % 4, "num_parties": 4, "scheme": "iid", "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        partition(**arguments)


def test_partitions_constant_lists_every_scheme():
    assert PARTITIONS == ("iid", "dirichlet", "shards", "quantity_skew", "natural")


# --- build_federation ---------------------------------------------------------------------------


def numbered_dataset(n: int = 400, groups: np.ndarray | None = None, with_test: bool = False) -> Dataset:
    """Feature 0 of each row is its row number, so tests can see which rows went where."""
    x = np.stack([np.arange(n), np.arange(n) % 7], axis=1).astype(np.float32)
    y = (np.arange(n) % 5).astype(np.int64)
    kwargs = {}
    if groups is not None:
        kwargs = {"groups": groups, "group_names": tuple(f"clinic {g}" for g in range(groups.max() + 1))}
    if with_test:
        kwargs |= {"x_test": np.full((9, 2), -1, np.float32), "y_test": np.zeros(9, np.int64)}
    return Dataset("numbered", x, y, 5, None, **kwargs)


def rows_of(x: np.ndarray) -> list[int]:
    return x[:, 0].astype(int).tolist()


@pytest.mark.parametrize("scheme", LABEL_SCHEMES)
def test_federation_keeps_each_party_rows_and_splits_them(scheme):
    dataset = numbered_dataset()
    fed = build_federation(dataset, 8, scheme, seed=4, test_fraction=0.25)
    parts = partition(dataset.y, 8, scheme, seed=4)
    assert fed.num_parties == 8 and fed.num_features == 2 and fed.num_classes == 5
    for offsets, x in ((fed.train_offsets, fed.x_train), (fed.test_offsets, fed.x_test)):
        assert offsets.dtype == np.int64 and offsets[0] == 0 and offsets[-1] == len(x)
        assert np.all(np.diff(offsets) >= 0)
    assert fed.train_sizes.sum() + fed.test_sizes.sum() == len(dataset.y)
    for p, part in enumerate(parts):
        train_x, train_y = fed.party_train(p)
        test_x, test_y = fed.party_test(p)
        assert sorted(rows_of(train_x) + rows_of(test_x)) == part.tolist()
        np.testing.assert_array_equal(train_y, dataset.y[rows_of(train_x)])
        np.testing.assert_array_equal(test_y, dataset.y[rows_of(test_x)])
        assert abs(len(test_x) - 0.25 * len(part)) <= 1 and len(train_x) >= 1
    assert fed.party_names == tuple(f"party-{p:03d}" for p in range(8))


def test_federation_test_fraction_is_right_overall():
    fed = build_federation(load_dataset("digits"), 10, "iid", seed=0, test_fraction=0.3)
    assert abs(fed.test_sizes.sum() / (fed.train_sizes.sum() + fed.test_sizes.sum()) - 0.3) < 0.01
    np.testing.assert_array_equal(fed.x_eval, fed.x_test)  # no official test split: union of parties'


def test_federation_is_deterministic_in_seed():
    dataset = load_dataset("digits")
    a = build_federation(dataset, 10, "dirichlet", seed=7)
    b = build_federation(dataset, 10, "dirichlet", seed=7)
    c = build_federation(dataset, 10, "dirichlet", seed=8)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.test_offsets, b.test_offsets)
    assert not np.array_equal(a.train_offsets, c.train_offsets)


def test_single_example_party_keeps_it_for_training():
    groups = np.repeat([0, 1, 2], [1, 2, 30])
    fed = build_federation(numbered_dataset(33, groups=groups), 3, "natural", seed=0, test_fraction=0.5)
    assert fed.train_sizes.tolist() == [1, 1, 15] and fed.test_sizes.tolist() == [0, 1, 15]
    assert fed.party_names == ("clinic 0", "clinic 1", "clinic 2")


def test_zero_test_fraction_keeps_everything_for_training():
    fed = build_federation(numbered_dataset(), 4, "iid", seed=0, test_fraction=0.0)
    assert fed.test_sizes.tolist() == [0, 0, 0, 0] and fed.train_sizes.sum() == 400


def test_max_examples_subsamples_first():
    fed = build_federation(numbered_dataset(), 4, "iid", seed=0, max_examples=100)
    rows = rows_of(fed.x_train) + rows_of(fed.x_test)
    assert len(rows) == len(set(rows)) == 100 and set(rows) <= set(range(400))


def test_official_test_split_becomes_the_evaluation_set():
    fed = build_federation(numbered_dataset(with_test=True), 4, "iid", seed=0)
    assert fed.x_eval.shape == (9, 2) and np.all(fed.x_eval == -1)
    assert fed.test_sizes.sum() == 80  # parties still hold out their own rows


def test_covid_clinics_natural_federation_has_one_party_per_clinic():
    dataset = load_dataset("covid_clinics")
    fed = build_federation(dataset, 88, "natural", seed=0)
    assert fed.party_names == dataset.group_names
    assert fed.train_sizes.sum() + fed.test_sizes.sum() == 15_524
    largest = int(np.argmax(fed.train_sizes))
    assert fed.party_names[largest] == "clinical lab"


@pytest.mark.parametrize("test_fraction", [-0.1, 0.95])
def test_federation_rejects_test_fraction_outside_range(test_fraction):
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 0.9\]"):
        build_federation(numbered_dataset(), 4, "iid", seed=0, test_fraction=test_fraction)


def test_federation_rejects_natural_without_groups():
    with pytest.raises(ValueError, match="scheme 'natural' needs a data set with natural groups"):
        build_federation(numbered_dataset(), 4, "natural", seed=0)


def test_federation_rejects_bad_max_examples():
    with pytest.raises(ValueError, match="max_examples must be None or an integer >= 1"):
        build_federation(numbered_dataset(), 4, "iid", seed=0, max_examples=0)


def test_holdout_is_stratified_and_belongs_to_no_party():
    dataset = numbered_dataset(400)  # 80 rows of each of 5 classes
    fed = build_federation(dataset, 8, "iid", seed=3, holdout_fraction=0.25)
    held = rows_of(fed.x_eval)
    assert np.bincount(fed.y_eval, minlength=5).tolist() == [20] * 5  # exactly a quarter of each class
    parties = rows_of(fed.x_train) + rows_of(fed.x_test)
    assert not set(held) & set(parties) and sorted(held + parties) == list(range(400))
    again = build_federation(dataset, 8, "iid", seed=3, holdout_fraction=0.25)
    assert rows_of(again.x_eval) == held  # seeded
    assert rows_of(build_federation(dataset, 8, "iid", seed=4, holdout_fraction=0.25).x_eval) != held


def test_replicate_tiles_only_rows_outside_the_holdout():
    dataset = numbered_dataset(100)
    fed = build_federation(dataset, 50, "iid", seed=0, holdout_fraction=0.2, replicate=3, test_fraction=0.0)
    held = set(rows_of(fed.x_eval))
    trained = rows_of(fed.x_train)
    assert len(held) == 20 and len(trained) == 3 * 80
    assert not held & set(trained)  # no copy of an evaluation row is trained on
    assert np.bincount(trained).max() == 3


def test_official_test_split_wins_over_holdout():
    fed = build_federation(numbered_dataset(with_test=True), 4, "iid", seed=0, holdout_fraction=0.3)
    assert fed.x_eval.shape == (9, 2) and fed.train_sizes.sum() + fed.test_sizes.sum() == 400


def test_empty_evaluation_set_is_refused_up_front():
    from deai.config import ConfigError, parse_config
    from deai.engine.api import build_data

    cfg = parse_config({"data": {"dataset": "digits", "num_parties": 1000, "test_fraction": 0.1}})
    with pytest.raises(ConfigError, match="the evaluation set is empty.*data.holdout_fraction"):
        build_data(cfg)
    cfg = cfg.with_sections(data={"holdout_fraction": 0.2})
    assert len(build_data(cfg).y_eval) == 359  # a fifth of each digit class


def test_replicate_defaults_to_a_holdout_so_evaluation_is_clean():
    from deai.config import parse_config
    from deai.engine.api import build_data

    fed = build_data(parse_config({"data": {"dataset": "digits", "num_parties": 100, "replicate": 3}}))
    evaluation = {row.tobytes() for row in fed.x_eval}
    assert len(fed.y_eval) == 359
    assert not any(row.tobytes() in evaluation for row in np.concatenate([fed.x_train, fed.x_test]))
